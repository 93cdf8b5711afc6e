"""The web view inside Airflow 3.1+: the page of ``jobs-core serve``, served by Airflow's api-server.

An Airflow plugin (registered through the ``airflow.plugins`` entry point) that
mounts the web app at ``/jobs-core`` (the plugin manager's ``fastapi_apps``)
and adds an entry to the navigation (``external_views``) showing it inside the
UI. It reads the Airflow connection named by ``[jobs_core] web_conn_id`` (an
Airflow option; default ``jobs_core``) when it exists, else the usual places
of :class:`jobs_airflow.hooks.JobsHook` (``$JOBS_REDIS_URL``, then
``redis_default``), on the first request rather than at import.

Every request must carry the user's Airflow session (the JWT cookie the UI
sets, or a bearer token), and the user must be allowed to see plugins
(``AccessView.PLUGINS``); the page is read-only there (repairs stay with the
``jobs-core`` command). Needs the ``web`` extra (``prometheus-client``); without
it, or on Airflow 2, the plugin adds nothing.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

#: Where the api-server serves the page; the operator's extra link opens ``<api-server>/jobs-core/?job=<id>``.
URL_PREFIX = "/jobs-core"
#: The connection read when ``[jobs_core] web_conn_id`` is not set, if it exists.
DEFAULT_WEB_CONN_ID = "jobs_core"


def _connect() -> tuple[Any, str]:
    """The coordinator and where it is, from Airflow's settings (called on the first request)."""
    from airflow.configuration import conf
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    import jobs_core
    from jobs_core.namespace import ENV_PREFIX, ENV_URL
    from jobs_core.urls import hide_password

    from .hooks import DEFAULT_CONN_ID, Target, target_from_connection

    conn_id = conf.get("jobs_core", "web_conn_id", fallback="") or DEFAULT_WEB_CONN_ID
    target: Target | None = None
    for candidate in (conn_id, None, DEFAULT_CONN_ID):
        if candidate is None:
            url = os.environ.get(ENV_URL)
            if url:
                target = Target(url=url, prefix=os.environ.get(ENV_PREFIX, ""), source=f"${ENV_URL}")
                break
            continue
        try:
            target = target_from_connection(Connection.get_connection_from_secrets(candidate), None)
            break
        except AirflowNotFoundException:
            continue
    if target is None:
        raise jobs_core.ConfigurationError(
            f"no Redis configured for the jobs_core page: create the Airflow connection {conn_id!r} (or set "
            f"[jobs_core] web_conn_id), set {ENV_URL} for the api-server, or create {DEFAULT_CONN_ID!r}")
    where = hide_password(target.url) if target.url else f"Airflow {target.source}"
    return jobs_core.AsyncCoordinator(target.client(asyncio=True), target.prefix), where


class AirflowUsersOnly:
    """ASGI middleware: a request needs a valid Airflow session of a user allowed to see plugins."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
        from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
        from airflow.api_fastapi.core_api.security import resolve_user_from_token
        from fastapi import HTTPException
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse

        request = Request(scope)
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        token = credentials if scheme.lower() == "bearer" else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
        try:
            user = await resolve_user_from_token(token)
        except HTTPException as exc:
            await PlainTextResponse(f"{exc.detail}: log in to Airflow first", exc.status_code)(scope, receive, send)
            return
        if not get_auth_manager().is_authorized_view(access_view=AccessView.PLUGINS, user=user):
            await PlainTextResponse("not allowed to see Airflow's plugins", 403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def web_app() -> Any:
    """The page's ASGI app behind :class:`AirflowUsersOnly`, or None without the ``web`` extra."""
    try:
        from jobs_core.web.app import build_app
    except ImportError as exc:
        log.warning("the jobs_core page is not served: %s is missing (pip install 'jobs-core[web]')", exc.name)
        return None
    return AirflowUsersOnly(build_app(_connect, allowed_hosts=None))


def _components() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    try:
        from airflow.api_fastapi.core_api.security import resolve_user_from_token  # noqa: F401 (Airflow 3 only)
    except ImportError:
        return [], []
    app = web_app()
    if app is None:
        return [], []
    return ([{"app": app, "url_prefix": URL_PREFIX, "name": "jobs_core"}],
            [{"name": "Jobs locks", "href": URL_PREFIX.lstrip("/") + "/", "destination": "nav",
              "category": "browse", "url_route": "jobs-core"}])


class JobsCoreWebPlugin(AirflowPlugin):
    """The jobs_core page in Airflow's UI (see the module's documentation)."""

    name = "jobs_core_web"
    fastapi_apps, external_views = _components()
