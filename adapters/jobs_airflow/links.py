"""The operator extra link from a locked task to its job in the ``jobs-core web`` view.

Shown when the web view is configured: Airflow's ``[jobs_core] web_url``
(``AIRFLOW__JOBS_CORE__WEB_URL``), or the extra ``web_url`` of the task's
jobs_core connection. The task stores the link (``<web_url>/?job=<job id>``)
in XCom once it holds its locks; Airflow 3's API server reads it from there
(as for every link with an ``xcom_key``), Airflow 2's webserver through
:meth:`JobsWebLink.get_link`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .version_compat import AIRFLOW_V_3_0_PLUS, BaseOperatorLink, conf

#: The section and option of Airflow's configuration naming the web view.
CONFIG_SECTION, CONFIG_OPTION = "jobs_core", "web_url"


def web_url(connection_web_url: str | None) -> str | None:
    """The web view's address: the connection's ``web_url`` extra, else ``[jobs_core] web_url``, else None."""
    url = connection_web_url or conf.get(CONFIG_SECTION, CONFIG_OPTION, fallback=None)
    return str(url).rstrip("/") if url else None


def job_link(base: str, job_id: str) -> str:
    """The web view's page of ``job_id`` (the ``?job=`` deep link of ``jobs-core web``)."""
    return f"{base}/?job={quote(job_id, safe='')}"


class JobsWebLink(BaseOperatorLink):
    """"jobs-core": the task's job in the ``jobs-core web`` view (locks, waits, holders)."""

    name = "jobs-core"

    @property
    def xcom_key(self) -> str:
        return "jobs_core_web_link"

    def persist(self, context: Any, link: str) -> None:
        """Store the link of this task instance (the UI reads it from XCom)."""
        context["ti"].xcom_push(key=self.xcom_key, value=link)

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        if AIRFLOW_V_3_0_PLUS:
            from airflow.sdk.execution_time.xcom import XCom
        else:
            from airflow.models.xcom import XCom
        value = XCom.get_value(ti_key=ti_key, key=self.xcom_key)
        return str(value) if value else ""
