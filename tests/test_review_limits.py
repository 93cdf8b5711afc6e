"""An adversarial review of limits (issue 16): the cases the first tests did not reach.

Each test states the hypothesis it checks. Waits use leases and polls of 30 s, so a
job that starts quickly was started (or woken) by the release itself, not by a look
of its own.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import jobs_core
from jobs_core import LimitTooSmall, LockLost, ResourceUnavailable

from .conftest import keyspace


def started_in(job):
    """Start ``job`` in a thread; returns (thread, result): result gets 'started' or the error."""
    result: dict = {}

    def run():
        t0 = time.monotonic()
        try:
            job.start()
            result["state"] = "started"
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            result["state"] = exc
        result["after"] = time.monotonic() - t0

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def until(check, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.01)
    return False


def in_line(c, limit):
    (info,) = c.limits([limit])
    return [w.job_id for w, _ in info.line]


def waiting(c):
    return sorted(w.job_id for w in c.waiting_jobs())


@pytest.fixture
def coord(redis7, prefix):
    """Coordinators (poll 30 s) on new clients of one Redis server, closed at the end."""
    made = []

    def make(**kwargs):
        kwargs.setdefault("poll", 30)
        c = jobs_core.Coordinator(redis7.client(), prefix, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


# -- a waiter ahead that keeps its turn for a reason other than the limit ---------------------------


def test_a_waiter_behind_a_head_that_leaves_room_is_started_by_the_release(coord):
    """A head that keeps its turn in a limit's line but waits for something else (here an output
    held by a job that passed someone) reserves its slots; a job behind it that fits in the slots
    left must be started by the release that frees them, not at its own next look (10 s later)."""
    c = coord()
    c.set_limit("w", 2)
    # a job waiting for a missing input, so that the writer of x passes it (and is marked a passer)
    first = c.job(["missing"], ["x"], wait=20, job_id="first")
    t_first, _ = started_in(first)
    assert until(lambda: waiting(c) == ["first"])
    passer = c.job([], ["x"], duration=30, job_id="passer").start()
    assert c.client.hget(c.prefix + "jobs:holder:passer", "passer") in (b"1", "1")
    full = c.job([], [], duration=30, limits={"w": 2}, job_id="full").start()
    head = c.job([], ["x"], limits={"w": 1}, wait=20, job_id="head")
    t_head, r_head = started_in(head)
    assert until(lambda: in_line(c, "w") == ["head"])
    small = c.job([], [], limits={"w": 1}, wait=20, job_id="small")
    t_small, r_small = started_in(small)
    assert until(lambda: in_line(c, "w") == ["head", "small"])
    time.sleep(0.1)
    t0 = time.monotonic()
    full.stop()  # 2 free: head keeps 1 (it waits for x), small fits in the other
    assert until(lambda: r_small.get("state") == "started", 3), (time.monotonic() - t0, in_line(c, "w"))
    assert "state" not in r_head
    small.stop()
    passer.stop()
    assert until(lambda: r_head.get("state") == "started")
    head.stop()
    c.stop_all()
    for t in (t_first, t_head, t_small):
        t.join(5)


# -- wait_ready on a limit --------------------------------------------------------------------------


def test_wait_ready_on_a_limit_is_woken_by_the_release_and_by_a_raised_capacity(coord):
    """wait_ready(limits=...) sleeps on the namespace's broadcast of changed names: a release of
    slots and a capacity change must wake it too, not only its next look (10 s)."""
    c, other = coord(), coord()
    c.set_limit("w", 1)
    holder = other.job([], [], duration=30, limits={"w": 1}).start()
    out: dict = {}

    def ready():
        t0 = time.monotonic()
        try:
            out["report"] = c.wait_ready(limits={"w": 1}, timeout=5)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out["report"] = exc
        out["after"] = time.monotonic() - t0

    thread = threading.Thread(target=ready, daemon=True)
    thread.start()
    time.sleep(0.3)
    holder.stop()
    thread.join(6)
    assert getattr(out["report"], "can_start", False) and out["after"] < 1.5, out
    holder = other.job([], [], duration=30, limits={"w": 1}).start()
    thread = threading.Thread(target=ready, daemon=True)
    thread.start()
    time.sleep(0.3)
    other.set_limit("w", 2)
    thread.join(6)
    assert getattr(out["report"], "can_start", False) and out["after"] < 1.5, out
    holder.stop()
