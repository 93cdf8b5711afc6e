"""Every switch between Airflow 2.11 and Airflow 3 imports lives here, and only here.

The rest of :mod:`jobs_airflow` imports Airflow names from this module, so
supporting another Airflow version means editing one file.
"""

from __future__ import annotations

import asyncio
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

_BASE_VERSION = Version(Version(AIRFLOW_VERSION).base_version)
#: Airflow 3 (Task SDK): ``airflow.sdk`` imports, assets and asset watchers.
AIRFLOW_V_3_0_PLUS = _BASE_VERSION >= Version("3.0.0")

if AIRFLOW_V_3_0_PLUS:
    from airflow.providers.standard.decorators.python import _PythonDecoratedOperator as PythonDecoratedOperator
    from airflow.sdk import Asset, AssetWatcher, BaseHook, BaseOperator, BaseSensorOperator, get_current_context
    from airflow.sdk.bases.decorator import task_decorator_factory
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        TaskDeferred,
    )
    from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent
else:
    from airflow.decorators.base import task_decorator_factory
    from airflow.decorators.python import _PythonDecoratedOperator as PythonDecoratedOperator
    from airflow.exceptions import (
        AirflowException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        TaskDeferred,
    )
    from airflow.hooks.base import BaseHook
    from airflow.models.baseoperator import BaseOperator
    from airflow.operators.python import get_current_context
    from airflow.sensors.base import BaseSensorOperator
    from airflow.triggers.base import BaseTrigger, TriggerEvent

    Asset = AssetWatcher = None  # Airflow 2 has datasets, not assets with watchers
    BaseEventTrigger = None


async def aget_connection(conn_id: str) -> Any:
    """An Airflow connection, fetched without blocking the event loop (a trigger's)."""
    if AIRFLOW_V_3_0_PLUS:
        return await BaseHook.aget_connection(conn_id)
    return await asyncio.to_thread(BaseHook.get_connection, conn_id)


__all__ = [
    "AIRFLOW_V_3_0_PLUS", "AIRFLOW_VERSION", "AirflowException", "AirflowNotFoundException", "AirflowSensorTimeout",
    "Asset", "AssetWatcher", "BaseEventTrigger", "BaseHook", "BaseOperator", "BaseSensorOperator", "BaseTrigger",
    "PythonDecoratedOperator", "TaskDeferred", "TriggerEvent", "aget_connection", "get_current_context",
    "task_decorator_factory",
]
