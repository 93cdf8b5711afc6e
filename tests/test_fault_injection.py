"""Faults injected into real servers, connections and processes, with each job's observable outcome.

Every test has a redis-server of its own (restarts, pauses and kills would
disturb other tests). Clients come in two kinds:

* ``retrying``: ``redis.Redis(...)``, whose default policy retries a command
  whose connection dropped (10 times, with backoff);
* ``no_retry``: the same with ``retry=Retry(NoBackoff(), 0)``: the error reaches
  the job (as it does today with ``Coordinator.from_url``, see
  ``test_from_url_coordinator_retries_a_dropped_connection``).

Covered here (tests/test_faults.py has the in-process ones: lost replies
simulated in Python, ACL users, replays of repairs):

* Redis restarted mid-job, without persistence and with AOF (``appendfsync always``);
* the job's connection killed (``CLIENT KILL``) during start, refresh and stop,
  both before the server ran the script and after it did (the reply lost);
* the server paused (``CLIENT PAUSE``, ``SIGSTOP``) longer than the lease;
* the holder process paused (``SIGSTOP``) longer than its lease, killed
  (``SIGKILL``), terminated (``SIGTERM``, with and without
  ``jobs_core.release_on_signal``), and forking children that exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis import asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

import jobs_core
from jobs_core import LockLost, ResourceUnavailable

from .fault_proxy import Proxy
from .reliability import report
from .servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "f:"
FAULTS: dict[str, int] = {}


def injected(kind: str, count: int = 1) -> None:
    FAULTS[kind] = FAULTS.get(kind, 0) + count


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield
    report("faults", {"faults_injected": sum(FAULTS.values()), **FAULTS})


@pytest.fixture(autouse=True)
def cleaned_up(monkeypatch):
    """Close every coordinator and proxy a test made, whatever its outcome: no heartbeat or proxy
    thread outlives its test (they would retry against servers that are gone)."""
    made: list[Any] = []
    for cls in (jobs_core.Coordinator, Proxy):  # the asyncio test closes its coordinator in its loop
        init = cls.__init__

        def tracking(self: Any, *args: Any, __init: Any = init, **kwargs: Any) -> None:
            __init(self, *args, **kwargs)
            made.append(self)

        monkeypatch.setattr(cls, "__init__", tracking)
    yield
    for thing in reversed(made):
        thing.close()


@pytest.fixture
def server():
    s = RedisServer().start()
    yield s
    s.cleanup()


def value(client: Any, key: str) -> str | None:
    v = client.get(PREFIX + key)
    return v.decode() if isinstance(v, bytes) else v


def coordinator(port: int, kind: str, name: str = "victim") -> jobs_core.Coordinator:
    """A coordinator whose client names its connections ``name`` (so CLIENT KILL can find them)."""
    options: dict[str, Any] = {} if kind == "retrying" else {"retry": Retry(NoBackoff(), 0)}
    return jobs_core.Coordinator(redis.Redis(port=port, client_name=name, socket_timeout=10, **options), PREFIX)


def kill(admin: redis.Redis, name: str = "victim") -> int:
    """CLIENT KILL every connection named ``name``; returns how many."""
    ids = [c["id"] for c in admin.client_list() if c.get("name") == name]
    for i in ids:
        admin.client_kill_filter(_id=i)
    return len(ids)


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = call()
        except BaseException as exc:  # reported to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.01)
    raise AssertionError(f"not within {timeout}s: {predicate}")


def killed_while_paused(admin: redis.Redis, call: Callable[[], Any]) -> dict[str, Any]:
    """Run ``call`` while writes are paused; once its script is blocked on the server, CLIENT KILL
    its connection (so the script never ran on it), then lift the pause."""
    admin.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
    try:
        t, out = in_thread(call)
        wait_for(lambda: any(c.get("name") == "victim" and "b" in c["flags"] for c in admin.client_list()))
        assert kill(admin) >= 1
        injected("client_kill_before_run")
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    t.join(10)
    return out


# -- Redis restarted mid-job ---------------------------------------------------------------------------


def test_restart_without_persistence_loses_the_locks_and_the_job_learns_it(server):
    c = jobs_core.Coordinator(redis.Redis(port=server.port), PREFIX)
    c.create_outputs(["in"])
    calls: list[jobs_core.Job] = []
    job = c.job(["in"], ["out1", "out2"], duration=0.9, on_lost=calls.append).start()
    waiter_started = threading.Event()
    other = jobs_core.Coordinator(redis.Redis(port=server.port), PREFIX, poll=0.2)
    waiter = other.job([], ["out2"], duration=5, wait=15)
    t, out = in_thread(lambda: (waiter_started.set(), waiter.start()))
    waiter_started.wait()
    wait_for(lambda: other.waiting_jobs())

    server.restart()  # nothing saved: every key is gone, the locks with them
    injected("restart_without_persistence")
    wait_for(lambda: job.lost, timeout=5)  # the heartbeat finds out within a beat
    assert job.lost == {"input_lock_lost": ["in"], "output_lock_lost": ["out1", "out2"]}
    wait_for(lambda: calls)
    assert calls == [job]
    with pytest.raises(LockLost):
        job.check()
    t.join(10)
    assert "error" not in out and waiter.is_running  # the waiter was woken (its subscription came back)
    # the fencing counter was lost with the data: tokens start again (README: Not guaranteed)
    assert waiter.token == 1 <= job.token
    with pytest.raises(LockLost) as exc:
        job.stop()
    assert exc.value.lost == job.lost
    waiter.stop()
    client = c.client
    assert value(client, "out1") is None and value(client, "out2") == waiter.id  # the old holder wrote nothing
    other.close()
    c.close()


def test_restart_with_aof_keeps_outputs_locks_and_tokens(tmp_path):
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always").start()
    try:
        client = redis.Redis(port=server.port)
        c = jobs_core.Coordinator(client, PREFIX)
        with c.job([], ["done.1", "done.2"], duration=5) as done:
            pass
        running = c.job(["done.1"], ["busy"], duration=30, heartbeat=False).start()

        server.stop(kill=True)  # a crash (SIGKILL), not a shutdown: only what reached the AOF survives
        server.start()
        injected("crash_and_restart_with_aof")

        assert value(client, "done.1") == value(client, "done.2") == done.id
        info = c.output_info("done.2")
        assert (info.writer, info.token) == (done.id, done.token)
        running.refresh()  # its locks survived, with their leases
        with pytest.raises(ResourceUnavailable) as exc:
            c.job([], ["busy"], duration=5).start()
        assert exc.value.blockers[0].holder.job_id == running.id
        with pytest.raises(ResourceUnavailable):
            c.job([], ["done.1"], duration=5).start()  # still read by `running`
        running.stop()
        assert value(client, "busy") == running.id
        later = c.job([], ["busy"], duration=5).start()
        assert later.token > running.token > done.token  # the fencing counter survived too
        later.stop()
        client.close()
    finally:
        server.cleanup()


# -- the connection killed during start, refresh and stop --------------------------------------------


def _names(c: jobs_core.Coordinator) -> None:
    c.create_outputs(["in"])


def _counter(admin: redis.Redis) -> int:
    return int(admin.get(PREFIX + "jobs:token") or 0)


@pytest.mark.parametrize("kind", ["retrying", "no_retry"])
def test_client_kill_during_start_before_the_script_ran(server, kind):
    admin = redis.Redis(port=server.port)
    c = coordinator(server.port, kind)
    _names(c)
    before = _counter(admin)
    job = c.job(["in"], ["x", "y"], duration=30, heartbeat=False)
    out = killed_while_paused(admin, job.start)
    if kind == "retrying":
        assert "error" not in out, out
        assert job.is_running and job.token == _counter(admin) == before + 1  # retried, and ran once
        assert value(admin, "olock:x") == value(admin, "olock:y") == job.id
    else:
        assert isinstance(out["error"], redis.ConnectionError)  # reported: no retry on this client
        assert not job.is_running and _counter(admin) == before  # the script never ran
        assert not admin.exists(PREFIX + "olock:x", PREFIX + "olock:y")
        job.start()
    job.stop()
    assert value(admin, "x") == value(admin, "y") == job.id
    c.close()


@pytest.mark.parametrize("kind", ["retrying", "no_retry"])
def test_client_kill_during_refresh_before_the_script_ran(server, kind):
    admin = redis.Redis(port=server.port)
    c = coordinator(server.port, kind)
    job = c.job([], ["x"], duration=3, heartbeat=False).start()
    time.sleep(0.5)
    out = killed_while_paused(admin, job.refresh)
    if kind == "retrying":
        assert "error" not in out, out
        assert admin.pttl(PREFIX + "olock:x") > 2900  # renewed, once the pause was over
    else:
        assert isinstance(out["error"], redis.ConnectionError)
        assert admin.pttl(PREFIX + "olock:x") < 2600  # not renewed: the caller was told
        job.refresh()  # the next one does (the heartbeat would retry within the lease)
    assert job.lost is None and job.is_running
    job.stop()
    assert value(admin, "x") == job.id
    c.close()


@pytest.mark.parametrize("kind", ["retrying", "no_retry"])
def test_client_kill_during_stop_before_the_script_ran(server, kind):
    admin = redis.Redis(port=server.port)
    c = coordinator(server.port, kind)
    _names(c)
    job = c.job(["in"], ["x", "y"], duration=30, heartbeat=False).start()
    out = killed_while_paused(admin, job.stop)
    if kind == "retrying":
        assert "error" not in out, out
    else:
        assert isinstance(out["error"], redis.ConnectionError)
        assert job.is_running  # as far as it knows
        assert not admin.exists(PREFIX + "x", PREFIX + "y")  # nothing written, not half of it
        assert value(admin, "olock:x") == job.id  # still held
        job.stop()  # the repeat completes the job
    assert not job.is_running
    assert value(admin, "x") == value(admin, "y") == job.id
    assert not admin.exists(PREFIX + "olock:x", PREFIX + "olock:y")
    assert admin.zscore(PREFIX + "ilock:in", job.id) is None
    c.close()


def _proxied(server: RedisServer, kind: str) -> tuple[Proxy, jobs_core.Coordinator, redis.Redis]:
    proxy = Proxy(server.port)
    c = coordinator(proxy.port, kind)
    c.create_outputs(["in"])
    with c.job(["in"], ["warm"], duration=5) as warm:  # every script loaded: EVALSHA finds it
        warm.refresh()
    return proxy, c, redis.Redis(port=server.port)


def reply_lost(proxy: Proxy, admin: redis.Redis, script: Any, call: Callable[[], Any]) -> dict[str, Any]:
    """Run ``call``; the server runs ``script``, then its connection is killed before the reply gets out."""
    proxy.hold(script.sha.encode())
    t, out = in_thread(call)
    assert proxy.held.wait(5)
    time.sleep(0.05)  # the server has answered (into the proxy)
    assert kill(admin) >= 1
    injected("client_kill_reply_lost")
    t.join(10)
    return out


@pytest.mark.parametrize("kind", ["retrying", "no_retry"])
def test_client_kill_during_start_after_the_script_ran(server, kind):
    proxy, c, admin = _proxied(server, kind)
    before = _counter(admin)
    job = c.job(["in"], ["x", "y"], duration=30, heartbeat=False)
    out = reply_lost(proxy, admin, c.scripts.start, job.start)
    assert _counter(admin) == before + 1  # the script ran exactly once ...
    if kind == "retrying":
        assert "error" not in out, out  # ... and its replay answered with the same start
        assert job.is_running and job.token == before + 1
        assert value(admin, "olock:x") == job.id
        job.stop()
        assert value(admin, "x") == value(admin, "y") == job.id
    else:
        assert isinstance(out["error"], redis.ConnectionError)
        assert not job.is_running
        # the failed start released what the script had taken, instead of holding it for 30 s
        assert not admin.exists(PREFIX + "olock:x", PREFIX + "olock:y", PREFIX + "x", PREFIX + "y")
        assert admin.zscore(PREFIX + "ilock:in", job.id) is None
        assert admin.hget(PREFIX + "jobs:holder:" + job.id, "state") == b"failed"
    proxy.close()


@pytest.mark.parametrize("kind", ["retrying", "no_retry"])
def test_client_kill_during_refresh_after_the_script_ran(server, kind):
    proxy, c, admin = _proxied(server, kind)
    job = c.job([], ["x"], duration=3, heartbeat=False).start()
    time.sleep(0.3)
    out = reply_lost(proxy, admin, c.scripts.refresh, job.refresh)
    if kind == "retrying":
        assert "error" not in out, out
    else:
        assert isinstance(out["error"], redis.ConnectionError)  # reported, though it did renew
    assert admin.pttl(PREFIX + "olock:x") > 2800
    assert job.lost is None
    job.refresh()
    job.stop()
    assert value(admin, "x") == job.id
    proxy.close()


@pytest.mark.parametrize("kind", ["retrying", "no_retry"])
def test_client_kill_during_stop_after_the_script_ran(server, kind):
    proxy, c, admin = _proxied(server, kind)
    job = c.job(["in"], ["x", "y"], duration=30, heartbeat=False).start()
    out = reply_lost(proxy, admin, c.scripts.stop, job.stop)
    assert value(admin, "x") == value(admin, "y") == job.id  # written, both (one script, all or nothing)
    if kind == "retrying":
        assert "error" not in out, out  # the replay learned the first call's outcome
    else:
        assert isinstance(out["error"], redis.ConnectionError)
        assert job.is_running
        job.stop()  # the repeat learns that the first one wrote the outputs: no error
    assert not job.is_running
    assert c.output_info("x").token == job.token
    assert admin.hget(PREFIX + "jobs:holder:" + job.id, "state") == b"written"
    proxy.close()


def test_async_stop_after_the_script_ran_is_completed_by_a_repeat(server):
    proxy = Proxy(server.port)
    admin = redis.Redis(port=server.port)

    async def main() -> None:
        client = aredis.Redis(port=proxy.port, client_name="victim", retry=AsyncRetry(NoBackoff(), 0))
        c = jobs_core.AsyncCoordinator(client, PREFIX)
        async with c.job([], ["warm"], duration=5):
            pass
        job = await c.job([], ["x", "y"], duration=30, heartbeat=False).start()
        proxy.hold(c.scripts.stop.sha.encode())
        task = asyncio.ensure_future(job.stop())
        while not proxy.held.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        kill(admin)
        injected("client_kill_reply_lost")
        with pytest.raises(redis.ConnectionError):
            await task
        assert job.is_running and value(admin, "x") == value(admin, "y") == job.id
        await job.stop()
        assert not job.is_running
        await c.aclose()

    asyncio.run(main())
    proxy.close()


def test_from_url_coordinator_retries_a_dropped_connection(server):
    """DESIGN.md §4: a dropped connection is retried where that is safe. Every script is replay-safe,
    and ``redis.Redis(...)`` retries by default, but ``Redis.from_url(...)`` (which
    ``Coordinator.from_url``, ``from_env``, the CLI and the adapters use) does not."""
    admin = redis.Redis(port=server.port)
    c = jobs_core.Coordinator.from_url(server.url, PREFIX, client_name="victim")
    job = c.job([], ["x"], duration=30, heartbeat=False)
    out = killed_while_paused(admin, job.start)
    try:
        assert "error" not in out, out
        assert job.is_running
    finally:
        c.close()


# -- the server paused longer than the lease ---------------------------------------------------------


def _paused_server(server: RedisServer, pause: Callable[[], None], resume: Callable[[], None]) -> None:
    """A holder with a 0.5 s lease (heartbeat on) and a waiter; the server stops answering for 1.5 s."""
    c = jobs_core.Coordinator(redis.Redis(port=server.port, socket_timeout=10), PREFIX)
    calls: list[Any] = []
    holder = c.job([], ["x"], duration=0.5, on_lost=calls.append).start()
    other = jobs_core.Coordinator(redis.Redis(port=server.port, socket_timeout=10), PREFIX)
    waiter = other.job([], ["x"], duration=5, wait=10)
    t, out = in_thread(waiter.start)
    wait_for(lambda: other.waiting_jobs())
    pause()
    time.sleep(1.5)
    resume()
    t.join(10)
    assert "error" not in out and waiter.token > holder.token  # the waiter got the output after the pause
    wait_for(lambda: holder.lost, timeout=3)  # the holder's next renewal found its lease gone
    assert holder.lost == {"output_lock_lost": ["x"]} and calls == [holder]
    with pytest.raises(LockLost):
        holder.check()
    with pytest.raises(LockLost):
        holder.stop()
    waiter.stop()
    assert value(c.client, "x") == waiter.id  # the stale holder wrote nothing
    c.close()
    other.close()


def test_client_pause_longer_than_the_lease(server):
    admin = redis.Redis(port=server.port)
    _paused_server(server, lambda: admin.execute_command("CLIENT", "PAUSE", 1500, "ALL"), lambda: None)
    injected("client_pause")


def test_sigstop_of_the_server_longer_than_the_lease(server):
    pid = server.proc.pid
    _paused_server(server, lambda: os.kill(pid, signal.SIGSTOP), lambda: os.kill(pid, signal.SIGCONT))
    injected("server_sigstop")


# -- the holder process: paused, killed, terminated, forking ---------------------------------------------

HOLDER = r"""
import json, os, signal, sys, time
import redis, jobs_core
port, prefix, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = jobs_core.Coordinator(redis.Redis(port=port), prefix)
lease = {"kill": 0.8, "stopped": 0.6}.get(mode, 30)
if mode == "sigterm":
    jobs_core.release_on_signal([c])
job = c.job(["in"], ["x"], duration=lease).start()
print(json.dumps({"id": job.id, "token": job.token}), flush=True)
if mode == "stopped":
    sys.stdin.readline()  # the parent writes a line after SIGCONT
    result = {}
    for step in ("check", "stop"):
        try:
            getattr(job, step)()
            result[step] = "ok"
        except jobs_core.LockLost as exc:
            result[step] = {"LockLost": exc.lost}
    print(json.dumps(result), flush=True)
    sys.exit(0)
time.sleep(60)
"""


@pytest.fixture
def holder():
    """``holder(port, mode)`` runs HOLDER in a process; returns it and its job's id and token."""
    procs: list[subprocess.Popen] = []

    def start(port: int, mode: str) -> tuple[subprocess.Popen, dict[str, Any]]:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(port), PREFIX, mode], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        procs.append(proc)
        return proc, json.loads(proc.stdout.readline())

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def test_holder_paused_longer_than_its_lease_writes_nothing(server, holder):
    c = jobs_core.Coordinator(redis.Redis(port=server.port), PREFIX)
    c.create_outputs(["in"])
    proc, held = holder(server.port, "stopped")
    os.kill(proc.pid, signal.SIGSTOP)  # a long GC pause, a stopped VM
    injected("holder_sigstop")
    waiter = c.job([], ["x"], duration=5, wait=10).start()  # the lease ran out under the paused holder
    assert waiter.token > held["token"]
    os.kill(proc.pid, signal.SIGCONT)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    result = json.loads(proc.stdout.readline())
    assert proc.wait(10) == 0
    # back from its pause, the holder learns the lease is gone (check() needs no round trip), and its
    # stop writes nothing
    assert result["check"] != "ok" and result["stop"] == {"LockLost": {"input_lock_lost": ["in"],
                                                                        "output_lock_lost": ["x"]}}
    waiter.stop()
    assert value(c.client, "x") == waiter.id
    c.close()


def test_holder_killed_with_sigkill_is_waited_out_by_its_lease(server, holder):
    c = jobs_core.Coordinator(redis.Redis(port=server.port), PREFIX)
    c.create_outputs(["in"])
    proc, held = holder(server.port, "kill")  # reads `in`, writes `x`, lease 0.8 s, heartbeat on
    writer = c.job([], ["x"], duration=5, wait=10)
    in_writer = c.job([], ["in"], duration=5, wait=10)
    threads = [in_thread(writer.start), in_thread(in_writer.start)]
    wait_for(lambda: len(c.waiting_jobs()) == 2)
    time.sleep(1.0)  # the heartbeat keeps the locks well past one lease
    assert not writer.is_running and not in_writer.is_running
    proc.kill()
    proc.wait()
    killed = time.monotonic()
    injected("holder_sigkill")
    for t, out in threads:
        t.join(10)
        assert "error" not in out, out
    assert time.monotonic() - killed < 2.5  # about one lease after the last renewal
    assert writer.token > held["token"] and in_writer.token > held["token"]
    assert held["id"] not in {j.job_id for j in c.running_jobs()}
    writer.stop()
    in_writer.stop()
    assert value(c.client, "x") == writer.id and value(c.client, "in") == in_writer.id
    c.close()


@pytest.mark.parametrize("handled", [True, False], ids=["release_on_signal", "default"])
def test_holder_terminated_with_sigterm(server, holder, handled):
    c = jobs_core.Coordinator(redis.Redis(port=server.port), PREFIX)
    c.create_outputs(["in"])
    proc, held = holder(server.port, "sigterm" if handled else "sigterm_default")  # lease 30 s
    waiter = c.job([], ["x"], duration=5, wait=3 if handled else 0.5)
    t, out = in_thread(waiter.start)
    wait_for(lambda: c.waiting_jobs())
    began = time.monotonic()
    proc.terminate()
    injected("holder_sigterm")
    code = proc.wait(10)
    t.join(10)
    if handled:
        assert code == 128 + signal.SIGTERM  # the default action, as SystemExit after the release
        assert "error" not in out and time.monotonic() - began < 1.5  # not the 30 s lease
        holder_state = c.client.hget(PREFIX + "jobs:holder:" + held["id"], "state")
        assert holder_state == b"failed"  # released as failed: nothing written
        waiter.stop()
        assert value(c.client, "x") == waiter.id
    else:
        assert code == -signal.SIGTERM
        assert isinstance(out["error"], ResourceUnavailable)  # the locks stay until the lease ends
        assert out["error"].blockers[0].holder.job_id == held["id"]
        c.unlock(["in"], ["x"])
    c.close()


FORK = r"""
import json, os, sys, time
import redis, jobs_core
port, prefix = int(sys.argv[1]), sys.argv[2]
conn = redis.Redis(port=port, client_name="parent")
c = jobs_core.Coordinator(conn, prefix)
def connection_ids():
    return {x["id"] for x in conn.client_list() if x.get("name") == "parent"}
job = c.job(["in"], ["x"], duration=0.6).start()  # heartbeat every 0.2 s
before = connection_ids()
children = {}
for how in ("sys.exit", "exception", "stop", "own_job"):
    pid = os.fork()
    if pid == 0:
        if how == "sys.exit":
            with job:
                sys.exit(0)  # leaves the block, runs atexit hooks
        if how == "exception":
            with job:
                raise RuntimeError("the child fails inside the block")
        if how == "stop":
            errors = []
            for step in (job.stop, job.refresh):
                try:
                    step()
                except jobs_core.NotRunning:
                    errors.append(step.__name__)
            os._exit(0 if errors == ["stop", "refresh"] else 3)
        with c.job([], ["child." + str(os.getpid())], duration=5):  # the child's own job, own connection
            pass
        os._exit(0)
    children[how] = pid
codes = {how: os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for how, pid in children.items()}
time.sleep(1.5)  # more than two leases: only the parent's heartbeat keeps them
held = conn.get(prefix + "olock:x") == job.id.encode() and conn.zscore(prefix + "ilock:in", job.id) is not None
job.check()
job.stop()
print(json.dumps({"codes": codes, "held": held, "written": conn.get(prefix + "x") == job.id.encode(),
                  "connections_kept": before <= connection_ids(),
                  "children_wrote": len(conn.keys(prefix + "child.*"))}))
"""


def test_forked_children_exiting_leave_the_parent_locks_alone(server):
    c = jobs_core.Coordinator(redis.Redis(port=server.port), PREFIX)
    c.create_outputs(["in"])
    r = subprocess.run([sys.executable, "-c", FORK, str(server.port), PREFIX], capture_output=True, text=True,
                       timeout=30, cwd=ROOT)
    injected("forked_child_exits", 4)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["codes"] == {"sys.exit": 0, "exception": 1, "stop": 0, "own_job": 0}, r.stderr
    assert result["held"] and result["written"] and result["children_wrote"] == 1
    assert result["connections_kept"]  # no child closed a connection the parent uses
    c.close()
