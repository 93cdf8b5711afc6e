"""jobs_core behind Redis Sentinel: one master, one replica, three sentinels, all real processes.

A coordinator made from a ``redis+sentinel://`` URL (or a ``Sentinel`` object) follows the
master the sentinels name. Two failovers while a job holds locks: ``SENTINEL FAILOVER``
after the replica has every write (the locks survive, the heartbeat renews them on the
new master), and a killed master whose replica had missed the start (the job learns the
loss, writes nothing, and the fencing token is issued again).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time

import pytest
from redis.sentinel import Sentinel

import jobs_core
from jobs_core import LockLost

from .cluster import SentinelGroup, cut_off_replica, thaw, until

pytestmark = pytest.mark.deploy


@pytest.fixture
def group():
    g = SentinelGroup().start()
    yield g
    g.cleanup()


@pytest.fixture
def prefix():
    return f"s{secrets.token_hex(4)}:"


def caught_up(group: SentinelGroup, master: int, replica: int) -> bool:
    return group.node(replica).info("replication")["slave_repl_offset"] >= \
        group.node(master).info("replication")["master_repl_offset"]


def test_coordinators_follow_the_sentinels(group, prefix):
    """From a URL (sync and asyncio) and from a Sentinel object: jobs, facts and wake-ups."""
    c = jobs_core.Coordinator.from_url(group.url, prefix, poll=30)
    master = Sentinel([("127.0.0.1", p) for p in group.sentinel_ports]).master_for(group.service)
    by_object = jobs_core.Coordinator(master, prefix, poll=30)
    try:
        holder = c.job([], ["a"], duration=10).start()
        assert group.node(group.master.port).get(prefix + "olock:a") == holder.id
        threading.Timer(0.3, holder.stop).start()
        t0 = time.monotonic()
        with by_object.job(["a"], ["b"], duration=10, wait=10) as job:
            assert time.monotonic() - t0 < 1.5  # pushed, not polled
            assert job.token == holder.token + 1

        async def main():
            ac = jobs_core.AsyncCoordinator.from_url(group.url + "/0", prefix)
            async with ac.job(["b"], ["c"], duration=5) as j:
                assert (await ac.output_info("b")).readers[0].job_id == j.id
            assert (await ac.written(["a", "b", "c"])).keys() == {"a", "b", "c"}
            await ac.aclose()

        asyncio.run(main())
    finally:
        c.close()
        by_object.close()


def test_sentinel_failover_keeps_replicated_locks(group, prefix):
    """SENTINEL FAILOVER while a job holds locks and another waits: the replica had the locks,
    so the job keeps them (renewed on the new master), writes its outputs, and the waiter,
    subscribed before the failover, still starts after it."""
    c = jobs_core.Coordinator.from_url(group.url, prefix, poll=30)
    w = jobs_core.Coordinator.from_url(group.url, prefix, poll=30)
    try:
        c.create_outputs(["in"])
        lost = []
        # the old master takes writes until the sentinels turn it into a replica (seconds after the
        # promotion): renewals it takes meanwhile are lost, so the lease must outlast that
        job = c.job(["in"], ["out"], duration=30, heartbeat=1.0, on_lost=lost.append).start()
        started = []
        waiter = threading.Thread(target=lambda: started.append(
            w.job(["out"], [], duration=5, wait=60).start().stop() or time.monotonic()))
        waiter.start()
        until(lambda: len(c.waiting_jobs()) == 1, 10, "the waiter")
        old, new = group.master.port, group.replica.port
        until(lambda: caught_up(group, old, new), 5, "the replica caught up")
        group.node(group.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", group.service)
        assert group.wait_settled(master=new) == new
        time.sleep(2.5)  # heartbeats on the new master
        job.refresh()
        assert job.lost is None and not lost
        released = time.monotonic()
        job.stop()
        assert c.output_info("out").writer == job.id
        waiter.join(40)
        assert started and started[0] - released < 35
        with c.job([], ["next"], duration=5) as after:
            assert after.token > job.token
    finally:
        c.close()
        w.close()


def test_sentinel_failover_after_a_lost_write(group, prefix):
    """The master acknowledges a start and dies before its replica has it; the sentinels promote
    the replica. The job's heartbeat finds the locks gone (on_lost, LockLost), its stop writes
    nothing, and a new job gets the same token again."""
    c = jobs_core.Coordinator.from_url(group.url, prefix, poll=30, socket_timeout=2)
    try:
        c.create_outputs(["in"], job_id="seed")
        old, new = group.master.port, group.replica.port
        until(lambda: caught_up(group, old, new), 5, "the replica caught up")
        lost = threading.Event()
        pid = cut_off_replica(old, new)
        try:
            job = c.job(["in"], ["out"], duration=30, heartbeat=0.5, on_lost=lambda j: lost.set()).start()
            group.master.stop(kill=True)
        finally:
            thaw(pid)
        assert group.wait_settled(master=new) == new
        assert lost.wait(20), "the heartbeat found the locks gone on the new master"
        assert job.lost == {"input_lock_lost": ["in"], "output_lock_lost": ["out"]}
        with c.job(["in"], ["out"], duration=5) as successor:
            assert successor.token == job.token
        with pytest.raises(LockLost):
            job.stop()
        assert c.output_info("out").writer == successor.id
    finally:
        c.close()
