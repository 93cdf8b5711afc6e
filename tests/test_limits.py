"""Limits: counted slots of shared capacity, taken in the same atomic start as the locks.

Every rule on real servers (the ``backend`` fixture: Redis 7, Valkey 9, both
clients, and the clusters with ``JOBS_TEST_CLUSTER=1``): all or nothing with the
locks, the line's order (a job asking for many slots is not passed by jobs
asking for few), capacity changes, lapsed leases, repairs from outside, and
bad input refused before anything reaches Redis.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import jobs_core
from jobs_core import InvalidArgument, InvalidType, LimitTooSmall, LockLost, ResourceUnavailable, UnknownLimit
from jobs_core.limits import MAX_SLOTS, check_limits

from .conftest import keyspace
from .limit_helpers import in_line, started_in, until

# -- bad input: a clear error, nothing written -------------------------------------------------------


@pytest.mark.parametrize("limits, error", [
    ({"w": 0}, InvalidArgument), ({"w": -1}, InvalidArgument), ({"w": 1.5}, InvalidType),
    ({"w": True}, InvalidType), ({"w": "2"}, InvalidType), ({"w": None}, InvalidType),
    ({"w": MAX_SLOTS + 1}, InvalidArgument), ({"a": MAX_SLOTS, "b": 1}, InvalidArgument),
    ({"": 1}, InvalidArgument), ({"w\n": 1}, InvalidArgument), ({3: 1}, InvalidType),
    ("w", InvalidType), ([("w", 1), ("w", 2)], InvalidArgument), ([("w",)], InvalidType), (5, InvalidType),
])
def test_bad_limits_are_refused_before_redis(coordinator, client, prefix, limits, error):
    with pytest.raises(error):
        coordinator.job([], ["x"], limits=limits)
    with pytest.raises(error):
        coordinator.why_blocked([], ["x"], limits=limits)
    assert keyspace(client, prefix) == {}


@pytest.mark.parametrize("capacity, error", [
    (0, InvalidArgument), (-4, InvalidArgument), (2.5, InvalidType), (True, InvalidType), ("4", InvalidType),
    (None, InvalidType), (10**10, InvalidArgument),
])
def test_bad_capacities_are_refused_before_redis(coordinator, client, prefix, capacity, error):
    with pytest.raises(error):
        coordinator.set_limit("w", capacity)
    with pytest.raises(InvalidArgument):
        coordinator.set_limit("bad\x1b[2Jname", 4)
    assert keyspace(client, prefix) == {}


def test_limit_forms():
    assert check_limits({"a": 1, "b": 2}) == check_limits([("a", 1), ["b", 2]]) == (("a", 1), ("b", 2))
    assert check_limits(None) == check_limits({}) == check_limits([]) == ()
    assert check_limits({jobs_core.NG.pool.a: 1}) == (("pool.a", 1),)


def test_an_unknown_limit_is_a_clear_error_and_takes_nothing(coordinator, client, prefix):
    coordinator.set_limit("known", 2)
    before = keyspace(client, prefix)
    job = coordinator.job(["missing-too"], ["x"], limits={"known": 1, "warehouse": 1}, wait=5)
    t0 = time.monotonic()
    with pytest.raises(UnknownLimit) as caught:
        job.start()
    assert time.monotonic() - t0 < 1.0  # waiting cannot help: no wait
    assert caught.value.limit == "warehouse"
    assert "set_limit('warehouse', N)" in str(caught.value) and "jobs-core limit set warehouse" in str(caught.value)
    assert keyspace(client, prefix) == before
    with pytest.raises(UnknownLimit):
        coordinator.wait_ready([], ["x"], limits={"warehouse": 1}, timeout=1)
    assert coordinator.why_blocked([], ["x"], limits={"warehouse": 1}).reasons == {"limit_unknown": ["warehouse"]}


def test_asking_for_more_than_the_capacity_is_a_clear_error(coordinator, client, prefix):
    coordinator.set_limit("w", 3)
    before = keyspace(client, prefix)
    with pytest.raises(LimitTooSmall) as caught:
        coordinator.job([], ["x"], limits={"w": 4}, wait=5).start()
    assert (caught.value.limit, caught.value.slots, caught.value.capacity) == ("w", 4, 3)
    assert "whole capacity is 3" in str(caught.value)
    assert isinstance(caught.value, InvalidArgument)
    assert keyspace(client, prefix) == before


# -- holding and releasing ------------------------------------------------------------------------


def test_slots_are_held_with_the_locks_and_shown(coordinator):
    c = coordinator
    assert c.set_limit("w", 3) is None
    assert c.set_limit("w", 2) == 3  # the capacity it had
    a = c.job([], ["a"], limits={"w": 1}, job_id="job-a").start()
    b = c.job([], ["b"], limits={"w": 1}, job_id="job-b").start()
    report = c.why_blocked([], ["z"], limits={"w": 1})
    assert report.reasons == {"limit_full": ["w"]}
    assert {bl.holder.job_id for bl in report.blockers} == {"job-a", "job-b"}
    assert all(bl.holder.token and bl.holder.pid for bl in report.blockers)  # the holders' facts
    assert "limit_full: 'w' (held by job-a on " in report.blockers[0].describe()
    (info,) = c.limits()
    assert (info.name, info.capacity, info.used, info.free) == ("w", 2, 2, 0)
    assert sorted((h.job_id, n, h.token) for h, n in info.holders) == [("job-a", 1, a.token), ("job-b", 1, b.token)]
    running = {j.job_id: j.limits for j in c.running_jobs()}
    assert running == {"job-a": (("w", 1),), "job-b": (("w", 1),)}
    with pytest.raises(ResourceUnavailable) as caught:
        c.job([], ["c"], limits={"w": 1}).start()
    assert caught.value.reasons == {"limit_full": ["w"]}
    a.stop()
    assert c.limits()[0].used == 1
    c.job([], ["c"], limits={"w": 1}).start().stop()
    b.stop(failed=True)
    assert c.limits()[0].used == 0 and c.written(["a", "b", "c"]).keys() == {"a", "c"}


def test_a_job_takes_several_slots_and_several_limits(coordinator):
    c = coordinator
    c.set_limit("w", 4)
    c.set_limit("api", 2)
    big = c.job([], [], limits={"w": 3, "api": 2}).start()
    assert {i.name: i.used for i in c.limits()} == {"w": 3, "api": 2}
    assert c.why_blocked(limits={"w": 1}).can_start
    assert c.why_blocked(limits={"w": 2}).reasons == {"limit_full": ["w"]}
    assert c.why_blocked(limits={"w": 1, "api": 1}).reasons == {"limit_full": ["api"]}
    big.stop()
    assert {i.name: i.used for i in c.limits()} == {"w": 0, "api": 0}


def test_a_job_needing_a_limit_and_a_busy_output_takes_neither_until_both_are_free(make_coordinator):
    """All or nothing: blocked by the output, it holds no slot; blocked by the limit, it holds no lock."""
    c = make_coordinator(poll=30)
    c.set_limit("w", 1)
    writer = c.job([], ["x"], duration=30, job_id="writer").start()
    both = c.job([], ["x"], limits={"w": 1}, wait=10, job_id="both")
    thread, result = started_in(both)
    assert until(lambda: [w.job_id for w in c.waiting_jobs()] == ["both"])
    assert c.limits()[0].used == 0  # it waits for x: it holds no slot meanwhile
    other = c.job([], ["y"], limits={"w": 1}, job_id="other").start()  # so the slot goes to another job
    writer.stop()
    time.sleep(0.2)
    assert "state" not in result  # x is free now, the slot is not: still waiting
    assert c.output_info("x").write_lock is None  # and it took no lock on x meanwhile
    assert c.why_blocked([], ["x"], limits={"w": 1}).reasons == {"limit_full": ["w"]}
    other.stop()
    thread.join(5)
    assert result["state"] == "started" and result["after"] < 5
    assert c.output_info("x").write_lock.job_id == "both" and c.limits()[0].holders[0][0].job_id == "both"
    both.stop()


# -- waiting: wake-ups, hand-over, order ------------------------------------------------------------


def test_a_freed_slot_is_handed_to_the_waiter_at_once(real_backend, prefix):
    """Leases and poll of 30 s: only the release's direct grant can start the waiter this soon."""
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    c.set_limit("w", 1)
    holder = c.job([], [], duration=30, limits={"w": 1}).start()
    waiter = c.job([], [], duration=30, limits={"w": 1}, wait=10)
    thread, result = started_in(waiter)
    assert until(lambda: len(c.waiting_jobs()) == 1)
    assert c.waiting_jobs()[0].limits == (("w", 1),)
    time.sleep(0.1)
    t0 = time.monotonic()
    holder.stop()
    thread.join(5)
    assert result["state"] == "started" and time.monotonic() - t0 < 0.5
    assert waiter.blockers[0].reason == "limit_full"
    waiter.stop()
    c.close()


def test_a_job_asking_for_many_slots_is_not_passed_by_jobs_asking_for_few(make_coordinator):
    """The line's rule: a waiter ahead keeps the slots it asks for. With capacity 3, one holder of
    1 slot, and a job asking for 3 ahead of jobs asking for 1, the small ones do not start in the
    2 free slots: the big one starts first, then they do, in line order."""
    c = make_coordinator(poll=30)
    c.set_limit("w", 3)
    first = c.job([], [], duration=30, limits={"w": 1}).start()
    order: list[str] = []
    lock = threading.Lock()

    def track(job):
        def start():
            job.start()
            with lock:
                order.append(job.id)
        return start

    big = c.job([], [], limits={"w": 3}, wait=20, job_id="big")
    smalls = [c.job([], [], limits={"w": 1}, wait=20, job_id=f"small{i}") for i in range(4)]
    threads = []
    for job in [big, *smalls]:
        threads.append(threading.Thread(target=track(job), daemon=True))
        threads[-1].start()
        assert until(lambda job=job: job.id in in_line(c, "w"))  # each begins to wait after the one before
    time.sleep(0.2)
    assert order == []  # 2 slots free, but the job ahead keeps them
    assert c.why_blocked(limits={"w": 1}).reasons == {"limit_queued": ["w"]}
    first.stop()
    assert until(lambda: order == ["big"])
    assert c.limits()[0].used == 3
    big.stop()
    assert until(lambda: len(order) == 4)
    # one release started three of them at once: their tokens say in which order
    assert sorted(order[1:], key=lambda i: c.holder(i).token) == ["small0", "small1", "small2"]
    assert "small3" in in_line(c, "w")  # it waits for a slot
    for job in smalls[:3]:
        job.stop()
    assert until(lambda: len(order) == 5)
    smalls[3].stop()
    for t in threads:
        t.join(5)


def test_raising_the_capacity_starts_the_waiters_lowering_it_evicts_nobody(make_coordinator):
    c = make_coordinator(poll=30)
    c.set_limit("w", 2)
    holders = [c.job([], [f"h{i}"], duration=30, limits={"w": 1}).start() for i in range(2)]
    waiter = c.job([], [], limits={"w": 1}, wait=10)
    thread, result = started_in(waiter)
    assert until(lambda: len(c.waiting_jobs()) == 1)
    c.set_limit("w", 3)  # more room: the waiter starts, woken by the change itself
    thread.join(5)
    assert result["state"] == "started" and result["after"] < 2
    assert c.limits()[0].used == 3
    assert c.set_limit("w", 1) == 3  # less room: nobody loses a slot
    for job in holders:
        job.refresh()
    assert c.limits()[0].used == 3 and c.limits()[0].free == 0
    late = c.job([], [], limits={"w": 1}, wait=10)
    thread, result = started_in(late)
    assert until(lambda: len(c.waiting_jobs()) == 1)
    holders[0].stop()
    holders[1].stop()
    time.sleep(0.2)
    assert "state" not in result  # used 1 of 1: still full
    waiter.stop()
    thread.join(5)
    assert result["state"] == "started"
    assert c.written(["h0", "h1"]) .keys() == {"h0", "h1"}  # the holders kept their slots and wrote
    late.stop()


def test_removing_a_limit_ends_its_waits_with_the_error(make_coordinator):
    c = make_coordinator(poll=30)
    c.set_limit("w", 1)
    holder = c.job([], [], duration=30, limits={"w": 1}).start()
    waiter = c.job([], [], limits={"w": 1}, wait=20)
    thread, result = started_in(waiter)
    assert until(lambda: len(c.waiting_jobs()) == 1)
    assert c.remove_limit("w") == 1
    thread.join(5)
    assert isinstance(result["state"], UnknownLimit) and result["after"] < 2
    assert c.waiting_jobs() == []
    (info,) = c.limits(["w"])  # not set, still held: shown with no capacity
    assert info.capacity is None and info.used == 1
    holder.stop()  # the holder keeps its slot until it stops, and writes
    assert c.limits() == [] and c.limits(["w"])[0].used == 0


def test_a_dead_holders_slot_lapses_with_its_lease(make_coordinator):
    c = make_coordinator(poll=30)
    c.set_limit("w", 1)
    dead = c.job([], ["d"], duration=0.4, heartbeat=False, limits={"w": 1}).start()  # never renewed
    t0 = time.monotonic()
    late = c.job([], ["e"], limits={"w": 1}, wait=10).start()
    assert 0.2 < time.monotonic() - t0 < 2
    with pytest.raises(LockLost) as caught:
        dead.stop()
    assert caught.value.lost == {"limit_lost": ["w"], "output_lock_lost": ["d"]}
    assert c.written(["d"]) == {}  # a lost slot: nothing written
    assert [h.job_id for h, _ in c.limits()[0].holders] == [late.id]  # and the newer holder keeps its slot
    late.stop()


def test_refresh_finds_a_lost_slot(coordinator, client, prefix):
    c = coordinator
    c.set_limit("w", 2)
    job = c.job([], ["x"], duration=30, limits={"w": 2}).start()
    client.zrem(prefix + "jobs:limit:w", f"{job.id}#2")  # a repair took one slot away
    with pytest.raises(LockLost) as caught:
        job.refresh()
    assert caught.value.lost == {"limit_lost": ["w"]}
    with pytest.raises(LockLost):
        job.stop()
    assert c.written(["x"]) == {} and c.limits()[0].used == 0


def test_stop_job_from_outside_releases_the_slots(make_coordinator):
    c, other = make_coordinator(), make_coordinator(poll=30)
    c.set_limit("w", 1)
    job = c.job([], ["x"], duration=30, limits={"w": 1}, job_id="stuck").start()
    waiter = other.job([], [], limits={"w": 1}, wait=10)
    thread, result = started_in(waiter)
    assert until(lambda: len(c.waiting_jobs()) == 1)
    assert other.stop_job("stuck", failed=True) == "failed"
    thread.join(5)
    assert result["state"] == "started"
    with pytest.raises(LockLost):
        job.stop()  # fenced: that start was ended from outside
    waiter.stop()


def test_a_jobspy_style_start_of_the_same_id_keeps_no_slot(coordinator):
    """Slots belong to a start: a later start of the same id that takes no limit holds none."""
    c = coordinator
    c.set_limit("w", 1)
    c.job([], [], limits={"w": 1}, job_id="same").start().stop()
    assert c.limits()[0].used == 0
    job = c.job([], [], job_id="same").start()
    assert c.limits()[0].used == 0
    job.stop()


def test_async_twins(backend, prefix):
    async def main():
        c = jobs_core.AsyncCoordinator(backend.async_client(), prefix)
        try:
            assert await c.set_limit("w", 1) is None
            job = await c.job([], ["x"], limits={"w": 1}).start()
            assert (await c.why_blocked(limits={"w": 1})).reasons == {"limit_full": ["w"]}
            assert [(i.name, i.used) for i in await c.limits()] == [("w", 1)]
            waiter = c.job([], [], limits={"w": 1}, wait=5)
            task = asyncio.ensure_future(waiter.start())
            await asyncio.sleep(0.2)
            await job.stop()
            await asyncio.wait_for(task, 5)
            await waiter.stop()
            with pytest.raises(UnknownLimit):
                await c.job([], [], limits={"other": 1}).start()
            assert await c.remove_limit("w") == 1
        finally:
            await c.aclose()

    asyncio.run(main())
