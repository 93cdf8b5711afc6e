"""Bounded requests (issue 13, item 22): at most ``MAX_NAMES`` names per job and per repair.

A script holds the whole server while it runs, and start, stop, refresh, unlock
and create touch a few keys per name: a job with 80,000 names stalled Redis for
half a second. Every entry point (the explicit API, asyncio, the jobs.py API,
the command) refuses more names than the documented limit with a clear error
before anything reaches Redis; a job at the limit keeps every script short;
and the reads behind status, show and why-blocked go in bounded batches.
``written(names)``, a plain read that runs no script, takes any number.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import jobs_core
from jobs_core import MAX_NAMES, AsyncCoordinator, Coordinator, InvalidArgument
from jobs_core.protocol import READ_BATCH

from .conftest import Backend
from .servers import RedisServer
from .test_cli import clean_env

OVER = [f"n.{i}" for i in range(MAX_NAMES + 1)]
INS = [f"i.{i}" for i in range(MAX_NAMES // 2 + 1)]
OUTS = [f"o.{i}" for i in range(MAX_NAMES // 2)]  # with INS: one name too many together


def commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def refused(client: redis.Redis, call: Callable[[], Any]) -> InvalidArgument:
    """``call`` raises InvalidArgument naming the limit, and sends nothing to Redis."""
    before = commands(client)
    with pytest.raises(InvalidArgument) as raised:
        result = call()
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    assert commands(client) == before + 1, "commands reached Redis"  # + 1: the INFO above
    assert f"at most {MAX_NAMES}" in str(raised.value) and "split" in str(raised.value)
    return raised.value


def test_the_limit_is_documented() -> None:
    assert MAX_NAMES == 1000
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "1,000 names" in readme


def test_too_many_names_are_refused_before_redis(redis7: Backend, prefix: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    client = redis7.client()
    c = Coordinator(client, prefix)
    ac = AsyncCoordinator(redis7.async_client(), prefix)
    monkeypatch.setattr(jobs_core, "CONN", client)
    monkeypatch.setattr(jobs_core, "GLOBAL_PREFIX", prefix)
    cases: dict[str, Callable[[], Any]] = {
        "job outputs": lambda: c.job([], OVER),
        "job inputs": lambda: c.job(OVER, []),
        "job inputs and outputs together": lambda: c.job(INS, OUTS),
        "a generator of names without end": lambda: c.job([], (f"g.{i}" for i in itertools.count())),
        "repeated names count once": lambda: c.job(OVER + OVER, []),
        "why_blocked": lambda: c.why_blocked(INS, OUTS),
        "wait_ready": lambda: c.wait_ready(INS, OUTS, timeout=1),
        "unlock": lambda: c.unlock(INS, OUTS),
        "unlock outputs": lambda: c.unlock(outputs=OVER),
        "create_outputs": lambda: c.create_outputs(OVER),
        "async job": lambda: ac.job(INS, OUTS),
        "async unlock": lambda: ac.unlock(INS, OUTS),
        "async create_outputs": lambda: ac.create_outputs(OVER),
        "async why_blocked": lambda: ac.why_blocked(INS, OUTS),
        "jobs.py ResourceManager": lambda: jobs_core.ResourceManager(OVER, [], 30),
        "jobs.py start": lambda: jobs_core.ResourceManager(INS, OUTS, 30).start(),
        "jobs.py can_run": lambda: jobs_core.ResourceManager(INS, OUTS, 30).can_run(),
    }
    for where, call in cases.items():
        try:
            refused(client, call)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from exc
    assert "1001" in str(refused(client, lambda: c.job(INS, OUTS)))  # says how many it got
    asyncio.run(ac.aclose())
    client.close()


def test_written_is_a_read_without_a_limit(redis7: Backend, prefix: str) -> None:
    client = redis7.client()
    c = Coordinator(client, prefix)
    c.create_outputs(OVER[:3], job_id="seed")
    assert c.written(OVER).keys() == set(OVER[:3])
    client.close()


def test_the_command_refuses_too_many_names(redis7: Backend, prefix: str) -> None:
    client = redis7.client()
    over = [a for n in OVER for a in ("-o", n)]
    for argv in (["start", "j", "--duration", "5", *over], ["why-blocked", *over], ["unlock", "--yes", *over],
                 ["create", "--yes", *OVER]):
        before = commands(client)
        done = subprocess.run([sys.executable, "-m", "jobs_core", *argv], env=clean_env(redis7.url, prefix),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and f"at most {MAX_NAMES}" in done.stderr, (argv[0], done.stderr)
        assert commands(client) == before + 1, argv[0]
    client.close()


@pytest.fixture
def slow_log() -> Iterator[redis.Redis]:
    """A server of its own that logs every command slower than 100 ms (a tenth of the 80,000-name stall)."""
    server = RedisServer("--slowlog-log-slower-than", "100000").start()
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()
    server.cleanup()


def test_a_job_at_the_limit_holds_the_server_briefly(slow_log: redis.Redis) -> None:
    c = Coordinator(slow_log, "big:")
    ins = [f"in.{i}" for i in range(MAX_NAMES // 2)]
    outs = [f"out.{i}" for i in range(MAX_NAMES - len(ins))]
    c.create_outputs(ins, job_id="seed")
    job = c.job(ins, outs, duration=30, heartbeat=False, job_id="big").start()
    job.refresh()
    assert c.why_blocked(ins, []).can_start  # readers share
    assert len(c.running_jobs()[0].outputs) == len(outs)
    shown = [c.output_info(n) for n in ins[:5] + outs[:5]]
    assert c.unlock(ins[:5], outs[:5], expected=shown) == 10
    c.create_outputs(outs, job_id="repair", expected=[c.output_info(n) for n in outs])
    job.stop(failed=True)
    slow = slow_log.slowlog_get(10)
    assert slow == [], [(entry["duration"], entry["command"][:60]) for entry in slow]


def test_a_limit_with_many_holders_costs_a_start_little(slow_log: redis.Redis) -> None:
    """Starts count a limit's slots (ZCOUNT) and list at most 32 of its holders, however many hold it."""
    c = Coordinator(slow_log, "lim:")
    holders = 300_000
    c.set_limit("big", holders + 1)
    expiry = c.server_time() + 600
    pipe = slow_log.pipeline(transaction=False)
    for i in range(0, holders, 10_000):  # live slots, as if held by 300,000 jobs
        pipe.zadd(c.keys.limit("big"), {f"holder.{j}#1": expiry for j in range(i, i + 10_000)})
    pipe.execute()
    slow_log.slowlog_reset()
    with c.job([], ["x"], duration=30, limits={"big": 1}):  # the last free slot
        report = c.why_blocked([], [], limits={"big": 1})
        assert not report.can_start
        assert {b.reason for b in report.blockers} == {"limit_full"} and 1 <= len(report.blockers) <= 32
        with pytest.raises(jobs_core.ResourceUnavailable) as full:
            c.job([], [], duration=30, limits={"big": 1}, wait=0.2).start()
        assert 1 <= len(full.value.blockers) <= 32
    slow = slow_log.slowlog_get(10)
    assert slow == [], [(entry["duration"], entry["command"][:60]) for entry in slow]


def test_status_reads_in_bounded_batches(real_backend: Backend, prefix: str) -> None:
    client = real_backend.client()
    c = Coordinator(client, prefix)
    count = READ_BATCH + READ_BATCH // 2  # two keys per job: more than two batches
    jobs = [c.job([], [f"b.{i}"], duration=30, heartbeat=False, job_id=f"batch-{i}").start() for i in range(count)]
    running = {j.job_id: j for j in c.running_jobs()}
    assert len(running) == count
    assert all(running[j.id].token == j.token and running[j.id].problems == () for j in jobs)
    for j in jobs:
        j.stop(failed=True)
    client.close()
