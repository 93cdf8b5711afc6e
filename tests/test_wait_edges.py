"""How waits end, on real servers: every way a wait ends leaves nothing behind and wakes whoever is next.

Each test here failed before waiting became one mechanism (jobs_core.waiting):
give-ups that kept their place for 30 s, lost cancellations, waiters never
woken, a stop that said nothing when it could not write, a coordinator that
was not safe to share between threads.
"""

from __future__ import annotations

import _thread
import asyncio
import logging
import threading
import time

import pytest

import jobs_core
from jobs_core import CoordinatorClosed, LockLost, ResourceUnavailable
from jobs_core.protocol import text


def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def nothing_waits(client, prefix: str) -> None:
    """No waiting record, no place in any line."""
    assert client.zcard(prefix + "jobs:waiting") == 0
    assert list(client.scan_iter(match=prefix + "jobs:queue:*")) == []
    assert list(client.scan_iter(match=prefix + "jobs:waiting:*")) == []


# -- a wait that ends early leaves its place at once -------------------------------------------------


def test_a_wait_for_time_out_leaves_the_line_at_once(real_backend, prefix):
    client = real_backend.client()

    async def main():
        c = jobs_core.AsyncCoordinator(real_backend.async_client(), prefix, poll=30)
        holder = await c.job([], ["x"], duration=30).start()
        job = c.job([], ["x"], duration=30, wait=20)
        t0 = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(job.start(), 0.3)
        took = time.monotonic() - t0
        nothing_waits(client, prefix)
        assert c.waiting_jobs and await c.waiting_jobs() == []
        await holder.stop()
        await (await c.job([], ["x"], duration=5).start()).stop()  # a wait=0 writer is not refused
        assert not job.is_running
        await c.aclose()
        return took

    assert asyncio.run(main()) < 1.0


@pytest.mark.parametrize("timeout", [0.0005, 0.001, 0.005, 0.02])
def test_a_cancelled_async_start_is_never_lost(redis7, prefix, timeout):
    """asyncio.wait_for(job.start(), t) raises TimeoutError within about t, whatever the Python version,
    and the job never starts after its caller gave up."""
    client = redis7.client()

    async def main():
        c = jobs_core.AsyncCoordinator(redis7.async_client(), prefix, poll=30)
        holder = await c.job([], ["x"], duration=30).start()
        outcomes = []
        for _ in range(10):
            job = c.job([], ["x"], duration=30, wait=2)
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(job.start(), timeout)
                outcomes.append("started")
            except asyncio.TimeoutError:
                outcomes.append(time.monotonic() - t0)
            assert not job.is_running
        await holder.stop()
        await asyncio.sleep(0.2)  # a grant made for a call that gave up would show now
        assert client.get(prefix + "olock:x") is None
        await c.aclose()
        return outcomes

    outcomes = asyncio.run(main())
    assert "started" not in outcomes
    assert max(outcomes) < 0.5
    nothing_waits(client, prefix)


def test_a_cancel_during_the_subscription_leaves_nothing(redis7, prefix, monkeypatch):
    """Cancelled while its coordinator subscribes (the first wait of a fresh coordinator): no place in
    line, no registration, and the subscription closes once idle."""
    from jobs_core import listener

    monkeypatch.setattr(listener, "IDLE_EXIT", 0.2)
    monkeypatch.setattr(listener, "READ_TIMEOUT", 0.05)
    client = redis7.client()

    async def main():
        c = jobs_core.AsyncCoordinator(redis7.async_client(), prefix, poll=30)
        holder = await c.job([], ["x"], duration=30).start()
        job = c.job([], ["x"], duration=30, wait=10)
        task = asyncio.ensure_future(job.start())
        while c._grants is None or c._grants._task is None:  # until it subscribes (after its first try)
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert c._grants._routes.regs == {}
        nothing_waits(client, prefix)
        channel = prefix + "jobs:wake:" + c.channel_id
        deadline = time.monotonic() + 5
        while client.pubsub_numsub(channel)[0][1] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert client.pubsub_numsub(channel)[0][1] == 0  # closed once idle, the coordinator still open
        await holder.stop()
        await c.aclose()

    asyncio.run(main())


def test_an_interrupt_leaves_the_line_and_the_process_goes_on(real_backend, prefix):
    """A KeyboardInterrupt while the main thread waits (a Ctrl-C caught by a program that goes on)."""
    client = real_backend.client()
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    threading.Timer(0.3, _thread.interrupt_main).start()
    job = c.job([], ["x"], duration=30, wait=20)
    with pytest.raises(KeyboardInterrupt):
        job.start()
    nothing_waits(client, prefix)
    assert c.waiting_jobs() == []
    holder.stop()
    c.job([], ["x"], duration=5).start().stop()  # not refused with output_queued
    assert not job.is_running


def test_a_closed_coordinator_ends_its_waits(real_backend, prefix):
    client = real_backend.client()
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    other = jobs_core.Coordinator(real_backend.client(), prefix)
    holder = other.job([], ["x"], duration=30).start()
    errors = []

    def wait():
        try:
            c.job([], ["x"], duration=30, wait=20).start()
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            errors.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    until(lambda: other.waiting_jobs())
    t0 = time.monotonic()
    c.close()
    t.join(5)
    assert time.monotonic() - t0 < 2
    assert len(errors) == 1 and isinstance(errors[0], CoordinatorClosed)
    until(lambda: client.zcard(prefix + "jobs:waiting") == 0)
    holder.stop()
    other.close()


def test_a_start_granted_while_its_caller_gave_up_is_released(redis7, prefix):
    """The race the give-up must win: a release grants the locks to a waiter whose caller has just
    given up; leave.lua releases them and starts whoever is next."""
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    first = c.job([], ["x"], duration=30, wait=20, job_id="first")
    plan = first._plan_now()
    # "first" waits (its place in line, grants to a channel nobody reads): as its process would
    reply = c.scripts.start(plan.keys, plan.start_args("nonce-1", "wait", 20, "nobody"))
    assert int(reply[0]) == 0
    second = c.job([], ["x"], duration=30, wait=20)
    t = threading.Thread(target=second.start)
    t.start()
    until(lambda: len(c.waiting_jobs()) == 2)
    holder.stop()  # grants x to "first", whose caller no longer reads
    assert text(client.get(prefix + "olock:x")) == "first"
    left = c.scripts.leave(plan.keys, plan.leave_args("nonce-1"))
    assert int(left[1]) == 1  # released
    t.join(5)
    assert second.is_running  # and the next in line started at once
    assert text(client.hget(prefix + "jobs:holder:first", "state")) == "failed"
    again = c.scripts.leave(plan.keys, plan.leave_args("nonce-1"))  # a replay changes nothing
    assert [int(again[0]), int(again[1])] == [0, 0]
    second.stop()
    nothing_waits(client, prefix)


# -- whoever should wake, wakes ---------------------------------------------------------------------------


@pytest.mark.parametrize("names", [([], []), (["a"], ["b"])], ids=["no names", "other names"])
def test_a_start_waiting_for_another_start_of_its_id_wakes_when_it_stops(real_backend, prefix, names):
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    c.create_outputs(["a"])
    first = c.job([], ["x"], duration=30, job_id="same.id").start()
    threading.Timer(0.3, first.stop).start()
    t0 = time.monotonic()
    second = c.job(*names, duration=30, wait=20, job_id="same.id").start()
    assert 0.25 < time.monotonic() - t0 < 1.5
    assert second.token > first.token
    second.stop()


def test_when_the_first_in_line_cannot_write_the_next_is_started(real_backend, prefix):
    """The first writer in line has overwrite off and the output now exists: it gives up, and the next
    writer starts at once (it used to start 5-10 s late)."""
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    first = c.job([], ["x"], duration=30, wait=20, overwrite=False)
    second = c.job([], ["x"], duration=30, wait=20)
    errors = []
    t1 = threading.Thread(target=lambda: errors.append(pytest.raises(ResourceUnavailable, first.start).value))
    t1.start()
    until(lambda: len(c.waiting_jobs()) == 1)
    t2 = threading.Thread(target=second.start)
    t2.start()
    until(lambda: len(c.waiting_jobs()) == 2)
    t0 = time.monotonic()
    holder.stop()  # writes x
    t2.join(5)
    t1.join(5)
    assert second.is_running and time.monotonic() - t0 < 1.0
    assert errors[0].args[0] == {"output_exists": ["x"]}
    second.stop()


def test_a_writer_among_relaying_readers_gets_the_name_within_one_reader_hold(real_backend, prefix):
    """Four readers keep overlapping on a name, each holding 0.4 s: a writer used to never get it."""
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    c.create_outputs(["dim"])
    stop = threading.Event()
    reads = []

    def relay(i: int) -> None:
        time.sleep(0.1 * i)
        while not stop.is_set():
            with c.job(["dim"], [], duration=30, wait=30):
                reads.append(i)
                time.sleep(0.4)

    readers = [threading.Thread(target=relay, args=(i,)) for i in range(4)]
    for r in readers:
        r.start()
    time.sleep(0.6)
    t0 = time.monotonic()
    with c.job([], ["dim"], duration=30, wait=4) as writer:
        took = time.monotonic() - t0
    stop.set()
    for r in readers:
        r.join(10)
    assert writer.token and took < 0.4 + 0.25  # about one reader hold
    assert len(reads) >= 4


def test_a_head_that_cannot_run_does_not_hold_up_newcomers(real_backend, prefix):
    """Head-of-line: a writer first in line for x but also waiting for y (held by a long job) lets a
    newcomer use x meanwhile; once y frees, x is kept for it (after at most the newcomer's hold)."""
    client = real_backend.client()
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    long_job = c.job([], ["y"], duration=30).start()
    head = c.job([], ["x", "y"], duration=30, wait=20)
    t = threading.Thread(target=head.start)
    t.start()
    until(lambda: c.waiting_jobs())
    t0 = time.monotonic()
    newcomer = c.job([], ["x"], duration=30).start()  # passes the head: x is free and the head cannot run
    assert time.monotonic() - t0 < 0.2
    assert text(client.hget(prefix + "jobs:holder:" + newcomer.id, "passer")) == "1"
    # as if the newcomer ran in another process (a process's own jobs may pass a head that waits for it)
    client.hset(prefix + "jobs:holder:" + newcomer.id, "pid", 1)
    long_job.stop()  # y frees: the head now waits only for a job that passed it, so nobody passes it again
    with pytest.raises(ResourceUnavailable) as e:
        c.job([], ["y"], duration=5).start()
    assert e.value.args[0] == {"output_queued": ["y"]}
    newcomer.stop()
    t.join(5)
    assert head.is_running
    head.stop()


def test_a_reader_waiting_for_a_missing_input_does_not_keep_it_from_its_writer(real_backend, prefix):
    """A reader of x waits for x to be written (nobody writes it yet); the job that will write x comes
    later, so it is behind the reader in x's line. It must start at once (the demo's pipeline waited
    for its deadline: transform, the writer of clean.events, was kept behind report, its reader)."""
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    reader = c.job(["x"], [], duration=30, wait=20)
    t = threading.Thread(target=reader.start)
    t.start()
    until(lambda: c.waiting_jobs())
    t0 = time.monotonic()
    writer = c.job([], ["x"], duration=30, wait=20).start()
    assert time.monotonic() - t0 < 0.5
    writer.stop()
    t.join(5)
    assert reader.is_running  # granted by the write
    reader.stop()


def test_the_release_hands_over_without_a_round_trip(redis7, prefix):
    """A direct grant: between the holder's stop and the waiter's start() returning, the server runs
    one script (the stop), in another process's terms no round trip of the waiter's own."""
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    waiter = c.job([], ["x"], duration=30, wait=20)  # its heartbeat renews the granted lease later
    t = threading.Thread(target=waiter.start)
    t.start()
    until(lambda: c.waiting_jobs())
    time.sleep(0.1)
    before = client.info("commandstats")["cmdstat_evalsha"]["calls"]
    holder.stop()
    t.join(5)
    after = client.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert waiter.is_running and after - before == 1
    waiter.stop()


def test_a_release_wakes_only_the_process_concerned(redis7, prefix):
    """Grants go to the waiter's own coordinator channel: another process's listener hears nothing."""
    client = redis7.client()
    a = jobs_core.Coordinator(redis7.client(), prefix, poll=30)
    b = jobs_core.Coordinator(redis7.client(), prefix, poll=30)
    hx, hy = a.job([], ["x"], duration=30).start(), a.job([], ["y"], duration=30).start()
    wx, wy = a.job([], ["x"], duration=30, wait=20), b.job([], ["y"], duration=30, wait=20)
    threads = [threading.Thread(target=wx.start), threading.Thread(target=wy.start)]
    for t in threads:
        t.start()
    until(lambda: len(a.waiting_jobs()) == 2)
    spy = client.pubsub()
    spy.subscribe(prefix + "jobs:wake:" + b.channel_id, prefix + "jobs:wake:" + a.channel_id)
    for _ in range(2):
        spy.get_message(timeout=1)
    hx.stop()
    threads[0].join(5)
    messages = []
    while (m := spy.get_message(timeout=0.3)) is not None:
        messages.append(text(m["channel"]))
    assert messages == [prefix + "jobs:wake:" + a.channel_id]
    hy.stop()
    threads[1].join(5)
    wx.stop()
    wy.stop()
    spy.close()


def test_a_waiter_tries_again_within_ten_seconds_whatever_poll_is(redis7, prefix, monkeypatch):
    """With poll=60 and a holder that never wakes anyone (a jobs.py client), the waiter still looks
    again every MAX_QUIET_SLEEP, which keeps its place alive (shrunk here to keep the test short)."""
    from jobs_core import waiting

    monkeypatch.setattr(waiting, "MAX_QUIET_SLEEP", 0.3)
    client = redis7.client()
    client.set(prefix + "olock:x", "jobspy.job", px=60_000)  # a jobs.py writer: no holder record, no wake-up
    c = jobs_core.Coordinator(client, prefix, poll=60)
    job = c.job([], ["x"], duration=30, wait=20)
    t = threading.Thread(target=lambda: pytest.raises(CoordinatorClosed, job.start))
    t.start()
    until(lambda: c.waiting_jobs())
    scores = []
    for _ in range(8):
        scores.append(client.zrange(prefix + "jobs:waiting", 0, 0, withscores=True)[0][1])
        time.sleep(0.15)
    c.close()
    t.join(5)
    assert len(set(scores)) >= 3  # its place was renewed by tries every ~0.3 s


# -- a stop that cannot do what was asked says so ------------------------------------------------------


@pytest.mark.parametrize("external", ["failed", "written"])
def test_a_stop_after_a_stop_from_outside_raises(real_backend, prefix, external):
    client = real_backend.client()
    c = jobs_core.Coordinator(real_backend.client(), prefix)
    job = c.job([], ["x"], duration=30).start()
    c.stop_job(job.id, failed=external == "failed")
    with pytest.raises(LockLost, match="stopped from outside"):
        job.stop()
    assert not job.is_running
    job.stop()  # now a no-op
    assert (client.get(prefix + "x") is not None) == (external == "written")


def test_a_stop_after_the_heartbeat_found_the_locks_gone_raises(real_backend, prefix):
    lost = []
    c = jobs_core.Coordinator(real_backend.client(), prefix)
    job = c.job([], ["x"], duration=3, heartbeat=0.1, on_lost=lost.append).start()
    jobs_core.Coordinator(real_backend.client(), prefix).stop_job(job.id, failed=True)
    until(lambda: lost)
    assert job.lost == {"output_lock_lost": ["x"]}
    with pytest.raises(LockLost):
        job.stop()
    with pytest.raises(LockLost):  # the `with` form too
        with c.job([], ["y"], duration=30) as other:
            c.stop_job(other.id, failed=True)


def test_a_stop_after_a_stop_from_outside_raises_in_asyncio_and_jobs_py(redis7, prefix):
    client = redis7.client()

    async def main():
        c = jobs_core.AsyncCoordinator(redis7.async_client(), prefix)
        job = await c.job([], ["x"], duration=30).start()
        await c.stop_job(job.id, failed=True)
        with pytest.raises(LockLost):
            await job.stop()
        await c.aclose()

    asyncio.run(main())
    old = (jobs_core.CONN, jobs_core.GLOBAL_PREFIX)
    jobs_core.CONN, jobs_core.GLOBAL_PREFIX = client, prefix
    try:
        manager = jobs_core.ResourceManager([], ["y"], 30)
        manager.start()
        jobs_core.Coordinator(client, prefix).stop_job(manager.identifier, failed=True)
        with pytest.raises(LockLost):
            manager.stop()
    finally:
        jobs_core.CONN, jobs_core.GLOBAL_PREFIX = old


def test_aclose_does_not_warn_once_every_job_stopped(redis7, prefix, caplog):
    async def main():
        c = jobs_core.AsyncCoordinator(redis7.async_client(), prefix)
        for _ in range(3):
            async with c.job([], ["x"], duration=30):
                pass
        with caplog.at_level(logging.WARNING, logger="jobs_core"):
            await c.aclose()

    asyncio.run(main())
    assert not [r for r in caplog.records if "running job" in r.message]


# -- one coordinator, many threads -------------------------------------------------------------------


def test_many_threads_share_a_coordinator(real_backend, prefix):
    """16 threads start and stop jobs of 300 kinds (past the plan cache) on one coordinator while
    another calls stop_all(): no internal error comes out, and every lock is released."""
    client = real_backend.client()
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=0.05)
    errors: list[BaseException] = []
    done = threading.Event()

    def work(i: int) -> None:
        try:
            for n in range(60):
                kind = (i * 60 + n) % 300
                try:
                    with c.job([], [f"out.{chr(97 + kind % 26)}{kind}"], duration=30, wait=1, name=f"kind{kind}"):
                        pass
                except (ResourceUnavailable, LockLost, CoordinatorClosed):
                    pass  # stop_all() may have stopped it first, or ended its wait
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    def stopper() -> None:
        while not done.is_set():
            try:
                c.stop_all(failed=True)
                c.running_here()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    s = threading.Thread(target=stopper)
    s.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done.set()
    s.join(10)
    assert errors == []
    assert c.running_here() == []
    left = [text(k) for k in client.scan_iter(match=prefix + "olock:*")]
    assert left == [], [(k, text(client.get(k)), sorted((text(a), text(b)) for a, b in client.hgetall(
        prefix + "jobs:holder:" + text(client.get(k))).items())) for k in left]
    c.close()
