"""Where the jobs_core namespace is: an Airflow connection, a URL, or ``JOBS_REDIS_URL``/``JOBS_PREFIX``.

One :class:`JobsHook` builds both a sync :class:`jobs_core.Coordinator` (for
operators and sensors on workers) and a :class:`jobs_core.AsyncCoordinator`
(for triggers, on the triggerer's event loop) from the same settings. Clients
come from :func:`jobs_core.connect.client_from_url`, so every URL form of the
core works (``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``,
``redis+cluster://``) with the core's retry policy, and the URL and prefix
are resolved by :func:`jobs_core.namespace.resolve_namespace`: the values
given, then the connection, then the environment.

Connections of two types are read:

* ``jobs_core`` (this provider's): host, port, login, password, schema (the
  database) and the extras ``prefix``, ``tls``, ``url`` (a full URL, which
  replaces host, port, login, password and database), ``web_url`` and the
  ``ssl_*`` TLS options;
* ``redis`` (the Redis provider's): host, port, login, password, the extras
  ``db``, ``ssl``, ``ssl_*``, ``cluster``, and ``jobs_prefix`` for the prefix.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import jobs_core
from jobs_core.namespace import ENV_PREFIX, ENV_URL, Source, resolve_namespace
from jobs_core.urls import MASK, SECRET_OPTION, hide_password

from .connection_type import CONN_FIELDS, CONN_TYPE, DEFAULT_CONN_ID, REDIS_DEFAULT_CONN_ID, UI_FIELD_BEHAVIOUR
from .version_compat import AirflowNotFoundException, BaseHook, aget_connection

#: Connection extras passed to the Redis client as TLS settings (those of the Redis provider).
SSL_EXTRAS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_keyfile", "ssl_certfile", "ssl_check_hostname")
#: Connection extras naming the key prefix: ``prefix`` (jobs_core type), ``jobs_prefix`` (redis type).
PREFIX_EXTRAS = ("prefix", "jobs_prefix")
#: Client timeouts, as :meth:`jobs_core.Coordinator.from_url` sets them: a dead server cannot hang a task.
CLIENT_TIMEOUTS = {"socket_timeout": 30.0, "socket_connect_timeout": 10.0}


def _shown_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: MASK if SECRET_OPTION.search(k) and v is not None else v for k, v in options.items()}


@dataclass(frozen=True)
class Target:
    """A resolved namespace: URL, client options (TLS files...), prefix, and where each came from.

    Its ``repr()`` and its errors show the URL with the password and every
    secret option hidden (:func:`jobs_core.urls.hide_password`).
    """

    url: str
    prefix: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    prefix_source: str = ""
    web_url: str | None = None

    def __repr__(self) -> str:
        return (f"Target(url={hide_password(self.url)!r}, prefix={self.prefix!r}, "
                f"options={_shown_options(self.options)!r}, source={self.source!r})")

    def coordinator(self, poll: float = 2.0, asyncio: bool = False) -> Any:
        """A new coordinator (:class:`jobs_core.AsyncCoordinator` if ``asyncio``) on a new client.

        Raises:
            jobs_core.ConfigurationError: the URL cannot be used (a cluster URL needs a prefix
                with a hash tag...); the message names where it came from and hides its secrets.
        """
        cls = jobs_core.AsyncCoordinator if asyncio else jobs_core.Coordinator
        try:
            return cls.from_url(self.url, self.prefix, poll=poll, **{**CLIENT_TIMEOUTS, **self.options})
        except jobs_core.ConfigurationError as exc:
            raise jobs_core.ConfigurationError(f"jobs_core namespace from {self.source}: {exc}") from None


def _extra(extra: dict[str, Any], conn_type: str, name: str) -> Any:
    """A connection extra, whether stored plain or as ``extra__<type>__<name>`` (older forms)."""
    value = extra.get(name)
    if value is None:
        value = extra.get(f"extra__{conn_type}__{name}")
    return None if value == "" and name != "prefix" else value


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes", "on")


def connection_url(conn: Any) -> str:
    """The URL of an Airflow connection of type ``jobs_core`` or ``redis`` (its ``url`` extra if set)."""
    extra = conn.extra_dejson or {}
    conn_type = conn.conn_type or CONN_TYPE
    url = _extra(extra, conn_type, "url")
    if url:
        return str(url)
    password = conn.password
    if password is not None and str(password).lower() in ("none", "false", ""):
        password = None
    user = conn.login or ""
    userinfo = ""
    if user or password is not None:
        userinfo = quote(user, safe="") + (":" + quote(str(password), safe="") if password is not None else "") + "@"
    db = _extra(extra, conn_type, "db")
    if db is None and conn.schema and str(conn.schema).strip().isdigit():
        db = int(conn.schema)
    host = conn.host or "localhost"
    if host.startswith("/"):  # a unix socket
        return f"unix://{userinfo}{host}" + (f"?db={int(db)}" if db else "")
    tls = _flag(_extra(extra, conn_type, "tls")) or _flag(_extra(extra, conn_type, "ssl"))
    scheme = "rediss" if tls else "redis"
    if _flag(_extra(extra, conn_type, "cluster")):
        return f"{scheme}+cluster://{userinfo}{host}:{int(conn.port or 6379)}"
    return f"{scheme}://{userinfo}{host}:{int(conn.port or 6379)}/{int(db or 0)}"


def connection_prefix(conn: Any) -> str | None:
    """The prefix a connection sets (``prefix`` or ``jobs_prefix`` extra), None if it sets none."""
    extra = conn.extra_dejson or {}
    for name in PREFIX_EXTRAS:
        value = _extra(extra, conn.conn_type or CONN_TYPE, name)
        if value is not None:
            return str(value)
    return None


def connection_options(conn: Any) -> dict[str, Any]:
    """Client options from a connection's TLS extras."""
    extra = conn.extra_dejson or {}
    found = {name: _extra(extra, conn.conn_type or CONN_TYPE, name) for name in SSL_EXTRAS}
    return {k: v for k, v in found.items() if v is not None}


def target_from_connection(conn: Any, prefix: str | None = None) -> Target:
    """The namespace of an Airflow connection (type ``jobs_core`` or ``redis``), ``prefix`` winning if given."""
    return JobsHook(prefix=prefix)._resolve(conn)


class JobsHook(BaseHook):
    """Builds jobs_core coordinators from Airflow settings.

    The namespace is resolved by :func:`jobs_core.namespace.resolve_namespace`:

    * the URL is ``redis_url`` if given; else that of the connection ``redis_conn_id``
      if given; else ``$JOBS_REDIS_URL`` if set; else that of the connection
      ``jobs_core_default``, or ``redis_default`` (the Redis provider's) if that does not exist;
    * the prefix is ``prefix`` if given; else the connection's (``prefix`` extra of a
      ``jobs_core`` connection, ``jobs_prefix`` of a ``redis`` one) if it sets one; else
      ``$JOBS_PREFIX``; else none.

    Args:
        redis_conn_id: an Airflow connection of type ``jobs_core`` (or ``redis``).
        redis_url: a URL of :mod:`jobs_core.connect` (one server, TLS, unix socket, Sentinel, Cluster).
        prefix: the jobs_core namespace (key prefix).
        poll: longest fallback poll, in seconds, of waits on writers that do not publish.

    Raises:
        jobs_core.ConfigurationError: nothing configured, or the named connection is missing.
    """

    conn_name_attr = "redis_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "jobs-core"

    def __init__(self, redis_conn_id: str | None = None, redis_url: str | None = None, prefix: str | None = None,
                 poll: float = 2.0) -> None:
        super().__init__()
        self.redis_conn_id = redis_conn_id
        self.redis_url = redis_url
        self.prefix = prefix
        self.poll = poll

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's standard fields (Airflow 2; Airflow 3.2+ reads the provider info)."""
        return {k.replace("-", "_"): v for k, v in UI_FIELD_BEHAVIOUR.items()}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The connection form's extra fields (Airflow 2; Airflow 3.2+ reads the provider info)."""
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from wtforms import BooleanField, PasswordField, StringField
        from wtforms.validators import Optional

        widgets: dict[str, Any] = {}
        for name, spec in CONN_FIELDS.items():
            label, description = spec["label"], spec.get("description", "")
            if "boolean" in spec["schema"]["type"]:
                widgets[name] = BooleanField(label, description=description, default=False)
            elif spec["schema"].get("format") == "password":
                widgets[name] = PasswordField(label, description=description, widget=BS3PasswordFieldWidget(),
                                              validators=[Optional()])
            else:
                widgets[name] = StringField(label, description=description, widget=BS3TextFieldWidget(),
                                            validators=[Optional()])
        return widgets

    def _lookup(self) -> list[str]:
        """The connection ids to try, in order (none when a URL is given or in the environment)."""
        if self.redis_url:
            return []
        if self.redis_conn_id:
            return [self.redis_conn_id]
        if os.environ.get(ENV_URL):  # resolve_namespace takes it from there
            return []
        return [DEFAULT_CONN_ID, REDIS_DEFAULT_CONN_ID]

    def _missing(self) -> jobs_core.ConfigurationError:
        if self.redis_conn_id:
            return jobs_core.ConfigurationError(
                f"the Airflow connection {self.redis_conn_id!r} (redis_conn_id / jobs_conn_id) does not exist")
        return jobs_core.ConfigurationError(
            f"no Redis configured for jobs_core: pass redis_conn_id= (jobs_conn_id=) or redis_url= (jobs_redis_url=), "
            f"set ${ENV_URL} (and ${ENV_PREFIX}), or create the Airflow connection {DEFAULT_CONN_ID!r} (type "
            f"{CONN_TYPE}, e.g. AIRFLOW_CONN_JOBS_CORE_DEFAULT='jobs_core://host:6379/0?prefix=etl%3A') or "
            f"{REDIS_DEFAULT_CONN_ID!r}")

    def _resolve(self, conn: Any) -> Target:
        sources = []
        options: dict[str, Any] = {}
        web_url = None
        label = ""
        if conn is not None:
            label = f"connection {conn.conn_id!r}"
            sources.append(Source(label, connection_url(conn), connection_prefix(conn)))
            options = connection_options(conn)
            web_url = _extra(conn.extra_dejson or {}, conn.conn_type or CONN_TYPE, "web_url")
        where = resolve_namespace(self.redis_url or None, self.prefix, sources=sources,
                                  given="redis_url (the task's jobs_redis_url)")
        return Target(url=where.url, prefix=where.prefix, options=options if where.url_from == label else {},
                      source=where.url_from, prefix_source=where.prefix_from, web_url=web_url)

    def target(self) -> Target:
        """Resolve the settings (looking the connection up if one is used).

        Raises:
            jobs_core.ConfigurationError: nothing configured, or the named connection is missing.
        """
        for conn_id in self._lookup():
            try:
                return self._resolve(self.get_connection(conn_id))
            except AirflowNotFoundException:
                continue
        if self._lookup():
            raise self._missing()
        return self._resolve(None)

    async def atarget(self) -> Target:
        """:meth:`target` without blocking the event loop (the connection is fetched asynchronously)."""
        for conn_id in self._lookup():
            try:
                return self._resolve(await aget_connection(conn_id))
            except AirflowNotFoundException:
                continue
        if self._lookup():
            raise self._missing()
        return self._resolve(None)

    def get_conn(self) -> jobs_core.Coordinator:
        """A sync coordinator on a new client (close it with ``coordinator.close()``)."""
        coordinator: jobs_core.Coordinator = self.target().coordinator(self.poll)
        return coordinator

    async def aget_conn(self) -> jobs_core.AsyncCoordinator:
        """An asyncio coordinator on a new ``redis.asyncio`` client (close it with ``await coordinator.aclose()``).

        The client and coordinator are made in a worker thread (imports, script loading), so that
        a trigger's first connection does not hold the triggerer's event loop.
        """
        target = await self.atarget()
        coordinator: jobs_core.AsyncCoordinator = await asyncio.to_thread(target.coordinator, self.poll, True)
        return coordinator

    def settings(self) -> dict[str, Any]:
        """The constructor arguments, as plain JSON types (for trigger kwargs)."""
        return {"redis_conn_id": self.redis_conn_id, "redis_url": self.redis_url, "prefix": self.prefix,
                "poll": self.poll}
