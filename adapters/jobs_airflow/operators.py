"""Lock jobs_core inputs and outputs around any Airflow task.

``with_jobs_lock(BashOperator)`` returns a subclass that read-locks
``jobs_inputs`` and write-locks ``jobs_outputs`` while the task runs and
writes the outputs only if it succeeds. The job id is fixed per dag, run,
task, map index and try, so a deferrable operator keeps its locks across a
deferral: the lease is extended to cover it, and ``resume_execution`` adopts
the same start by its fencing token.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import jobs_core

from .hooks import JobsHook
from .version_compat import AIRFLOW_V_3_0_PLUS, AirflowException, BaseOperator, TaskDeferred

log = logging.getLogger(__name__)

#: Lease of every lock, in seconds; the heartbeat renews it every third.
DEFAULT_DURATION = 300.0
#: How long a task waits for busy or missing resources before failing (so that retries apply).
DEFAULT_WAIT = 60.0
#: Lease given to the locks of a deferred task whose deferral has no timeout.
DEFAULT_DEFERRAL_LEASE = 3600.0
#: Key of the lock state in a deferred task's ``next_kwargs``.
STATE_KEY = "jobs_core_lock"

OperatorClass = TypeVar("OperatorClass", bound=type)



@contextmanager
def _closed_on_error(coordinator: jobs_core.Coordinator) -> Iterator[None]:
    """Close ``coordinator`` if the block fails (it holds no job then), and let the error through."""
    try:
        yield
    except BaseException:
        coordinator.close()
        raise


class JobsLockUnavailable(AirflowException):
    """The task could not take its jobs_core locks within its wait; Airflow's retries apply."""


class JobsLockLost(AirflowException):
    """The task lost its jobs_core locks (a lease ran out, a forced unlock): its outputs were not written."""


def job_id_for(context: Any) -> str:
    """The jobs_core job id of a task instance: ``airflow/<dag>/<task>/<run>/<map index>/<try>``."""
    ti = context["ti"]
    return f"airflow/{ti.dag_id}/{ti.task_id}/{ti.run_id}/{ti.map_index}/{ti.try_number}"


def _seconds(value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _names(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        raise TypeError(f"{what} must be a list of names, not one str ({value!r})")
    return [str(n) if isinstance(n, jobs_core.TYPE_NG) else n for n in value]


@dataclass
class JobsLock:
    """How one task locks: names (already rendered) and jobs_core settings.

    Args:
        inputs: names read-locked while the task runs; they must exist.
        outputs: names write-locked while the task runs, written if it succeeds.
        duration: lease of the locks, in seconds (renewed by the heartbeat).
        wait: seconds to wait for busy or missing resources before failing.
        overwrite: if False, an existing output makes the task fail.
        deferral_lease: lease given to the locks while the task is deferred
            (default: the deferral's timeout plus ``duration``, else one hour).
        redis_conn_id, redis_url, prefix: see :class:`jobs_airflow.hooks.JobsHook`.
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

    def _coordinator(self) -> jobs_core.Coordinator:
        return JobsHook(redis_conn_id=self.redis_conn_id, redis_url=self.redis_url, prefix=self.prefix).get_conn()

    def _job(self, coordinator: jobs_core.Coordinator, job_id: str, inputs: list[str], outputs: list[str],
             **options: Any) -> jobs_core.Job:
        options.setdefault("duration", self.duration)
        return coordinator.job(inputs, outputs, overwrite=self.overwrite, job_id=job_id, **options)

    def start(self, context: Any) -> jobs_core.Job:
        """Take the locks for this task instance, waiting up to ``wait`` seconds.

        Raises:
            JobsLockUnavailable: still busy or missing after the wait.
        """
        coordinator = self._coordinator()
        job = self._job(coordinator, job_id_for(context), self.inputs, self.outputs, wait=self.wait)
        with _closed_on_error(coordinator):
            try:
                job.start()
            except jobs_core.ResourceUnavailable as exc:
                raise JobsLockUnavailable(f"jobs_core locks for {job.id} not available after waiting "
                                          f"{self.wait}s (jobs_wait): {exc}") from exc
        log.info("jobs_core: %s holds %s (read) and %s (write), token %s", job.id, self.inputs, self.outputs,
                 job.token)
        return job

    def resume(self, context: Any, state: dict[str, Any]) -> jobs_core.Job:
        """Adopt the locks a deferred try of this task holds (``state`` from its ``next_kwargs``).

        Raises:
            JobsLockLost: the locks lapsed or were taken while the task was deferred.
        """
        job_id = state.get("job_id") or job_id_for(context)
        inputs, outputs = state.get("inputs", self.inputs), state.get("outputs", self.outputs)
        coordinator = self._coordinator()
        job = self._job(coordinator, job_id, inputs, outputs)
        with _closed_on_error(coordinator):
            try:
                token = state.get("token") or self._find_token(coordinator, job_id)
                job.resume(token)
            except jobs_core.LockLost as exc:
                raise JobsLockLost(f"jobs_core locks of {job_id} were lost while the task was deferred (lease "
                                   f"jobs_deferral_lease ran out, or a forced unlock); nothing was written: "
                                   f"{exc}") from exc
        log.info("jobs_core: %s resumed its locks, token %s", job_id, token)
        return job

    @staticmethod
    def _find_token(coordinator: jobs_core.Coordinator, job_id: str) -> int:
        """The token of the running start of ``job_id``.

        Needed when the deferral's ``next_kwargs`` did not come back (``dag.test()``
        replaces them with the trigger's event).
        """
        holder = coordinator.holder(job_id)
        if holder is None:
            raise jobs_core.LockLost(job_id, {"job_running": [job_id]}, f"job {job_id!r} holds no lock any more")
        return holder.token

    def hand_over(self, job: jobs_core.Job, deferred: TaskDeferred) -> None:
        """The task defers: extend the leases to cover the deferral, stop renewing here, and
        record the start in the deferral's ``next_kwargs``.

        Raises:
            JobsLockLost: the locks were already lost; the task fails instead of deferring.
        """
        timeout = _seconds(getattr(deferred, "timeout", None))
        lease = self.deferral_lease or (timeout + self.duration if timeout else DEFAULT_DEFERRAL_LEASE)
        coordinator = job.coordinator
        try:
            job.detach(lease=lease)
        except jobs_core.LockLost as exc:
            try:  # release what this start still holds rather than let it lapse
                coordinator.stop_job(job.id, failed=True, token=job.token)
            except jobs_core.JobsError:
                pass
            raise JobsLockLost(f"jobs_core locks of {job.id} were lost before the task deferred; nothing was "
                               f"written: {exc}") from exc
        finally:
            coordinator.close()
        deferred.kwargs = {**(deferred.kwargs or {}), STATE_KEY: {
            "job_id": job.id, "token": job.token, "inputs": list(job.inputs), "outputs": list(job.outputs)}}
        log.info("jobs_core: %s keeps its locks while deferred (lease %ss)", job.id, lease)

    def finish(self, job: jobs_core.Job, failed: bool) -> None:
        """Stop the job: outputs written unless ``failed``; locks released either way.

        Raises:
            JobsLockLost: a successful task had lost a lock, so nothing was written.
        """
        try:
            job.stop(failed=failed)
        except jobs_core.LockLost as exc:
            raise JobsLockLost(f"jobs_core: task {job.id} succeeded but had lost its locks, so its outputs "
                               f"{list(job.outputs)} were not written: {exc}") from exc
        finally:
            job.coordinator.close()

    def run(self, job: jobs_core.Job, call: Callable[[], Any]) -> Any:
        """Run ``call()`` under ``job``'s locks: stop written on return, failed on an exception,
        handed over on a deferral."""
        try:
            result = call()
        except TaskDeferred as deferred:
            self.hand_over(job, deferred)
            raise
        except BaseException:
            try:
                self.finish(job, failed=True)
            except Exception:
                log.exception("jobs_core: could not release the locks of %s; they lapse with their lease", job.id)
            raise
        self.finish(job, failed=False)
        return result


class JobsLocked:
    """Marks the classes made by :func:`with_jobs_lock` (``isinstance(task, JobsLocked)``)."""

    jobs_inputs: list[str]
    jobs_outputs: list[str]


def _init(task: Any, jobs_inputs: Sequence[str] = (), jobs_outputs: Sequence[str] = (),
          jobs_duration: float = DEFAULT_DURATION, jobs_wait: float = DEFAULT_WAIT, jobs_overwrite: bool = True,
          jobs_deferral_lease: float | None = None, jobs_conn_id: str | None = None,
          jobs_redis_url: str | None = None, jobs_prefix: str | None = None) -> None:
    task.jobs_inputs = _names(jobs_inputs, "jobs_inputs")
    task.jobs_outputs = _names(jobs_outputs, "jobs_outputs")
    task.jobs_settings = {"duration": jobs_duration, "wait": jobs_wait, "overwrite": jobs_overwrite,
                          "deferral_lease": jobs_deferral_lease, "redis_conn_id": jobs_conn_id,
                          "redis_url": jobs_redis_url, "prefix": jobs_prefix}


def _lock(task: Any) -> JobsLock:
    """The lock settings of ``task``, with its names as rendered for this task instance."""
    return JobsLock(list(task.jobs_inputs), list(task.jobs_outputs), **task.jobs_settings)


def _done(task: Any, result: Any, context: Any, job: jobs_core.Job) -> Any:
    """The task succeeded: describe the outputs on its jobs_core asset outlets (Airflow 3)."""
    if AIRFLOW_V_3_0_PLUS and job.outputs:
        from .assets import describe_outputs

        describe_outputs(task, context, job)
    return result


@functools.cache
def with_jobs_lock(operator_class: OperatorClass) -> OperatorClass:
    """A subclass of ``operator_class`` whose tasks lock jobs_core names while they run.

    ``with_jobs_lock(BashOperator)(task_id=..., bash_command=..., jobs_inputs=[...],
    jobs_outputs=["reporting.events.{{ ds }}"])``. The same class is returned for
    the same ``operator_class``. Extra keyword-only arguments:

    * ``jobs_inputs``, ``jobs_outputs``: jobs_core names (templated), read- and write-locked;
    * ``jobs_duration``: lease of the locks in seconds (renewed by a heartbeat), default 300;
    * ``jobs_wait``: seconds to wait for busy or missing resources before failing, default 60;
    * ``jobs_overwrite``: if False, an existing output makes the task fail;
    * ``jobs_deferral_lease``: lease while the task is deferred (default: the deferral's
      timeout plus ``jobs_duration``, else one hour);
    * ``jobs_conn_id``, ``jobs_redis_url``, ``jobs_prefix``: see :class:`jobs_airflow.hooks.JobsHook`.
    """
    if not (isinstance(operator_class, type) and issubclass(operator_class, BaseOperator)):
        raise TypeError(f"with_jobs_lock takes an operator class, not {operator_class!r}")
    if issubclass(operator_class, JobsLocked):
        return operator_class

    # Methods defined in the class body: Airflow's operator metaclass wraps __init__
    # (default_args) and execute (its safeguard) only when the class itself defines them.
    class Locked(operator_class, JobsLocked):  # type: ignore[valid-type, misc]
        template_fields = tuple(dict.fromkeys((*operator_class.template_fields, "jobs_inputs", "jobs_outputs")))

        def __init__(self, *, jobs_inputs: Sequence[str] = (), jobs_outputs: Sequence[str] = (),
                     jobs_duration: float = DEFAULT_DURATION, jobs_wait: float = DEFAULT_WAIT,
                     jobs_overwrite: bool = True, jobs_deferral_lease: float | None = None,
                     jobs_conn_id: str | None = None, jobs_redis_url: str | None = None,
                     jobs_prefix: str | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            _init(self, jobs_inputs, jobs_outputs, jobs_duration, jobs_wait, jobs_overwrite, jobs_deferral_lease,
                  jobs_conn_id, jobs_redis_url, jobs_prefix)

        def execute(self, context: Any) -> Any:
            lock = _lock(self)
            job = lock.start(context)
            execute = super().execute
            return lock.run(job, lambda: _done(self, execute(context), context, job))

        def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
            next_kwargs = dict(next_kwargs or {})
            state = next_kwargs.pop(STATE_KEY, None) or {}
            lock = _lock(self)
            job = lock.resume(context, state)
            resume = super().resume_execution
            return lock.run(job, lambda: _done(self, resume(next_method, next_kwargs, context), context, job))

    name = f"Jobs{operator_class.__name__.lstrip('_')}"
    Locked.__name__ = Locked.__qualname__ = name
    Locked.__doc__ = f"{operator_class.__name__} holding jobs_core locks while it runs (see with_jobs_lock)."
    return Locked  # type: ignore[return-value]
