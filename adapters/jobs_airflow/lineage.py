"""What a locked task reads and writes, for Airflow's OpenLineage integration.

Tasks made by :func:`jobs_airflow.operators.with_jobs_lock` and ``@task.jobs``
answer the OpenLineage provider's ``get_openlineage_facets_on_start``,
``..._on_complete`` and ``..._on_failure``: their jobs_core inputs are input
datasets, their outputs output datasets (not on failure: nothing was written),
added to whatever the wrapped operator reports itself. Datasets are named as
the core's own OpenLineage events name them (:mod:`jobs_core.openlineage`):
namespace ``$JOBS_OPENLINEAGE_NAMESPACE``, else where Redis is
(``redis://host:6379/0``, no credentials); name ``<prefix><name>``.

Used only when the provider (``apache-airflow-providers-openlineage``) is
installed and configured; lineage never fails a task (errors are logged).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from jobs_core.openlineage import ENV_NAMESPACE, redis_namespace

log = logging.getLogger(__name__)


def _names(value: Any) -> list[str]:
    """The rendered names (a task not rendered yet holds templates or ``XComArg`` s: left out)."""
    return [n for n in value if isinstance(n, str)] if isinstance(value, (list, tuple)) else []


def own_lineage(parent: Any, task_instance: Any, *events: str) -> Any:
    """What the wrapped operator reports for the first of ``events`` it has a method for (the
    OpenLineage provider's own fall-back order: failure, complete, start), or None."""
    for event in events:
        method = getattr(parent, f"get_openlineage_facets_on_{event}", None)
        if method is not None:
            return method() if event == "start" else method(task_instance)
    return None


def task_lineage(task: Any, own: Any, written: bool) -> Any:
    """The operator's own ``OperatorLineage`` (``own``, or None) with the task's jobs_core datasets
    added; outputs only if ``written`` could be true (start and success, not failure)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    from .hooks import JobsHook

    lineage = own if own is not None else OperatorLineage()
    try:
        settings = task.jobs_settings
        coordinator = JobsHook(redis_conn_id=settings["redis_conn_id"], redis_url=settings["redis_url"],
                               prefix=settings["prefix"]).get_conn()
        try:  # the namespace the core's own OpenLineage events give the same datasets
            namespace = os.environ.get(ENV_NAMESPACE) or redis_namespace(coordinator.client)
            prefix = coordinator.prefix
        finally:
            coordinator.close()
        inputs = [Dataset(namespace=namespace, name=f"{prefix}{n}") for n in _names(task.jobs_inputs)]
        outputs = [Dataset(namespace=namespace, name=f"{prefix}{n}") for n in _names(task.jobs_outputs)]
    except Exception:
        log.warning("jobs_core: could not describe the lineage of task %s", getattr(task, "task_id", "?"),
                    exc_info=True)
        return own
    lineage.inputs = [*lineage.inputs, *inputs]
    if written:
        lineage.outputs = [*lineage.outputs, *outputs]
    return lineage
