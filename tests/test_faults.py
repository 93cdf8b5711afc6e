"""Faults around one call: lost replies, replays, failed stops, missing permissions."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis

import jobs_core
from jobs_core import LockLost

from .servers import RedisServer


def text(v):
    return v.decode() if isinstance(v, bytes) else v


class ReplyLost(redis.ConnectionError):
    pass


def lose_reply(coordinator, script, times=1):
    """Make ``script`` run on the server but raise as if its reply were lost."""
    real = getattr(coordinator.scripts, script)
    left = [times]

    def call(keys, args):
        result = real(keys, args)
        if left[0] > 0:
            left[0] -= 1
            raise ReplyLost("reply lost")
        return result

    setattr(coordinator.scripts, script, call)


def test_start_whose_reply_is_lost_releases_its_locks(redis7, prefix):
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    lose_reply(c, "start")
    job = c.job([], ["x"], duration=600)
    with pytest.raises(ReplyLost):
        job.start()
    assert not job.is_running
    assert client.get(prefix + "olock:x") is None  # not held for the 600 s lease
    c.job([], ["x"], duration=5).start().stop()


def test_stop_whose_reply_is_lost_can_be_repeated(redis7, prefix):
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    job = c.job([], ["x"], duration=5).start()
    lose_reply(c, "stop")
    with pytest.raises(ReplyLost):
        job.stop()
    assert job.is_running  # as far as this process knows
    job.stop()  # the repeat learns the first one wrote the output
    assert not job.is_running and text(client.get(prefix + "x")) == job.id


def test_failed_stop_stops_the_heartbeat(redis7, prefix):
    """If stop() fails and is never repeated, the locks lapse with their lease instead of living forever."""
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    job = c.job([], ["x"], duration=0.4).start()

    def down(keys, args):
        raise redis.ConnectionError("server unreachable")

    c.scripts.stop = down
    with pytest.raises(redis.ConnectionError):
        job.stop()
    time.sleep(0.8)
    assert client.get(prefix + "olock:x") is None


def test_replayed_unlock_does_not_unlock_the_next_holder(redis7, prefix):
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    c.job([], ["x"], duration=30, heartbeat=False).start()
    flow = c._unlock_flow([], ["x"])
    step = next(flow)
    keys, args = step.keys, step.args
    assert c.scripts.unlock(keys, args)[0] == 1
    newer = c.job([], ["x"], duration=30).start()  # woken waiter takes the lock
    assert c.scripts.unlock(keys, args)[0] == 1  # the replay repeats the answer ...
    assert text(client.get(prefix + "olock:x")) == newer.id  # ... and deletes nothing
    newer.stop()


def test_replayed_create_does_not_overwrite_a_later_write(redis7, prefix):
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    step = next(c._create_flow(["x"], "repair", None))
    keys, args = step.keys, step.args
    token = int(c.scripts.create(keys, args))
    later = c.job([], ["x"], duration=30).start()
    later.stop()
    assert int(c.scripts.create(keys, args)) == token
    assert text(client.get(prefix + "x")) == later.id


def test_user_without_channel_permission(prefix):
    """An ACL user limited to the namespace's keys, with no channels: stops work, waits poll."""
    server = RedisServer().start()
    try:
        admin = redis.Redis(port=server.port)
        admin.execute_command("ACL", "SETUSER", "limited", "on", ">pw", f"~{prefix}*", "resetchannels", "+@all")
        c = jobs_core.Coordinator(redis.Redis(port=server.port, username="limited", password="pw"), prefix,
                                  poll=0.1)
        with c.job([], ["x"], duration=5) as job:
            pass
        assert c.output_info("x").writer == job.id
        holder = c.job([], ["x"], duration=30).start()
        threading.Timer(0.3, holder.stop).start()
        t0 = time.monotonic()
        c.job([], ["x"], duration=5, wait=5).start().stop()
        assert 0.25 < time.monotonic() - t0 < 1.5
    finally:
        server.cleanup()


def test_slow_on_lost_does_not_delay_other_renewals(redis7, prefix):
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    release = threading.Event()
    victim = c.job([], ["v"], duration=0.6, on_lost=lambda j: release.wait(5)).start()
    other = c.job([], ["o"], duration=0.3).start()
    c.unlock(outputs=["v"])
    time.sleep(1.0)  # the callback blocks all this time
    other.check()
    assert text(client.get(prefix + "olock:o")) == other.id
    release.set()
    other.stop()
    with pytest.raises(LockLost):
        victim.stop()


def test_async_on_lost_may_stop_the_job(redis7, prefix):
    async def main():
        c = jobs_core.AsyncCoordinator(redis7.async_client(), prefix)
        steps = []

        async def on_lost(job):
            steps.append("stopping")
            await job.stop(failed=True)
            await asyncio.sleep(0)
            steps.append("after stop")

        await c.job([], ["x"], duration=0.6, on_lost=on_lost).start()
        await c.unlock(outputs=["x"])
        for _ in range(100):
            if len(steps) == 2:
                break
            await asyncio.sleep(0.02)
        await c.aclose()
        return steps

    assert asyncio.run(main()) == ["stopping", "after stop"]


def test_huge_durations_are_refused(coordinator):
    with pytest.raises(jobs_core.InvalidArgument, match="ten years"):
        coordinator.job([], ["x"], duration=1e15)
    with pytest.raises(jobs_core.InvalidArgument, match="ten years"):
        coordinator.job([], ["x"], duration=5, output_ttl=1e16)


def test_release_on_signal_leaves_an_ignored_signal_alone(coordinator):
    import signal

    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        restore = jobs_core.release_on_signal([coordinator])
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        restore()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)
