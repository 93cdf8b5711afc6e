"""The locks one run() of a task holds: a jobs_core job per namespace, taken and stopped together.

The main job write-locks the task's outputs and read-locks its inputs of the
same namespace. Inputs of other namespaces, and inputs that a generator run()
yields later (dynamic dependencies), are read-locked by further jobs that
write nothing. Outputs are written only by a successful :meth:`Locks.commit`,
after every reader job was found still holding its locks.

A namespace is a server's key space under a prefix, not a URL string: targets
whose URLs differ but share a prefix are asked which namespace they reach
(:func:`jobs_core.connect.namespace_id`), and those reaching one are one
namespace, locked by one job. Otherwise a second job of the task's id would
wait on the first (``job_running``) until the task failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jobs_core import ConfigurationError, Job, ResourceUnavailable
from jobs_core.connect import namespace_id
from jobs_core.display import printable
from jobs_core.events import WaitProgress
from jobs_core.urls import hide_password

from .clients import coordinator
from .errors import ResourcesBusy
from .target import JobsTarget

log = logging.getLogger("jobs_luigi")
#: ``(url, prefix)``: where a target's namespace is, as configured.
Namespace = tuple[str, str]


class Locks:
    """The jobs of one run of one task; see the module docstring.

    Args:
        task_id: Luigi's task id, for error messages.
        job_id: the main job's id; further jobs in one namespace add ``.<n>``.
        outputs: the task's output targets; they must all be in one namespace.
        inputs: input targets (any namespaces).
        complete: whether the task is complete (Luigi's ``task.complete``): once
            it is, the work is skipped instead of done again.
        duration: lease of every lock, in seconds.
        wait: seconds each start may wait for busy resources.
        on_lost: called (in a heartbeat thread) with a job that lost a lock.
        limits: slots of shared capacity (``{limit: slots}``) taken by the main job,
            which is in the outputs' namespace, else in ``space`` (the task's own).
        space: the task's configured namespace, for limits when it has no jobs outputs.
        output_ttl: seconds the written outputs last (None: the namespace's default).
        progress: seconds between the reports of a wait (None: none), passed to ``on_progress``.
        on_progress: called with each report of a wait (:class:`jobs_core.events.WaitProgress`).
    """

    def __init__(self, task_id: str, job_id: str, outputs: list[JobsTarget], inputs: list[JobsTarget],
                 complete: Callable[[], bool], duration: float, wait: float, on_lost: Callable[[Job], Any], *,
                 limits: Mapping[str, int] | None = None, space: Namespace | None = None,
                 output_ttl: float | None = None, progress: float | None = 30.0,
                 on_progress: Callable[[Job, WaitProgress], Any] | None = None) -> None:
        self.task_id = task_id
        self.job_id = job_id
        self.output_targets = outputs
        self.input_targets = inputs
        self.complete = complete
        self.duration = duration
        self.wait = wait
        self.on_lost = on_lost
        self.limits = dict(limits or {})
        self.space = space
        self.output_ttl = output_ttl
        self.progress = progress
        self.on_progress = on_progress
        #: The namespace of the outputs (None if there are none) and their names; set by :meth:`take`.
        self.home: Namespace | None = None
        self.outputs: list[str] = []
        #: The main job first, then reader jobs, in the order taken.
        self.jobs: list[Job] = []
        #: Names already locked, per namespace.
        self._held: dict[Namespace, set[str]] = {}
        #: Each ``(url, prefix)`` seen -> the first one seen that reaches the same keys.
        self._spaces: dict[Namespace, Namespace] = {}
        self._ids: dict[Namespace, str] = {}

    @property
    def main(self) -> Job | None:
        """The job holding the outputs (or, with none, the first reader); None if nothing is held."""
        return self.jobs[0] if self.jobs else None

    def take(self) -> dict[str, str] | None:
        """Take every lock, waiting up to ``wait`` for busy ones.

        After any wait, the task is asked again whether it is complete: another
        run of it may have done the work meanwhile (whatever its outputs are).

        Returns:
            None once the locks are held; or, if the task turned out complete,
            ``{output: writer}`` of its jobs outputs, holding nothing.

        Raises:
            ResourcesBusy: the wait ran out; nothing is held.
            ConfigurationError: the outputs live in more than one namespace.
        """
        began = time.monotonic()
        deadline = began + self.wait
        try:
            self.home, self.outputs = self._group_outputs()
            inputs = self._group(self.input_targets)
            recheck = False
            if self.home is not None:
                skip, recheck = self._take_outputs(self.home, inputs.get(self.home, []), deadline)
                if skip is not None:
                    return skip
            elif self.limits:  # no jobs outputs: the limits are taken in the task's own namespace
                if self.space is None:
                    raise ConfigurationError(f"{self.task_id}: jobs_limits need a namespace (jobs_redis_url, "
                                             "[jobs] redis_url or $JOBS_REDIS_URL)")
                space = self._space(self.space)
                self._start(space, inputs.get(space, []), [], deadline, overwrite=True)
            for ns, names in inputs.items():
                if ns not in self._held:
                    self._start(ns, names, [], deadline, overwrite=True)
            if (recheck or any(job.blockers for job in self.jobs)) and self.complete():
                writers = self.writers()
                self.release()
                return writers
        except ResourceUnavailable as exc:
            self.release()
            raise ResourcesBusy(self.task_id, exc, time.monotonic() - began) from exc
        except BaseException:
            self.release()
            raise
        return None

    def _take_outputs(self, home: Namespace, inputs: list[str], deadline: float) -> tuple[dict[str, str] | None, bool]:
        """Start the main job (outputs and the inputs of their namespace), unless the task is complete.

        Returns:
            ``(writers, False)`` if the task is complete; else ``(None, recheck)``
            with the main job running, ``recheck`` if complete() must be asked again.
        """
        c = coordinator(*home)
        if self.complete():
            return c.written(self.outputs), False
        if not c.written(self.outputs):
            # overwrite=False: should another job write the outputs while this one waits, the
            # start fails with output_exists instead of taking the locks to do the work again
            try:
                self._start(home, inputs, self.outputs, deadline, overwrite=False)
                return None, False
            except ResourceUnavailable as exc:
                if "output_exists" not in exc.reasons:
                    raise
                if self.complete():
                    return c.written(self.outputs), False
        # some outputs exist (an earlier partial run, data deleted since, another writer): do it all
        # again, unless the task turns out complete once the write locks are ours
        self._start(home, inputs, self.outputs, deadline, overwrite=True)
        return None, True

    def _start(self, ns: Namespace, inputs: list[str], outputs: list[str], deadline: float,
               overwrite: bool) -> Job:
        """Start one job in ``ns``; its id is the task's, with ``.<n>`` for the n-th more in one namespace.

        The first job started (the main one) takes the limits; a job with outputs gets the output TTL."""
        n = sum(1 for j in self.jobs if j.coordinator is coordinator(*ns))
        options: dict[str, Any] = {}
        if not self.jobs and self.limits:
            options["limits"] = self.limits
        if outputs and self.output_ttl is not None:
            options["output_ttl"] = self.output_ttl
        job = coordinator(*ns).job(
            inputs, outputs, duration=self.duration, wait=max(deadline - time.monotonic(), 0.0),
            overwrite=overwrite, heartbeat=True, on_lost=self.on_lost, progress=self.progress,
            on_progress=self.on_progress, job_id=self.job_id if n == 0 else f"{self.job_id}.{n}", **options)
        job.start()
        self.jobs.append(job)
        self._held.setdefault(ns, set()).update(inputs, outputs)
        return job

    def add_inputs(self, targets: Iterable[JobsTarget]) -> bool:
        """Read-lock more inputs (a generator run()'s dynamic dependencies), waiting up to ``wait``.

        Names already locked are skipped.

        Returns:
            Whether it had to wait (another run may have completed the task meanwhile).

        Raises:
            ResourcesBusy: the wait ran out (the locks taken before are kept).
        """
        began = time.monotonic()
        deadline = began + self.wait
        waited = False
        for ns, names in self._group(targets).items():
            new = [n for n in names if n not in self._held.get(ns, ())]
            if not new:
                continue
            try:
                job = self._start(ns, new, [], deadline, overwrite=True)
            except ResourceUnavailable as exc:
                raise ResourcesBusy(self.task_id, exc, time.monotonic() - began) from exc
            waited = waited or bool(job.blockers)
        return waited

    def writers(self) -> dict[str, str]:
        """``{output: writer}`` for the jobs outputs written."""
        return coordinator(*self.home).written(self.outputs) if self.home is not None else {}

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
                            self.task_id, printable(job.id), self.duration, exc_info=True)
        self.jobs.clear()
        self._held.clear()

    # -- namespaces -------------------------------------------------------------------------------

    def _space(self, ns: Namespace) -> Namespace:
        """The namespace ``ns`` reaches, as the first ``(url, prefix)`` seen that reaches it.

        Only a pair whose prefix is another's, with a different URL, costs a round
        trip to each (then one per new URL): the common case of one URL costs none.
        """
        found = self._spaces.get(ns)
        if found is None:
            found = ns
            for known in dict.fromkeys(self._spaces.values()):
                if known[1] == ns[1] and self._identity(known) == self._identity(ns):
                    found = known
                    break
            self._spaces[ns] = found
        return found

    def _identity(self, ns: Namespace) -> str:
        if ns not in self._ids:
            self._ids[ns] = namespace_id(coordinator(*ns).client, ns[1])
        return self._ids[ns]

    def _group(self, targets: Iterable[JobsTarget]) -> dict[Namespace, list[str]]:
        """Names grouped by namespace, without repeats, in first-seen order."""
        out: dict[Namespace, dict[str, None]] = {}
        for t in targets:
            out.setdefault(self._space(t.namespace), {})[t.name] = None
        return {ns: list(names) for ns, names in out.items()}

    def _group_outputs(self) -> tuple[Namespace | None, list[str]]:
        """The namespace and names of the outputs.

        Raises:
            ConfigurationError: the outputs live in more than one namespace.
        """
        grouped = self._group(self.output_targets)
        if len(grouped) > 1:
            spaces = ", ".join(f"{hide_password(url)} prefix {prefix!r}" for url, prefix in grouped)
            raise ConfigurationError(f"{self.task_id}: its JobsTarget outputs live in several namespaces ({spaces}); "
                                     "outputs can be written all-or-nothing only within one")
        for ns, names in grouped.items():
            return ns, names
        return None, []
