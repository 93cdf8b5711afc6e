"""The jobs.py API of ``import jobs_core as jobs``: code written for jobs.py runs unchanged."""

from __future__ import annotations

import re
import time

import pytest

import jobs_core as jobs


def text(v):
    return v.decode() if isinstance(v, bytes) else v


@pytest.fixture
def conn(backend, prefix, monkeypatch):
    c = backend.client()
    monkeypatch.setattr(jobs, "CONN", c)
    monkeypatch.setattr(jobs, "GLOBAL_PREFIX", prefix)
    yield c
    c.close()


def test_context_manager_and_identifier(conn, prefix):
    with jobs.ResourceManager([], ["out"], 30, suffix="daily") as job:
        assert job.is_running
        assert re.fullmatch(r".*test_compat\.py:test_context_manager_and_identifier\.\d+\.daily", job.identifier)
    assert text(conn.get(prefix + "out")) == job.identifier
    assert not job.is_running


def test_decorator_passes_the_job_first(conn, prefix):
    @jobs.resource_manager([], [], 30, wait=1)
    def daily(job, day):
        job.add_outputs(jobs.NG.reporting.events[day])
        job.start()
        return job.identifier

    ident = daily("2026-11-27")
    assert ident.split(":")[-1].startswith("daily.")
    assert text(conn.get(prefix + "reporting.events.2026-11-27")) == ident


def test_decorator_stops_failed_on_exception(conn, prefix):
    @jobs.resource_manager([], ["x"], 30)
    def broken(job):
        job.start()
        raise KeyError("nope")

    with pytest.raises(KeyError):
        broken()
    assert not conn.exists(prefix + "x", prefix + "olock:x")


def test_resource_unavailable_args_is_reason_dict(conn):
    holder = jobs.ResourceManager([], ["b"], 30)
    holder.start()
    with pytest.raises(jobs.ResourceUnavailable) as e:
        jobs.ResourceManager(["a"], ["b"], 30).start()
    assert e.value.args[0] == {"input_missing": ["a"], "output_locked": ["b"]}
    assert jobs.ResourceManager(["a"], ["b"], 30).can_run() == {
        "ok": False, "err": {"input_missing": ["a"], "output_locked": ["b"]}}
    holder.stop()
    assert jobs.ResourceManager([], ["b"], 30).can_run() == {"ok": True}


def test_settings_are_read_at_call_time(backend, prefix, monkeypatch):
    c = backend.client()
    monkeypatch.setattr(jobs, "CONN", None)
    job = jobs.ResourceManager([], ["x"], 30)
    with pytest.raises(RuntimeError, match="connection"):
        job.start()
    monkeypatch.setattr(jobs, "CONN", c)
    monkeypatch.setattr(jobs, "GLOBAL_PREFIX", prefix)
    monkeypatch.setattr(jobs, "OUTPUT_DURATION", 60)
    monkeypatch.setattr(jobs, "GRAPH_HISTORY", False)
    job = jobs.ResourceManager([], ["x"], 30)
    job.start()
    job.stop()
    assert 0 < c.pttl(prefix + "x") <= 60_000
    assert not c.exists(prefix + "jobs:graph:output")


def test_explicit_conn_and_start_stop_cycles(backend, prefix, monkeypatch):
    c = backend.client()
    monkeypatch.setattr(jobs, "CONN", None)
    monkeypatch.setattr(jobs, "GLOBAL_PREFIX", prefix)
    job = jobs.ResourceManager([], ["x"], 30, conn=c)
    assert job.start() is job
    assert job.start() is None  # already running
    job.stop()
    job.start()  # stop then start again, as jobs.py allows
    job.stop(failed=True)
    assert text(c.get(prefix + "x")) == job.identifier


def test_add_names_after_start_is_refused(conn):
    job = jobs.ResourceManager([], ["x"], 30)
    job.start()
    with pytest.raises(RuntimeError):
        job.add_inputs("y")
    with pytest.raises(RuntimeError):
        job.add_outputs("y")
    job.stop()


def test_refresh_rate_limit_and_lost_locks(conn):
    job = jobs.ResourceManager([], ["x"], 30)
    job.start()
    assert job.refresh() is None  # at most once a second, as in jobs.py
    job.last_refreshed -= 2
    assert job.refresh() == {"ok": True}
    jobs.Coordinator(conn, jobs.GLOBAL_PREFIX).unlock(outputs=["x"])
    job.last_refreshed -= 2
    assert job.refresh() == {"ok": False, "err": {"output_lock_lost": ["x"]}}
    job.last_refreshed -= 2
    with pytest.raises(jobs.ResourceUnavailable):
        job.refresh(lost_lock_fail=True)
    assert not job.is_running


def test_get_jobs_get_job_io_and_edges(conn):
    with jobs.ResourceManager([], ["raw.2026-11-27"], 30):
        pass
    job = jobs.ResourceManager(["raw.2026-11-27"], ["clean.2026-11-27"], 30)
    job.start()
    (running,) = jobs.get_jobs(conn)
    assert running["id"] == job.identifier
    assert running["inputs"] == ["raw.2026-11-27"] and running["outputs"] == ["clean.2026-11-27"]
    assert running["exptime"] > time.time()
    assert jobs.get_job_io(job.identifier, conn) == (["raw.2026-11-27"], ["clean.2026-11-27"])
    job.stop()
    ins, outs = jobs.edges(conn)
    folded = jobs.names.fold(job._identifier)
    assert ins == [f"raw.* -> {folded}"]
    assert outs == [f"{folded} -> clean.*", f"{folded} -> raw.*"]
    assert jobs.edges(conn, before="2000-01-01") == [[], []]


def test_output_duration_validation():
    with pytest.raises(TypeError):
        jobs.ResourceManager([], ["x"], 30, output_duration="60")
    with pytest.raises(ValueError):
        jobs.ResourceManager([], ["x"], 30, output_duration=0)


def test_ng_names():
    assert str(jobs.NG.a.b[1]) == "a.b.1"
    assert jobs.NG.reporting("x") == "reporting.x"
    assert isinstance(jobs.NG.a, jobs.TYPE_NG)


def test_auto_refresh_keeps_lock(conn, prefix):
    job = jobs.ResourceManager([], ["x"], 0.6)
    job.start(auto_refresh=True)
    time.sleep(1.5)
    assert text(conn.get(prefix + "olock:x")) == job.identifier
    job.stop()
    assert text(conn.get(prefix + "x")) == job.identifier
