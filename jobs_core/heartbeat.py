"""One background thread per coordinator that renews the leases of its running jobs."""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("jobs_core")

#: The thread exits after this many idle seconds and restarts on demand.
IDLE_EXIT = 5.0


class Beating(Protocol):
    def _beat(self) -> float | None:
        """Renew now; return the delay to the next beat, or None to stop beating."""


class Heartbeat:
    """A scheduler of lease renewals: ``add(job, delay)`` and ``remove(job)``.

    Entries are never searched for: ``remove`` bumps the job's generation and
    stale heap entries are dropped when they surface.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seq = itertools.count()
        self._reset()

    def _reset(self) -> None:
        # Also run in a forked child: the parent's thread, lock state and jobs stay behind.
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Beating]] = []
        self._gens: dict[int, int] = {}
        self._thread: threading.Thread | None = None
        #: When the thread wakes next on its own: an entry due later needs no notify (no thread switch).
        self._wake_at = 0.0

    def add(self, job: Beating, delay: float) -> None:
        if self._pid != os.getpid():
            self._reset()
        with self._cond:
            seq = self._push(job, delay)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="jobs_core-heartbeat", daemon=True)
                self._thread.start()
            elif self._heap[0][1] == seq and self._heap[0][0] < self._wake_at:
                self._cond.notify()  # due before the thread wakes by itself

    def remove(self, job: Beating) -> None:
        if self._pid != os.getpid():
            return
        with self._cond:
            self._gens.pop(id(job), None)
            if len(self._heap) > 64 and len(self._heap) > 4 * len(self._gens):
                # mostly stopped jobs: drop them now rather than when they come due
                self._heap = [e for e in self._heap if self._gens.get(id(e[2])) == e[1]]
                heapq.heapify(self._heap)

    def stop(self) -> int:
        """Renew nothing more: forget every job (the thread exits); return how many were beating."""
        if self._pid != os.getpid():
            return 0
        with self._cond:
            live = len(self._gens)
            self._heap.clear()
            self._gens.clear()
            self._thread = None  # the thread sees it is no longer the one and exits
            self._cond.notify_all()
        return live

    def _push(self, job: Beating, delay: float) -> int:
        seq = next(self._seq)
        self._gens[id(job)] = seq
        heapq.heappush(self._heap, (self._clock() + delay, seq, job))
        return seq

    def _run(self) -> None:
        while True:
            with self._cond:
                job = self._next_due()
                if job is None:
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
            try:
                delay = job._beat()
            except Exception:  # a heartbeat must outlive any one failure
                log.exception("heartbeat of %r failed; retrying in 1s", job)
                delay = 1.0
            with self._cond:
                if self._gens.get(id(job)) == -1:
                    del self._gens[id(job)]
                    if delay is not None:
                        self._push(job, delay)

    def _next_due(self) -> Beating | None:
        """Wait for the next live entry to come due; None after IDLE_EXIT idle seconds."""
        while True:
            if self._thread is not threading.current_thread():
                return None  # stopped; or replaced by a thread started after a stop
            while self._heap and self._gens.get(id(self._heap[0][2])) != self._heap[0][1]:
                heapq.heappop(self._heap)
            if not self._heap:
                self._wake_at = self._clock() + IDLE_EXIT
                if not self._cond.wait(IDLE_EXIT) and not self._heap:
                    return None
                continue
            due, _, job = self._heap[0]
            wait = due - self._clock()
            if wait > 0:
                self._wake_at = due
                self._cond.wait(wait)
                continue
            self._wake_at = 0.0
            heapq.heappop(self._heap)
            self._gens[id(job)] = -1  # beating: a remove() during the beat pops this mark
            return job
