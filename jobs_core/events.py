"""What happens to jobs, for whoever watches: the progress of a wait, and observers of every job.

A waiting job reports its progress (:class:`WaitProgress`) when its wait
begins and then every ``progress`` seconds: what blocks it and who holds it.
The job logs it (INFO on the ``jobs_core`` logger) and passes it to its
``on_progress`` callback (the Luigi adapter shows it in luigid, the command
line on the terminal).

An :class:`Observer` added to a coordinator (``coordinator.observe(...)``)
hears of every job of that coordinator: waits, starts, stops, lost locks and
repairs. The OpenTelemetry metrics (:mod:`jobs_core.metrics`) and the
OpenLineage events (:mod:`jobs_core.openlineage`) are observers. An observer
must be quick and must not raise; one that raises is logged and left out of
that event, never failing the job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .facts import BlockReport

log = logging.getLogger("jobs_core")

#: Outcomes of a wait (``Observer.wait_ended``).
STARTED, TIMED_OUT, CANCELLED = "started", "timed_out", "cancelled"


@dataclass(frozen=True)
class WaitProgress:
    """Where a waiting job stands: how long it waited, how long it may still wait, and what blocks it
    (``report.blockers``, each with its holder's facts where known)."""

    job_id: str
    waited: float
    left: float
    report: BlockReport

    def describe(self) -> str:
        """One line for people: ``waited 30s (570s left): output_locked: 'x' (held by ...); ...``."""
        what = "; ".join(b.describe() for b in self.report.blockers) or "nothing any more"
        return f"waited {self.waited:.0f}s ({self.left:.0f}s left): {what}"


class Observer:
    """Hears of the jobs of the coordinators it is added to; every method does nothing by default.

    ``job`` is the :class:`jobs_core.Job` (or ``AsyncJob``); its ``coordinator``
    says which namespace (``coordinator.prefix``).
    """

    def wait_progress(self, job: Any, progress: WaitProgress) -> None:
        """A job waits: when its wait begins, then every ``progress`` seconds."""

    def wait_ended(self, job: Any, outcome: str, waited: float) -> None:
        """A wait ended: ``outcome`` is ``started``, ``timed_out`` (or waiting could not help) or
        ``cancelled`` (an interrupt, a cancelled task, a closed coordinator)."""

    def job_started(self, job: Any) -> None:
        """A job took its locks (``job.token``, ``job.waited``)."""

    def job_stopped(self, job: Any, state: str, held: float) -> None:
        """A job's start ended: ``state`` is ``written``, ``failed`` or ``lost``; ``held`` its seconds."""

    def stopped_by_id(self, coordinator: Any, holder: Any, state: str, inputs: tuple[str, ...],
                      outputs: tuple[str, ...]) -> None:
        """A start made elsewhere was stopped here by its id and fencing token, as the job itself
        would (``stop_job(id, token=...)``, ``jobs-core stop --token``): ``state`` is ``written`` or
        ``failed``; ``holder`` is its :class:`jobs_core.facts.Holder` (token, host, pid)."""

    def locks_lost(self, job: Any, lost: dict[str, list[str]]) -> None:
        """A running job found locks lost (once per start)."""

    def repaired(self, kind: str, names: tuple[str, ...]) -> None:
        """A repair forced locks or outputs: ``kind`` is ``unlock``, ``create`` or ``stop`` (a job stopped
        from outside, without its token: ``names`` are its inputs and outputs)."""


def emit(observers: tuple[Observer, ...], event: str, *args: Any) -> None:
    """Call ``event`` on every observer; one that raises is logged, never passed on."""
    for observer in observers:
        try:
            getattr(observer, event)(*args)
        except Exception:
            log.exception("observer %r failed on %s", observer, event)
