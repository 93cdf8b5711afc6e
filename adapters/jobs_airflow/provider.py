"""Provider registration: Airflow finds this through the ``apache_airflow_provider`` entry point.

Kept light (no Airflow or jobs_core import): Airflow loads it in every process
that lists providers. The connection form of the ``jobs_core`` type is
declared here (``conn-fields``, read by Airflow 3.2+ without importing the
hook); Airflow 2 asks the hook's ``get_connection_form_widgets`` instead.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

#: The distribution that installs jobs_airflow (Airflow requires package-name to equal it).
DISTRIBUTION = "jobs-core"
#: How the provider, its integration and its connection type are shown (Airflow strips ``_`` from
#: descriptions, so none is used there).
DISPLAY_NAME = "jobs-core"


def get_provider_info() -> dict[str, Any]:
    """The provider description Airflow validates against its ``provider_info.schema.json``."""
    from .connection_type import CONN_FIELDS, CONN_TYPE, UI_FIELD_BEHAVIOUR

    try:
        versions = [version(DISTRIBUTION)]
    except PackageNotFoundError:  # imported from a source tree that is not installed
        versions = []
    return {
        "package-name": DISTRIBUTION,
        "name": DISPLAY_NAME,
        "description": "Redis locks between data jobs (jobs-core): a sensor waiting on inputs, an operator "
                       "wrapper and task decorator locking inputs, outputs and shared limits while a task runs, "
                       "deferrable lock waits, triggers and asset watchers on outputs.",
        "versions": versions,
        "integrations": [{"integration-name": DISPLAY_NAME, "tags": ["software"]}],
        "hooks": [{"integration-name": DISPLAY_NAME, "python-modules": ["jobs_airflow.hooks"]}],
        "sensors": [{"integration-name": DISPLAY_NAME, "python-modules": ["jobs_airflow.sensors"]}],
        "operators": [{"integration-name": DISPLAY_NAME, "python-modules": ["jobs_airflow.operators"]}],
        "triggers": [{"integration-name": DISPLAY_NAME, "python-modules": ["jobs_airflow.triggers"]}],
        "connection-types": [{
            "connection-type": CONN_TYPE,
            "hook-class-name": "jobs_airflow.hooks.JobsHook",
            "hook-name": DISPLAY_NAME,
            "conn-fields": CONN_FIELDS,
            "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
        }],
        "task-decorators": [{"class-name": "jobs_airflow.decorators.jobs_task", "name": "jobs"}],
        "extra-links": ["jobs_airflow.links.JobsWebLink"],
        "config": {"jobs_core": {"description": "jobs-core, the Redis locks between data jobs.", "options": {
            "web_url": {"description": "Where `jobs-core web` serves the namespace: locked tasks link to their "
                                       "job there. A connection's web_url extra wins.",
                        "version_added": None, "type": "string", "example": "http://jobs.example:8377",
                        "default": None}}}},
    }
