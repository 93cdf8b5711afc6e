"""AsyncCoordinator: the same rules through redis.asyncio, sharing Redis with sync clients."""

from __future__ import annotations

import asyncio
import time

import pytest

import jobs_core
from jobs_core import LockLost, ResourceUnavailable


def text(v):
    return v.decode() if isinstance(v, bytes) else v


def run(coro):
    return asyncio.run(coro)


def test_async_start_stop_and_exclusion_with_sync(backend, prefix):
    sync = jobs_core.Coordinator(backend.client(), prefix)

    async def main():
        c = jobs_core.AsyncCoordinator(backend.async_client(), prefix)
        async with c.job([], ["x"], duration=5) as job:
            with pytest.raises(ResourceUnavailable) as e:
                sync.job([], ["x"], duration=5).start()
            assert e.value.blockers[0].holder.job_id == job.id
            report = await c.why_blocked([], ["x"])
            assert report.blockers[0].holder.token == job.token
            (running,) = await c.running_jobs()
            assert running.job_id == job.id
        info = await c.output_info("x")
        assert info.writer == job.id and info.token == job.token
        with pytest.raises(RuntimeError):
            async with c.job([], ["y"], duration=5):
                raise RuntimeError("boom")
        assert (await c.output_info("y")).written is False
        folded = jobs_core.names.fold(job.id)
        # an output edge is recorded when the output is written: the failed job's y has none
        assert await c.edges() == ([], [f"{folded} -> x"])
        await c.aclose()
        return job

    job = run(main())
    assert text(sync.client.get(prefix + "x")) == job.id


def test_async_waits_for_sync_holder_with_wake_up(real_backend, prefix):
    sync = jobs_core.Coordinator(real_backend.client(), prefix)
    holder = sync.job([], ["x"], duration=30).start()

    async def main():
        c = jobs_core.AsyncCoordinator(real_backend.async_client(), prefix, poll=30)
        asyncio.get_running_loop().call_later(0.2, holder.stop)
        t0 = time.monotonic()
        async with c.job([], ["x"], duration=5, wait=10) as job:
            elapsed = time.monotonic() - t0
        await c.aclose()
        return job, elapsed

    job, elapsed = run(main())
    assert 0.15 < elapsed < 1.0 and job.token > holder.token


def test_async_heartbeat_and_loss(real_backend, prefix):
    async def main():
        c = jobs_core.AsyncCoordinator(real_backend.async_client(), prefix)
        lost = asyncio.Event()

        async def on_lost(job):
            lost.set()

        async with c.job([], ["x"], duration=0.3) as job:
            await asyncio.sleep(1.0)
            job.check()
        job2 = await c.job([], ["y"], duration=0.6, on_lost=on_lost).start()
        await c.unlock(outputs=["y"])
        await asyncio.wait_for(lost.wait(), 2)
        with pytest.raises(LockLost):
            await job2.stop()
        await c.aclose()
        return job

    job = run(main())
    assert job.lost is None


def test_async_many_concurrent_jobs_one_output(real_backend, prefix):
    """50 coroutines take turns on one output; a non-atomic counter inside stays exact."""
    client = real_backend.client()

    async def main():
        c = jobs_core.AsyncCoordinator(real_backend.async_client(), prefix)

        @c.job([], ["counter"], duration=5, wait=30)
        async def bump():
            value = int(await c.client.get(prefix + "count") or 0)
            await asyncio.sleep(0)
            await c.client.set(prefix + "count", value + 1)

        await asyncio.gather(*(bump() for _ in range(50)))
        await c.aclose()

    run(main())
    assert int(client.get(prefix + "count")) == 50


def test_async_decorator_passes_job(backend, prefix):
    async def main():
        c = jobs_core.AsyncCoordinator(backend.async_client(), prefix)

        @c.job([], ["z"], duration=5)
        async def build(job):
            return job.token

        tokens = [await build(), await build()]
        await c.aclose()
        return tokens

    a, b = run(main())
    assert b > a


def test_async_coordinator_refuses_sync_client(redis7, prefix):
    with pytest.raises(jobs_core.ConfigurationError, match="sync client"):
        jobs_core.AsyncCoordinator(redis7.client(), prefix)
    with pytest.raises(jobs_core.ConfigurationError, match="AsyncCoordinator"):
        jobs_core.Coordinator(redis7.async_client(), prefix)


def test_async_aclose_stops_the_heartbeats_and_the_leases_lapse(redis7, prefix, caplog):
    """As with the sync coordinator: aclose() with a job running stops renewing it (and says so), so
    its lock lapses with its lease and another job can take the output."""
    client = redis7.client()

    async def main():
        c = jobs_core.AsyncCoordinator(redis7.async_client(), prefix)
        job = await c.job([], ["x"], duration=0.4).start()
        task = job._beat_task
        assert task is not None and not task.done()
        await c.aclose()
        await asyncio.sleep(0)
        assert task.cancelled() or task.done()
        return job

    job = run(main())
    assert "closed with 1 running job(s)" in caplog.text
    deadline = time.monotonic() + 1.0
    while client.get(prefix + "olock:x") is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.get(prefix + "olock:x") is None  # not renewed
    with jobs_core.Coordinator(client, prefix).job([], ["x"], duration=5) as second:
        assert second.token > job.token
