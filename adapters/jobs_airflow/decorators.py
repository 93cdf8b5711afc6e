"""TaskFlow: ``@task.jobs(inputs=..., outputs=...)``, and ``@jobs_lock(...)`` under a plain ``@task``.

Both lock the names while the function runs and write the outputs only if the
task succeeds. ``@task.jobs`` is registered through the provider info; its
names are template fields of the task, as with
:func:`jobs_airflow.operators.with_jobs_lock`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import jobs_core

from . import arguments
from .locks import DEFAULT_DURATION, DEFAULT_WAIT, Execution, JobsLock
from .operators import with_jobs_lock
from .version_compat import ResolveMixin, get_current_context, taskflow

F = TypeVar("F", bound=Callable[..., Any])

#: The operator behind ``@task.jobs``: ``@task``'s, holding jobs_core locks.
PythonDecoratedOperator, task_decorator_factory = taskflow()
JobsPythonDecoratedOperator = with_jobs_lock(PythonDecoratedOperator)
JobsPythonDecoratedOperator.custom_operator_name = "@task.jobs"


def jobs_task(python_callable: Callable | None = None, multiple_outputs: bool | None = None, *,
              inputs: Sequence[Any] = (), outputs: Sequence[Any] = (), duration: float | timedelta | None = None,
              wait: float | timedelta | None = None, overwrite: bool | None = None,
              deferral_lease: float | timedelta | None = None, redis_conn_id: str | None = None,
              redis_url: str | None = None, prefix: str | None = None, limits: Mapping[str, int] | None = None,
              output_ttl: float | timedelta | None = None, deferrable: bool | None = None, **kwargs: Any) -> Any:
    """``@task.jobs(inputs=[...], outputs=["reporting.events.{{ ds }}"])``: a ``@task`` holding jobs_core locks.

    The arguments are those of :func:`jobs_airflow.operators.with_jobs_lock`
    without the ``jobs_`` prefix (``duration``, ``wait``, ``overwrite``,
    ``limits``, ``output_ttl``, ``deferrable``...; ``redis_conn_id`` is
    ``jobs_conn_id``); one not given takes the DAG's ``default_args``
    (``jobs_limits``...), else the operator's default. Any other keyword goes
    to the operator, as with ``@task``.

    Raises:
        TypeError, ValueError: a bad names argument, duration or limits (when the DAG is parsed).
    """
    given = {"jobs_duration": duration, "jobs_wait": wait, "jobs_overwrite": overwrite,
             "jobs_deferral_lease": deferral_lease, "jobs_conn_id": redis_conn_id, "jobs_redis_url": redis_url,
             "jobs_prefix": prefix, "jobs_limits": limits, "jobs_output_ttl": output_ttl,
             "jobs_deferrable": deferrable}
    # checked here too, with the names the user wrote: the task is made later
    for what, value in (("duration", duration), ("deferral_lease", deferral_lease), ("output_ttl", output_ttl)):
        arguments.seconds(value, what, minimum=0.001, allow_none=True)
    arguments.seconds(wait, "wait", allow_none=True)
    if limits is not None:
        arguments.limits(limits, "limits")
    return task_decorator_factory(
        python_callable=python_callable, multiple_outputs=multiple_outputs,
        decorated_operator_class=JobsPythonDecoratedOperator,
        jobs_inputs=arguments.names(inputs, "inputs"), jobs_outputs=arguments.names(outputs, "outputs"),
        **{k: v for k, v in given.items() if v is not None}, **kwargs)


@contextmanager
def _released_on_kill(task: Any, execution: Execution) -> Iterator[None]:
    """While the block runs, the task's ``on_kill`` (Airflow's SIGTERM path) also kills ``execution``."""
    had_own = "on_kill" in task.__dict__
    previous = task.__dict__.get("on_kill")
    operator_on_kill = task.on_kill

    def on_kill() -> None:
        try:
            operator_on_kill()
        finally:
            execution.kill()

    task.__dict__["on_kill"] = on_kill
    try:
        yield
    finally:
        if had_own:
            task.__dict__["on_kill"] = previous
        else:
            del task.__dict__["on_kill"]


def jobs_lock(inputs: Sequence[str] = (), outputs: Sequence[str] = (), *,
              duration: float | timedelta = DEFAULT_DURATION, wait: float | timedelta = DEFAULT_WAIT,
              overwrite: bool = True, redis_conn_id: str | None = None, redis_url: str | None = None,
              prefix: str | None = None) -> Callable[[F], F]:
    """Lock jobs_core names while a task function runs; put it under ``@task``::

        @task
        @jobs_lock(["raw.events.{{ ds }}"], ["clean.events.{{ ds }}"])
        def clean(): ...

    The names are rendered (as names only) with the running task's context
    when the function is called; the rest is as for :func:`jobs_task`.

    Raises:
        TypeError, ValueError: a bad names argument or duration (when the DAG is parsed). Names
            from an upstream task (``XComArg``) need ``@task.jobs``, which makes them dependencies.
    """
    checked = {}
    for what, value in (("inputs", inputs), ("outputs", outputs)):
        names = arguments.names(value, what)
        if isinstance(names, ResolveMixin) or any(isinstance(n, ResolveMixin) for n in names):
            raise jobs_core.InvalidType(f"@jobs_lock {what}: names from an upstream task (XComArg) need "
                                        "@task.jobs(inputs=..., outputs=...), which also runs that task first")
        checked[what] = names
    settings: dict[str, Any] = {"duration": arguments.seconds(duration, "duration", minimum=0.001),
                "wait": arguments.seconds(wait, "wait"), "overwrite": bool(overwrite),
                "redis_conn_id": redis_conn_id, "redis_url": redis_url, "prefix": prefix}

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            context = get_current_context()
            task = context["task"]
            env = task.get_template_env()
            lock = JobsLock(arguments.render_names(task, checked["inputs"], context, env, "inputs"),
                            arguments.render_names(task, checked["outputs"], context, env, "outputs"), **settings)
            execution = Execution()
            with _released_on_kill(task, execution):
                return lock.execute(task, context, lambda: fn(*args, **kwargs), execution)

        return run  # type: ignore[return-value]

    return decorate
