"""Airflow 3 assets for jobs_core outputs: outlets that describe what a task wrote, and
asset watchers that schedule a DAG when anything writes an output."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import jobs_core
from jobs_core.names import check_name
from jobs_core.namespace import ENV_PREFIX

from . import arguments
from .hooks import JobsHook
from .version_compat import AIRFLOW_V_3_0_PLUS, Asset, AssetWatcher

#: The asset group of jobs_core outputs, and the URI scheme (``x-`` schemes are not normalized by Airflow).
GROUP = "jobs_core"
SCHEME = "x-jobs"


def jobs_asset(name: str, *, prefix: str | None = None, watch: bool = False, redis_conn_id: str | None = None,
               redis_url: str | None = None, poll_interval: float | timedelta = 30.0, **asset_kwargs: Any) -> Any:
    """The Airflow asset of the jobs_core output ``name`` in its namespace.

    The namespace is found as :class:`jobs_airflow.hooks.JobsHook` finds it:
    ``prefix``, else (with ``redis_conn_id``) the connection's extra
    ``jobs_prefix``, else ``$JOBS_PREFIX``; the connection is looked up when
    the DAG is parsed, for the asset's name and URI (``x-jobs:<prefix><name>``).

    As an outlet of a task made by :func:`jobs_airflow.operators.with_jobs_lock`
    or ``@task.jobs``, the asset event emitted on success carries ``extra``
    ``{"jobs_outputs": [...], "jobs_job_id": ..., "jobs_token": ...}``. With
    ``watch=True`` it carries an :class:`AssetWatcher` running
    :class:`jobs_airflow.triggers.JobsOutputTrigger`, so a DAG scheduled on
    the asset runs whenever anything writes the output (a cron script, a Luigi
    task, another Airflow); the watcher's connection settings are those of
    :class:`jobs_airflow.hooks.JobsHook` (resolved in the triggerer), with the
    namespace found here, so the watcher reads the output the asset names.

    Raises:
        RuntimeError: on Airflow 2, which has no assets.
        jobs_core.ConfigurationError: ``redis_conn_id`` names a connection that does not exist.
    """
    if not AIRFLOW_V_3_0_PLUS:
        raise RuntimeError("jobs_core assets need Airflow 3 (asset watchers do not exist in Airflow 2)")
    name = check_name(str(name) if isinstance(name, jobs_core.TYPE_NG) else name)
    poll_interval = arguments.seconds(poll_interval, "poll_interval", minimum=0.001)
    namespace = prefix
    if namespace is None:
        if redis_conn_id and not redis_url:
            namespace = JobsHook(redis_conn_id=redis_conn_id).target().prefix
        else:
            namespace = os.environ.get(ENV_PREFIX, "")
    watchers = list(asset_kwargs.pop("watchers", []))
    if watch:
        from .triggers import JobsOutputTrigger

        trigger = JobsOutputTrigger(name=name, redis_conn_id=redis_conn_id, redis_url=redis_url,
                                    prefix=namespace, poll_interval=poll_interval)
        watchers.append(AssetWatcher(name=f"jobs_core:{namespace}{name}", trigger=trigger))
    asset_kwargs.setdefault("group", GROUP)
    return Asset(name=f"{namespace}{name}", uri=f"{SCHEME}:{namespace}{name}", watchers=watchers, **asset_kwargs)


def describe_outputs(task: Any, context: Any, job: jobs_core.Job) -> None:
    """Put what ``job`` wrote on the events of ``task``'s jobs_core asset outlets."""
    for outlet in getattr(task, "outlets", None) or ():
        if isinstance(outlet, Asset) and outlet.uri.startswith(f"{SCHEME}:"):
            context["outlet_events"][outlet].extra.update(
                {"jobs_outputs": list(job.outputs), "jobs_job_id": job.id, "jobs_token": job.token})
