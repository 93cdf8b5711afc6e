"""The jobs-core command, end to end: ``python -m jobs_core`` in a subprocess against a real redis-server.

Each test checks what the command prints, its exit code, and the state it
left in Redis. Jobs other than the command's own are set up in-process through
a Coordinator (or a jobspy 0.31 client in a subprocess). The ``mode`` cases run
the command with bytes replies and with ``?decode_responses=True`` in its URL,
while the set-up client uses the other mode.
"""

from __future__ import annotations

import json
import os
import pty
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

import jobs_core
from jobs_core import Coordinator, LockLost
from jobs_core.cli import COMMANDS, main

from .conftest import Backend, keyspace
from .servers import free_port
from .test_lineage import parse_mermaid, svg_labels


@dataclass
class Result:
    code: int
    out: str
    err: str


def clean_env(url: str | None, prefix: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    if url is not None:
        env["JOBS_REDIS_URL"] = url
    if prefix is not None:
        env["JOBS_PREFIX"] = prefix
    return env


class Cli:
    """Runs the command on one server and namespace; ``client``/``coord`` set up and inspect state."""

    def __init__(self, backend: Backend, prefix: str, decode: bool) -> None:
        self.url = backend.url + ("?decode_responses=True" if decode else "")
        self.prefix = prefix
        self.client = redis.Redis.from_url(backend.url, decode_responses=not decode)  # the other mode
        self.raw = redis.Redis.from_url(backend.url)
        self.coord = Coordinator(self.client, prefix)

    def run(self, *args: str, url: Any = True, prefix: Any = True, stdin: Any = subprocess.DEVNULL,
            timeout: float = 30) -> Result:
        env = clean_env(self.url if url is True else url, self.prefix if prefix is True else prefix)
        proc = subprocess.run([sys.executable, "-m", "jobs_core", *args], env=env, stdin=stdin,
                              capture_output=True, timeout=timeout)
        return Result(proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8"))

    def json(self, *args: str) -> Any:
        r = self.run(*args)
        assert r.code in (0, 1), r.err
        return json.loads(r.out)

    def get(self, name: str) -> str | None:
        value = self.raw.get(self.prefix + name)
        return None if value is None else value.decode()

    def snapshot(self) -> dict[str, Any]:
        return keyspace(self.raw, self.prefix)

    def job(self, inputs: list[str] = (), outputs: list[str] = (), **kw: Any) -> jobs_core.Job:
        kw.setdefault("duration", 30)
        kw.setdefault("heartbeat", False)
        return self.coord.job(list(inputs), list(outputs), **kw)

    def write(self, *names: str) -> None:
        """Make ``names`` written outputs, through a job."""
        with self.job([], list(names), job_id=f"setup.{secrets.token_hex(3)}"):
            pass

    def close(self) -> None:
        self.client.close()
        self.raw.close()


@pytest.fixture
def cli(redis7: Backend, prefix: str) -> Cli:
    c = Cli(redis7, prefix, decode=False)
    yield c
    c.close()


@pytest.fixture(params=["bytes", "decode"])
def mode_cli(request: pytest.FixtureRequest, redis7: Backend, prefix: str) -> Cli:
    c = Cli(redis7, prefix, decode=request.param == "decode")
    yield c
    c.close()


def assignments(out: str) -> dict[str, str]:
    """The ``key=value`` lines ``start`` prints, read as a shell would."""
    return dict(shlex.split(line)[0].split("=", 1) for line in out.splitlines())


# -- help, configuration, connection ---------------------------------------------------------------


def test_help_on_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    commands = list(COMMANDS)
    assert commands == ["status", "show", "why-blocked", "start", "refresh", "stop", "unlock", "create", "lineage",
                        "watch", "limit", "serve"]
    for argv in ([], *([c] for c in commands), ["limit", "set"], ["limit", "list"], ["limit", "remove"]):
        with pytest.raises(SystemExit) as done:
            main([*argv, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert "exit codes:" in text and "--url URL" in text and "--prefix PREFIX" in text, argv
    r = subprocess.run([sys.executable, "-m", "jobs_core", "lineage", "--help"], capture_output=True, text=True,
                       env=clean_env(None, None))
    assert r.returncode == 0 and r.stdout.startswith("usage: jobs-core lineage")


def test_console_script(cli: Cli) -> None:
    script = Path(sys.executable).with_name("jobs-core")
    assert script.exists(), "the jobs-core console script is not installed: run scripts/test (pip install -e .)"
    r = subprocess.run([str(script), "status", "--json"], capture_output=True, text=True,
                       env=clean_env(cli.url, cli.prefix))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["prefix"] == cli.prefix


def test_missing_bad_and_unreachable_urls(cli: Cli) -> None:
    r = cli.run("status", url=None)
    assert r.code == 2 and "no Redis URL" in r.err and "JOBS_REDIS_URL" in r.err
    r = cli.run("status", url="http://example.invalid/")
    assert r.code == 2 and "bad Redis URL" in r.err
    r = cli.run("status", url=f"redis://u:secret@127.0.0.1:{free_port()}/0")
    assert r.code == 4 and "cannot reach Redis at redis://u:***@127.0.0.1" in r.err
    assert "secret" not in r.err


def test_bad_arguments_change_nothing(cli: Cli) -> None:
    cli.write("in", "held")
    holder = cli.job(["in"], ["held"], job_id="holder").start()
    before = cli.snapshot()
    cases = [
        (["start", "j", "-o", "x"], "the following arguments are required: --duration"),
        (["start", "j", "-o", "x", "--duration", "-5"], "above 0"),
        (["start", "j", "-o", "x", "--duration", "soon"], "not a number of seconds"),
        (["start", "j", "-o", "jobs:token", "--duration", "5"], "collide with internal keys"),
        (["start", "j", "-i", "in", "-o", "a -> b", "--duration", "5"], "lineage edge separator"),
        (["start", "", "-o", "x", "--duration", "5"], "cannot be empty"),
        (["start", "j", "-o", "x", "--duration", "5", "--wait", "-1"], "0 or more"),
        (["start", "j", "-o", "x", "--duration", "1e12"], "at most 315360000"),
        (["why-blocked"], "--input NAME"),
        (["show", "ilock:in"], "collide with internal keys"),
        (["unlock", "--yes"], "give the names"),
        (["unlock", "-o", "held"], "stdin is not a terminal; pass --yes"),
        (["create", "held"], "stdin is not a terminal; pass --yes"),
        (["create", "olock:held", "--yes"], "collide with internal keys"),
        (["refresh", "holder", "--duration", "5", "--token", "0"], "give 1 or more"),
        (["stop"], "the following arguments are required: JOB_ID"),
        (["lineage", "--depth", "0"], "give 1 or more"),
        (["lineage", "--after", "yesterday"], "is not a timestamp"),
        (["lineage", "--upstream"], "need a NAME"),
        (["lineage", "in", "--format", "svg"], "invalid choice"),
        (["watch", "--interval", "0"], "above 0"),
        (["frobnicate"], "invalid choice"),
    ]
    for argv, message in cases:
        r = cli.run(*argv)
        assert r.code == 2, (argv, r)
        assert message in r.err, (argv, r.err)
        assert "Traceback" not in r.err
        assert r.out == "", (argv, r.out)
    assert cli.snapshot() == before
    holder.stop()


# -- status, show, why-blocked -------------------------------------------------------------------


def test_status_lists_running_and_waiting_jobs(mode_cli: Cli) -> None:
    cli = mode_cli
    cli.write("raw.events.2026-11-27")
    running = cli.job(["raw.events.2026-11-27"], ["clean.ünï \"q\""], job_id="transform").start()
    waiter = cli.job([], ["clean.ünï \"q\""], job_id="late", wait=20)
    started = threading.Event()
    thread = threading.Thread(target=lambda: (waiter.start(), started.set()))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not cli.coord.waiting_jobs() and time.monotonic() < deadline:
            time.sleep(0.01)
        doc = cli.json("status", "--json")
        text = cli.run("status")
    finally:
        running.stop()
        thread.join(10)
    assert started.is_set()
    waiter.stop()
    assert set(doc) == {"version", "prefix", "server_time", "running", "waiting", "limits"}
    assert doc["limits"] == []
    assert doc["version"] == 1 and doc["prefix"] == cli.prefix
    [job] = doc["running"]
    assert set(job) == {"job_id", "inputs", "outputs", "expires", "left", "token", "host", "pid", "started",
                        "client", "limits", "lineage", "problems"}
    assert job["problems"] == [] and job["limits"] == {} and job["lineage"] == "transform"
    assert job["job_id"] == "transform" and job["token"] == running.token and job["client"] == "jobs_core"
    assert job["inputs"] == ["raw.events.2026-11-27"] and job["outputs"] == ["clean.ünï \"q\""]
    assert job["pid"] == os.getpid() and 25 < job["left"] <= 30
    assert abs(job["expires"] - doc["server_time"] - job["left"]) < 1e-6
    [wait] = doc["waiting"]
    assert set(wait) == {"job_id", "inputs", "outputs", "deadline", "left", "host", "pid", "since", "limits",
                         "lineage", "problems"}
    assert wait["job_id"] == "late" and wait["outputs"] == ["clean.ünï \"q\""] and 0 < wait["left"] <= 20
    assert text.code == 0
    assert "1 running, 1 waiting" in text.out and "running  transform\n" in text.out
    assert f"token {running.token}, host " in text.out and "writes clean.ünï \"q\"\n" in text.out
    assert "waiting  late\n" in text.out


def test_show(mode_cli: Cli) -> None:
    cli = mode_cli
    with cli.job([], ["report.day"], job_id="writer", output_ttl=600) as writer:
        pass
    reader = cli.job(["report.day"], [], job_id="reader").start()
    doc = cli.json("show", "report.day", "--json")
    text = cli.run("show", "report.day")
    reader.stop()
    assert set(doc) == {"version", "name", "server_time", "written", "writer", "written_at", "token", "ttl",
                        "forced", "write_lock", "readers", "waiters", "problems"}
    assert doc["problems"] == [] and doc["readers"][0]["problems"] == []
    assert doc["written"] is True and doc["writer"] == "writer" and doc["token"] == writer.token
    assert 590 < doc["ttl"] <= 600 and doc["forced"] is False and doc["write_lock"] is None
    assert [r["job_id"] for r in doc["readers"]] == ["reader"]
    assert doc["readers"][0]["token"] == reader.token and doc["readers"][0]["pid"] == os.getpid()
    assert text.code == 0
    assert f"written     yes, by writer with token {writer.token} at " in text.out
    assert "read locks  reader (token" in text.out and "write lock  none" in text.out
    missing = cli.run("show", "never.written")
    assert missing.code == 1 and "written     no" in missing.out


def test_why_blocked(cli: Cli) -> None:
    cli.write("done")
    holder = cli.job([], ["busy"], job_id="busy-writer").start()
    before = cli.snapshot()
    blocked = cli.run("why-blocked", "-i", "busy", "missing", "-o", "done", "--no-overwrite", "--json")
    text = cli.run("why-blocked", "--input", "busy", "--input", "missing", "--output", "done", "--no-overwrite")
    free = cli.run("why-blocked", "-i", "done", "-o", "other")
    assert cli.snapshot() == before  # a question changes nothing
    holder.stop()
    assert blocked.code == 1 and text.code == 1 and free.code == 0
    doc = json.loads(blocked.out)
    assert doc["can_start"] is False and doc["reasons"] == {"input_missing": ["busy", "missing"],
                                                            "output_exists": ["done"]}
    busy = doc["blockers"][0]
    assert busy["holder"]["job_id"] == "busy-writer" and busy["holder"]["token"] == holder.token
    assert doc["until"] == pytest.approx(busy["holder"]["expires"])
    assert "input_missing  busy: being written by busy-writer (token" in text.out
    assert "input_missing  missing: not written" in text.out
    assert "output_exists  done: written by setup." in text.out
    assert free.out.startswith("can start now")


# -- start, refresh, stop ------------------------------------------------------------------------


def test_start_refresh_stop(mode_cli: Cli) -> None:
    cli = mode_cli
    cli.write("raw.1")
    r = cli.run("start", "nightly load", "-i", "raw.1", "-o", "clean.1", "--duration", "30")
    assert r.code == 0, r.err
    started = assignments(r.out)
    assert started["job_id"] == "nightly load" and started["lease"] == "30"
    token = int(started["token"])
    assert "jobs-core stop 'nightly load'" in r.err
    # the command has exited; its locks are held
    assert cli.get("olock:clean.1") == "nightly load"
    assert 25_000 < cli.raw.pttl(cli.prefix + "olock:clean.1") <= 30_000
    assert cli.raw.zscore(cli.prefix + "ilock:raw.1", "nightly load") is not None
    assert int(cli.raw.hget(cli.prefix + "jobs:holder:nightly load", "token")) == token

    r = cli.run("refresh", "nightly load", "--duration", "120")
    assert r.code == 0, r.err
    assert f"(token {token})" in r.out
    assert 110_000 < cli.raw.pttl(cli.prefix + "olock:clean.1") <= 120_000
    assert cli.raw.zscore(cli.prefix + "ilock:raw.1", "nightly load") > time.time() + 100

    r = cli.run("stop", "nightly load", "--output-ttl", "600")
    assert r.code == 0, r.err
    assert "outputs written: clean.1" in r.out
    assert cli.get("clean.1") == "nightly load"
    assert 590_000 < cli.raw.pttl(cli.prefix + "clean.1") <= 600_000
    assert cli.coord.output_info("clean.1").token == token
    assert not cli.raw.exists(cli.prefix + "olock:clean.1", cli.prefix + "ilock:raw.1")
    assert cli.coord.running_jobs() == []

    again = cli.run("stop", "nightly load")
    assert again.code == 1 and "is not running" in again.err
    assert cli.run("refresh", "nightly load", "--duration", "5").code == 1


def test_start_blocked_then_woken(cli: Cli) -> None:
    holder = cli.job([], ["shared.out"], job_id="holder").start()
    before = cli.snapshot()
    r = cli.run("start", "second", "-o", "shared.out", "--duration", "10")
    assert r.code == 1 and "cannot start" in r.err and "output_locked: 'shared.out'" in r.err
    assert r.out == "" and cli.snapshot() == before
    proc = subprocess.Popen([sys.executable, "-m", "jobs_core", "start", "second", "-o", "shared.out",
                             "--duration", "10", "--wait", "20"], env=clean_env(cli.url, cli.prefix),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not cli.coord.waiting_jobs() and time.monotonic() < deadline:
        time.sleep(0.01)
    released = time.monotonic()
    holder.stop()
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert time.monotonic() - released < 3  # woken by the release, not at the end of the wait
    assert cli.get("olock:shared.out") == "second"
    assert cli.run("stop", "second", "--failed").code == 0
    assert cli.get("shared.out") == "holder"  # the failed stop wrote nothing


def test_stop_failed_and_lost_locks(cli: Cli) -> None:
    cli.write("raw")
    assert cli.run("start", "a", "-i", "raw", "-o", "out.a", "--duration", "30").code == 0
    r = cli.run("stop", "a", "--failed")
    assert r.code == 0 and "as failed" in r.out
    assert cli.get("out.a") is None
    assert not cli.raw.exists(cli.prefix + "olock:out.a", cli.prefix + "ilock:raw")

    assert cli.run("start", "b", "-i", "raw", "-o", "out.b", "--duration", "30").code == 0
    before = cli.snapshot()
    r = cli.run("stop", "b", "--token", "999999")  # not this start's token: nothing happens
    assert r.code == 3 and "token 999999 is not its current start's" in r.err
    assert cli.snapshot() == before
    assert cli.run("unlock", "-o", "out.b", "--yes").code == 0  # a repair takes the write lock away
    r = cli.run("refresh", "b", "--duration", "60")
    assert r.code == 3 and "output_lock_lost" in r.err and "nothing was renewed" in r.err
    assert cli.raw.zscore(cli.prefix + "ilock:raw", "b") < time.time() + 31  # not renewed to 60 s
    r = cli.run("stop", "b")
    assert r.code == 3 and "nothing was written" in r.err
    assert cli.get("out.b") is None
    assert not cli.raw.exists(cli.prefix + "ilock:raw")  # the read lock it still held is released
    assert cli.coord.running_jobs() == []


def test_a_stop_after_a_stop_from_outside_exits_3(cli: Cli) -> None:
    """A job started from a shell, stopped from outside (an operator's 'stop --failed'): the script's own
    'stop --token' then says that nothing was written (exit 3), not merely that the job is not running."""
    assert cli.run("start", "shell.job", "-o", "out.s", "--duration", "30").code == 0
    (running,) = cli.coord.running_jobs()
    assert cli.run("stop", "shell.job", "--failed").code == 0  # from outside
    r = cli.run("stop", "shell.job", "--token", str(running.token))
    assert r.code == 3 and "already stopped by another call" in r.err and "wrote nothing" in r.err
    assert cli.get("out.s") is None
    r = cli.run("stop", "shell.job")  # without the token: it is simply not running
    assert r.code == 1


def test_refresh_uses_the_recorded_lease(cli: Cli) -> None:
    assert cli.run("start", "j", "-o", "x", "--duration", "40", "--output-ttl", "300").code == 0
    (running,) = cli.coord.running_jobs()
    assert running.lease == 40 and running.output_ttl == 300
    assert cli.run("refresh", "j").code == 0
    assert 35_000 < cli.raw.pttl(cli.prefix + "olock:x") <= 40_000
    assert cli.run("stop", "j").code == 0
    assert 290_000 < cli.raw.pttl(cli.prefix + "x") <= 300_000  # the TTL given to start


LEGACY = """
import sys, redis, jobs
jobs.CONN = redis.Redis.from_url(sys.argv[1])
jobs.GLOBAL_PREFIX = sys.argv[2]
job = jobs.ResourceManager(sys.argv[3].split(","), sys.argv[4].split(","), 30)
job.start()
jobs.LOCKED.discard(job)  # keep the locks after this process exits
print("ID=" + job.identifier)
"""


def legacy_start(cli: Cli, inputs: str, outputs: str) -> str:
    """Start a job through a jobspy 0.31 client in another process; its id."""
    r = subprocess.run([sys.executable, "-c", LEGACY, cli.url.partition("?")[0], cli.prefix, inputs, outputs],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [line[3:] for line in r.stdout.splitlines() if line.startswith("ID=")][0]


def test_stop_jobspy_jobs(cli: Cli) -> None:
    cli.write("shared", "solo")
    other = cli.job(["shared"], [], job_id="other-reader").start()
    job = legacy_start(cli, "shared,solo", "legacy.out")
    status = cli.json("status", "--json")
    assert {j["job_id"]: j["client"] for j in status["running"]}[job] == "jobspy"
    assert cli.run("refresh", job, "--duration", "30").code == 1

    r = cli.run("stop", job)
    assert r.code == 0, r.err
    assert "stopped jobs.py job" in r.out and "outputs written: legacy.out" in r.out
    assert cli.get("legacy.out") == job
    assert job not in {j.job_id for j in cli.coord.running_jobs()}
    assert not cli.raw.exists(cli.prefix + "olock:legacy.out", cli.prefix + "ilock:solo")
    readers = {m.decode() for m in cli.raw.zrange(cli.prefix + "ilock:shared", 0, -1)}
    assert readers == {"other-reader"}  # its own read lock went; the other reader keeps its own

    failed = legacy_start(cli, "solo", "legacy.failed")
    r = cli.run("stop", failed, "--failed")
    assert r.code == 0 and "as failed" in r.out, r.err
    assert cli.get("legacy.failed") is None
    assert not cli.raw.exists(cli.prefix + "olock:legacy.failed", cli.prefix + "ilock:solo")

    lost = legacy_start(cli, "solo", "legacy.lost")
    cli.coord.unlock(outputs=["legacy.lost"])
    r = cli.run("stop", lost)
    assert r.code == 3 and "nothing was written" in r.err
    assert cli.get("legacy.lost") is None and not cli.raw.exists(cli.prefix + "ilock:solo")
    other.stop()


def test_stop_a_jobspy_job_whose_names_hold_newlines(cli: Cli) -> None:
    """jobspy accepts any name: a newline in one must round-trip through stop.lua (the names go as
    separate arguments, never split on newlines) and through the release announcement (JSON)."""
    cli.write("solo")
    job = legacy_start(cli, "solo", "nl\nout,plain.out")
    spy = cli.raw.pubsub()
    spy.subscribe(cli.prefix + "jobs:wake")
    spy.get_message(timeout=2)
    r = cli.run("stop", job)
    assert r.code == 0, r.err
    assert cli.get("nl\nout") == job and cli.get("plain.out") == job
    assert not cli.raw.exists(cli.prefix + "olock:nl\nout", cli.prefix + "ilock:solo")
    message = spy.get_message(timeout=2)
    spy.close()
    assert message and json.loads(message["data"]) == ["solo", "nl\nout", "plain.out"]


# -- repairs -------------------------------------------------------------------------------------


def wake_messages(pubsub: Any) -> list[str]:
    out, deadline = [], time.monotonic() + 2
    while time.monotonic() < deadline:
        m = pubsub.get_message(timeout=0.1)
        if m and m["type"] == "message":
            out.append(m["data"].decode())
            break
    return out


def test_unlock_fences_holders_and_wakes_waiters(cli: Cli) -> None:
    cli.write("in")
    writer = cli.job([], ["locked.out"], job_id="writer").start()
    readers = [cli.job(["in"], [], job_id=f"reader-{i}").start() for i in "ab"]
    pubsub = cli.raw.pubsub()
    pubsub.subscribe(cli.prefix + "jobs:wake")
    before = cli.snapshot()
    r = cli.run("unlock", "-o", "free")
    assert r.code == 0 and "nothing changed" in r.out and cli.snapshot() == before
    r = cli.run("unlock", "-i", "in", "-o", "locked.out", "--yes")
    assert r.code == 0, r.err
    assert "released 2 lock keys" in r.out
    assert "write lock on locked.out: writer (token" in r.err and "reader-a (token" in r.err
    assert wake_messages(pubsub) == ["in\nlocked.out"]
    assert not cli.raw.exists(cli.prefix + "olock:locked.out", cli.prefix + "ilock:in")
    with pytest.raises(LockLost):
        writer.stop()
    assert cli.get("locked.out") is None
    for reader in readers:
        with pytest.raises(LockLost):
            reader.refresh()
    pubsub.close()


def test_create_fences_the_writer(cli: Cli) -> None:
    writer = cli.job([], ["c.one"], job_id="slow-writer").start()
    pubsub = cli.raw.pubsub()
    pubsub.subscribe(cli.prefix + "jobs:wake")
    r = cli.run("create", "c.one", "c.two", "--yes", "--writer", "repair-1", "--output-ttl", "100")
    assert r.code == 0, r.err
    assert "its writer slow-writer (token" in r.err and "will be fenced out" in r.err
    assert "marked written by repair-1 with token" in r.out
    assert wake_messages(pubsub) == ["c.one\nc.two"]
    assert cli.get("c.one") == cli.get("c.two") == "repair-1"
    assert 90_000 < cli.raw.pttl(cli.prefix + "c.two") <= 100_000
    info = cli.coord.output_info("c.one")
    assert info.forced and info.writer == "repair-1"
    with pytest.raises(LockLost):
        writer.stop()
    assert cli.get("c.one") == "repair-1"
    r = cli.run("create", "c.three", "--yes")
    assert r.code == 0 and cli.get("c.three").startswith("jobs-core:create.")
    pubsub.close()


def test_confirmation_on_a_terminal(cli: Cli) -> None:
    holder = cli.job([], ["tty.out"], job_id="holder").start()
    before = cli.snapshot()
    for answer, code in ((b"n\n", 1), (b"y\n", 0)):
        leader, follower = pty.openpty()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "jobs_core", "unlock", "-o", "tty.out"],
                                    env=clean_env(cli.url, cli.prefix), stdin=follower,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            os.write(leader, answer)
            out, err = proc.communicate(timeout=20)
        finally:
            os.close(leader)
            os.close(follower)
        assert proc.returncode == code, err
        assert b"Release these locks? [y/N]" in err
        if code:
            assert b"not confirmed; nothing changed" in err and cli.snapshot() == before
    assert not cli.raw.exists(cli.prefix + "olock:tty.out")
    with pytest.raises(LockLost):
        holder.stop()


# -- namespaces ----------------------------------------------------------------------------------


def test_prefix_from_env_and_flags(cli: Cli) -> None:
    other = f"t{secrets.token_hex(4)}:"
    job = cli.job([], ["same.name"], job_id="here").start()
    assert [j["job_id"] for j in cli.json("status", "--json")["running"]] == ["here"]  # $JOBS_PREFIX
    r = cli.run("--prefix", other, "status", "--json")  # the flag wins over the environment
    assert r.code == 0 and json.loads(r.out) == {**json.loads(r.out), "prefix": other, "running": []}
    r = cli.run("show", "same.name", "--prefix", other, "--json", prefix=None)  # after the command, no env
    assert r.code == 1 and json.loads(r.out)["write_lock"] is None
    r = cli.run("show", "same.name", "--prefix", cli.prefix, "--json", prefix=other)
    assert json.loads(r.out)["write_lock"]["job_id"] == "here"
    job.stop()


# -- lineage -------------------------------------------------------------------------------------

DAY = "2026-11-27"
ODD = ['say "hi"', "a->b", "back\\slash\\n", "ünïcødé 名前 🚀", "amp&amp;<b>x</b>#quot;%%;"]


def run_pipeline(cli: Cli) -> None:
    """The demo's pipeline (jobs_core.demo), plus a job whose names are hard to quote."""
    steps = [
        ("extract", [], [f"raw.events.{DAY}"]),
        ("users", [], ["raw.users"]),
        ("transform", [f"raw.events.{DAY}", "raw.users"], [f"clean.events.{DAY}"]),
        ("audit", [f"raw.events.{DAY}"], [f"audit.raw.events.{DAY}"]),
        ("report", [f"clean.events.{DAY}"], [f"report.{DAY}"]),
        ('odd "job" ü', [f"report.{DAY}", *ODD[:2]], ODD[2:]),
    ]
    cli.write(*ODD[:2])
    for name, ins, outs in steps:
        with cli.job(ins, outs, job_id=f"jobs_core.demo:{name}.{secrets.randbits(48)}"):
            pass


def test_lineage_formats(mode_cli: Cli) -> None:
    cli = mode_cli
    run_pipeline(cli)
    doc = cli.json("lineage", "--format", "json")
    nodes = {(n["kind"], n["name"]) for n in doc["nodes"]}
    assert {("data", "report.*"), ("job", "jobs_core.demo:transform.*"), ("job", 'jobs_core.demo:odd "job" ü.*'),
            *(("data", n) for n in ODD)} <= nodes
    assert {"from": "raw.users", "to": "jobs_core.demo:transform.*", "kind": "input"} in doc["edges"]

    r = cli.run("lineage", f"report.{DAY}", "--upstream")
    assert r.code == 0
    assert r.out == (
        "upstream of data report.*:\n"
        "data report.*\n"
        "  <- job  jobs_core.demo:report.*\n"
        "    <- data clean.events.*\n"
        "      <- job  jobs_core.demo:transform.*\n"
        "        <- data raw.events.*\n"
        "          <- job  jobs_core.demo:extract.*\n"
        "        <- data raw.users\n"
        "          <- job  jobs_core.demo:users.*\n"
    )
    down = cli.run("lineage", "a->b", "--downstream")
    assert down.out.splitlines()[2:] == [
        '  -> job  jobs_core.demo:odd "job" ü.*', "    -> data amp&amp;<b>x</b>#quot;%%;",
        "    -> data back\\slash\\n", "    -> data ünïcødé 名前 🚀"]

    dot = cli.run("lineage", "--format", "dot")
    assert dot.code == 0
    assert sorted(svg_labels(dot.out).values()) == sorted(name for _, name in nodes)  # dot -Tsvg
    up = cli.run("lineage", ODD[3], "-f", "dot")
    assert sorted(svg_labels(up.out).values()) == sorted(
        n["name"] for n in cli.json("lineage", ODD[3], "-f", "json")["nodes"])

    mermaid = cli.run("lineage", "-f", "mermaid")
    parsed, edges, _ = parse_mermaid(mermaid.out)
    assert set(parsed.values()) == nodes
    assert len(edges) == len(doc["edges"])


def test_lineage_depth_time_bounds_and_not_found(cli: Cli) -> None:
    with cli.job([], ["a"], job_id="ja"):
        pass
    time.sleep(0.05)
    middle = cli.coord.why_blocked((), ()).now
    time.sleep(0.05)
    with cli.job(["a"], ["b"], job_id="jb"):
        pass

    def edges(*args: str) -> set[tuple[str, str]]:
        return {(e["from"], e["to"]) for e in cli.json("lineage", *args, "-f", "json")["edges"]}

    assert edges() == {("ja", "a"), ("a", "jb"), ("jb", "b")}
    assert edges("--after", f"{middle:.6f}") == {("a", "jb"), ("jb", "b")}
    assert edges("--before", f"{middle:.6f}") == {("ja", "a")}
    assert edges("b", "--upstream", "--depth", "2") == {("a", "jb"), ("jb", "b")}
    assert edges("b", "--upstream", "--depth", "3") == {("ja", "a"), ("a", "jb"), ("jb", "b")}
    assert edges("a", "--depth", "1") == {("ja", "a"), ("a", "jb")}
    doc = cli.json("lineage", "jb", "--after", "2000-01-01", "--before", "2999-12-31T00:00:00Z", "-f", "json")
    assert doc["after"] == 946684800.0 and doc["start"] == "jb"
    empty = cli.run("lineage", "--before", "2000-01-01")
    assert empty.code == 0 and empty.out == "no lineage recorded\n"
    gone = cli.run("lineage", "b", "--before", "2000-01-01")
    assert gone.code == 1 and "no lineage recorded for b in that time range" in gone.err
    folded = cli.run("lineage", "nothing.2026-11-27")
    assert folded.code == 1 and "(looked up as nothing.*)" in folded.err


# -- watch ---------------------------------------------------------------------------------------


def test_watch(cli: Cli) -> None:
    job = cli.job([], ["watched"], job_id="watched-job").start()
    r = cli.run("watch", "--iterations", "2", "--interval", "0.1")
    assert r.code == 0, r.err
    assert r.out.count("jobs-core watch: ") == 2 and r.out.count("running  watched-job\n") == 2
    assert "\x1b[" not in r.out  # no screen control codes when stdout is not a terminal
    proc = subprocess.Popen([sys.executable, "-m", "jobs_core", "watch", "--interval", "0.1"],
                            env=clean_env(cli.url, cli.prefix), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    assert first.startswith(b"jobs-core watch: ")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=10)
    assert proc.returncode == 0  # Ctrl-C is how a watch ends
    job.stop()
