"""Where the jobs_core Redis is: an Airflow connection, a URL, or ``JOBS_REDIS_URL``.

One :class:`JobsHook` builds both a sync :class:`jobs_core.Coordinator` (for
operators and sensors on workers) and a :class:`jobs_core.AsyncCoordinator`
(for triggers, on the triggerer's event loop) from the same settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import jobs_core
from jobs_core.connect import SCHEMES, client_from_url
from jobs_core.namespace import ENV_PREFIX, ENV_URL
from jobs_core.urls import MASK, SECRET_OPTION, hide_password

from .version_compat import AirflowNotFoundException, BaseHook, aget_connection

#: The Redis provider's default connection id, used when nothing else is configured.
DEFAULT_CONN_ID = "redis_default"
#: Connection extras passed to the Redis client as TLS settings (those of the Redis provider).
SSL_EXTRAS = ("ssl", "ssl_cert_reqs", "ssl_ca_certs", "ssl_keyfile", "ssl_certfile", "ssl_check_hostname")
#: Connection extra naming the key prefix (namespace) of jobs_core, when ``prefix`` is not given.
PREFIX_EXTRA = "jobs_prefix"
#: Client timeouts, as jobs_core's ``from_url`` sets them: a dead server cannot hang a task forever.
CLIENT_TIMEOUTS = {"socket_timeout": 30.0, "socket_connect_timeout": 10.0}


def _shown_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: MASK if SECRET_OPTION.search(k) and v is not None else v for k, v in options.items()}


@dataclass(frozen=True)
class Target:
    """A resolved Redis target: a URL, or client keyword arguments from a connection.

    Its ``repr()`` and its errors show the URL with the password and every
    secret option hidden (:func:`jobs_core.urls.hide_password`).
    """

    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    cluster: bool = False
    prefix: str = ""
    source: str = ""

    def __repr__(self) -> str:
        url = None if self.url is None else hide_password(self.url)
        return (f"Target(url={url!r}, options={_shown_options(self.options)!r}, cluster={self.cluster!r}, "
                f"prefix={self.prefix!r}, source={self.source!r})")

    def client(self, asyncio: bool) -> Any:
        """A new redis-py client (``redis.asyncio`` if ``asyncio``) for this target.

        URLs are those of :func:`jobs_core.connect.client_from_url` (one server,
        Sentinel, Cluster; plain or TLS).

        Raises:
            jobs_core.ConfigurationError: the URL cannot be used; the message shows it with
                its secrets hidden, and nothing of what redis-py quoted from it.
        """
        if asyncio:
            from redis.asyncio import Redis
            from redis.asyncio.cluster import RedisCluster
        else:
            from redis import Redis  # type: ignore[assignment]
            from redis.cluster import RedisCluster  # type: ignore[assignment]
        options = {**CLIENT_TIMEOUTS, **self.options}
        if self.url is not None:
            return self._client_from_url(asyncio, options)
        if self.cluster:
            options.pop("db", None)
            return RedisCluster(**options)
        return Redis(**options)

    def _client_from_url(self, asyncio: bool, options: dict[str, Any]) -> Any:
        url = self.url
        shown = hide_password(url) if isinstance(url, str) else f"<{type(url).__name__}>"
        scheme = url.partition("://")[0].lower() if isinstance(url, str) and "://" in url else None
        if scheme not in SCHEMES:
            raise jobs_core.ConfigurationError(f"bad Redis URL from {self.source}: {shown!r}; it must start with "
                                               + ", ".join(f"{s}://" for s in SCHEMES))
        try:
            return client_from_url(url, asyncio=asyncio, **options)
        except (jobs_core.ConfigurationError, ValueError, TypeError):
            # redis-py's own message may quote part of a password holding an unencoded / ? # or @
            raise jobs_core.ConfigurationError(
                f"bad Redis URL from {self.source}: {shown!r} cannot be parsed (check the host, port and "
                f"database; a password holding / ? # @ or % must be percent-encoded, e.g. with "
                f"urllib.parse.quote(password, safe=''))") from None


def target_from_connection(conn: Any, prefix: str | None) -> Target:
    """The Redis target of an Airflow connection of the Redis provider's type.

    Fields as the Redis provider reads them: host, port, login, password; extras
    ``db`` (else a numeric schema), ``ssl``... and ``cluster``; plus the extra
    ``jobs_prefix`` when ``prefix`` is None.
    """
    extra = conn.extra_dejson or {}
    password = conn.password
    if str(password).lower() in ("none", "false", ""):
        password = None
    db = extra.get("db")
    if db is None and conn.schema and str(conn.schema).isdigit():
        db = int(conn.schema)
    options: dict[str, Any] = {"host": conn.host or "localhost", "port": int(conn.port or 6379),
                               "username": conn.login or None, "password": password, "db": int(db or 0)}
    options.update({k: v for k, v in extra.items() if k in SSL_EXTRAS})
    if prefix is None:
        prefix = extra.get(PREFIX_EXTRA) or os.environ.get(ENV_PREFIX, "")
    return Target(options=options, cluster=bool(extra.get("cluster", False)), prefix=prefix,
                  source=f"connection {conn.conn_id!r}")


class JobsHook(BaseHook):
    """Builds jobs_core coordinators from Airflow settings.

    The Redis server is, in this order: ``redis_url`` if given; else the
    connection ``redis_conn_id`` if given; else ``$JOBS_REDIS_URL`` if set;
    else the connection ``redis_default`` (the Redis provider's convention).
    The key prefix is ``prefix`` if given, else the connection's extra
    ``jobs_prefix``, else ``$JOBS_PREFIX``, else ``""``.

    Args:
        redis_conn_id: an Airflow connection of type ``redis``.
        redis_url: ``redis://``, ``rediss://`` or ``unix://`` URL.
        prefix: the jobs_core namespace (key prefix).
        poll: longest fallback poll, in seconds, of waits on writers that do not publish.

    Raises:
        jobs_core.ConfigurationError: nothing configured, or the named connection is missing.
    """

    conn_name_attr = "redis_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    hook_name = "jobs_core"

    def __init__(self, redis_conn_id: str | None = None, redis_url: str | None = None, prefix: str | None = None,
                 poll: float = 2.0) -> None:
        super().__init__()
        self.redis_conn_id = redis_conn_id
        self.redis_url = redis_url
        self.prefix = prefix
        self.poll = poll

    def _plan(self) -> tuple[str | None, Target | None]:
        """``(conn_id to look up, None)`` or ``(None, target)`` when no lookup is needed."""
        if self.redis_url:
            prefix = self.prefix if self.prefix is not None else os.environ.get(ENV_PREFIX, "")
            return None, Target(url=self.redis_url, prefix=prefix, source="redis_url")
        if self.redis_conn_id:
            return self.redis_conn_id, None
        url = os.environ.get(ENV_URL)
        if url:
            prefix = self.prefix if self.prefix is not None else os.environ.get(ENV_PREFIX, "")
            return None, Target(url=url, prefix=prefix, source=f"${ENV_URL}")
        return DEFAULT_CONN_ID, None

    def _missing(self, conn_id: str) -> jobs_core.ConfigurationError:
        if self.redis_conn_id:
            return jobs_core.ConfigurationError(f"the Airflow connection {conn_id!r} (redis_conn_id) does not exist")
        return jobs_core.ConfigurationError(
            f"no Redis configured for jobs_core: pass redis_conn_id= or redis_url=, set {ENV_URL}, or create "
            f"the Airflow connection {DEFAULT_CONN_ID!r} (e.g. AIRFLOW_CONN_REDIS_DEFAULT='redis://host:6379?db=0')")

    def target(self) -> Target:
        """Resolve the settings (looking the connection up if one is used)."""
        conn_id, target = self._plan()
        if target is not None:
            return target
        try:
            conn = self.get_connection(conn_id)
        except AirflowNotFoundException:
            raise self._missing(conn_id) from None
        return target_from_connection(conn, self.prefix)

    async def atarget(self) -> Target:
        """:meth:`target` without blocking the event loop."""
        conn_id, target = self._plan()
        if target is not None:
            return target
        try:
            conn = await aget_connection(conn_id)
        except AirflowNotFoundException:
            raise self._missing(conn_id) from None
        return target_from_connection(conn, self.prefix)

    def get_conn(self) -> jobs_core.Coordinator:
        """A sync coordinator on a new client (close it with ``coordinator.close()``)."""
        target = self.target()
        return jobs_core.Coordinator(target.client(asyncio=False), target.prefix, poll=self.poll)

    async def aget_conn(self) -> jobs_core.AsyncCoordinator:
        """An asyncio coordinator on a new ``redis.asyncio`` client (close it with ``await coordinator.aclose()``)."""
        target = await self.atarget()
        return jobs_core.AsyncCoordinator(target.client(asyncio=True), target.prefix, poll=self.poll)

    def settings(self) -> dict[str, Any]:
        """The constructor arguments, as plain JSON types (for trigger kwargs)."""
        return {"redis_conn_id": self.redis_conn_id, "redis_url": self.redis_url, "prefix": self.prefix,
                "poll": self.poll}
