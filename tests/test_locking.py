"""The locking rules of DESIGN.md §1 and the promises of §4, on every backend."""

from __future__ import annotations

import time

import pytest

import jobs_core
from jobs_core import LockLost, ResourceUnavailable

from .conftest import keyspace


def text(v):
    return v.decode() if isinstance(v, bytes) else v


def test_success_writes_outputs_with_job_id(coordinator, client, prefix):
    with coordinator.job([], ["a", "b"], duration=5) as job:
        assert client.get(prefix + "olock:a") is not None
        assert not client.exists(prefix + "a")
    assert text(client.get(prefix + "a")) == job.id
    assert text(client.get(prefix + "b")) == job.id
    assert not client.exists(prefix + "olock:a", prefix + "olock:b")
    assert client.zcard(prefix + "jobs:running") == 0
    assert not client.exists(prefix + "jobs:running:" + job.id)


def test_failure_leaves_outputs_untouched(coordinator, client, prefix):
    client.set(prefix + "a", "earlier")
    with pytest.raises(RuntimeError), coordinator.job([], ["a", "b"], duration=5):
        raise RuntimeError("boom")
    assert text(client.get(prefix + "a")) == "earlier"
    assert not client.exists(prefix + "b")
    assert not client.exists(prefix + "olock:a", prefix + "olock:b")
    job = coordinator.job([], ["c"], duration=5).start()
    job.stop(failed=True)
    assert not client.exists(prefix + "c")


def test_writer_excludes_writer_and_reader(coordinator):
    coordinator.create_outputs(["in"])
    with coordinator.job(["in"], ["x"], duration=5) as holder:
        with pytest.raises(ResourceUnavailable) as e:
            coordinator.job([], ["x"], duration=5).start()
        assert e.value.args[0] == {"output_locked": ["x"]}
        assert e.value.blockers[0].holder.job_id == holder.id
        with pytest.raises(ResourceUnavailable) as e:
            coordinator.job(["x"], [], duration=5).start()
        assert e.value.args[0] == {"input_missing": ["x"]}
    coordinator.job(["x"], [], duration=5).start().stop()


def test_written_input_being_rewritten_is_unavailable(coordinator):
    coordinator.create_outputs(["x"])
    with coordinator.job([], ["x"], duration=5):
        with pytest.raises(ResourceUnavailable) as e:
            coordinator.job(["x"], ["y"], duration=5).start()
        assert e.value.args[0] == {"input_missing": ["x"]}
        assert e.value.blockers[0].holder is not None


def test_readers_share_and_exclude_writers(coordinator):
    coordinator.create_outputs(["x"])
    r1 = coordinator.job(["x"], [], duration=5).start()
    r2 = coordinator.job(["x"], [], duration=5).start()
    with pytest.raises(ResourceUnavailable) as e:
        coordinator.job([], ["x"], duration=5).start()
    assert e.value.args[0] == {"output_used": ["x"]}
    assert {b.holder.job_id for b in e.value.blockers} == {r1.id, r2.id}
    r1.stop()
    with pytest.raises(ResourceUnavailable):
        coordinator.job([], ["x"], duration=5).start()
    r2.stop()
    coordinator.job([], ["x"], duration=5).start().stop()


def test_start_is_all_or_nothing(coordinator, client, prefix):
    holder = coordinator.job([], ["b"], duration=5).start()
    before = keyspace(client, prefix)
    with pytest.raises(ResourceUnavailable) as e:
        coordinator.job(["missing"], ["a", "b", "c"], duration=5).start()
    assert e.value.args[0] == {"input_missing": ["missing"], "output_locked": ["b"]}
    assert keyspace(client, prefix) == before
    holder.stop()


def test_overwrite_false_refuses_existing_output_without_waiting(coordinator):
    first = coordinator.job([], ["x"], duration=5).start()
    first.stop()
    job = coordinator.job([], ["x"], duration=5, wait=10, overwrite=False)
    t0 = time.monotonic()
    with pytest.raises(ResourceUnavailable) as e:
        job.start()
    assert time.monotonic() - t0 < 1
    assert e.value.args[0] == {"output_exists": ["x"]}
    assert e.value.blockers[0].holder.job_id == first.id


def test_same_name_read_and_written(coordinator, client, prefix):
    coordinator.create_outputs(["state"])
    with coordinator.job(["state"], ["state"], duration=5) as job:
        job.refresh()
        assert job.lost is None
        with pytest.raises(ResourceUnavailable):
            coordinator.job(["state"], [], duration=5).start()
    assert text(client.get(prefix + "state")) == job.id


def test_fencing_tokens_grow_per_prefix(backend, make_coordinator, prefix):
    a = make_coordinator()
    b = make_coordinator()
    other = make_coordinator(prefix=prefix + "other:")
    tokens = []
    for c in (a, b, a, b):
        with c.job([], ["x"], duration=5) as job:
            tokens.append(job.token)
    assert tokens == sorted(tokens) and len(set(tokens)) == 4
    with other.job([], ["x"], duration=5) as job:
        assert job.token == 1


def test_stale_holder_cannot_commit_after_lease_expiry(coordinator, client, prefix):
    stale = coordinator.job([], ["x"], duration=0.15, heartbeat=False).start()
    time.sleep(0.3)
    fresh = coordinator.job([], ["x"], duration=5).start()
    assert fresh.token > stale.token
    with pytest.raises(LockLost) as e:
        stale.stop()
    assert e.value.lost == {"output_lock_lost": ["x"]}
    assert not client.exists(prefix + "x")
    assert text(client.get(prefix + "olock:x")) == fresh.id
    fresh.stop()
    assert text(client.get(prefix + "x")) == fresh.id


def test_lost_input_lock_blocks_every_output(coordinator, client, prefix):
    """All or nothing: one lost lock (here a read lock) and no output is written."""
    coordinator.create_outputs(["in"])
    job = coordinator.job(["in"], ["out1", "out2"], duration=5, heartbeat=False).start()
    coordinator.unlock(inputs=["in"])
    with pytest.raises(LockLost) as e:
        job.stop()
    assert e.value.lost == {"input_lock_lost": ["in"]}
    assert not client.exists(prefix + "out1", prefix + "out2")
    assert not client.exists(prefix + "olock:out1", prefix + "olock:out2")


def test_forced_unlock_fences_out_holder(coordinator, client, prefix):
    holder = coordinator.job([], ["x"], duration=5, heartbeat=False).start()
    assert coordinator.unlock(outputs=["x"]) == 1
    newer = coordinator.job([], ["x"], duration=5).start()
    with pytest.raises(LockLost):
        holder.refresh()
    with pytest.raises(LockLost):
        holder.stop()
    newer.stop()
    assert text(client.get(prefix + "x")) == newer.id


def test_failed_stop_after_loss_does_not_raise(coordinator, client, prefix):
    job = coordinator.job([], ["x"], duration=5, heartbeat=False).start()
    coordinator.unlock(outputs=["x"])
    job.stop(failed=True)
    assert not job.is_running and not client.exists(prefix + "x")


def test_refresh_extends_lease(coordinator, client, prefix):
    job = coordinator.job([], ["x"], duration=0.5, heartbeat=False).start()
    time.sleep(0.3)
    job.refresh()
    assert client.pttl(prefix + "olock:x") > 400
    time.sleep(0.3)
    job.stop()
    assert text(client.get(prefix + "x")) == job.id


def test_refresh_reports_loss_once_to_on_lost(coordinator):
    calls = []
    job = coordinator.job([], ["x", "y"], duration=5, heartbeat=False, on_lost=calls.append).start()
    coordinator.unlock(outputs=["y"])
    for _ in range(2):
        with pytest.raises(LockLost) as e:
            job.refresh()
        assert e.value.lost == {"output_lock_lost": ["y"]}
    assert calls == [job]
    assert job.lost == {"output_lock_lost": ["y"]}
    with pytest.raises(LockLost):
        job.check()
    job.stop(failed=True)


def test_replayed_stop_completes_once(coordinator, client, prefix):
    """A stop whose reply was lost (redis-py retries it) is answered from the holder record."""
    job = coordinator.job([], ["x"], duration=5, heartbeat=False).start()
    plan = job._plan
    job._stop_nonce = "lost-reply"  # as a first stop() call that failed in flight leaves it
    coordinator.scripts.stop(plan.keys, plan.stop_args(job.token, True, "lost-reply"))  # the 'lost reply' call
    assert text(client.get(prefix + "x")) == job.id
    job.stop()  # the repeat: status 2, no LockLost
    assert not job.is_running


def test_replayed_start_returns_the_same_token(coordinator, client, prefix):
    """A start whose reply was lost and is replayed (same call, same nonce) changes nothing."""
    job = coordinator.job([], ["x"], duration=5, heartbeat=False).start()
    plan = job._plan
    nonce = text(client.hget(prefix + "jobs:holder:" + job.id, "nonce"))
    reply = coordinator.scripts.start(plan.keys, plan.start_args(nonce))
    assert int(reply[0]) == 1 and int(reply[1]) == job.token
    assert int(client.get(prefix + "jobs:token")) == job.token
    job.stop()
    assert text(client.get(prefix + "x")) == job.id


def test_one_start_per_job_id_at_a_time(make_coordinator, client, prefix):
    """Two runs with the same fixed id (a retry while the first still runs) never overlap."""
    a, b = make_coordinator(), make_coordinator()
    first = a.job([], ["x"], duration=5, heartbeat=False, job_id="nightly.build").start()
    with pytest.raises(ResourceUnavailable) as e:
        b.job(["x"], [], duration=5, job_id="nightly.build").start()
    assert e.value.args[0] == {"job_running": ["nightly.build"], "input_missing": ["x"]}
    assert e.value.blockers[0].holder.job_id == "nightly.build"
    first.stop()
    second = b.job([], ["x"], duration=5, heartbeat=False, job_id="nightly.build").start()
    assert second.token > first.token
    second.stop()
    assert text(client.get(prefix + "x")) == "nightly.build"


def test_job_id_free_again_after_its_lease(make_coordinator, client, prefix):
    a, b = make_coordinator(), make_coordinator()
    a.job([], ["x"], duration=0.2, heartbeat=False, job_id="crashed").start()  # never stopped
    second = b.job([], ["x"], duration=5, wait=3, job_id="crashed").start()
    assert second.waited > 0.1
    second.stop()


def test_output_ttl(make_coordinator, client, prefix):
    c = make_coordinator(output_ttl=30)
    c.job([], ["x"], duration=5).start().stop()
    assert 25_000 < client.pttl(prefix + "x") <= 30_000
    assert 25_000 < client.pttl(prefix + "jobs:output:x") <= 30_000
    c.job([], ["y"], duration=5, output_ttl=None).start().stop()
    assert client.pttl(prefix + "y") == -1


def test_holder_facts_and_running_jobs(coordinator):
    import os
    import socket

    coordinator.create_outputs(["in"])
    with coordinator.job(["in"], ["out"], duration=5) as job:
        (running,) = coordinator.running_jobs()
        assert running.job_id == job.id
        assert running.inputs == ("in",) and running.outputs == ("out",)
        assert running.token == job.token
        assert running.host == socket.gethostname() and running.pid == os.getpid()
        assert running.expires > running.started
        report = coordinator.why_blocked([], ["out", "in"])
        assert not report.can_start
        assert report.reasons == {"output_locked": ["out"], "output_used": ["in"]}
        for b in report.blockers:
            assert b.holder.job_id == job.id and b.holder.pid == os.getpid() and b.holder.token == job.token
            assert 0 < b.holder.expires - report.now <= 5
        info = coordinator.output_info("out")
        assert not info.written and info.write_lock.job_id == job.id
        assert coordinator.output_info("in").readers[0].job_id == job.id
    assert coordinator.running_jobs() == []
    assert coordinator.why_blocked(["in", "out"], ["out2"]).can_start
    info = coordinator.output_info("out")
    assert info.written and info.writer == job.id and info.token == job.token
    assert abs(info.written_at - info.now) < 5 and info.ttl is None and info.write_lock is None


def test_output_info_ignores_facts_of_a_plain_overwrite(coordinator, client, prefix):
    coordinator.job([], ["x"], duration=5).start().stop()
    client.set(prefix + "x", "someone-else")
    info = coordinator.output_info("x")
    assert info.written and info.writer == "someone-else" and info.token is None


def test_create_outputs_is_a_fenced_repair(coordinator, client, prefix):
    holder = coordinator.job([], ["x"], duration=5, heartbeat=False).start()
    token = coordinator.create_outputs(["x", "y"], job_id="repair.by.hand")
    assert token > holder.token
    assert text(client.get(prefix + "x")) == "repair.by.hand"
    info = coordinator.output_info("y")
    assert info.writer == "repair.by.hand" and info.forced and info.token == token
    with pytest.raises(LockLost):
        holder.stop()
    assert text(client.get(prefix + "x")) == "repair.by.hand"


def test_lineage_edges_fold_digits(coordinator):
    coordinator.create_outputs(["raw.2026-11-27"])
    coordinator.job(["raw.2026-11-27"], ["clean.2026-11-27"], duration=5, name="etl.clean").start().stop()
    ins, outs = coordinator.edges()
    assert ins == ["raw.* -> etl.clean.*"]
    assert outs == ["etl.clean.* -> clean.*"]
    assert coordinator.edges(after=time.time() + 3600) == ([], [])


def test_history_off_records_no_edges(make_coordinator, client, prefix):
    c = make_coordinator(history=False)
    c.job([], ["x"], duration=5).start().stop()
    assert not client.exists(prefix + "jobs:graph:input", prefix + "jobs:graph:output")


def test_decorator_runs_a_fresh_job_per_call(coordinator, client, prefix):
    seen = []

    @coordinator.job([], ["x"], duration=5)
    def build(n, job):
        seen.append((job.id, job.token))
        assert job.is_running
        if n < 0:
            raise ValueError(n)
        return n * 2

    assert build(2) == 4 and build(3) == 6
    assert len({i for i, _ in seen}) == 2 and seen[0][1] < seen[1][1]
    assert text(client.get(prefix + "x")) == seen[1][0]
    with pytest.raises(ValueError):
        build(-1)
    assert text(client.get(prefix + "x")) == seen[1][0]


def test_decorator_without_job_parameter(coordinator, client, prefix):
    @coordinator.job([], ["y"], duration=5)
    def build():
        return "done"

    assert build() == "done" and client.exists(prefix + "y")


def test_stop_when_not_running_is_a_no_op(coordinator):
    job = coordinator.job([], ["x"], duration=5)
    job.stop()
    with pytest.raises(jobs_core.NotRunning):
        job.refresh()
    with pytest.raises(jobs_core.NotRunning):
        job.check()


def test_start_twice_keeps_one_start(coordinator):
    job = coordinator.job([], ["x"], duration=5).start()
    token = job.token
    assert job.start() is job and job.token == token
    job.stop()


def test_waiting_jobs_are_listed(real_backend, prefix):
    import threading

    c = jobs_core.Coordinator(real_backend.client(), prefix)
    holder = c.job([], ["x"], duration=5).start()
    waiter = c.job([], ["x"], duration=5, wait=5)
    t = threading.Thread(target=waiter.start)
    t.start()
    deadline = time.monotonic() + 3
    while not c.waiting_jobs() and time.monotonic() < deadline:
        time.sleep(0.01)
    (w,) = c.waiting_jobs()
    assert w.job_id == waiter.id and w.outputs == ("x",)
    assert c.output_info("x").waiters == (waiter.id,)
    holder.stop()
    t.join(5)
    assert waiter.is_running and c.waiting_jobs() == []
    waiter.stop()


def test_decorated_job_is_named_after_the_function(coordinator):
    @coordinator.job([], ["x"], duration=5)
    def nightly_report(job):
        return job.id

    assert nightly_report().split(":")[-1].startswith("nightly_report.")
    named = coordinator.job([], ["y"], duration=5, name="custom")(lambda job: job.id)
    assert named().startswith("custom.")


def test_resume_takes_over_a_start_made_elsewhere(make_coordinator, client, prefix):
    """A start made by one process (a shell script, a deferred task) is finished by another."""
    first, second = make_coordinator(), make_coordinator()
    started = first.job([], ["x"], duration=5, heartbeat=False, job_id="shell.job").start()
    job = second.job([], ["x"], duration=5, job_id="shell.job")
    with pytest.raises(LockLost):
        second.job([], ["x"], duration=5, job_id="shell.job").resume(started.token + 1)
    job.resume(started.token)
    assert job.is_running and job.token == started.token
    job.stop()
    assert text(client.get(prefix + "x")) == "shell.job"
    started.stop()  # the same start, already finished elsewhere: answered from the holder record
    assert not started.is_running


def test_jobs_with_many_names(coordinator, client, prefix):
    """Past the scripts' batching sizes (500 edges, 250 outputs per MSET), within MAX_NAMES (1000) in all."""
    def letters(i):  # digit-free, so lineage keeps every name apart
        return "".join(chr(97 + int(d)) for d in str(i))

    inputs = [f"in.{letters(i)}" for i in range(501)]
    outputs = [f"out.{letters(i)}" for i in range(499)]
    coordinator.create_outputs(inputs)
    with coordinator.job(inputs, outputs, duration=10) as job:
        assert client.zcard(prefix + "ilock:" + inputs[-1]) == 1
    assert all(text(v) == job.id for v in client.mget([prefix + o for o in outputs]))
    assert coordinator.output_info(outputs[-1]).token == job.token
    ins, outs = coordinator.edges()
    assert len(ins) == 501 and len(outs) == 499


def test_stop_job_from_another_process(make_coordinator, client, prefix):
    a, b = make_coordinator(), make_coordinator()
    a.create_outputs(["in"])
    started = a.job(["in"], ["out"], duration=30, heartbeat=False, job_id="shell").start()
    assert b.stop_job("shell") == "written"
    assert text(client.get(prefix + "out")) == "shell"
    assert b.output_info("out").token == started.token
    with pytest.raises(jobs_core.NotRunning):
        b.stop_job("shell")


def test_stop_job_with_a_lost_lock_releases_the_rest(make_coordinator, client, prefix):
    a, b = make_coordinator(), make_coordinator()
    a.create_outputs(["in"])
    a.job(["in"], ["out1", "out2"], duration=30, heartbeat=False, job_id="shell").start()
    b.unlock(outputs=["out1"])
    with pytest.raises(LockLost) as e:
        b.stop_job("shell")
    assert e.value.lost == {"output_lock_lost": ["out1"]}
    assert not client.exists(prefix + "out1", prefix + "out2", prefix + "olock:out2", prefix + "ilock:in")
    assert b.running_jobs() == []


def test_server_time(coordinator):
    assert abs(coordinator.server_time() - time.time()) < 5


def test_written(coordinator):
    coordinator.create_outputs(["a", "c"], job_id="w")
    assert coordinator.written(["a", "b", "c"]) == {"a": "w", "c": "w"}
    assert coordinator.written([]) == {}


def test_a_wait_ended_by_an_existing_output_leaves_no_waiting_record(real_backend, prefix):
    import threading

    c = jobs_core.Coordinator(real_backend.client(), prefix)
    holder = c.job([], ["x"], duration=30).start()
    threading.Timer(0.2, holder.stop).start()
    with pytest.raises(ResourceUnavailable) as e:
        c.job([], ["x"], duration=5, wait=60, overwrite=False).start()
    assert e.value.args[0] == {"output_exists": ["x"]}
    assert c.waiting_jobs() == []


def test_detach_hands_the_locks_over(make_coordinator, client, prefix):
    a, b = make_coordinator(), make_coordinator()
    job = a.job([], ["x"], duration=1, job_id="deferred.task").start()
    token = job.detach(lease=60)
    assert not job.is_running and token == job.token
    assert client.pttl(prefix + "olock:x") > 55_000  # the new lease, not renewed by a's heartbeat
    assert b.holder("deferred.task").token == token
    later = b.job([], ["x"], duration=5, job_id="deferred.task").resume(token)
    later.stop()
    assert text(client.get(prefix + "x")) == "deferred.task"
    assert b.holder("deferred.task") is None


def test_detach_after_a_loss_raises(coordinator):
    job = coordinator.job([], ["x"], duration=5, heartbeat=False).start()
    coordinator.unlock(outputs=["x"])
    with pytest.raises(LockLost):
        job.detach(lease=60)


def test_wait_ready_takes_no_lock(real_backend, prefix):
    import threading

    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    writer = c.job([], ["in"], duration=30).start()
    threading.Timer(0.2, writer.stop).start()
    t0 = time.monotonic()
    report = c.wait_ready(["in"], timeout=10)
    assert report.can_start and 0.15 < time.monotonic() - t0 < 1.0
    assert c.output_info("in").readers == ()
    with pytest.raises(ResourceUnavailable) as e:
        c.wait_ready(["missing"], timeout=0.2)
    assert e.value.args[0] == {"input_missing": ["missing"]} and e.value.waited >= 0.2


def test_lineage_names_and_output_edges_only_when_written(real_backend, prefix):
    """A job's lineage name names it in the edges (given, else its id folded); what it reads is recorded
    at its start, what it writes only when it writes it (a job that failed produced nothing)."""
    c = jobs_core.Coordinator(real_backend.client(), prefix)
    c.create_outputs(["raw.2026-11-27"])
    ok = c.job(["raw.2026-11-27"], ["clean.2026-11-27"], duration=30, lineage_name="airflow/etl/clean",
               job_id="airflow/etl/clean/manual__2026-11-27").start()
    ins, outs = c.edges()
    assert ins == ["raw.* -> airflow/etl/clean"] and outs == []  # not written yet
    ok.stop()
    assert c.edges()[1] == ["airflow/etl/clean -> clean.*"]
    with c.job(["raw.2026-11-27"], ["other.2026-11-27"], duration=30, job_id="sched.123") as job:
        pass
    assert "sched.* -> other.*" in c.edges()[1]
    failed = c.job(["raw.2026-11-27"], ["never.2026-11-27"], duration=30, lineage_name="fails").start()
    failed.stop(failed=True)
    ins, outs = c.edges()
    assert "raw.* -> fails" in ins and not any(e.endswith("never.*") for e in outs)
    with pytest.raises(jobs_core.InvalidName):
        c.job([], ["x"], duration=30, lineage_name="bad -> name")
    assert job.lineage_name is None and ok.lineage_name == "airflow/etl/clean"
