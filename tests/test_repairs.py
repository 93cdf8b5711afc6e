"""Repairs act on what was shown (issue 13, item 18); one malformed record disables nothing (item 19).

* ``unlock`` and ``create`` (the API with ``expected=``, and the command, which
  always passes what it showed) release or write only if the locks and writers
  are still those shown, compared inside the script (job ids and fencing
  tokens); otherwise they change nothing, publish nothing, and say which names
  changed (``StateChanged``; the command exits 5). Replays stay safe.
* Holder, waiting, names and facts records that are malformed (bad JSON,
  non-integer fields, a key of the wrong type) are shown as far as they can be
  read and flagged in ``problems``; status, watch, show, why-blocked, unlock and
  create keep working, and repair them.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import jobs_core
from jobs_core import AsyncCoordinator, Coordinator, LockLost, StateChanged
from jobs_core.protocol import text

from .conftest import Backend
from .test_acl import set_user
from .test_cli import Cli, Result, clean_env


def token_counter(client: Any, prefix: str) -> int:
    return int(client.get(prefix + "jobs:token") or 0)


def wake_messages(pubsub: Any, wait: float) -> list[str]:
    read = pubsub.get_sharded_message if getattr(pubsub, "sharded", False) else pubsub.get_message
    out, deadline = [], time.monotonic() + wait
    while time.monotonic() < deadline:
        m = read(timeout=0.05)
        if m and m["type"] in ("message", "smessage"):
            out.append(text(m["data"]))
    return out


@pytest.fixture
def pubsub(real_backend: Backend, prefix: str) -> Iterator[Any]:
    """A subscription to the namespace's wake-up channel (sharded, on its node, on a cluster)."""
    client = real_backend.client()
    channel = prefix + "jobs:wake"
    if real_backend.cluster is not None:
        node = client.get_node_from_key(channel)
        p = (getattr(node, "redis_connection", None) or node.valkey_connection).pubsub()  # redis-py / valkey-py
        p.ssubscribe(channel)
        p.sharded = True
    else:
        p = client.pubsub()
        p.subscribe(channel)
    wake_messages(p, 0.1)
    yield p
    p.close()
    client.close()


@pytest.fixture
def c(real_backend: Backend, prefix: str) -> Iterator[Coordinator]:
    client = real_backend.client()
    coordinator = Coordinator(client, prefix)
    yield coordinator
    client.close()


def job(c: Coordinator, inputs: list[str], outputs: list[str], job_id: str) -> jobs_core.Job:
    return c.job(inputs, outputs, duration=30, heartbeat=False, job_id=job_id)


# -- 18: compare-and-release, through the API ----------------------------------------------------------


def test_unlock_releases_only_the_writer_shown(c: Coordinator, prefix: str, pubsub: Any) -> None:
    first = job(c, [], ["x"], "writer").start()
    shown = c.output_info("x")
    first.stop(failed=True)
    second = job(c, [], ["x"], "writer").start()  # the same job id, a new start (another token)
    wake_messages(pubsub, 0.3)  # the stop's own
    counter = token_counter(c.client, prefix)
    with pytest.raises(StateChanged) as changed:
        c.unlock(outputs=["x"], expected=[shown])
    assert changed.value.names == ("x",) and "nothing was unlocked" in str(changed.value)
    assert token_counter(c.client, prefix) == counter  # nobody was fenced
    assert wake_messages(pubsub, 0.3) == []  # nothing released, nobody woken
    second.refresh()  # still holds its lock
    assert c.unlock(outputs=["x"], expected=[c.output_info("x")]) == 1
    assert wake_messages(pubsub, 2)[:1] == ["x"]
    with pytest.raises(LockLost):
        second.stop()


def test_unlock_compares_every_reader_and_free_names(c: Coordinator, prefix: str) -> None:
    c.create_outputs(["in"], job_id="seed")
    readers = [job(c, ["in"], [], f"reader-{i}").start() for i in range(2)]
    shown = [c.output_info("in"), c.output_info("free")]
    late = job(c, ["in"], [], "late-reader").start()
    with pytest.raises(StateChanged) as changed:
        c.unlock(["in"], ["free"], expected=shown)
    assert changed.value.names == ("in",)
    late.stop()  # the readers are those shown again
    taker = job(c, [], ["free"], "taker").start()  # but a name shown free is locked now
    with pytest.raises(StateChanged) as changed:
        c.unlock(["in"], ["free"], expected=shown)
    assert changed.value.names == ("free",)
    taker.stop()
    assert c.unlock(["in"], ["free"], expected=shown) == 1
    for reader in readers:
        with pytest.raises(LockLost):
            reader.refresh()


def test_unlock_of_a_jobspy_holder_shown(c: Coordinator, prefix: str) -> None:
    c.client.set(prefix + "olock:legacy", "legacy-job.123", px=30_000)  # a jobspy writer keeps no holder record
    shown = c.output_info("legacy")
    assert shown.write_lock is not None and shown.write_lock.token is None
    c.client.set(prefix + "olock:legacy", "other-legacy.456", px=30_000)
    with pytest.raises(StateChanged):
        c.unlock(outputs=["legacy"], expected=[shown])
    assert c.unlock(outputs=["legacy"], expected=[c.output_info("legacy")]) == 1
    assert c.client.exists(prefix + "olock:legacy") == 0


def test_create_writes_only_over_the_state_shown(c: Coordinator, prefix: str, pubsub: Any) -> None:
    shown = c.output_info("y")  # not written, not locked
    with job(c, [], ["y"], "fast-writer"):
        pass
    wake_messages(pubsub, 0.3)  # the stop's own
    counter = token_counter(c.client, prefix)
    with pytest.raises(StateChanged) as changed:
        c.create_outputs(["y"], job_id="repair", expected=[shown])
    assert changed.value.names == ("y",) and "nothing was created" in str(changed.value)
    assert text(c.client.get(prefix + "y")) == "fast-writer" and token_counter(c.client, prefix) == counter
    assert wake_messages(pubsub, 0.3) == []

    held = job(c, [], ["z"], "slow-writer").start()
    shown = [c.output_info("y"), c.output_info("z")]
    held.stop(failed=True)
    again = job(c, [], ["z"], "slow-writer").start()
    with pytest.raises(StateChanged) as changed:
        c.create_outputs(["y", "z"], job_id="repair", expected=shown)
    assert changed.value.names == ("z",)
    assert c.client.get(prefix + "z") is None
    wake_messages(pubsub, 0.3)
    token = c.create_outputs(["y", "z"], job_id="repair", expected=[c.output_info("y"), c.output_info("z")])
    assert c.output_info("z").token == token and c.output_info("y").writer == "repair"
    assert wake_messages(pubsub, 2)[:1] == ["y\nz"]
    with pytest.raises(LockLost):
        again.stop()


def test_expected_must_cover_every_name(c: Coordinator) -> None:
    with pytest.raises(jobs_core.InvalidArgument, match="no OutputInfo for 'b'"):
        c.unlock(["a"], ["b"], expected=[c.output_info("a")])
    with pytest.raises(jobs_core.InvalidType):
        c.create_outputs(["a"], expected=c.output_info("a"))
    with pytest.raises(jobs_core.InvalidType):
        c.unlock(outputs=["a"], expected=["a"])


def test_a_replayed_compare_and_release_repeats_its_answer(c: Coordinator, prefix: str) -> None:
    job(c, [], ["x"], "first").start()
    step = next(c._unlock_flow([], ["x"], [c.output_info("x")]))
    keys, args = step.keys, step.args
    assert c.scripts.unlock(keys, args)[0] == 1
    newer = job(c, [], ["x"], "second").start()
    assert c.scripts.unlock(keys, args)[0] == 1  # the replay repeats the answer ...
    assert text(c.client.get(prefix + "olock:x")) == "second"  # ... and releases nothing
    shown = c.output_info("x")
    newer.stop()
    step = next(c._unlock_flow([], ["x"], [shown]))
    keys, args = step.keys, step.args
    assert list(map(int, c.scripts.unlock(keys, args))) == [-1, 1]  # changed: the lock is gone
    job(c, [], ["x"], "second").start()
    assert list(map(int, c.scripts.unlock(keys, args))) == [-1, 1]  # a replay does not release the next


def test_async_twins_take_expected(real_backend: Backend, prefix: str, c: Coordinator) -> None:
    async def go() -> None:
        ac = AsyncCoordinator(real_backend.async_client(), prefix)
        try:
            holder = job(c, [], ["ax"], "a-writer").start()
            shown = await ac.output_info("ax")
            holder.stop(failed=True)
            job(c, [], ["ax"], "a-writer").start()
            with pytest.raises(StateChanged):
                await ac.unlock(outputs=["ax"], expected=[shown])
            with pytest.raises(StateChanged):
                await ac.create_outputs(["ax"], expected=[shown])
            assert await ac.unlock(outputs=["ax"], expected=[await ac.output_info("ax")]) == 1
            assert await ac.create_outputs(["ax"], job_id="fix", expected=[await ac.output_info("ax")]) > 0
        finally:
            await ac.aclose()

    asyncio.run(go())


# -- 18: the command confirms what it showed ----------------------------------------------------------


@pytest.fixture
def cli(redis7: Backend, prefix: str) -> Iterator[Cli]:
    made = Cli(redis7, prefix, decode=False)
    yield made
    made.close()


def answer_after(cli: Cli, argv: list[str], meanwhile: Callable[[], None]) -> Result:
    """Run the command on a terminal; when it asks, run ``meanwhile``, then type "y"."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "jobs_core", *argv], env=clean_env(cli.url, cli.prefix),
                                stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        err = b""
        deadline = time.monotonic() + 20
        while b"[y/N] " not in err:
            assert time.monotonic() < deadline and proc.poll() is None, err
            ready, _, _ = select.select([proc.stderr], [], [], 0.1)
            if ready:
                err += os.read(proc.stderr.fileno(), 4096)
        meanwhile()
        os.write(leader, b"y\n")
        out, rest = proc.communicate(timeout=20)
    finally:
        os.close(leader)
        os.close(follower)
    return Result(proc.returncode, out.decode(), (err + rest).decode())


def test_unlock_confirmed_after_the_holder_changed_does_nothing(cli: Cli) -> None:
    first = cli.job([], ["tty.out"], job_id="tty-writer").start()
    taken: list[jobs_core.Job] = []

    def retaken() -> None:
        first.stop(failed=True)
        taken.append(cli.job([], ["tty.out"], job_id="intruder").start())

    r = answer_after(cli, ["unlock", "-o", "tty.out"], retaken)
    assert r.code == 5, r.err
    assert "write lock on tty.out: tty-writer (token" in r.err
    assert "nothing changed: the locks on tty.out changed after they were shown" in r.err
    assert cli.get("olock:tty.out") == "intruder"
    taken[0].refresh()  # not fenced out
    r = answer_after(cli, ["unlock", "-o", "tty.out"], lambda: None)
    assert r.code == 0 and "released 1 lock key" in r.out, r.err
    with pytest.raises(LockLost):
        taken[0].stop()


def test_create_confirmed_after_a_write_does_nothing(cli: Cli) -> None:
    def written() -> None:
        with cli.job([], ["tty.made"], job_id="real-writer"):
            pass

    r = answer_after(cli, ["create", "tty.made", "--writer", "fix"], written)
    assert r.code == 5, r.err
    assert "tty.made (not written)" in r.err and "changed after they were shown" in r.err
    assert cli.get("tty.made") == "real-writer"
    r = cli.run("create", "tty.made", "--writer", "fix", "--yes")
    assert r.code == 0 and cli.get("tty.made") == "fix", r.err
    assert "exit codes:" in cli.run("unlock", "--help").out and "5    unlock/create" in cli.run("unlock", "--help").out


# -- 19: malformed records --------------------------------------------------------------------------


@pytest.fixture
def broken(c: Coordinator, prefix: str) -> Iterator[dict[str, Any]]:
    """A namespace with one malformed record of every kind beside healthy ones."""
    r, p = c.client, prefix
    now = c.server_time()
    c.create_outputs(["in"], job_id="seed")
    jobs = {name: job(c, ["in"], [f"{name}.out"], name).start() for name in ("badpid", "wrongtype", "badtoken", "ok")}
    r.hset(p + "jobs:holder:badpid", mapping={"pid": "abc", "started": "soon"})
    r.delete(p + "jobs:holder:wrongtype")
    r.rpush(p + "jobs:holder:wrongtype", "not", "a", "hash")
    r.hset(p + "jobs:holder:badtoken", "token", "12x")
    for job_id, io in (("badjson", "[not json"), ("notalist", '{"a": 1}'), ("mixed", '["in", 5, "", "m.out"]')):
        r.zadd(p + "jobs:running", {job_id: now + 60})
        r.set(p + "jobs:running:" + job_id, io, px=60_000)
    r.zadd(p + "jobs:waiting", {"w-badjson": now + 30, "w-wrongtype": now + 30, "w-fields": now + 30})
    r.set(p + "jobs:waiting:w-badjson", "{oops", px=30_000)
    r.hset(p + "jobs:waiting:w-wrongtype", "io", "[]")
    r.pexpire(p + "jobs:waiting:w-wrongtype", 30_000)
    r.set(p + "jobs:waiting:w-fields", json.dumps({"id": "w-fields", "names": ["in", "wrongtype.out"], "nin": 1,
                                                   "host": 5, "pid": "x", "since": "then", "deadline": None}),
          px=30_000)
    with job(c, [], ["facts.bad"], "fw"):
        pass
    r.set(p + "jobs:output:facts.bad", "{broken")
    r.hset(p + "key.hash", "a", "b")  # an output key of the wrong type
    r.sadd(p + "olock:lock.set", "someone")  # a write lock of the wrong type
    r.set(p + "ilock:readers.string", "someone")  # read locks of the wrong type
    yield {"now": now, "jobs": jobs}
    for j in jobs.values():
        try:
            j.stop(failed=True)
        except Exception:  # noqa: BLE001 (stop.lua refuses a holder record of the wrong type: nothing to clean)
            pass


def test_malformed_records_are_shown_and_flagged(c: Coordinator, broken: dict[str, Any]) -> None:
    running = {j.job_id: j for j in c.running_jobs()}
    assert set(running) == {"badpid", "wrongtype", "badtoken", "ok", "badjson", "notalist", "mixed"}
    assert running["ok"].problems == () and running["ok"].token == broken["jobs"]["ok"].token
    bad = running["badpid"]
    assert bad.token == broken["jobs"]["badpid"].token and bad.pid is None and bad.started is None
    assert bad.outputs == ("badpid.out",) and "pid 'abc' is not an integer" in " ".join(bad.problems)
    assert running["wrongtype"].token is None and running["wrongtype"].outputs == ("wrongtype.out",)
    assert running["wrongtype"].problems == ("holder record: the key is not a hash",)
    assert running["badtoken"].token is None and "token '12x' is not a whole number" in running["badtoken"].problems[0]
    assert running["badjson"].inputs == () and "is not JSON" in running["badjson"].problems[0]
    assert "is not a list of names" in running["notalist"].problems[0]
    assert running["mixed"].inputs == ("in",) and running["mixed"].outputs == ("m.out",)
    assert running["mixed"].problems == ("names record: 1 entries are not names (text)",)

    waiting = {w.job_id: w for w in c.waiting_jobs()}
    assert set(waiting) == {"w-badjson", "w-wrongtype", "w-fields"}
    assert "is not JSON" in waiting["w-badjson"].problems[0]
    assert waiting["w-wrongtype"].problems == ("waiting record: the key is not a string",)
    fields = waiting["w-fields"]
    assert fields.outputs == ("wrongtype.out",) and fields.host is None and fields.pid is None
    assert fields.since is None and abs(fields.deadline - broken["now"] - 30) < 5 and len(fields.problems) == 3

    info = c.output_info("facts.bad")
    assert info.written and info.writer == "fw" and info.token is None and "is not JSON" in info.problems[0]
    info = c.output_info("key.hash")
    assert info.written and info.writer is None and info.unreadable == {"output"}
    assert c.output_info("lock.set").unreadable == {"write_lock"}
    assert c.output_info("readers.string").unreadable == {"readers"}
    info = c.output_info("wrongtype.out")
    assert info.write_lock.job_id == "wrongtype" and info.write_lock.problems and info.waiters == ("w-fields",)

    report = c.why_blocked(["badpid.out", "wrongtype.out"], ["badtoken.out"])
    assert {b.holder.job_id for b in report.blockers} == {"badpid", "wrongtype", "badtoken"}
    assert all(b.describe() for b in report.blockers)


def test_repairs_work_on_malformed_records(c: Coordinator, prefix: str, broken: dict[str, Any]) -> None:
    names = ["wrongtype.out", "badtoken.out", "lock.set", "readers.string"]
    shown = [c.output_info(n) for n in names]
    assert c.unlock(["readers.string"], names[:3], expected=shown) == 4
    for n in ("olock:wrongtype.out", "olock:badtoken.out", "olock:lock.set", "ilock:readers.string"):
        assert c.client.exists(prefix + n) == 0, n
    with pytest.raises(LockLost):  # fenced out (its record's token cannot be read, so it is not its start)
        broken["jobs"]["badtoken"].stop()
    token = c.create_outputs(["key.hash", "badpid.out"], job_id="fix",
                             expected=[c.output_info("key.hash"), c.output_info("badpid.out")])
    assert c.output_info("key.hash").writer == "fix" and c.output_info("key.hash").token == token


def test_the_command_keeps_working_on_malformed_records(cli: Cli) -> None:
    p, r = cli.prefix, cli.raw
    now = cli.coord.server_time()
    cli.write("in")
    held = cli.job(["in"], ["held.out"], job_id="held").start()
    r.hset(p + "jobs:holder:held", "pid", "not-a-pid")
    r.zadd(p + "jobs:running", {"garbled": now + 60})
    r.set(p + "jobs:running:garbled", "[[[", px=60_000)
    r.zadd(p + "jobs:waiting", {"w": now + 30})
    r.hset(p + "jobs:waiting:w", "x", "y")
    r.pexpire(p + "jobs:waiting:w", 30_000)
    r.sadd(p + "olock:set.lock", "x")
    runs = {
        "status": cli.run("status"), "status json": cli.run("status", "--json"),
        "watch": cli.run("watch", "--iterations", "1", "--interval", "0.1"),
        "show": cli.run("show", "held.out"), "show json": cli.run("show", "set.lock", "--json"),
        "why-blocked": cli.run("why-blocked", "-i", "held.out", "-o", "other"),
    }
    for where, result in runs.items():
        assert result.code in (0, 1) and "Traceback" not in result.err, (where, result)
    assert "running  garbled" in runs["status"].out and "  ! names record: '[[[' is not JSON" in runs["status"].out
    assert "  ! holder record: pid 'not-a-pid' is not an integer" in runs["status"].out
    assert "waiting  w" in runs["watch"].out and "! waiting record: the key is not a string" in runs["watch"].out
    doc = json.loads(runs["status json"].out)
    assert {j["job_id"]: j["problems"] for j in doc["running"]}["garbled"] == ["names record: '[[[' is not JSON"]
    assert json.loads(runs["show json"].out)["problems"] == ["write lock: the key is not a string"]
    assert "unreadable  holder record" not in runs["show"].out and "unreadable: holder record: pid" in runs["show"].out
    unlocked = cli.run("unlock", "-o", "held.out", "-o", "set.lock", "--yes")
    assert unlocked.code == 0 and "released 2 lock keys" in unlocked.out, unlocked.err
    assert "write lock on set.lock: unreadable (write lock: the key is not a string)" in unlocked.err
    created = cli.run("create", "held.out", "--yes")
    assert created.code == 0, created.err
    with pytest.raises(LockLost):
        held.stop()


def test_a_namespace_acl_user_runs_the_compared_repairs(redis7: Backend, prefix: str) -> None:
    """The README's ACL line suffices for the reads (read.lua) and the compare (unlock.lua, create.lua)."""
    admin = redis7.client()
    user, password = f"u{prefix.strip(':')}", "acl-pw-1"
    set_user(admin, user, prefix, password)
    c = Coordinator(redis.Redis.from_url(redis7.url, username=user, password=password), prefix)
    c.create_outputs(["in"], job_id="seed")
    reader = job(c, ["in"], [], "reader").start()
    writer = job(c, [], ["w"], "writer").start()
    admin.hset(prefix + "jobs:holder:writer", "pid", "bad")
    assert {j.job_id for j in c.running_jobs()} == {"reader", "writer"}
    shown = [c.output_info("in"), c.output_info("w")]
    assert c.unlock(["in"], ["w"], expected=shown) == 2
    assert c.create_outputs(["w"], job_id="fix", expected=[c.output_info("w")]) > 0
    with pytest.raises(StateChanged):
        c.unlock(outputs=["w"], expected=shown[1:])
    for j in (reader, writer):
        with pytest.raises(LockLost):
            j.stop()
    r = subprocess.run([sys.executable, "-m", "jobs_core", "status"], capture_output=True, text=True, timeout=30,
                       env=clean_env(f"redis://{user}:{password}@127.0.0.1:{redis7.url.split(':')[2]}", prefix))
    assert r.returncode == 0 and "0 running" in r.stdout, r.stderr
    assert password not in r.stdout + r.stderr
    c.client.close()
    admin.execute_command("ACL", "DELUSER", user)
    admin.close()
