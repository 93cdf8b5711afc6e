"""Every switch between Airflow 2.11 and Airflow 3 imports lives here, and only here.

The rest of :mod:`jobs_airflow` imports Airflow names from this module, so
supporting another Airflow version means editing one file. Names that one
version lacks are ``None`` there (``TaskAwaitingInput``, ``DownstreamTasksSkipped``
and ``DagRunTriggerException`` exist from Airflow 3; ``Asset`` too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

_BASE_VERSION = Version(Version(AIRFLOW_VERSION).base_version)
#: Airflow 3 (Task SDK): ``airflow.sdk`` imports, assets and asset watchers.
AIRFLOW_V_3_0_PLUS = _BASE_VERSION >= Version("3.0.0")

if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import (
        Asset,
        AssetWatcher,
        BaseHook,
        BaseOperator,
        BaseOperatorLink,
        BaseSensorOperator,
        get_current_context,
    )
    from airflow.sdk.configuration import conf
    from airflow.sdk.definitions._internal.mixins import ResolveMixin
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowTaskTerminated,
        DagRunTriggerException,
        DownstreamTasksSkipped,
        TaskDeferred,
    )
    from airflow.triggers.base import (
        BaseEventTrigger,
        BaseTaskEndEvent,
        BaseTrigger,
        TaskFailedEvent,
        TriggerEvent,
    )

    TaskAwaitingInput: type[BaseException] | None
    try:  # Airflow 3.3: Human-in-the-loop operators park the task without a trigger
        from airflow.sdk.exceptions import TaskAwaitingInput
    except ImportError:  # pragma: no cover - Airflow 3.0 to 3.2
        TaskAwaitingInput = None
else:
    from airflow.configuration import conf
    from airflow.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowTaskTerminated,
        TaskDeferred,
    )
    from airflow.hooks.base import BaseHook
    from airflow.models.baseoperator import BaseOperator
    from airflow.models.baseoperatorlink import BaseOperatorLink
    from airflow.operators.python import get_current_context
    from airflow.sensors.base import BaseSensorOperator
    from airflow.triggers.base import BaseTaskEndEvent, BaseTrigger, TaskFailedEvent, TriggerEvent
    from airflow.utils.mixins import ResolveMixin

    Asset = AssetWatcher = None  # Airflow 2 has datasets, not assets with watchers
    BaseEventTrigger = None
    TaskAwaitingInput = DagRunTriggerException = DownstreamTasksSkipped = None



def taskflow() -> tuple[type, Callable[..., Any]]:
    """``@task``'s operator class and ``task_decorator_factory``, for ``@task.jobs``.

    Imported when asked (by :mod:`jobs_airflow.decorators`), not with this module: Airflow 2's
    ``airflow.decorators`` takes a tenth of a second to import, too long for the triggerer's
    event loop, which imports :mod:`jobs_airflow.triggers` (and so this module).
    """
    if AIRFLOW_V_3_0_PLUS:
        from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
        from airflow.sdk.bases.decorator import task_decorator_factory
    else:
        from airflow.decorators.base import task_decorator_factory
        from airflow.decorators.python import _PythonDecoratedOperator
    return _PythonDecoratedOperator, task_decorator_factory


def succeeds_by_raising(exc: BaseException) -> bool:
    """Whether Airflow counts a task whose ``execute`` raised ``exc`` as a success.

    Airflow 3: ``DownstreamTasksSkipped`` (raised by the branch and short-circuit
    operators). Airflow 2.11: ``SystemExit`` with code 0 or None (Airflow 3 fails
    the task on any ``SystemExit``).
    """
    if DownstreamTasksSkipped is not None and isinstance(exc, DownstreamTasksSkipped):
        return True
    return not AIRFLOW_V_3_0_PLUS and isinstance(exc, SystemExit) and exc.code in (None, 0)

#: Control-flow exceptions that park a task until something resumes it: a deferral, or (Airflow 3.3)
#: waiting for a human's input. Both carry ``kwargs`` (the resume's ``next_kwargs``) and ``timeout``.
PARKING_SIGNALS: tuple[type[BaseException], ...] = tuple(e for e in (TaskDeferred, TaskAwaitingInput)
                                                         if e is not None)


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable`` (False when unset)."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


async def aget_connection(conn_id: str) -> Any:
    """An Airflow connection, fetched without blocking the event loop (a trigger's)."""
    if AIRFLOW_V_3_0_PLUS:
        return await BaseHook.aget_connection(conn_id)
    return await asyncio.to_thread(BaseHook.get_connection, conn_id)


def render_name(task: Any, template: str, context: Any, jinja_env: Any) -> Any:
    """``template`` rendered as a string template only, never loaded as a template file.

    ``task.render_template`` loads a string ending in one of the operator's
    ``template_ext`` (``.sh`` on ``BashOperator``) as a file; a jobs_core name
    is never one. ``_render`` is the step both Airflow versions use after
    that choice (native rendering when the DAG asks for it).
    """
    return task._render(jinja_env.from_string(template), context)


def push_return_value(task: Any, context: Any, result: Any) -> None:
    """Do now what Airflow does with ``execute``'s return value once ``execute`` returned.

    The map index template is rendered and the value pushed to XCom (each key
    too with ``multiple_outputs``, with the checks for mapped downstream
    tasks), so that whatever makes those steps fail the task fails it before
    the outputs are written. Airflow does the same again afterwards: the
    rendering is pure and the push replaces the value with itself.
    """
    ti = context["ti"]
    if AIRFLOW_V_3_0_PLUS:
        import structlog
        from airflow.sdk.execution_time import task_runner

        log = structlog.get_logger(logger_name="task")
        task_runner._render_map_index(context, ti=ti, log=log)
        task_runner._push_xcom_if_needed(result, ti, log)
    else:
        _push_return_value_airflow2(task, context, ti, result)


if not AIRFLOW_V_3_0_PLUS:

    def _push_return_value_airflow2(task: Any, context: Any, ti: Any, result: Any) -> None:
        from airflow.models.taskinstance import _record_task_map_for_downstreams
        from airflow.utils.session import create_session
        from airflow.utils.xcom import XCOM_RETURN_KEY

        if (template := context.get("map_index_template")) is not None:
            task.get_template_env().from_string(template).render(context)
        value = result if task.do_xcom_push else None
        with create_session() as session:  # as TaskInstance._execute_task does (Airflow 2.11)
            if value is not None:
                if task.multiple_outputs:
                    if not isinstance(value, Mapping):
                        raise AirflowException(f"Returned output was type {type(value)} expected dictionary for "
                                               "multiple_outputs")
                    for key in value:
                        if not isinstance(key, str):
                            raise AirflowException("Returned dictionary keys must be strings when using "
                                                   f"multiple_outputs, found {key} ({type(key)}) instead")
                    for key, item in value.items():
                        ti.xcom_push(key=key, value=item, session=session)
                ti.xcom_push(key=XCOM_RETURN_KEY, value=value, session=session)
            _record_task_map_for_downstreams(task_instance=ti, task=task, dag=task.dag, value=value, session=session)


__all__ = [
    "AIRFLOW_V_3_0_PLUS", "AIRFLOW_VERSION", "AirflowException", "AirflowFailException", "AirflowNotFoundException",
    "AirflowSensorTimeout", "AirflowTaskTerminated", "Asset", "AssetWatcher", "BaseEventTrigger", "BaseHook",
    "BaseOperator", "BaseOperatorLink", "BaseSensorOperator", "BaseTaskEndEvent", "BaseTrigger",
    "DagRunTriggerException", "DownstreamTasksSkipped", "PARKING_SIGNALS", "ResolveMixin",
    "TaskAwaitingInput", "TaskDeferred", "TaskFailedEvent", "TriggerEvent", "aget_connection", "conf",
    "default_deferrable", "get_current_context", "push_return_value", "render_name", "succeeds_by_raising", "taskflow",
]
