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
#: Longest sleep before looking again: a waiting job stays listed (and keeps its place in
#: the queues of the outputs it waits for) 30 s after each try (start.lua), so it tries
#: at least this often even when nothing wakes it.
MAX_QUIET_SLEEP = 10.0
#: Reasons a waiting writer queues for an output: only the first in line is woken by its
#: release, and a newcomer cannot take it ahead of the line.
QUEUEING = frozenset({"output_locked", "output_used", "output_queued"})
#: Slack added after a lease's expiry so the retry finds it expired.
EXPIRY_SLACK = 0.002


def queued(blockers: Iterable[Blocker]) -> frozenset[str]:
    """The outputs a waiting job's failed try queued it for: those contended by other writers,
    and none when something else (a missing input) blocks it too (see start.lua)."""
    blockers = list(blockers)
    if any(b.reason not in QUEUEING for b in blockers):
        return frozenset()
    return frozenset(b.name for b in blockers)


def final(blockers: Iterable[Blocker]) -> bool:
    """Whether waiting cannot help: an existing output with ``overwrite=False``."""
    return any(b.reason == "output_exists" for b in blockers)


def sleep_for(blockers: Iterable[Blocker], publishes: Mapping[str, bool], now: float, backoff: float) -> float:
    """How long to sleep before the next try, unless a wake-up comes first.

    When every blocker is a lock held by a jobs_core holder, its release will
    publish, so only the lease's expiry (a crashed holder) needs a look: sleep
    until the first one. A waiter ahead in an output's line is the same: this
    job is woken when its turn comes, and looks again when that waiter would be
    gone. Otherwise something that does not publish may end the wait, so poll
    with ``backoff``.
    """
    first = None
    for b in blockers:
        h = b.holder
        if h is None or h.expires is None:
            return backoff
        if b.reason != "output_queued" and not publishes.get(h.job_id):  # a waiter ahead: woken in turn
            return backoff
        first = h.expires if first is None else min(first, h.expires)
    if first is None:
        return backoff
    return min(max(first - now, 0.0) + EXPIRY_SLACK, MAX_QUIET_SLEEP)
