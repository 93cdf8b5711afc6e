"""Airflow 3 assets for jobs_core outputs: outlets that describe what a task wrote, and
asset watchers that schedule a DAG when anything writes an output."""

from __future__ import annotations

import os
from typing import Any

import jobs_core
from jobs_core.coordinator import ENV_PREFIX
from jobs_core.names import check_name

from .version_compat import AIRFLOW_V_3_0_PLUS, Asset, AssetWatcher

#: The asset group of jobs_core outputs, and the URI scheme (``x-`` schemes are not normalized by Airflow).
GROUP = "jobs_core"
SCHEME = "x-jobs"


def jobs_asset(name: str, *, prefix: str | None = None, watch: bool = False, redis_conn_id: str | None = None,
               redis_url: str | None = None, poll_interval: float = 30.0, **asset_kwargs: Any) -> Any:
    """The Airflow asset of the jobs_core output ``name`` (in namespace ``prefix``, default ``$JOBS_PREFIX``).

    As an outlet of a task made by :func:`jobs_airflow.operators.with_jobs_lock`
    or ``@task.jobs``, the asset event emitted on success carries ``extra``
    ``{"jobs_outputs": [...], "jobs_job_id": ..., "jobs_token": ...}``. With
    ``watch=True`` it carries an :class:`AssetWatcher` running
    :class:`jobs_airflow.triggers.JobsOutputTrigger`, so a DAG scheduled on
    the asset runs whenever anything writes the output (a cron script, a Luigi
    task, another Airflow); the watcher's connection settings are those of
    :class:`jobs_airflow.hooks.JobsHook`, resolved in the triggerer.

    Raises:
        RuntimeError: on Airflow 2, which has no assets.
    """
    if not AIRFLOW_V_3_0_PLUS:
        raise RuntimeError("jobs_core assets need Airflow 3 (asset watchers do not exist in Airflow 2)")
    name = check_name(str(name) if isinstance(name, jobs_core.TYPE_NG) else name)
    if prefix is None:
        prefix = os.environ.get(ENV_PREFIX, "")
    watchers = list(asset_kwargs.pop("watchers", []))
    if watch:
        from .triggers import JobsOutputTrigger

        trigger = JobsOutputTrigger(name=name, redis_conn_id=redis_conn_id, redis_url=redis_url,
                                    prefix=prefix, poll_interval=poll_interval)
        watchers.append(AssetWatcher(name=f"jobs_core:{prefix}{name}", trigger=trigger))
    asset_kwargs.setdefault("group", GROUP)
    return Asset(name=f"{prefix}{name}", uri=f"{SCHEME}:{prefix}{name}", watchers=watchers, **asset_kwargs)


def describe_outputs(task: Any, context: Any, job: jobs_core.Job) -> None:
    """Put what ``job`` wrote on the events of ``task``'s jobs_core asset outlets."""
    for outlet in getattr(task, "outlets", None) or ():
        if isinstance(outlet, Asset) and outlet.uri.startswith(f"{SCHEME}:"):
            context["outlet_events"][outlet].extra.update(
                {"jobs_outputs": list(job.outputs), "jobs_job_id": job.id, "jobs_token": job.token})
