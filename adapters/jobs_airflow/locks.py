"""How a task instance holds its jobs_core locks, from before ``execute`` to after Airflow's verdict.

The job id is fixed per dag, run, task, map index and try, so a task that
parks (a deferral, or waiting for a human's input) keeps its locks: the
leases are extended to cover the wait, and the resume adopts the same start
by its fencing token. The outputs are written once the task has succeeded as
Airflow counts success: ``execute`` returned and its return value was pushed
to XCom, or it raised an exception by which a task succeeds
(``DownstreamTasksSkipped``; ``SystemExit(0)`` on Airflow 2); for
``DagRunTriggerException``, whose outcome Airflow decides afterwards, the
task's state-change callbacks settle the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import jobs_core
from jobs_core.display import printable

from .hooks import JobsHook
from .links import JobsWebLink, job_link, web_url
from .version_compat import (
    AIRFLOW_V_3_0_PLUS,
    PARKING_SIGNALS,
    AirflowException,
    AirflowFailException,
    AirflowTaskTerminated,
    DagRunTriggerException,
    TaskDeferred,
    push_return_value,
    succeeds_by_raising,
)

log = logging.getLogger(__name__)

#: Lease of every lock, in seconds; the heartbeat renews it every third.
DEFAULT_DURATION = 300.0
#: How long a task waits for busy or missing resources before failing (so that retries apply).
DEFAULT_WAIT = 60.0
#: Lease given to the locks of a parked task (deferred, awaiting input) whose wait has no timeout.
DEFAULT_DEFERRAL_LEASE = 3600.0
#: Key of the lock state in a parked task's ``next_kwargs``.
STATE_KEY = "jobs_core_lock"
#: Key, in the event of :class:`jobs_airflow.triggers.JobsLockWaitTrigger`, of how a deferred lock wait ended.
LOCK_WAIT_KEY = "jobs_core_lock_wait"
#: Grace given to Airflow's own deferral timeout beyond the lock wait's deadline (the trigger reports first).
LOCK_WAIT_GRACE = 60.0
#: Exceptions after which Airflow itself decides whether the task succeeded (Airflow 3).
_DECIDED_LATER: tuple[type[BaseException], ...] = tuple(e for e in (DagRunTriggerException,) if e is not None)
#: The state-change callbacks that settle such a task, and whether each means success.
_VERDICTS = {"on_success_callback": True, "on_failure_callback": False, "on_retry_callback": False,
             "on_skipped_callback": False}


class JobsLockUnavailable(AirflowException):
    """The task could not take its jobs_core locks within its wait; Airflow's retries apply."""


class JobsOutputExists(AirflowFailException):
    """An output exists and the task may not overwrite it (``jobs_overwrite=False``): no retry can help."""


class JobsLimitError(AirflowFailException):
    """A limit the task asks for is not set in the namespace, or is smaller than the slots asked: no retry helps."""


class JobsLockLost(AirflowException):
    """The task lost its jobs_core locks (a lease ran out, a forced unlock): its outputs were not written."""


class JobsTaskKilled(AirflowTaskTerminated):
    """Airflow killed the task (``on_kill``) while it ran: its locks were released and nothing written."""


class _EndedInTrigger(Exception):
    """The resumed start was already ended by its trigger (``end_from_trigger``): nothing is left to run."""


def job_id_for(context: Any) -> str:
    """The jobs_core job id of a task instance: ``airflow/<dag>/<task>/<run>/<map index>/<try>``."""
    ti = context["ti"]
    return f"airflow/{ti.dag_id}/{ti.task_id}/{ti.run_id}/{ti.map_index}/{ti.try_number}"


def lineage_name_for(job_id: str) -> str:
    """The lineage name of a task's job: ``airflow/<dag>/<task>``, one node for every run and try."""
    if job_id.startswith("airflow/"):
        parts = job_id.split("/")
        if len(parts) >= 3:
            return "/".join(parts[:3])
    return job_id


def _seconds(value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _persist_link(context: Any, connection_web_url: str | None, job_id: str) -> None:
    """Store the task's link to its job in the web view, if one is configured and the task shows it."""
    task = context.get("task") if isinstance(context, dict) or hasattr(context, "get") else None
    links = getattr(task, "operator_extra_links", None)
    if not isinstance(links, (list, tuple)) or not any(isinstance(link, JobsWebLink) for link in links):
        return
    base = web_url(connection_web_url)
    if base is not None:
        JobsWebLink().persist(context, job_link(base, job_id))


@contextmanager
def _closed_on_error(coordinator: jobs_core.Coordinator) -> Iterator[None]:
    """Close ``coordinator`` if the block fails (it holds no job then), and let the error through."""
    try:
        yield
    except BaseException:
        coordinator.close()
        raise


class Execution:
    """One run of a locked task's code (``execute`` or a resume), as ``on_kill`` finds it.

    ``on_kill`` runs in Airflow's SIGTERM handler, in the main thread, between
    two steps of whatever runs there. When that is the task's own code, the
    job is stopped (failed) at once; when it is this module's (taking or
    releasing the locks), only ``killed`` is set and the code checks it.
    """

    def __init__(self) -> None:
        self.job: jobs_core.Job | None = None
        self.in_task_code = False
        self.killed = False

    def kill(self) -> None:
        """The task is being killed: release its locks now if its own code is running; never write."""
        self.killed = True
        if self.in_task_code and self.job is not None:
            self.in_task_code = False
            log.warning("jobs_core: %s was killed; its locks are released and its outputs %s not written",
                        printable(self.job.id), printable(list(self.job.outputs)))
            try:
                self.job.stop(failed=True)
            except Exception:
                log.exception("jobs_core: could not release the locks of %s; they lapse with their lease",
                              printable(self.job.id))


@dataclass
class JobsLock:
    """How one task locks: names (already rendered) and jobs_core settings.

    Args:
        inputs: names read-locked while the task runs; they must exist.
        outputs: names write-locked while the task runs, written if it succeeds.
        duration: lease of the locks, in seconds (renewed by the heartbeat).
        wait: seconds to wait for busy or missing resources before failing.
        overwrite: if False, an existing output makes the task fail, without retries.
        deferral_lease: lease given to the locks while the task is parked
            (default: the wait's timeout plus ``duration``, else one hour).
        redis_conn_id, redis_url, prefix: see :class:`jobs_airflow.hooks.JobsHook`.
        limits: slots of shared limits taken with the locks (``{"warehouse": 1}``).
        output_ttl: seconds the written outputs live (None: the namespace's default, usually for ever).
        deferrable: wait for busy locks in the triggerer (the worker slot is freed) rather than in the worker.
    """

    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    duration: float = DEFAULT_DURATION
    wait: float = DEFAULT_WAIT
    overwrite: bool = True
    deferral_lease: float | None = None
    redis_conn_id: str | None = None
    redis_url: str | None = None
    prefix: str | None = None
    limits: dict[str, int] = field(default_factory=dict)
    output_ttl: float | None = None
    deferrable: bool = False

    def _hook(self) -> JobsHook:
        return JobsHook(redis_conn_id=self.redis_conn_id, redis_url=self.redis_url, prefix=self.prefix)

    def _job(self, coordinator: jobs_core.Coordinator, job_id: str, inputs: list[str], outputs: list[str],
             **options: Any) -> jobs_core.Job:
        options.setdefault("duration", self.duration)
        if self.limits:
            options.setdefault("limits", dict(self.limits))
        if self.output_ttl is not None:
            options.setdefault("output_ttl", self.output_ttl)
        return coordinator.job(inputs, outputs, overwrite=self.overwrite, job_id=job_id,
                               lineage_name=lineage_name_for(job_id), **options)

    # -- taking the locks ----------------------------------------------------------------------

    def start(self, context: Any, wait: float | None = None) -> jobs_core.Job:
        """Take the locks for this task instance, waiting up to ``wait`` seconds (default: ``self.wait``).

        Raises:
            JobsOutputExists: an output exists and ``overwrite`` is False (no retry helps).
            JobsLimitError: a limit is not set, or smaller than the slots asked (no retry helps).
            JobsLockUnavailable: still busy or missing after the wait.
        """
        hook = self._hook()
        target = hook.target()
        coordinator = target.coordinator(hook.poll)
        with _closed_on_error(coordinator):
            job = self._job(coordinator, job_id_for(context), self.inputs, self.outputs,
                            wait=self.wait if wait is None else wait)
            try:
                job.start()
            except (jobs_core.UnknownLimit, jobs_core.LimitTooSmall) as exc:
                raise JobsLimitError(printable(f"jobs_core: {exc}. No retry can change that, so the task fails "
                                               "without retries.")) from exc
            except jobs_core.ResourceUnavailable as exc:
                self._check_overwrite(job.id, exc.blockers, exc)
                if wait is not None:  # a try of a deferrable wait: the caller decides
                    raise
                raise self._unavailable(job.id, [b.describe() for b in exc.blockers]) from exc
        log.info("jobs_core: %s holds %s (read) and %s (write)%s, token %s", printable(job.id),
                 printable(self.inputs), printable(self.outputs),
                 printable(f" and slots {self.limits}") if self.limits else "", job.token)
        _persist_link(context, target.web_url, job.id)
        return job

    def _check_overwrite(self, job_id: str, blockers: Any, cause: BaseException | None) -> None:
        existing = [b for b in blockers if b.reason == "output_exists"]
        if existing:
            raise JobsOutputExists(printable(
                f"jobs_core: {job_id} may not overwrite outputs that already exist (jobs_overwrite=False): "
                + "; ".join(b.describe() for b in existing) + ". No retry can change that, so the task "
                "fails without retries; set jobs_overwrite=True to replace them.")) from cause

    def _unavailable(self, job_id: str, blockers: list[str]) -> JobsLockUnavailable:
        return JobsLockUnavailable(printable(
            f"jobs_core: locks for {job_id} not available within jobs_wait={self.wait:g}s (Airflow's "
            f"retries apply): " + "; ".join(blockers)))

    # -- waiting for the locks in the triggerer ------------------------------------------------

    def start_or_defer(self, task: Any, context: Any, deadline: float) -> jobs_core.Job:
        """Take the locks now if they are free; else defer the task to
        :class:`jobs_airflow.triggers.JobsLockWaitTrigger` until they are, or until ``deadline``
        (epoch seconds), freeing the worker slot. The resume calls :meth:`after_wait`.

        Raises:
            TaskDeferred: the locks are busy (through ``task.defer``).
            JobsOutputExists, JobsLimitError: as for :meth:`start`.
            JobsLockUnavailable: busy, and the deadline has passed.
        """
        try:
            return self.start(context, wait=0.0)
        except jobs_core.ResourceUnavailable as exc:
            job_id = job_id_for(context)
            blockers = [b.describe() for b in exc.blockers]
            left = deadline - time.time()
            if left <= 0:
                raise self._unavailable(job_id, blockers) from exc
        from .triggers import JobsLockWaitTrigger

        log.info("jobs_core: %s waits in the triggerer (its worker slot is freed) for up to %.0fs: %s",
                 printable(job_id), left, printable("; ".join(blockers)))
        trigger = JobsLockWaitTrigger(inputs=self.inputs, outputs=self.outputs, overwrite=self.overwrite,
                                      limits=self.limits, deadline=deadline, job_id=job_id, **self._hook().settings())
        task.defer(trigger=trigger, method_name="execute", timeout=timedelta(seconds=left + LOCK_WAIT_GRACE))
        raise AssertionError("task.defer returned")  # pragma: no cover - defer always raises

    def after_wait(self, task: Any, context: Any, outcome: dict[str, Any]) -> jobs_core.Job:
        """Resumed from a deferred lock wait: take the locks (or defer again if another job took
        them first), or fail as a wait in the worker would.

        Raises:
            JobsLockUnavailable: the wait reached its deadline (the blockers are named).
            JobsOutputExists, JobsLimitError: as for :meth:`start`.
        """
        status = outcome.get("status")
        job_id = job_id_for(context)
        if status == "timeout":
            raise self._unavailable(job_id, [str(b) for b in outcome.get("blockers", [])])
        if status == "error":
            raise JobsLimitError(printable(f"jobs_core: {outcome.get('error')}. No retry can change that, so the "
                                           "task fails without retries."))
        return self.start_or_defer(task, context, float(outcome.get("deadline", 0.0)))

    def resume(self, context: Any, state: dict[str, Any]) -> jobs_core.Job:
        """Adopt the locks a parked try of this task holds (``state`` from its ``next_kwargs``).

        Raises:
            JobsLockLost: the locks lapsed or were taken while the task was parked.
            _EndedInTrigger: the trigger already ended this start (``end_from_trigger``, seen
                when ``dag.test()`` resumes the task anyway).
        """
        job_id = state.get("job_id") or job_id_for(context)
        inputs, outputs = state.get("inputs", self.inputs), state.get("outputs", self.outputs)
        coordinator = self._hook().get_conn()
        with _closed_on_error(coordinator):
            job = self._job(coordinator, job_id, inputs, outputs)
            token = state.get("token")
            try:
                if token is None:
                    token = self._find_token(coordinator, job_id)
                job.resume(token)
            except jobs_core.LockLost as exc:
                if self._written_by(coordinator, job_id, token, outputs):
                    raise _EndedInTrigger(job_id) from None
                raise JobsLockLost(printable(
                    f"jobs_core locks of {job_id} were lost while the task was parked (lease jobs_deferral_lease "
                    f"ran out, or a forced unlock); nothing was written: {exc}")) from exc
        log.info("jobs_core: %s resumed its locks, token %s", printable(job_id), token)
        return job

    @staticmethod
    def _find_token(coordinator: jobs_core.Coordinator, job_id: str) -> int:
        """The token of the running start of ``job_id``.

        Needed when the parked task's ``next_kwargs`` did not come back (``dag.test()``
        replaces them with the trigger's event; Airflow's own deferral after a
        ``DagRunTriggerException`` never had them).
        """
        holder = coordinator.holder(job_id)
        if holder is None or holder.token is None:
            raise jobs_core.LockLost(job_id, {"job_running": [job_id]}, f"job {job_id!r} holds no lock any more")
        return holder.token

    @staticmethod
    def _written_by(coordinator: jobs_core.Coordinator, job_id: str, token: int | None, outputs: list[str]) -> bool:
        """Whether this start (``job_id``, ``token`` if known) wrote every one of ``outputs``."""
        if not outputs:
            return False
        infos = [coordinator.output_info(name) for name in outputs]
        return all(i.written and i.writer == job_id and (token is None or i.token == token) for i in infos)

    # -- handing the locks over while parked ---------------------------------------------------

    def hand_over(self, job: jobs_core.Job, parked: BaseException | None) -> None:
        """The task parks (defers, or waits for input): extend the leases to cover the wait, stop
        renewing here, and record the start in the resume's ``next_kwargs``.

        A deferral's trigger is wrapped in :class:`jobs_airflow.triggers.JobsLockedTrigger`, which
        writes or releases the locks if the trigger ends the task itself (``end_from_trigger``).

        Raises:
            JobsLockLost: the locks were already lost; the task fails instead of parking.
        """
        timeout = _seconds(getattr(parked, "timeout", None))
        lease = self.deferral_lease or (timeout + self.duration if timeout else DEFAULT_DEFERRAL_LEASE)
        coordinator = cast(jobs_core.Coordinator, job.coordinator)
        try:
            job.detach(lease=lease)
        except jobs_core.LockLost as exc:
            try:  # release what this start still holds rather than let it lapse
                coordinator.stop_job(job.id, failed=True, token=job.token)
            except jobs_core.JobsError:
                pass
            raise JobsLockLost(printable(f"jobs_core locks of {job.id} were lost before the task parked; nothing "
                                         f"was written: {exc}")) from exc
        finally:
            coordinator.close()
        state = {"job_id": job.id, "token": job.token, "inputs": list(job.inputs), "outputs": list(job.outputs)}
        if parked is not None:
            parked.kwargs = {**(parked.kwargs or {}), STATE_KEY: state}  # type: ignore[attr-defined]
        if isinstance(parked, TaskDeferred):
            from .triggers import JobsLockedTrigger

            assert job.token is not None  # a started job has its token
            parked.trigger = JobsLockedTrigger.around(parked.trigger, job.id, job.token,
                                                      **self._hook().settings())
        log.info("jobs_core: %s keeps its locks while parked (lease %ss)", printable(job.id), lease)

    # -- releasing them ------------------------------------------------------------------------

    def finish(self, job: jobs_core.Job, failed: bool) -> None:
        """Stop the job: outputs written unless ``failed``; locks released either way.

        Raises:
            JobsLockLost: a successful task had lost a lock, so nothing was written.
        """
        try:
            job.stop(failed=failed)
        except jobs_core.LockLost as exc:
            raise JobsLockLost(printable(f"jobs_core: task {job.id} succeeded but had lost its locks, so its "
                                         f"outputs {list(job.outputs)} were not written: {exc}")) from exc
        finally:
            cast(jobs_core.Coordinator, job.coordinator).close()

    def _fail(self, job: jobs_core.Job) -> None:
        try:
            self.finish(job, failed=True)
        except Exception:
            log.exception("jobs_core: could not release the locks of %s; they lapse with their lease",
                          printable(job.id))

    def _succeed(self, job: jobs_core.Job, task: Any, context: Any) -> None:
        if AIRFLOW_V_3_0_PLUS and job.outputs and task is not None:
            from .assets import describe_outputs

            describe_outputs(task, context, job)
        self.finish(job, failed=False)

    def _release(self, job_id: str, token: int | None) -> None:
        """Release a detached start from this process (it is not this process's job any more)."""
        coordinator = self._hook().get_conn()
        try:
            coordinator.stop_job(job_id, failed=True, token=token)
        except (jobs_core.NotRunning, jobs_core.LockLost):
            pass
        finally:
            coordinator.close()

    def _decided_later(self, job: jobs_core.Job, task: Any, signal: Any) -> None:
        """Airflow decides the outcome after the operator raised (``DagRunTriggerException``: the run
        may already exist, and the task may wait for it): the task's state-change callbacks settle
        the job. When Airflow defers the task to wait for the run, the locks are handed over first
        (the resume adopts them)."""
        detached = bool(getattr(signal, "wait_for_completion", False) and getattr(signal, "deferrable", False))
        if detached:
            self.hand_over(job, None)
        originals = {kind: getattr(task, kind) for kind in _VERDICTS}

        def settle(succeeded: bool) -> Callable[[Any], None]:
            def callback(context: Any) -> None:
                for kind, callbacks in originals.items():
                    setattr(task, kind, callbacks)
                if not detached:
                    if succeeded:
                        self._succeed(job, task, context)
                    else:
                        self._fail(job)
                elif not succeeded:
                    self._release(job.id, job.token)

            return callback

        for kind, succeeded in _VERDICTS.items():
            setattr(task, kind, [settle(succeeded), *originals[kind]])

    # -- the whole run -------------------------------------------------------------------------

    def run(self, job: jobs_core.Job, call: Callable[[], Any], *, task: Any, context: Any,
            execution: Execution | None = None) -> Any:
        """Run ``call()`` under ``job``'s locks and settle the job by how the task ends.

        The return value is pushed to XCom (as Airflow will) before the
        outputs are written; a parked task hands the locks over; a task that
        was killed meanwhile writes nothing and raises :class:`JobsTaskKilled`.
        """
        execution = execution or Execution()
        execution.job = job
        if execution.killed:  # killed while the locks were being taken
            self._fail(job)
            raise JobsTaskKilled(printable(f"jobs_core: {job.id} was killed before it ran; nothing was written"))
        execution.in_task_code = True
        try:
            result = call()
            if task is not None:
                push_return_value(task, context, result)
        except PARKING_SIGNALS as parked:
            if not self._still_alive(execution, job):
                raise self._killed(job) from None
            self.hand_over(job, parked)
            raise
        except _DECIDED_LATER as signal:
            if not self._still_alive(execution, job):
                raise self._killed(job) from None
            self._decided_later(job, task, signal)
            raise
        except BaseException as exc:
            if not succeeds_by_raising(exc):
                execution.in_task_code = False
                self._fail(job)
                raise
            if not self._still_alive(execution, job):
                raise self._killed(job) from None
            if isinstance(exc, SystemExit) and task is not None:  # Airflow 2 then pushes None: checked first
                push_return_value(task, context, None)
            self._succeed(job, task, context)
            raise
        if not self._still_alive(execution, job):
            raise self._killed(job)
        self._succeed(job, task, context)
        return result

    def _still_alive(self, execution: Execution, job: jobs_core.Job) -> bool:
        """Leave the task's code; False (and the locks released) if it was killed meanwhile."""
        execution.in_task_code = False
        if execution.killed:
            self._fail(job)
            return False
        return True

    @staticmethod
    def _killed(job: jobs_core.Job) -> JobsTaskKilled:
        return JobsTaskKilled(printable(f"jobs_core: {job.id} was killed while it ran (on_kill); its locks were "
                                        f"released and its outputs {list(job.outputs)} not written"))

    def execute(self, task: Any, context: Any, call: Callable[[], Any], execution: Execution,
                wait_outcome: dict[str, Any] | None = None) -> Any:
        """Take the locks (in the worker, or through deferred waits if ``deferrable``), then :meth:`run`
        ``call``. ``wait_outcome`` is the event of a deferred lock wait this resumes."""
        if wait_outcome is not None:
            job = self.after_wait(task, context, wait_outcome)
        elif self.deferrable:
            job = self.start_or_defer(task, context, time.time() + self.wait)
        else:
            job = self.start(context)
        return self.run(job, call, task=task, context=context, execution=execution)

    def resume_execution(self, task: Any, context: Any, state: dict[str, Any], call: Callable[[], Any],
                         execution: Execution, trigger_failed: bool = False) -> Any:
        """Adopt the parked start's locks, then :meth:`run` ``call``.

        ``trigger_failed``: Airflow resumes the task to fail it (its trigger failed or timed out);
        if no start of this try holds locks (a deferred lock wait holds none), ``call`` raises
        Airflow's own error.
        """
        try:
            job = self.resume(context, state)
        except _EndedInTrigger as ended:
            log.info("jobs_core: %s was already ended by its trigger; nothing left to run", printable(ended))
            return None
        except JobsLockLost:
            if trigger_failed and not state:
                return call()
            raise
        return self.run(job, call, task=task, context=context, execution=execution)
