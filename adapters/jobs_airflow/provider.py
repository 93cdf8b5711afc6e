"""Provider registration: Airflow finds this through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

#: The distribution that installs jobs_airflow (Airflow requires package-name to equal it).
DISTRIBUTION = "jobs-core"


def get_provider_info() -> dict[str, Any]:
    """The provider description Airflow validates against its ``provider_info.schema.json``."""
    try:
        versions = [version(DISTRIBUTION)]
    except PackageNotFoundError:  # imported from a source tree that is not installed
        versions = []
    return {
        "package-name": DISTRIBUTION,
        "name": "jobs_core",
        "description": "Redis locks between data jobs: a sensor waiting on jobs_core inputs, an operator wrapper "
                       "locking outputs while a task runs, triggers and asset watchers on jobs_core outputs.",
        "versions": versions,
        "integrations": [{"integration-name": "jobs_core", "tags": ["software"]}],
        "hooks": [{"integration-name": "jobs_core", "python-modules": ["jobs_airflow.hooks"]}],
        "sensors": [{"integration-name": "jobs_core", "python-modules": ["jobs_airflow.sensors"]}],
        "operators": [{"integration-name": "jobs_core", "python-modules": ["jobs_airflow.operators"]}],
        "triggers": [{"integration-name": "jobs_core", "python-modules": ["jobs_airflow.triggers"]}],
        "task-decorators": [{"class-name": "jobs_airflow.decorators.jobs_task", "name": "jobs"}],
    }
