"""One coordinator per process and namespace, made where it is used.

Targets and tasks hold only strings; their coordinators (a client, its
connection pool, the heartbeat thread) are made in the process that runs the
check or the task. The cache is keyed by pid, so a forked Luigi worker never
uses its parent's sockets or threads; there is no lock to inherit half-held
either (two threads racing for a key make one coordinator too many, and
``setdefault`` keeps the first).
"""

from __future__ import annotations

import os

from jobs_core import Coordinator

_coordinators: dict[tuple[int, str, str], Coordinator] = {}


def coordinator(url: str, prefix: str) -> Coordinator:
    """This process's coordinator for the namespace ``prefix`` at ``url``."""
    key = (os.getpid(), url, prefix)
    found = _coordinators.get(key)
    if found is None:
        found = _coordinators.setdefault(key, Coordinator.from_url(url, prefix))
    return found
