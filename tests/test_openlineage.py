"""OpenLineage run events (jobs_core.openlineage), written by the client's file transport and read back."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import jobs_core
from jobs_core import LockLost
from jobs_core.openlineage import OpenLineageObserver, configured, redis_namespace

pytest.importorskip("openlineage.client")


def lineage_of(c: Any) -> OpenLineageObserver:
    (observer,) = [o for o in c.observers if isinstance(o, OpenLineageObserver)]
    return observer


class Events:
    """The events a file transport wrote, one JSON document a line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, *coordinators: Any) -> list[dict[str, Any]]:
        for c in coordinators:
            assert lineage_of(c).flush(10)
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def of(self, job_id: str, *coordinators: Any) -> list[dict[str, Any]]:
        return [e for e in self.read(*coordinators) if e["run"]["facets"]["jobs_core"]["jobId"] == job_id]


@pytest.fixture
def no_lineage_config(monkeypatch, tmp_path):
    """No OpenLineage configuration from this machine's environment, home or working directory."""
    for key in list(os.environ):
        if key.startswith(("OPENLINEAGE", "JOBS_OPENLINEAGE")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def events(no_lineage_config, monkeypatch, tmp_path) -> Events:
    """The client configured by environment variables: a file transport appending to ol.jsonl."""
    path = tmp_path / "ol.jsonl"
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(path))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    return Events(path)


def names(datasets: list[dict[str, Any]]) -> list[str]:
    return [d["name"] for d in datasets]


def test_a_job_that_writes_and_one_that_fails(real_backend, prefix, events):
    c = jobs_core.Coordinator(real_backend.client(), prefix)
    c.create_outputs(["raw.2026-11-29"])
    with c.job(["raw.2026-11-29"], ["report.2026-11-29", "summary"], duration=30, lineage_name="build_report") as ok:
        pass
    with pytest.raises(ValueError), c.job(["raw.2026-11-29"], ["broken"], duration=30, job_id="etl.broken.7") as bad:
        raise ValueError("bad data")
    ok_events, bad_events = events.of(ok.id, c), events.of(bad.id, c)
    assert [e["eventType"] for e in ok_events] == ["START", "COMPLETE"]
    assert [e["eventType"] for e in bad_events] == ["START", "FAIL"]
    where = redis_namespace(c.client)
    if real_backend.cluster is None:
        kwargs = c.client.connection_pool.connection_kwargs
        assert where == f"redis://{kwargs['host']}:{kwargs['port']}/0"
    else:
        assert where.startswith("redis+cluster://127.0.0.1:")
    for event in ok_events:
        assert event["job"] == {"namespace": "jobs_core", "name": "build_report", "facets": event["job"]["facets"]}
        assert event["job"]["facets"]["jobType"]["integration"] == "JOBS_CORE"
        assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [(where, prefix + "raw.2026-11-29")]
        assert [(d["namespace"], d["name"]) for d in event["outputs"]] == [
            (where, prefix + "report.2026-11-29"), (where, prefix + "summary")]
        facet = event["run"]["facets"]["jobs_core"]
        assert (facet["jobId"], facet["token"], facet["host"], facet["pid"], facet["prefix"]) == (
            ok.id, ok.token, c.host, os.getpid(), prefix)
        assert facet["_producer"] == event["producer"] == "https://pypi.org/project/jobs-core/"
    assert ok_events[0]["run"]["runId"] == ok_events[1]["run"]["runId"] != bad_events[0]["run"]["runId"]
    assert ok_events[0]["eventTime"] <= ok_events[1]["eventTime"]
    assert bad_events[0]["job"]["name"] == "etl.broken.*"  # no lineage name: the id folded, as lineage edges
    assert names(bad_events[1]["outputs"]) == [prefix + "broken"]


def test_a_job_that_loses_its_lock_aborts_once(redis7, prefix, events):
    """stop_job from outside, then the job's refresh finds the locks gone: ABORT, with what was lost;
    its own stop afterwards sends nothing more. A loss found by the stop itself is an ABORT too."""
    c = jobs_core.Coordinator(redis7.client(), prefix)
    outside = jobs_core.Coordinator(redis7.client(), prefix)
    job = c.job([], ["out"], duration=30, heartbeat=False).start()
    outside.stop_job(job.id, failed=True)
    with pytest.raises(LockLost):
        job.refresh()
    job.stop(failed=True)
    quiet = c.job([], ["out2"], duration=30, heartbeat=False).start()
    outside.unlock(outputs=["out2"])
    with pytest.raises(LockLost):
        quiet.stop()
    first, second = events.of(job.id, c, outside), events.of(quiet.id, c, outside)
    assert [e["eventType"] for e in first] == ["START", "ABORT"]
    assert first[1]["run"]["facets"]["jobs_core"]["lost"] == {"output_lock_lost": ["out"]}
    assert first[0]["run"]["runId"] == first[1]["run"]["runId"]
    assert [e["eventType"] for e in second] == ["START", "ABORT"]


def test_a_start_resumed_elsewhere_ends_the_same_run(redis7, prefix, events):
    """The run id comes from the job id and token: a start handed over (detach, then resume in another
    process, as a deferred Airflow task does) completes the run it started."""
    first = jobs_core.Coordinator(redis7.client(), prefix)
    second = jobs_core.Coordinator(redis7.client(), prefix)
    job = first.job([], ["handed"], duration=30, job_id="handed.over")
    job.start()
    token = job.detach()
    later = second.job([], ["handed"], duration=30, job_id="handed.over").resume(token)
    later.stop()
    seen = events.of("handed.over", first, second)
    assert [e["eventType"] for e in seen] == ["START", "COMPLETE"]
    assert seen[0]["run"]["runId"] == seen[1]["run"]["runId"]


def test_async_jobs_and_the_namespaces_from_the_environment(redis7, prefix, events, monkeypatch):
    monkeypatch.setenv("JOBS_OPENLINEAGE_NAMESPACE", "redis://reporting-redis:6379/0")
    monkeypatch.setenv("JOBS_OPENLINEAGE_JOB_NAMESPACE", "nightly")

    async def main() -> Any:
        c = jobs_core.AsyncCoordinator(redis7.async_client(), prefix)
        async with c.job([], ["a"], duration=30, lineage_name="async_job") as job:
            pass
        with pytest.raises(RuntimeError):
            async with c.job([], ["b"], duration=30, lineage_name="async_fail"):
                raise RuntimeError
        await c.aclose()
        return c, job

    c, job = asyncio.run(main())
    seen = events.read(c)
    assert [(e["job"]["name"], e["eventType"]) for e in seen] == [
        ("async_job", "START"), ("async_job", "COMPLETE"), ("async_fail", "START"), ("async_fail", "FAIL")]
    assert {e["job"]["namespace"] for e in seen} == {"nightly"}
    assert seen[0]["outputs"] == [{"namespace": "redis://reporting-redis:6379/0", "name": prefix + "a",
                                   "facets": {}, "outputFacets": {}}]


def test_present_only_when_the_client_is_configured(redis7, prefix, no_lineage_config, monkeypatch, tmp_path):
    def has_lineage() -> bool:
        return any(isinstance(o, OpenLineageObserver) for o in jobs_core.Coordinator(redis7.client(), prefix).observers)

    assert not configured() and not has_lineage()
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "console")
    assert configured() and has_lineage()
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    assert not configured() and not has_lineage()
    monkeypatch.delenv("OPENLINEAGE_DISABLED")
    monkeypatch.delenv("OPENLINEAGE__TRANSPORT__TYPE")
    # an openlineage.yml in the working directory, as the client looks for it
    path = tmp_path / "from-yml.jsonl"
    (tmp_path / "openlineage.yml").write_text(f"transport:\n  type: file\n  log_file_path: {path}\n  append: true\n")
    c = jobs_core.Coordinator(redis7.client(), prefix)
    with c.job([], ["y"], duration=30):
        pass
    assert [e["eventType"] for e in Events(path).read(c)] == ["START", "COMPLETE"]
    # a file without a transport is not a configuration (the client would print events on the console)
    (tmp_path / "openlineage.yml").write_text("filters: []\n")
    assert configured() and not has_lineage()


def test_a_transport_that_fails_never_fails_or_slows_the_job(redis7, prefix, no_lineage_config, monkeypatch,
                                                             tmp_path, caplog):
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(tmp_path / "no" / "such" / "dir" / "ol.jsonl"))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    c = jobs_core.Coordinator(redis7.client(), prefix)
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="jobs_core"):
        for _ in range(20):
            with c.job([], ["z"], duration=30):
                pass
        took = time.monotonic() - began
        assert lineage_of(c).flush(10)
    assert took < 1.0  # 20 cycles: the events are sent by the observer's thread, not the job's
    failures = [r for r in caplog.records if r.name == "jobs_core.openlineage" and "could not send" in r.getMessage()]
    assert len(failures) == 40
    assert redis.Redis.from_url(redis7.url).get(prefix + "z") is not None


def test_the_dataset_namespace_never_holds_credentials():
    assert redis_namespace(redis.Redis.from_url("redis://user:s3cret@db.example:6380/4")) == "redis://db.example:6380/4"
    assert redis_namespace(redis.Redis.from_url("rediss://:s3cret@db.example/2")) == "redis://db.example:6379/2"
    assert redis_namespace(redis.Redis.from_url("unix:///run/redis.sock?db=3&password=s3cret")) == \
        "unix:///run/redis.sock?db=3"
    sentinel = jobs_core.connect.client_from_url("redis+sentinel://:s3cret@s1:26379,s2:26379/mymaster/1")
    assert redis_namespace(sentinel) == "redis+sentinel://mymaster/1"


def test_a_start_from_a_shell_ends_its_run_when_stopped_with_its_token(redis7, prefix, events, tmp_path):
    """jobs-core start emits START; jobs-core stop --token (the job itself) emits COMPLETE for the same run;
    a stop without the token is a repair and ends nothing (the job's own process would say ABORT)."""
    from .test_cli import clean_env

    env = {**clean_env(redis7.url, prefix), **{k: v for k, v in os.environ.items() if k.startswith("OPENLINEAGE")}}

    def run(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "jobs_core", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    started = dict(line.split("=", 1) for line in run("start", "load.2026-11-29", "-o", "loaded",
                                                      "--duration", "30").split())
    run("stop", "load.2026-11-29", "--token", started["token"])
    run("start", "repair.me.1", "-o", "other", "--duration", "30")
    run("stop", "repair.me.1", "--failed")
    seen = events.read()
    shell = [e for e in seen if e["run"]["facets"]["jobs_core"]["jobId"] == "load.2026-11-29"]
    assert [e["eventType"] for e in shell] == ["START", "COMPLETE"]
    assert shell[0]["run"]["runId"] == shell[1]["run"]["runId"]
    assert {e["job"]["name"] for e in shell} == {"load.*"}
    assert names(shell[1]["outputs"]) == [prefix + "loaded"]
    assert shell[1]["run"]["facets"]["jobs_core"]["token"] == int(started["token"])
    assert [e["eventType"] for e in seen if e["job"]["name"] == "repair.me.*"] == ["START"]
