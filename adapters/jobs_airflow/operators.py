"""Lock jobs_core inputs and outputs around any Airflow task.

``with_jobs_lock(BashOperator)`` returns a subclass that read-locks
``jobs_inputs`` and write-locks ``jobs_outputs`` while the task runs and
writes the outputs only if it succeeds (see :mod:`jobs_airflow.locks` for the
lifecycle: parking, success by exception, ``on_kill``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from . import arguments
from .lineage import own_lineage, task_lineage
from .links import JobsWebLink
from .locks import (
    DEFAULT_DEFERRAL_LEASE,
    DEFAULT_DURATION,
    DEFAULT_WAIT,
    LOCK_WAIT_KEY,
    STATE_KEY,
    Execution,
    JobsLimitError,
    JobsLock,
    JobsLockLost,
    JobsLockUnavailable,
    JobsOutputExists,
    JobsTaskKilled,
    job_id_for,
)
from .version_compat import BaseOperator, default_deferrable

OperatorClass = TypeVar("OperatorClass", bound=type)

__all__ = [
    "DEFAULT_DEFERRAL_LEASE", "DEFAULT_DURATION", "DEFAULT_WAIT", "STATE_KEY", "JobsLimitError", "JobsLock",
    "JobsLockLost",
    "JobsLockUnavailable", "JobsLocked", "JobsOutputExists", "JobsTaskKilled", "NameFields", "job_id_for",
    "with_jobs_lock",
]


class NameFields:
    """Operator mixin: the template fields listed in ``name_fields`` hold jobs_core names.

    They are rendered as names only (string templates, never template files
    loaded by the operator's ``template_ext``, nor replaced by a file's content
    when the DAG is parsed), and may hold upstream ``XComArg`` s.
    """

    name_fields: tuple[str, ...] = ()

    def _do_render_template_fields(self, parent: Any, template_fields: Any, context: Any, jinja_env: Any,
                                   seen_oids: set[int]) -> None:
        if parent is self:
            template_fields = list(template_fields)
            for name in self.name_fields:
                if name in template_fields:
                    setattr(self, name, arguments.render_names(self, getattr(self, name), context, jinja_env, name))
            template_fields = [f for f in template_fields if f not in self.name_fields]
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)  # type: ignore[misc]

    def resolve_template_files(self) -> None:
        saved = {name: self.__dict__[name] for name in self.name_fields if name in self.__dict__}
        self.__dict__.update(dict.fromkeys(saved, ()))  # hidden from the file lookup
        try:
            super().resolve_template_files()  # type: ignore[misc]
        finally:
            self.__dict__.update(saved)


class JobsLocked:
    """Marks the classes made by :func:`with_jobs_lock` (``isinstance(task, JobsLocked)``)."""

    jobs_inputs: arguments.Names
    jobs_outputs: arguments.Names


def _init(task: Any, jobs_inputs: Any, jobs_outputs: Any, jobs_duration: float | timedelta,
          jobs_wait: float | timedelta, jobs_overwrite: bool, jobs_deferral_lease: float | timedelta | None,
          jobs_conn_id: str | None, jobs_redis_url: str | None, jobs_prefix: str | None, jobs_limits: Any,
          jobs_output_ttl: float | timedelta | None, jobs_deferrable: bool | None) -> None:
    """Check the ``jobs_*`` arguments when the DAG is parsed, and keep them on ``task``."""
    task.jobs_inputs = arguments.names(jobs_inputs, "jobs_inputs")
    task.jobs_outputs = arguments.names(jobs_outputs, "jobs_outputs")
    task.jobs_settings = {
        "duration": arguments.seconds(jobs_duration, "jobs_duration", minimum=0.001),
        "wait": arguments.seconds(jobs_wait, "jobs_wait"),
        "overwrite": bool(jobs_overwrite),
        "deferral_lease": arguments.seconds(jobs_deferral_lease, "jobs_deferral_lease", minimum=0.001,
                                            allow_none=True),
        "redis_conn_id": jobs_conn_id, "redis_url": jobs_redis_url, "prefix": jobs_prefix,
        "limits": arguments.limits(jobs_limits, "jobs_limits"),
        "output_ttl": arguments.seconds(jobs_output_ttl, "jobs_output_ttl", minimum=0.001, allow_none=True),
        "deferrable": default_deferrable() if jobs_deferrable is None else bool(jobs_deferrable),
    }


def _lock(task: Any) -> JobsLock:
    """The lock settings of ``task``, with its names as rendered for this task instance."""
    return JobsLock(list(task.jobs_inputs), list(task.jobs_outputs), **task.jobs_settings)


def _execution(task: Any) -> Execution:
    """A new :class:`Execution`, where the task's ``on_kill`` finds it."""
    execution = task.__dict__["_jobs_execution"] = Execution()
    return execution


def _extra_links(operator_class: type) -> Any:
    """The class's extra links and the one to the web view (a class computing its links keeps them)."""
    links = getattr(operator_class, "operator_extra_links", ())
    if not isinstance(links, (list, tuple)):  # a property: the operator computes them
        return links
    return (*links, JobsWebLink())


@functools.cache
def with_jobs_lock(operator_class: OperatorClass) -> OperatorClass:
    """A subclass of ``operator_class`` whose tasks lock jobs_core names while they run.

    ``with_jobs_lock(BashOperator)(task_id=..., bash_command=..., jobs_inputs=[...],
    jobs_outputs=["reporting.events.{{ ds }}"])``. The same class is returned for
    the same ``operator_class``. Extra keyword-only arguments:

    * ``jobs_inputs``, ``jobs_outputs``: jobs_core names (templated, as names only), read- and
      write-locked; an item, or the whole list, may be an upstream task's ``XComArg``;
    * ``jobs_duration``: lease of the locks in seconds or a ``timedelta`` (renewed by a heartbeat),
      default 300;
    * ``jobs_wait``: seconds (or ``timedelta``) to wait for busy or missing resources before
      failing, default 60;
    * ``jobs_overwrite``: if False, an existing output makes the task fail without retries;
    * ``jobs_deferral_lease``: lease while the task is deferred or awaits input (default: the
      wait's timeout plus ``jobs_duration``, else one hour);
    * ``jobs_conn_id``, ``jobs_redis_url``, ``jobs_prefix``: see :class:`jobs_airflow.hooks.JobsHook`;
    * ``jobs_limits``: slots of jobs_core limits taken with the locks, ``{"warehouse": 1}`` (the
      limit's capacity is set in the namespace: ``jobs-core limit set warehouse 4``); a limit not
      set fails the task without retries (:class:`JobsLimitError`);
    * ``jobs_output_ttl``: seconds (or ``timedelta``) the written outputs live (default: for ever);
    * ``jobs_deferrable``: wait for busy locks in the triggerer, the worker slot freed (default:
      Airflow's ``[operators] default_deferrable``); the wait still ends at ``jobs_wait``.

    The task gets an extra link, "jobs-core", to its job in the ``jobs-core web`` view when
    ``[jobs_core] web_url`` or the connection's ``web_url`` extra says where that is.

    Every ``jobs_*`` argument may come from the DAG's ``default_args``.

    Raises:
        TypeError, ValueError: (when a task is made) a names argument that is one str or holds
            something else than names, or a duration that is not a number of seconds or a
            ``timedelta`` (negative, infinite...).
    """
    if not (isinstance(operator_class, type) and issubclass(operator_class, BaseOperator)):
        raise TypeError(f"with_jobs_lock takes an operator class, not {operator_class!r}")
    if issubclass(operator_class, JobsLocked):
        return operator_class

    # Methods defined in the class body: Airflow's operator metaclass wraps __init__
    # (default_args) and execute (its safeguard) only when the class itself defines them.
    class Locked(NameFields, operator_class, JobsLocked):  # type: ignore[valid-type, misc]
        template_fields = tuple(dict.fromkeys((*getattr(operator_class, "template_fields", ()), "jobs_inputs",
                                               "jobs_outputs")))
        operator_extra_links = _extra_links(operator_class)
        name_fields = ("jobs_inputs", "jobs_outputs")

        def __init__(self, *, jobs_inputs: Sequence[Any] = (), jobs_outputs: Sequence[Any] = (),
                     jobs_duration: float | timedelta = DEFAULT_DURATION, jobs_wait: float | timedelta = DEFAULT_WAIT,
                     jobs_overwrite: bool = True, jobs_deferral_lease: float | timedelta | None = None,
                     jobs_conn_id: str | None = None, jobs_redis_url: str | None = None,
                     jobs_prefix: str | None = None, jobs_limits: Mapping[str, int] | None = None,
                     jobs_output_ttl: float | timedelta | None = None, jobs_deferrable: bool | None = None,
                     **kwargs: Any) -> None:
            super().__init__(**kwargs)
            _init(self, jobs_inputs, jobs_outputs, jobs_duration, jobs_wait, jobs_overwrite, jobs_deferral_lease,
                  jobs_conn_id, jobs_redis_url, jobs_prefix, jobs_limits, jobs_output_ttl, jobs_deferrable)

        def execute(self, context: Any) -> Any:
            execute = super().execute
            return _lock(self).execute(self, context, lambda: execute(context), _execution(self))

        def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
            event = (next_kwargs or {}).get("event")
            if isinstance(event, dict) and LOCK_WAIT_KEY in event:  # a deferred lock wait ended
                execute = super().execute
                return _lock(self).execute(self, context, lambda: execute(context), _execution(self),
                                           wait_outcome=event[LOCK_WAIT_KEY])
            next_kwargs = dict(next_kwargs or {})
            state = next_kwargs.pop(STATE_KEY, None) or {}
            resume = super().resume_execution
            return _lock(self).resume_execution(self, context, state,
                                                lambda: resume(next_method, next_kwargs, context), _execution(self),
                                                trigger_failed=next_method == "__fail__")

        # OpenLineage (apache-airflow-providers-openlineage): the jobs_core names as datasets,
        # beside what the wrapped operator reports (jobs_airflow.lineage)
        def get_openlineage_facets_on_start(self) -> Any:
            return task_lineage(self, own_lineage(super(), None, "start"), written=True)

        def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
            return task_lineage(self, own_lineage(super(), task_instance, "complete", "start"), written=True)

        def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
            return task_lineage(self, own_lineage(super(), task_instance, "failure", "complete", "start"),
                                written=False)

        def on_kill(self) -> None:
            """Airflow kills the task: the operator's own ``on_kill``, then the locks are released and
            nothing is written, even if the task's code returns afterwards."""
            try:
                super().on_kill()
            finally:
                execution = self.__dict__.get("_jobs_execution")
                if execution is not None:
                    execution.kill()

    name = f"Jobs{operator_class.__name__.lstrip('_')}"
    Locked.__name__ = Locked.__qualname__ = name
    Locked.__doc__ = f"{operator_class.__name__} holding jobs_core locks while it runs (see with_jobs_lock)."
    return Locked  # type: ignore[return-value]
