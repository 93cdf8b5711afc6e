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

from jobs_core import ConfigurationError, Coordinator
from jobs_core.urls import hide_password

_coordinators: dict[tuple[int, str, str], Coordinator] = {}


def coordinator(url: str, prefix: str) -> Coordinator:
    """This process's coordinator for the namespace ``prefix`` at ``url``.

    Raises:
        ConfigurationError: a URL (or prefix) jobs_core cannot use.
    """
    key = (os.getpid(), url, prefix)
    found = _coordinators.get(key)
    if found is None:
        found = _coordinators.setdefault(key, _make(url, prefix))
    return found


def _make(url: str, prefix: str) -> Coordinator:
    try:
        return Coordinator.from_url(url, prefix)
    except ConfigurationError as exc:
        shown = hide_password(url)
        if shown == url or not str(exc).startswith("bad Redis URL"):
            raise
        # the client library's reason for refusing the URL may quote part of a password it could not
        # parse (redis-py reads what follows an unencoded '/' in it as the port)
        raise ConfigurationError(
            f"bad Redis URL {shown!r} for jobs_luigi; the client library's reason is not shown, as it may quote "
            "the URL's secrets (percent-encode any '/', '?', '#' or '@' in a password)") from None
