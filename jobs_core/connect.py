"""Redis clients from URLs: one server, a Sentinel-managed master, or a Cluster; plain or TLS.

=====================================================================  =========================
``redis://[[user]:password@]host[:port][/db]``                         one server
``rediss://...?ssl_ca_certs=ca.pem&ssl_certfile=c.pem&ssl_keyfile=k.pem``  one server over TLS
``unix://[[user]:password@]/path/to/redis.sock[?db=0]``                a unix socket
``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``  the master Sentinel names
``redis+cluster://[[user]:password@]host:port[,host:port...]``         a Redis or Valkey Cluster
=====================================================================  =========================

A password holding ``/``, ``?``, ``#`` or ``@`` must be percent-encoded (``%2F``,
``%3F``, ``%23``, ``%40``); a URL whose user part holds an unencoded ``/``, ``?``
or ``#`` is refused, since part of the password would be read as the host.
No error shows a password: URLs are shown through :func:`jobs_core.urls.hide_password`
and redis-py's own texts reworded.

``rediss+sentinel://`` and ``rediss+cluster://`` are the TLS forms. Query
parameters are client options, as redis-py reads them (``socket_timeout=5``,
``ssl_cert_reqs=none``, ``ssl_ca_certs=/path``...); keyword options override
them. The user and password of a Sentinel URL are the master's; the
sentinels' own password, if they have one, is the option ``sentinel_password``.
A port left out is 6379 (26379 for a sentinel).

Clients of one server or of a Sentinel-managed master retry a command whose
connection dropped as ``redis.Redis(...)`` does by default (``Redis.from_url``
alone would not retry); every jobs_core script is safe to replay. A ``retry``
option replaces that policy.
"""

from __future__ import annotations

import copy
import inspect
import secrets
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import ConfigurationError
from .keys import Keys
from .urls import hide_password, parse_error, user_part_problem

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a cluster (``redis+cluster://``, ``rediss+cluster://``)."""
    return isinstance(url, str) and url.split("://", 1)[0].lower() in ("redis+cluster", "rediss+cluster")


def client_from_url(url: str, *, asyncio: bool = False, **options: Any) -> Any:
    """A redis-py client (``redis.asyncio`` with ``asyncio=True``) for one of the URLs above.

    Raises:
        ConfigurationError: not a URL of those forms, or one redis-py refuses.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"bad Redis URL {hide_password(url)!r}: a URL such as 'redis://localhost:6379/0' is "
                                 "needed")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(f"bad Redis URL {hide_password(url)!r}: unknown scheme, use one of "
                                 + ", ".join(f"{s}://" for s in SCHEMES))
    problem = user_part_problem(url)
    if problem is not None:
        raise ConfigurationError(f"bad Redis URL {hide_password(url)!r}: {problem}")
    if asyncio:
        import redis.asyncio as redis_mod
    else:
        import redis as redis_mod  # type: ignore[no-redef]
    try:
        if scheme in ("redis", "rediss", "unix"):
            return redis_mod.Redis.from_url(url, **_with_retry(redis_mod, options))
        tls = scheme.startswith("rediss")
        hosts, path, kwargs = _split(url, tls, 26379 if scheme.endswith("sentinel") else 6379)
        kwargs.update(options)
        if scheme.endswith("sentinel"):
            return _sentinel_master(hosts, path, _with_retry(redis_mod, kwargs), asyncio)
        return _cluster(hosts, path, kwargs, asyncio)
    except (ValueError, TypeError) as exc:
        # redis-py's text may quote part of the URL: only a reworded copy is shown, and no chained cause
        raise ConfigurationError(f"bad Redis URL {hide_password(url)!r}: {parse_error(exc, url)}") from None


def _with_retry(redis_mod: Any, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the retry policy ``redis_mod.Redis(...)`` has by default, unless they set one."""
    if "retry" in options:
        return options
    parameter = inspect.signature(redis_mod.Redis.__init__).parameters.get("retry")
    if parameter is None or parameter.default in (None, inspect.Parameter.empty):
        return options
    return {**options, "retry": copy.deepcopy(parameter.default)}


def _split(url: str, tls: bool, default_port: int) -> tuple[list[tuple[str, int]], list[str], dict[str, Any]]:
    """``(hosts, path segments, client options)`` of a multi-host URL."""
    from redis.connection import parse_url

    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    hosts = []
    for item in hostlist.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host:
            raise ValueError(f"empty host in {item!r}")
        hosts.append((host.strip("[]"), int(port) if port else default_port))
    # redis-py reads the query options, user and password of an equivalent one-host URL
    single = f"redis://{userinfo + '@' if userinfo else ''}{hosts[0][0]}:{hosts[0][1]}"
    kwargs = parse_url(single + (f"?{parts.query}" if parts.query else ""))
    for key in ("host", "port", "connection_class"):
        kwargs.pop(key, None)
    if tls:
        kwargs["ssl"] = True
    return hosts, [unquote(p) for p in parts.path.split("/") if p], kwargs


def _sentinel_master(hosts: list[tuple[str, int]], path: list[str], kwargs: dict[str, Any], asyncio: bool) -> Any:
    if not path:
        raise ValueError("a Sentinel URL names the service: redis+sentinel://host:26379/<service>[/db]")
    if len(path) > 2:
        raise ValueError(f"expected /<service>[/db] after the sentinels, got /{'/'.join(path)}")
    if len(path) == 2:
        kwargs["db"] = int(path[1])
    if asyncio:
        from redis.asyncio.sentinel import Sentinel
    else:
        from redis.sentinel import Sentinel  # type: ignore[assignment]
    # the sentinels get the connection settings (timeouts, TLS), and their own password if any
    sentinel_kwargs = {k: v for k, v in kwargs.items() if k.startswith(("socket_", "ssl"))}
    password = kwargs.pop("sentinel_password", None)
    if password is not None:
        sentinel_kwargs["password"] = password
    return Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **kwargs).master_for(path[0])


def _cluster(hosts: list[tuple[str, int]], path: list[str], kwargs: dict[str, Any], asyncio: bool) -> Any:
    if path:
        raise ValueError("a cluster URL has no path: a cluster has only database 0")
    kwargs.pop("db", None)
    if asyncio:
        from redis.asyncio.cluster import ClusterNode, RedisCluster
    else:
        from redis.cluster import ClusterNode, RedisCluster  # type: ignore[assignment]
    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in hosts], **kwargs)


def _sentinels(client: Any) -> list[Any]:
    """The clients of the sentinels behind a Sentinel-managed client (none for other clients)."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    return list(getattr(manager, "sentinels", ()))


def close_client(client: Any) -> None:
    """Close a sync client's connections, and those to its sentinels if it has any."""
    client.close()
    for sentinel in _sentinels(client):
        sentinel.close()


async def aclose_client(client: Any) -> None:
    """Close an asyncio client's connections, and those to its sentinels if it has any."""
    for c in [client, *_sentinels(client)]:
        close = getattr(c, "aclose", None) or c.close
        await close()


def namespace_id(client: Any, prefix: str) -> str:
    """The identity of the namespace that ``client`` and ``prefix`` reach: equal ids, same keys.

    Two URLs can spell one server differently (``localhost`` and ``127.0.0.1``,
    a host name and its address, TCP and a unix socket, a Sentinel service and
    its master's address, one cluster through different nodes). Rather than
    guess from the spelling, the namespace is asked: it keeps a random token at
    ``<prefix>jobs:namespace``, set by the first client that asks (``SET NX``)
    and then read by every client. Unlike a server's ``INFO run_id``, the token
    names the database and prefix too, survives a failover (it is replicated),
    works through proxies, and needs only ``GET`` and ``SET`` on the
    namespace's own keys (the README's ACL user has them).

    Args:
        client: a sync redis-py (or valkey-py) client, single server, Sentinel or cluster.
        prefix: the namespace's key prefix.

    Returns:
        The token, the same for every client and process reaching these keys.
    """
    key = Keys(prefix).identity
    found = None
    while found is None:  # None: deleted between the two calls (a FLUSHDB), so set it again
        client.set(key, secrets.token_hex(16), nx=True)
        found = client.get(key)
    return found.decode() if isinstance(found, bytes) else str(found)
