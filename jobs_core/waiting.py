"""How long a waiting job sleeps between tries (the wake-ups are in :mod:`jobs_core.listener`).

A release by a jobs_core job publishes, so a blocker held by one needs no
polling, only a look when its lease ends (in case its holder died). Writers
that do not publish (jobs.py clients, a plain ``SET``) are caught by a
fallback poll that backs off to the coordinator's ``poll``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .facts import Blocker

#: First fallback poll delay; it doubles after each sleep that no wake-up cut short.
POLL_MIN = 0.025
#: Longest sleep on a lock held by a jobs_core holder before looking again.
MAX_QUIET_SLEEP = 30.0
#: Slack added after a lease's expiry so the retry finds it expired.
EXPIRY_SLACK = 0.002


def final(blockers: Iterable[Blocker]) -> bool:
    """Whether waiting cannot help: an existing output with ``overwrite=False``."""
    return any(b.reason == "output_exists" for b in blockers)


def sleep_for(blockers: Iterable[Blocker], publishes: Mapping[str, bool], now: float, backoff: float) -> float:
    """How long to sleep before the next try, unless a wake-up comes first.

    When every blocker is a lock held by a jobs_core holder, its release will
    publish, so only the lease's expiry (a crashed holder) needs a look: sleep
    until the first one. Otherwise something that does not publish may end the
    wait, so poll with ``backoff``.
    """
    first = None
    for b in blockers:
        h = b.holder
        if h is None or h.expires is None or not publishes.get(h.job_id):
            return backoff
        first = h.expires if first is None else min(first, h.expires)
    if first is None:
        return backoff
    return min(max(first - now, 0.0) + EXPIRY_SLACK, MAX_QUIET_SLEEP)
