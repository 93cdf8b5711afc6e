"""Waiting to start: push wake-ups, the fallback poll, limits and reports."""

from __future__ import annotations

import random
import threading
import time

import pytest

import jobs_core
from jobs_core import ResourceUnavailable
from jobs_core.protocol import text


def later(delay, fn, *args):
    t = threading.Timer(delay, fn, args)
    t.start()
    return t


def test_release_wakes_waiter_without_polling(real_backend, prefix):
    """The holder's lease is 30 s and the poll 30 s: only the published release can wake the waiter early."""
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    later(0.2, holder.stop)
    t0 = time.monotonic()
    waiter = c.job([], ["x"], duration=5, wait=10).start()
    elapsed = time.monotonic() - t0
    assert 0.15 < elapsed < 1.0
    assert waiter.blockers[0].holder.job_id == holder.id
    assert 0.15 < waiter.waited < 1.0
    waiter.stop()


def test_reader_release_wakes_writer(real_backend, prefix):
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    c.create_outputs(["x"])
    reader = c.job(["x"], [], duration=30).start()
    later(0.2, reader.stop)
    t0 = time.monotonic()
    c.job([], ["x"], duration=5, wait=10).start().stop()
    assert time.monotonic() - t0 < 1.0


def test_no_wake_up_is_lost_between_try_and_sleep(real_backend, prefix):
    """Releases at random moments around the waiter's first tries; none may be missed.

    With a 30 s lease and poll, a missed wake-up would stall the waiter for 30 s.
    """
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    for _ in range(30):
        holder = c.job([], ["x"], duration=30).start()
        later(random.uniform(0, 0.004), holder.stop)
        t0 = time.monotonic()
        c.job([], ["x"], duration=5, wait=10).start().stop()
        assert time.monotonic() - t0 < 1.0


def test_plain_set_is_seen_by_the_fallback_poll(real_backend, prefix):
    client = real_backend.client()
    c = jobs_core.Coordinator(client, prefix, poll=0.1)
    later(0.3, client.set, prefix + "x", "written-by-hand")
    t0 = time.monotonic()
    job = c.job(["x"], ["y"], duration=5, wait=5).start()
    assert 0.25 < time.monotonic() - t0 < 1.0
    job.stop()


def test_crashed_holder_is_waited_out_by_lease(real_backend, prefix):
    """A holder that never releases (it died): the waiter starts when its lease ends."""
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    c.job([], ["x"], duration=0.5, heartbeat=False).start()  # never stopped
    t0 = time.monotonic()
    c.job([], ["x"], duration=5, wait=5).start().stop()
    assert 0.3 < time.monotonic() - t0 < 1.5


def test_wait_limit_reports_what_blocked(real_backend, prefix):
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=0.05)
    holder = c.job([], ["x"], duration=10).start()
    t0 = time.monotonic()
    with pytest.raises(ResourceUnavailable) as e:
        c.job(["missing"], ["x"], duration=5, wait=0.4).start()
    assert 0.4 <= time.monotonic() - t0 < 1.5
    assert e.value.args[0] == {"input_missing": ["missing"], "output_locked": ["x"]}
    assert 0.4 <= e.value.waited < 1.5
    assert "held by " + holder.id in str(e.value)
    holder.stop()


def test_idle_waiter_costs_almost_nothing(redis7, prefix):
    """A waiter on a jobs_core holder sleeps on pub/sub: a handful of commands in a second."""
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    holder = c.job([], ["x"], duration=30).start()
    waiter = c.job([], ["x"], duration=5, wait=30)
    t = threading.Thread(target=waiter.start)
    t.start()
    time.sleep(0.3)
    before = client.info("stats")["total_commands_processed"]
    time.sleep(1.0)
    after = client.info("stats")["total_commands_processed"]
    holder.stop()
    t.join(5)
    waiter.stop()
    assert after - before <= 5  # the INFO call itself counts; jobs.py would run ~100 tries here


def test_waiting_job_in_other_process(real_backend, prefix):
    import multiprocessing as mp

    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_wait_in_child, args=(real_backend.url, prefix, q))
    p.start()
    assert q.get(timeout=20) == "waiting"
    deadline = time.monotonic() + 5
    while not c.waiting_jobs() and time.monotonic() < deadline:
        time.sleep(0.01)
    holder.stop()
    token, waited = q.get(timeout=10)
    p.join(5)
    assert token > holder.token and waited < 10


def _wait_in_child(url, prefix, q):
    c = jobs_core.Coordinator.from_url(url, prefix, poll=30)
    q.put("waiting")
    with c.job([], ["x"], duration=5, wait=20) as job:
        q.put((job.token, job.waited))


def test_many_waiting_jobs_share_one_subscription(redis7, prefix):
    """80 jobs waiting at once in one process hold one subscription between them, and all get their turn."""
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    done = []

    def wait_turn(i):
        with c.job([], ["x"], duration=30, wait=60):
            done.append(i)

    threads = [threading.Thread(target=wait_turn, args=(i,)) for i in range(80)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(c.waiting_jobs()) < 80 and time.monotonic() < deadline:
        time.sleep(0.05)
    subscribers = client.pubsub_numsub(prefix + "jobs:wake:" + c.channel_id, prefix + "jobs:wake")
    holder.stop()
    for t in threads:
        t.join(60)
    assert sorted(done) == list(range(80))
    assert [n for _, n in subscribers] == [1, 0]  # its own channel; nobody needs the broadcast one


def test_wake_ups_survive_a_killed_subscription(redis7, prefix):
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    result = []
    t = threading.Thread(target=lambda: result.append(c.job([], ["x"], duration=5, wait=20).start()))
    t.start()
    deadline = time.monotonic() + 5
    while not c.waiting_jobs() and time.monotonic() < deadline:
        time.sleep(0.01)
    client.client_kill_filter(_type="pubsub")  # the listener reconnects and wakes its waiters
    time.sleep(0.5)
    t0 = time.monotonic()
    holder.stop()
    t.join(10)
    assert result and result[0].is_running and time.monotonic() - t0 < 2
    result[0].stop()


def test_listener_stops_when_idle(redis7, prefix, monkeypatch):
    from jobs_core import listener

    monkeypatch.setattr(listener, "IDLE_EXIT", 0.1)
    monkeypatch.setattr(listener, "READ_TIMEOUT", 0.05)
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    holder = c.job([], ["x"], duration=30).start()
    threading.Timer(0.1, holder.stop).start()
    c.job([], ["x"], duration=5, wait=5).start().stop()
    channel = prefix + "jobs:wake:" + c.channel_id
    deadline = time.monotonic() + 3
    while client.pubsub_numsub(channel)[0][1] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.pubsub_numsub(channel)[0][1] == 0
    assert c._grants is not None and c._grants._thread is None


def _queue_turns(c, names_in_order, holder):
    """Start one waiting job per label, in order, each once it is queued; return the order of their turns."""
    turns = []

    def wait_turn(label):
        with c.job([], ["x"], duration=30, wait=30, name=label):
            turns.append(label)
            time.sleep(0.02)

    threads = []
    for label in names_in_order:
        t = threading.Thread(target=wait_turn, args=(label,))
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5
        while len(c.waiting_jobs()) < len(threads) and time.monotonic() < deadline:
            time.sleep(0.005)
    holder.stop()
    for t in threads:
        t.join(30)
    return turns


def test_waiting_writers_get_their_turns_in_order(real_backend, prefix):
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    order = [f"w{i}" for i in range(6)]
    assert _queue_turns(c, order, holder) == order


def _queue_in_child(url, prefix, q):
    c = jobs_core.Coordinator.from_url(url, prefix, poll=30)
    q.put("waiting")
    with c.job([], ["x"], duration=300, wait=60, job_id="slow.waiter") as job:
        q.put(job.token)


def test_a_frozen_first_in_line_gets_its_turn_and_a_dead_one_keeps_it_briefly(redis7, prefix):
    """The release grants the output to the first in line even while it is frozen (its place is alive
    30 s after its last try); a newcomer is refused. A waiter killed while waiting holds a grant no
    longer than its place would have lived, however long its lease."""
    import multiprocessing as mp
    import os
    import signal

    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    child = ctx.Process(target=_queue_in_child, args=(redis7.url, prefix, q))
    child.start()
    try:
        assert q.get(timeout=20) == "waiting"
        deadline = time.monotonic() + 10
        while not c.waiting_jobs() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGSTOP)  # the first in line stops answering
        holder.stop()
        with pytest.raises(ResourceUnavailable) as e:
            c.job([], ["x"], duration=5).start()
        assert e.value.args[0] == {"output_locked": ["x"]}
        assert e.value.blockers[0].holder.job_id == "slow.waiter"
        os.kill(child.pid, signal.SIGCONT)  # it wakes up and runs with the token it was granted
        assert q.get(timeout=10) > holder.token
        child.join(10)

        holder = c.job([], ["x"], duration=30).start()
        child = ctx.Process(target=_queue_in_child, args=(redis7.url, prefix, q))
        child.start()
        assert q.get(timeout=20) == "waiting"
        deadline = time.monotonic() + 10
        while not c.waiting_jobs() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)  # gone for good
        child.join(10)
        holder.stop()
        assert text(client.get(prefix + "olock:x")) == "slow.waiter"
        assert 0 < client.pttl(prefix + "olock:x") <= 30_000  # its lease is 300 s
        client.delete(prefix + "olock:x")  # as if those seconds passed
        c.job([], ["x"], duration=5).start().stop()
    finally:
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)


def test_a_gone_waiter_is_skipped(redis7, prefix):
    """A waiter whose place lapsed (no try for 30 s) is skipped by the release and by newcomers."""
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    gone = c.job([], ["x"], duration=30, wait=30, job_id="gone.waiter")
    t = threading.Thread(target=lambda: pytest.raises(jobs_core.CoordinatorClosed, gone.start))
    t.start()
    deadline = time.monotonic() + 5
    while not c.waiting_jobs() and time.monotonic() < deadline:
        time.sleep(0.005)
    (nonce,) = [text(m) for m in client.zrange(prefix + "jobs:waiting", 0, -1)]
    client.zadd(prefix + "jobs:waiting", {nonce: time.time() - 1}, xx=True)  # its 30 s passed
    holder.stop()
    c.job([], ["x"], duration=5).start().stop()
    assert client.zcard(prefix + "jobs:queue:x") == 0
    c.close()
    t.join(10)


def test_new_readers_wait_behind_a_waiting_writer(real_backend, prefix):
    """Writer preference: once a writer waits for a name, new readers of it wait behind it; readers
    already reading finish; the readers behind the writer are started together when it stops."""
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    c.create_outputs(["x"])
    reader = c.job(["x"], [], duration=30).start()
    writer = c.job([], ["x"], duration=30, wait=30)
    t = threading.Thread(target=writer.start)
    t.start()
    deadline = time.monotonic() + 5
    while not c.waiting_jobs() and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(ResourceUnavailable) as e:
        c.job(["x"], [], duration=5).start()
    assert e.value.args[0] == {"input_queued": ["x"]}
    later_readers = [c.job(["x"], [], duration=30, wait=30) for _ in range(3)]
    threads = [threading.Thread(target=r.start) for r in later_readers]
    for r in threads:
        r.start()
    while len(c.waiting_jobs()) < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    reader.stop()
    t.join(5)
    assert writer.is_running and not any(r.is_running for r in later_readers)
    writer.stop()
    for r in threads:
        r.join(5)
    assert all(r.is_running for r in later_readers)
    assert len({r.token for r in later_readers}) == 3
    for r in later_readers:
        r.stop()


def test_closing_the_coordinator_stops_its_listener_quietly(redis7, prefix, caplog):
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    holder = c.job([], ["x"], duration=30).start()
    threading.Timer(0.1, holder.stop).start()
    c.job([], ["x"], duration=5, wait=5).start().stop()  # the listener is up now
    with caplog.at_level("WARNING", logger="jobs_core"):
        c.close()
        time.sleep(1.5)
    assert not [r for r in caplog.records if "wake-ups" in r.message]
    assert c._grants._thread is None


def test_a_waiter_missing_an_input_holds_no_place_in_line(real_backend, prefix):
    """A writer waiting for an input as well as for its output does not hold up the output's other writers."""
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    waiter = c.job(["not.yet"], ["x"], duration=30, wait=30)
    t = threading.Thread(target=waiter.start)
    t.start()
    deadline = time.monotonic() + 5
    while not c.waiting_jobs() and time.monotonic() < deadline:
        time.sleep(0.005)
    holder.stop()
    c.job([], ["x"], duration=5).start().stop()  # not refused with output_queued
    c.client.set(prefix + "not.yet", "written")  # let the waiter finish: it takes its turn now
    t.join(30)
    assert waiter.is_running
    waiter.stop()
