"""jobspy 0.31 (``import jobs``) and jobs_core on one Redis and one prefix (DESIGN.md §3).

Every test runs three ways: an empty prefix on a dedicated redis-server (the
session server is shared by tests that isolate themselves by random prefixes),
and a random prefix on the session Redis 7 and Valkey 9 servers. jobspy talks
through a redis-py client with ``decode_responses=False``, as it requires;
jobs_core through a client of its own, as another process would.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
import redis

import jobs_core
from jobs_core import Coordinator, ResourceUnavailable

from .conftest import _backend
from .servers import RedisServer

# jobspy replaces the SIGTERM handler when imported; keep the test process's own.
_SIGTERM = signal.getsignal(signal.SIGTERM)
import jobs  # noqa: E402  (jobspy 0.31)

signal.signal(signal.SIGTERM, _SIGTERM)

LEASE = 5  # jobspy needs whole seconds (it uses SETEX/EXPIRE)


@dataclass
class Namespace:
    url: str
    prefix: str
    conn: redis.Redis  # jobspy's client (bytes replies)
    own: redis.Redis  # jobs_core's client
    coordinator: Coordinator

    def key(self, name: str) -> bytes:
        return (self.prefix + name).encode()

    def legacy(self, inputs: list[str] = (), outputs: list[str] = (), **kw: Any) -> jobs.ResourceManager:
        """A jobspy job (not started)."""
        kw.setdefault("duration", LEASE)
        return jobs.ResourceManager(list(inputs), list(outputs), **kw)

    def job(self, inputs: list[str] = (), outputs: list[str] = (), **kw: Any) -> jobs_core.Job:
        """A jobs_core job (not started)."""
        kw.setdefault("duration", LEASE)
        kw.setdefault("heartbeat", False)
        return self.coordinator.job(inputs, outputs, **kw)


@pytest.fixture(scope="module")
def bare_server():
    """A redis-server of this module alone, so the empty prefix is safe to use."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(params=["bare-redis7", "prefix-redis7", "prefix-valkey9"])
def ns(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Namespace:
    if request.param == "bare-redis7":
        url, prefix = request.getfixturevalue("bare_server").url, ""
        redis.Redis.from_url(url).flushdb()
    else:
        url = _backend(request.param.split("-")[1], request).url
        prefix = request.getfixturevalue("prefix")
    conn = redis.Redis.from_url(url)
    own = redis.Redis.from_url(url)
    monkeypatch.setattr(jobs, "CONN", conn)
    monkeypatch.setattr(jobs, "GLOBAL_PREFIX", prefix)
    monkeypatch.setattr(jobs, "DEFAULT_LOGGER", logging.getLogger("jobspy"))
    space = Namespace(url, prefix, conn, own, Coordinator(own, prefix, poll=0.05))
    yield space
    for manager in list(jobs.LOCKED):
        manager.stop(failed=True)
    space.coordinator.stop_all(failed=True)
    conn.close()
    own.close()


def blocked(exc: pytest.ExceptionInfo) -> dict[str, list[str]]:
    return exc.value.args[0]


# -- writer / writer -------------------------------------------------------------------


def test_jobspy_writer_blocks_jobs_core_writer(ns: Namespace) -> None:
    legacy = ns.legacy([], ["ww.out"]).start()
    job = ns.job([], ["ww.out"])
    with pytest.raises(ResourceUnavailable) as exc:
        job.start()
    assert blocked(exc) == {"output_locked": ["ww.out"]}
    assert exc.value.blockers[0].holder.job_id == legacy.identifier
    assert not job.is_running
    legacy.stop()
    assert ns.conn.get(ns.key("ww.out")) == legacy.identifier.encode()
    with job:
        pass
    assert ns.conn.get(ns.key("ww.out")) == job.id.encode()


def test_jobs_core_writer_blocks_jobspy_writer(ns: Namespace) -> None:
    job = ns.job([], ["ww.out"]).start()
    legacy = ns.legacy([], ["ww.out"])
    with pytest.raises(jobs.ResourceUnavailable) as exc:
        legacy.start()
    assert blocked(exc) == {"output_locked": ["ww.out"]}
    assert not legacy.is_running
    assert ns.conn.get(ns.key("olock:ww.out")) == job.id.encode()
    job.stop()
    assert ns.conn.get(ns.key("ww.out")) == job.id.encode()
    with legacy:
        pass
    assert ns.conn.get(ns.key("ww.out")) == legacy.identifier.encode()


# -- reader / writer -------------------------------------------------------------------


def test_jobs_core_reader_blocks_jobspy_writer(ns: Namespace) -> None:
    ns.coordinator.create_outputs(["rw.data"])
    reader = ns.job(["rw.data"], []).start()
    with pytest.raises(jobs.ResourceUnavailable) as exc:
        ns.legacy([], ["rw.data"]).start()
    assert blocked(exc) == {"output_used": ["rw.data"]}
    # a jobspy reader shares the input with the jobs_core reader
    with ns.legacy(["rw.data"], []):
        assert ns.conn.zcard(ns.key("ilock:rw.data")) == 2
    reader.stop()
    with ns.legacy([], ["rw.data"]) as writer:
        pass
    assert ns.conn.get(ns.key("rw.data")) == writer.identifier.encode()


def test_expired_jobs_core_read_lease_does_not_block_jobspy_writer(ns: Namespace) -> None:
    ns.coordinator.create_outputs(["rw.data"])
    crashed = ns.job(["rw.data"], [], duration=0.3).start()  # never refreshed nor stopped
    # jobspy scores read leases in epoch seconds; so does jobs_core
    assert ns.conn.zscore(ns.key("ilock:rw.data"), crashed.id) == pytest.approx(time.time() + 0.3, abs=0.5)
    with ns.job(["rw.data"], []):  # a longer reader keeps the ilock key alive past the crashed lease
        time.sleep(0.4)
    assert ns.conn.zrange(ns.key("ilock:rw.data"), 0, -1) == [crashed.id.encode()]
    with ns.legacy([], ["rw.data"]) as writer:  # jobspy drops the expired lease by its score
        pass
    assert ns.conn.get(ns.key("rw.data")) == writer.identifier.encode()


def test_jobspy_reader_blocks_jobs_core_writer(ns: Namespace) -> None:
    ns.coordinator.create_outputs(["rw.data"])
    legacy = ns.legacy(["rw.data"], []).start()
    with pytest.raises(ResourceUnavailable) as exc:
        ns.job([], ["rw.data"]).start()
    assert blocked(exc) == {"output_used": ["rw.data"]}
    holder = exc.value.blockers[0].holder
    assert holder.job_id == legacy.identifier
    assert holder.token is None  # a jobspy job keeps no jobs_core facts
    assert time.time() < holder.expires <= time.time() + LEASE + 1
    with ns.job(["rw.data"], []):  # readers share
        pass
    legacy.stop()
    with ns.job([], ["rw.data"]) as writer:
        pass
    assert ns.conn.get(ns.key("rw.data")) == writer.id.encode()


# -- writer / reader -------------------------------------------------------------------


def test_input_being_written_by_jobspy_is_missing_for_jobs_core(ns: Namespace) -> None:
    ns.coordinator.create_outputs(["wr.data"])
    legacy = ns.legacy([], ["wr.data"]).start()
    with pytest.raises(ResourceUnavailable) as exc:
        ns.job(["wr.data"], ["wr.report"]).start()
    assert blocked(exc) == {"input_missing": ["wr.data"]}
    assert exc.value.blockers[0].holder.job_id == legacy.identifier
    legacy.stop()
    with ns.job(["wr.data"], ["wr.report"]):
        pass


def test_input_being_written_by_jobs_core_is_missing_for_jobspy(ns: Namespace) -> None:
    ns.coordinator.create_outputs(["wr.data"])
    job = ns.job([], ["wr.data"]).start()
    with pytest.raises(jobs.ResourceUnavailable) as exc:
        ns.legacy(["wr.data"], ["wr.report"]).start()
    assert blocked(exc) == {"input_missing": ["wr.data"]}
    job.stop()
    with ns.legacy(["wr.data"], ["wr.report"]):
        pass
    # and an input nobody wrote is missing for both
    with pytest.raises(jobs.ResourceUnavailable) as exc:
        ns.legacy(["wr.never"], []).start()
    assert blocked(exc) == {"input_missing": ["wr.never"]}
    with pytest.raises(ResourceUnavailable) as exc:
        ns.job(["wr.never"], []).start()
    assert blocked(exc) == {"input_missing": ["wr.never"]}


# -- each other's outputs ----------------------------------------------------------------


def test_outputs_flow_between_jobspy_and_jobs_core(ns: Namespace) -> None:
    with ns.legacy([], ["flow.raw"]) as legacy:
        pass
    info = ns.coordinator.output_info("flow.raw")
    assert info.written and info.writer == legacy.identifier
    assert info.token is None and info.write_lock is None

    with ns.job(["flow.raw"], ["flow.clean"]) as job:
        info = ns.coordinator.output_info("flow.raw")
        assert [r.job_id for r in info.readers] == [job.id]
        assert ns.coordinator.output_info("flow.clean").write_lock.job_id == job.id
    assert ns.conn.get(ns.key("flow.clean")) == job.id.encode()

    with ns.legacy(["flow.clean"], ["flow.report"]) as downstream:
        pass
    info = ns.coordinator.output_info("flow.report")
    assert info.writer == downstream.identifier

    # overwrite=False sees the other's output as existing, both ways
    with pytest.raises(ResourceUnavailable) as exc:
        ns.job([], ["flow.raw"], overwrite=False).start()
    assert blocked(exc) == {"output_exists": ["flow.raw"]}
    assert exc.value.blockers[0].holder.job_id == legacy.identifier
    with pytest.raises(jobs.ResourceUnavailable) as exc:
        ns.legacy([], ["flow.clean"], overwrite=False).start()
    assert blocked(exc) == {"output_exists": ["flow.clean"]}


# -- listings --------------------------------------------------------------------------


def test_running_jobs_listed_by_each_other(ns: Namespace) -> None:
    ns.coordinator.create_outputs(["ls.in1", "ls.in2", "ls.legacy.in"])
    job = ns.job(["ls.in1", "ls.in2"], ["ls.out1", "ls.out2"]).start()
    legacy = ns.legacy(["ls.legacy.in"], ["ls.legacy.out"]).start()

    listed = {j["id"]: j for j in jobs.get_jobs(ns.conn)}
    assert set(listed) == {job.id, legacy.identifier}
    mine = listed[job.id]
    assert mine["inputs"] == ["ls.in1", "ls.in2"]
    assert mine["outputs"] == ["ls.out1", "ls.out2"]
    assert time.time() < mine["exptime"] <= time.time() + LEASE + 1

    running = {r.job_id: r for r in ns.coordinator.running_jobs()}
    assert set(running) == {job.id, legacy.identifier}
    theirs = running[legacy.identifier]
    assert theirs.inputs == ("ls.legacy.in",) and theirs.outputs == ("ls.legacy.out",)
    assert theirs.token is None and theirs.host is None
    assert running[job.id].token == job.token

    legacy.stop()
    job.stop()
    assert jobs.get_jobs(ns.conn) == []
    assert ns.coordinator.running_jobs() == []


# -- the compatibility API ---------------------------------------------------------------


@pytest.fixture
def jobs2(ns: Namespace, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``import jobs_core as jobs2``, configured like jobspy."""
    import jobs_core as jobs2
    monkeypatch.setattr(jobs2, "CONN", ns.conn)
    monkeypatch.setattr(jobs2, "GLOBAL_PREFIX", ns.prefix)
    yield jobs2
    for manager in list(jobs2.compat.LOCKED):
        manager.stop(failed=True)


def test_compat_module_reports_like_jobspy(ns: Namespace, jobs2: Any) -> None:
    name = str(jobs2.NG.compat.out[1])
    assert name == str(jobs.NG.compat.out[1]) == "compat.out.1"
    for holder_mod in (jobs, jobs2):
        holder = holder_mod.ResourceManager([], [holder_mod.NG.compat.out[1]], LEASE)
        holder.start()
        for contender_mod in (jobs, jobs2):
            contender = contender_mod.ResourceManager([], [name], LEASE)
            check = contender.can_run()
            assert (check["ok"], check["err"]) == (False, {"output_locked": [name]})
            with pytest.raises(contender_mod.ResourceUnavailable) as exc:
                contender.start(i_really_know_what_i_am_doing_dont_warn_me=True)
            assert exc.value.args[0] == {"output_locked": [name]}
            assert not contender.is_running
        holder.stop()
        assert ns.conn.get(ns.key(name)) == holder.identifier.encode()
    assert jobs2.ResourceManager([], [name], LEASE).can_run() == {"ok": True}


def test_compat_decorator_listings_and_edges(ns: Namespace, jobs2: Any) -> None:
    ns.coordinator.create_outputs(["deco.in"])
    seen: list[Any] = []

    @jobs2.resource_manager(["deco.in"], ["deco.out"], duration=LEASE)
    def report(job: Any, x: int) -> int:
        job.start()
        seen.append(job.identifier)
        legacy = jobs.ResourceManager(["deco.in"], ["deco.legacy"], LEASE).start()
        try:
            # both modules list both jobs, the same way
            theirs = sorted((j["id"], j["inputs"], j["outputs"]) for j in jobs.get_jobs(ns.conn))
            ours = sorted((j["id"], j["inputs"], j["outputs"]) for j in jobs2.get_jobs(ns.conn))
            assert theirs == ours == sorted([(job.identifier, ["deco.in"], ["deco.out"]),
                                             (legacy.identifier, ["deco.in"], ["deco.legacy"])])
            assert jobs2.get_job_io(legacy.identifier, ns.conn) == (["deco.in"], ["deco.legacy"])
        finally:
            legacy.stop()
        return x * 2

    @jobs2.resource_manager([], ["deco.failed"], duration=LEASE)
    def broken(job: Any) -> None:
        job.start()
        raise RuntimeError("boom")

    assert report(21) == 42
    assert ns.conn.get(ns.key("deco.out")) == seen[0].encode()
    assert not ns.conn.exists(ns.key("olock:deco.out"))
    with pytest.raises(RuntimeError):
        broken()
    assert not ns.conn.exists(ns.key("deco.failed"), ns.key("olock:deco.failed"))

    ins, outs = jobs2.edges(ns.conn)
    folded = jobs2.EDGE_RE.sub("*", seen[0])
    assert f"deco.in -> {folded}" in ins and f"{folded} -> deco.out" in outs
    assert any(e.endswith(" -> deco.legacy") for e in outs)  # written by jobspy
    if ns.prefix == "":
        # jobspy reads lineage only without a prefix, and only from a str client
        text_client = redis.Redis.from_url(ns.url, decode_responses=True)
        try:
            assert jobs.edges(text_client) == [ins, outs]
        finally:
            text_client.close()


# -- waiting on a jobspy holder ------------------------------------------------------------


def test_waiting_job_starts_soon_after_jobspy_holder_stops(ns: Namespace) -> None:
    legacy = ns.legacy([], ["wait.out"]).start()
    stopped: list[float] = []

    def release() -> None:
        legacy.stop()
        stopped.append(time.monotonic())

    timer = threading.Timer(0.5, release)
    timer.start()
    try:
        job = ns.job([], ["wait.out"], wait=3).start()
        started = time.monotonic()
    finally:
        timer.join()
    assert job.blockers[0].reason == "output_locked"
    assert job.blockers[0].holder.job_id == legacy.identifier
    assert 0.45 <= job.waited < 1.5
    # jobspy publishes nothing: the fallback poll, capped at poll=0.05, noticed the
    # release at once (with the default cap of 2 s the backoff would be at 0.4 s by now)
    assert started - stopped[0] < 0.2
    job.stop()
    assert ns.conn.get(ns.key("wait.out")) == job.id.encode()
