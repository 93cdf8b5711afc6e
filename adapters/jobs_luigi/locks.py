"""The locks one run() of a task holds: a jobs_core job per namespace, taken and stopped together.

The main job write-locks the task's outputs and read-locks its inputs of the
same namespace. Inputs of other namespaces, and inputs that a generator run()
yields later (dynamic dependencies), are read-locked by further jobs that
write nothing. Outputs are written only by a successful :meth:`Locks.commit`,
after every reader job was found still holding its locks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from jobs_core import ConfigurationError, Job, ResourceUnavailable
from jobs_core.urls import hide_password

from .clients import coordinator
from .errors import ResourcesBusy
from .target import JobsTarget

log = logging.getLogger("jobs_luigi")
Namespace = tuple[str, str]


def by_namespace(targets: Iterable[JobsTarget]) -> dict[Namespace, list[str]]:
    """Names grouped by resolved namespace, without repeats, in first-seen order."""
    out: dict[Namespace, dict[str, None]] = {}
    for t in targets:
        out.setdefault(t.namespace, {})[t.name] = None
    return {ns: list(names) for ns, names in out.items()}


class Locks:
    """The jobs of one run of one task; see the module docstring.

    Args:
        task_id: Luigi's task id, for error messages.
        job_id: the main job's id; further jobs in one namespace add ``.<n>``.
        home: the namespace of the outputs (None if there are none).
        outputs: output names, all in ``home``.
        inputs: input targets (any namespaces).
        complete: whether the task is complete (Luigi's ``task.complete``): once
            it is, the work is skipped instead of done again.
        duration: lease of every lock, in seconds.
        wait: seconds each start may wait for busy resources.
        on_lost: called (in a heartbeat thread) with a job that lost a lock.
    """

    def __init__(self, task_id: str, job_id: str, home: Namespace | None, outputs: list[str],
                 inputs: list[JobsTarget], complete: Callable[[], bool], duration: float, wait: float,
                 on_lost: Callable[[Job], Any]) -> None:
        self.task_id = task_id
        self.job_id = job_id
        self.home = home
        self.outputs = outputs
        self.inputs = by_namespace(inputs)
        self.complete = complete
        self.duration = duration
        self.wait = wait
        self.on_lost = on_lost
        #: The main job first, then reader jobs, in the order taken.
        self.jobs: list[Job] = []
        #: Names already locked, per namespace.
        self._held: dict[Namespace, set[str]] = {}

    @property
    def main(self) -> Job | None:
        """The job holding the outputs (or, with none, the first reader); None if nothing is held."""
        return self.jobs[0] if self.jobs else None

    def take(self) -> dict[str, str] | None:
        """Take every lock, waiting up to ``wait`` for busy ones.

        Returns:
            None once the locks are held; or, if the task turned out complete
            (another job wrote every output), ``{output: writer}``, holding nothing.

        Raises:
            ResourcesBusy: the wait ran out; nothing is held.
        """
        began = time.monotonic()
        deadline = began + self.wait
        try:
            if self.home is not None:
                skip = self._take_outputs(self.home, deadline)
                if skip is not None:
                    return skip
            for ns, names in self.inputs.items():
                if ns not in self._held:
                    self._start(ns, names, [], deadline, overwrite=True)
        except ResourceUnavailable as exc:
            self.release()
            raise ResourcesBusy(self.task_id, exc, time.monotonic() - began) from exc
        except BaseException:
            self.release()
            raise
        return None

    def _take_outputs(self, home: Namespace, deadline: float) -> dict[str, str] | None:
        """Start the main job (outputs and the inputs of their namespace), unless the task is complete."""
        c = coordinator(*home)
        inputs = self.inputs.get(home, [])
        if self.complete():
            return c.written(self.outputs)
        if not c.written(self.outputs):
            # overwrite=False: should another job write the outputs while this one waits, the
            # start fails with output_exists instead of taking the locks to do the work again
            try:
                self._start(home, inputs, self.outputs, deadline, overwrite=False)
                return None
            except ResourceUnavailable as exc:
                if "output_exists" not in exc.reasons:
                    raise
                if self.complete():
                    return c.written(self.outputs)
        # some outputs exist (an earlier partial run, data deleted since, another writer): do it all
        # again, unless the task turns out complete once the write locks are ours
        self._start(home, inputs, self.outputs, deadline, overwrite=True)
        if self.complete():
            self.release()
            return c.written(self.outputs)
        return None

    def _start(self, ns: Namespace, inputs: list[str], outputs: list[str], deadline: float,
               overwrite: bool) -> Job:
        """Start one job in ``ns``; its id is the task's, with ``.<n>`` for the n-th more in one namespace."""
        n = sum(1 for j in self.jobs if j.coordinator is coordinator(*ns))
        job = coordinator(*ns).job(
            inputs, outputs, duration=self.duration, wait=max(deadline - time.monotonic(), 0.0),
            overwrite=overwrite, heartbeat=True, on_lost=self.on_lost,
            job_id=self.job_id if n == 0 else f"{self.job_id}.{n}")
        job.start()
        self.jobs.append(job)
        self._held.setdefault(ns, set()).update(inputs, outputs)
        return job

    def add_inputs(self, targets: Iterable[JobsTarget]) -> None:
        """Read-lock more inputs (a generator run()'s dynamic dependencies), waiting up to ``wait``.

        Names already locked are skipped.

        Raises:
            ResourcesBusy: the wait ran out (the locks taken before are kept).
        """
        began = time.monotonic()
        deadline = began + self.wait
        for ns, names in by_namespace(targets).items():
            new = [n for n in names if n not in self._held.get(ns, ())]
            if not new:
                continue
            try:
                self._start(ns, new, [], deadline, overwrite=True)
            except ResourceUnavailable as exc:
                raise ResourcesBusy(self.task_id, exc, time.monotonic() - began) from exc

    def check(self) -> None:
        """Raise :class:`jobs_core.LockLost` if any job is known to have lost a lock (no round trip)."""
        for job in self.jobs:
            job.check()

    def commit(self) -> None:
        """Stop every job successfully: the outputs are written only if no job lost a lock.

        Raises:
            LockLost: some lock was lost; nothing was written and every lock is released.
        """
        try:
            self.check()
            for job in reversed(self.jobs):  # the readers, then the main job, which writes the outputs
                job.stop()
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Stop every job as failed (outputs untouched); never raises, so a run()'s own error wins."""
        for job in reversed(self.jobs):
            try:
                job.stop(failed=True)
            except Exception:
                log.warning("%s: could not release the locks of job %s; they lapse with their lease (%ss)",
                            self.task_id, job.id, self.duration, exc_info=True)
        self.jobs.clear()
        self._held.clear()


def check_outputs(task_id: str, targets: list[JobsTarget]) -> tuple[Namespace | None, list[str]]:
    """The namespace and names of a task's outputs.

    Raises:
        ConfigurationError: the outputs live in more than one namespace.
    """
    grouped = by_namespace(targets)
    if len(grouped) > 1:
        spaces = ", ".join(f"{hide_password(url)} prefix {prefix!r}" for url, prefix in grouped)
        raise ConfigurationError(f"{task_id}: its JobsTarget outputs live in several namespaces ({spaces}); "
                                 "outputs can be written all-or-nothing only within one")
    for ns, names in grouped.items():
        return ns, names
    return None, []
