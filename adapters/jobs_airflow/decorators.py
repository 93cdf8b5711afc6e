"""TaskFlow: ``@task.jobs(inputs=..., outputs=...)``, and ``@jobs_lock(...)`` under a plain ``@task``.

Both lock the names while the function runs and write the outputs only if it
returns. ``@task.jobs`` is registered through the provider info; its names
are template fields of the task, as with :func:`jobs_airflow.operators.with_jobs_lock`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .operators import DEFAULT_DURATION, DEFAULT_WAIT, JobsLock, _names, with_jobs_lock
from .version_compat import PythonDecoratedOperator, get_current_context, task_decorator_factory

F = TypeVar("F", bound=Callable[..., Any])

#: The operator behind ``@task.jobs``: ``@task``'s, holding jobs_core locks.
JobsPythonDecoratedOperator = with_jobs_lock(PythonDecoratedOperator)
JobsPythonDecoratedOperator.custom_operator_name = "@task.jobs"


def jobs_task(python_callable: Callable | None = None, multiple_outputs: bool | None = None, *,
              inputs: Sequence[str] = (), outputs: Sequence[str] = (), duration: float = DEFAULT_DURATION,
              wait: float = DEFAULT_WAIT, overwrite: bool = True, deferral_lease: float | None = None,
              redis_conn_id: str | None = None, redis_url: str | None = None, prefix: str | None = None,
              **kwargs: Any) -> Any:
    """``@task.jobs(inputs=[...], outputs=["reporting.events.{{ ds }}"])``: a ``@task`` holding jobs_core locks.

    The arguments are those of :func:`jobs_airflow.operators.with_jobs_lock`
    without the ``jobs_`` prefix (``duration``, ``wait``, ``overwrite``...);
    any other keyword goes to the operator, as with ``@task``.
    """
    return task_decorator_factory(
        python_callable=python_callable, multiple_outputs=multiple_outputs,
        decorated_operator_class=JobsPythonDecoratedOperator,
        jobs_inputs=_names(inputs, "inputs"), jobs_outputs=_names(outputs, "outputs"), jobs_duration=duration,
        jobs_wait=wait, jobs_overwrite=overwrite, jobs_deferral_lease=deferral_lease, jobs_conn_id=redis_conn_id,
        jobs_redis_url=redis_url, jobs_prefix=prefix, **kwargs)


def jobs_lock(inputs: Sequence[str] = (), outputs: Sequence[str] = (), *, duration: float = DEFAULT_DURATION,
              wait: float = DEFAULT_WAIT, overwrite: bool = True, redis_conn_id: str | None = None,
              redis_url: str | None = None, prefix: str | None = None) -> Callable[[F], F]:
    """Lock jobs_core names while a task function runs; put it under ``@task``::

        @task
        @jobs_lock(["raw.events.{{ ds }}"], ["clean.events.{{ ds }}"])
        def clean(): ...

    The names are rendered with the running task's context when the function
    is called; the rest is as for :func:`jobs_task`.
    """
    inputs, outputs = _names(inputs, "inputs"), _names(outputs, "outputs")

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            context = get_current_context()
            task = context["task"]
            lock = JobsLock([task.render_template(n, context) for n in inputs],
                            [task.render_template(n, context) for n in outputs], duration, wait, overwrite,
                            None, redis_conn_id, redis_url, prefix)
            job = lock.start(context)
            return lock.run(job, lambda: fn(*args, **kwargs))

        return run  # type: ignore[return-value]

    return decorate
