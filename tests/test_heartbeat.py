"""The heartbeat: renews leases well before expiry, notices loss, honours max_hold."""

from __future__ import annotations

import threading
import time

import pytest

import jobs_core
from jobs_core import LockLost


def text(v):
    return v.decode() if isinstance(v, bytes) else v


def wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_heartbeat_keeps_short_lease_alive(real_backend, prefix):
    client = real_backend.client()
    c = jobs_core.Coordinator(client, prefix)
    with c.job([], ["x"], duration=0.3) as job:
        time.sleep(1.2)  # four leases long
        job.check()
        assert text(client.get(prefix + "olock:x")) == job.id
    assert text(client.get(prefix + "x")) == job.id


def test_heartbeat_renews_before_expiry(redis7, prefix):
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    with c.job([], ["x"], duration=1.5):
        lowest = 1500
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end:
            lowest = min(lowest, client.pttl(prefix + "olock:x"))
            time.sleep(0.02)
    assert lowest > 500  # renewed every duration/3, never near expiry


def test_heartbeat_notices_loss_and_calls_on_lost(real_backend, prefix):
    c = jobs_core.Coordinator(real_backend.client(), prefix)
    lost = threading.Event()
    job = c.job([], ["x"], duration=0.6, on_lost=lambda j: lost.set()).start()
    c.unlock(outputs=["x"])
    assert lost.wait(2.0)  # within one heartbeat interval (0.2 s) plus slack
    assert job.lost == {"output_lock_lost": ["x"]}
    with pytest.raises(LockLost):
        job.check()
    with pytest.raises(LockLost):
        job.stop()


def test_heartbeat_survives_a_failing_pass(redis7, prefix, caplog):
    c = jobs_core.Coordinator(redis7.client(), prefix)
    job = c.job([], ["x"], duration=0.9).start()
    real = c.scripts.refresh
    calls = []

    def flaky(keys, args):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("simulated outage")
        return real(keys, args)

    c.scripts.refresh = flaky
    with caplog.at_level("ERROR", logger="jobs_core"):
        assert wait_for(lambda: len(calls) >= 2, timeout=3)
    assert any("heartbeat" in r.message for r in caplog.records)
    time.sleep(0.5)
    job.stop()  # still held: the next pass renewed it


def test_max_hold_stops_renewing(real_backend, prefix):
    c = jobs_core.Coordinator(real_backend.client(), prefix)
    lost = threading.Event()
    job = c.job([], ["x"], duration=0.3, max_hold=0.5, on_lost=lambda j: lost.set()).start()
    assert lost.wait(3.0)
    assert job.lost and job.lost["output_lock_lost"] == ["x"]
    c.job([], ["x"], duration=1).start().stop()  # someone else got it
    with pytest.raises(LockLost):
        job.stop()


def test_no_heartbeat_lets_lease_expire(real_backend, prefix):
    client = real_backend.client()
    c = jobs_core.Coordinator(client, prefix)
    job = c.job([], ["x"], duration=0.2, heartbeat=False).start()
    time.sleep(0.4)
    assert client.get(prefix + "olock:x") is None
    with pytest.raises(LockLost):
        job.check()  # known locally: no renewal within a lease
    with pytest.raises(LockLost):
        job.stop()


def test_heartbeat_thread_serves_many_jobs(redis7, prefix):
    c = jobs_core.Coordinator(redis7.client(), prefix)
    before = set(threading.enumerate())
    jobs = [c.job([], [f"x{i}"], duration=0.3).start() for i in range(20)]
    time.sleep(1.0)
    for j in jobs:
        j.check()
        j.stop()
    assert len(set(threading.enumerate()) - before) == 1


def test_close_stops_the_heartbeat_and_the_leases_lapse(redis7, prefix, caplog):
    """Closing a coordinator with a running job stops renewing it (and says so): the thread exits at
    once, the lock lapses with its lease, and a later coordinator can take the output."""
    client = redis7.client()
    c = jobs_core.Coordinator(redis7.client(), prefix)
    job = c.job([], ["x"], duration=0.4).start()
    thread = c.heartbeat._thread
    assert thread is not None and thread.is_alive()
    c.close()
    assert "closed with 1 running job(s)" in caplog.text
    thread.join(1.0)
    assert not thread.is_alive()
    assert wait_for(lambda: client.get(prefix + "olock:x") is None, timeout=1.0)  # not renewed
    other = jobs_core.Coordinator(client, prefix)
    with other.job([], ["x"], duration=5) as second:
        assert second.token > job.token
    with pytest.raises(LockLost):
        job.stop()
