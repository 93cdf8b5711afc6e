"""An adversarial review of limits (issue 16): the cases the first tests did not reach.

Each test states the hypothesis it checks. Waits use leases and polls of 30 s, so a
job that starts quickly was started (or woken) by the release itself, not by a look
of its own.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest

import jobs_core
from jobs_core import LimitTooSmall, LockLost, ResourceUnavailable

from .conftest import CLUSTER, CLUSTER_BACKENDS, _backend
from .limit_helpers import in_line, started_in, until
from .test_cli import clean_env


def waiting(c):
    return sorted(w.job_id for w in c.waiting_jobs())


@pytest.fixture(params=["redis7"] + (CLUSTER_BACKENDS[:1] if CLUSTER else []))
def server(request):
    """Redis 7 (and a Redis Cluster with ``JOBS_TEST_CLUSTER=1``): the behaviour under review is in
    the scripts, the same on every backend; tests/test_limits.py runs them all."""
    return _backend(request.param, request)


@pytest.fixture
def coord(server, prefix):
    """Coordinators (poll 30 s) on new clients of one server, closed at the end."""
    made = []

    def make(**kwargs):
        kwargs.setdefault("poll", 30)
        c = jobs_core.Coordinator(server.client(), prefix, **kwargs)
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


# -- two limits: a big waiter among streams of small jobs on each ---------------------------------

SMALL_STREAM = """
import sys, threading, time
import jobs_core
url, prefix, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
c = jobs_core.Coordinator.from_url(url, prefix, poll=30)
end = time.monotonic() + seconds
def loop(limit):
    while time.monotonic() < end:
        try:
            job = c.job([], [], limits={limit: 1}, wait=2).start()
        except jobs_core.ResourceUnavailable:
            continue
        time.sleep(0.1)
        job.stop()
threads = [threading.Thread(target=loop, args=(l,)) for l in ("a", "b") for _ in range(3)]
for t in threads:
    t.start()
print("ready", flush=True)
for t in threads:
    t.join()
c.close()
"""


@pytest.mark.slow
def test_a_big_job_on_two_limits_is_not_starved_by_streams_of_small_jobs_on_each(coord, server, prefix):
    """A job asking 2 of 3 slots of ``a`` and 2 of 3 of ``b`` is blocked on each by the other's
    holders, so each line may pass it (a limit held by jobs that passed nobody is another reason).
    Jobs that pass it are marked passers; once only passers hold, it keeps its turn in both lines
    and starts: within about one hold of the jobs then holding, not never."""
    c = coord()
    c.set_limit("a", 3)
    c.set_limit("b", 3)
    proc = subprocess.Popen([sys.executable, "-c", SMALL_STREAM, server.url, prefix, "8"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        big = c.job([], [], limits={"a": 2, "b": 2}, wait=7, job_id="big")
        t0 = time.monotonic()
        big.start()
        took = time.monotonic() - t0
        print("big waited", took)
        assert took < 3
        (a,), (b,) = c.limits(["a"]), c.limits(["b"])
        assert a.used <= 3 and b.used <= 3
        big.stop()
    finally:
        proc.terminate()  # the process this test started
        proc.wait(10)
        proc.stdout.close()


# -- a waiter that keeps slots gives up: the ones behind it start at once ---------------------------


@pytest.mark.parametrize("how", ["deadline", "cancel", "close", "stop_all", "interrupt"])
def test_a_reserving_waiter_that_gives_up_lets_the_ones_behind_it_start_at_once(coord, server, prefix, how):
    """Capacity 3, one slot held; ``big`` (3 slots) waits first and keeps its slots, ``small`` (1)
    waits behind it. Whatever ends big's wait must leave its place at once, and the release of its
    reservation starts small (2 slots free) in the same call."""
    c, cb = coord(), coord()
    c.set_limit("w", 3)
    holder = c.job([], [], duration=30, limits={"w": 1}, job_id="holder").start()
    small = c.job([], [], limits={"w": 1}, wait=10, job_id="small")
    marks: dict = {}

    def small_then_give_up(give_up):
        """Once big is in line, put small behind it, then end big's wait with ``give_up``."""
        assert until(lambda: in_line(c, "w") == ["big"])
        marks["small"] = started_in(small)
        assert until(lambda: in_line(c, "w") == ["big", "small"])
        time.sleep(0.3)
        marks["at"] = time.monotonic()
        give_up()

    if how == "cancel":
        async def main():
            ac = jobs_core.AsyncCoordinator(server.async_client(), prefix, poll=30)
            try:
                task = asyncio.ensure_future(ac.job([], [], limits={"w": 3}, wait=10, job_id="big").start())
                loop = asyncio.get_running_loop()
                await asyncio.to_thread(small_then_give_up, lambda: loop.call_soon_threadsafe(task.cancel))
                with pytest.raises(asyncio.CancelledError):
                    await task
            finally:
                await ac.aclose()
        asyncio.run(main())
    elif how == "interrupt":
        import os
        import signal
        def interrupt():  # a real SIGINT: it cuts the main thread's sleep short, as Ctrl-C does
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=small_then_give_up, args=(interrupt,), daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            cb.job([], [], limits={"w": 3}, wait=10, job_id="big").start()
    else:
        big = cb.job([], [], limits={"w": 3}, wait=1.0 if how == "deadline" else 10, job_id="big")
        t_big, r_big = started_in(big)
        give_up = {"deadline": lambda: None, "close": cb.close, "stop_all": cb.stop_all}[how]
        small_then_give_up(give_up)
        t_big.join(5)
        if how == "deadline":
            marks["at"] = time.monotonic()
            assert isinstance(r_big["state"], ResourceUnavailable), r_big
        else:
            assert isinstance(r_big["state"], jobs_core.CoordinatorClosed), r_big
    thread, result = marks["small"]
    assert until(lambda: result.get("state") == "started", 3), result
    assert time.monotonic() - marks["at"] < 1.5
    assert in_line(c, "w") == [] and c.waiting_jobs() == []
    small.stop()
    holder.stop()
    thread.join(5)


# -- capacity changes reach every waiter concerned --------------------------------------------------


def test_lowering_the_capacity_below_a_waiters_ask_fails_it_at_once_wherever_it_stands(coord):
    """A waiter asking for more slots than the new capacity can never start (LimitTooSmall). The
    change must tell it at once even when a waiter ahead of it keeps its turn, and the waiters
    behind it go on waiting in order."""
    c = coord()
    c.set_limit("w", 3)
    holder = c.job([], [], duration=30, limits={"w": 3}, job_id="holder").start()
    jobs = {name: c.job([], [], limits={"w": n}, wait=10, job_id=name)
            for name, n in [("one", 1), ("three", 3), ("two", 2)]}
    runs = {}
    for name, job in jobs.items():
        runs[name] = started_in(job)
        assert until(lambda name=name: name in in_line(c, "w"))
    t0 = time.monotonic()
    assert c.set_limit("w", 2) == 3
    thread, result = runs["three"]
    thread.join(3)
    assert isinstance(result.get("state"), LimitTooSmall) and time.monotonic() - t0 < 1.5, result
    assert in_line(c, "w") == ["one", "two"]
    holder.stop()  # 2 free: one (1) starts; two (2) waits for it
    assert until(lambda: runs["one"][1].get("state") == "started")
    assert in_line(c, "w") == ["two"]
    jobs["one"].stop()
    assert until(lambda: runs["two"][1].get("state") == "started")
    jobs["two"].stop()


def test_removing_a_limit_fails_every_waiter_of_its_line(coord):
    c, other = coord(), coord()
    c.set_limit("w", 1)
    c.set_limit("v", 1)
    holder = c.job([], [], duration=30, limits={"w": 1, "v": 1}).start()
    runs = [started_in(other.job([], [], limits={"w": 1, "v": 1} if i % 2 else {"w": 1}, wait=10))
            for i in range(4)]
    assert until(lambda: len(in_line(c, "w")) == 4 and len(in_line(c, "v")) == 2)
    c.remove_limit("w")
    for thread, result in runs:
        thread.join(3)
        assert isinstance(result.get("state"), jobs_core.UnknownLimit), result
    assert in_line(c, "v") == [] and c.waiting_jobs() == []
    holder.stop()


# -- crossed asks, several coordinators, one id ---------------------------------------------------


def test_crossed_asks_on_two_limits_do_not_deadlock(coord):
    """x asks a:2 b:1, y asks b:2 a:1, both blocked; each keeps its turn in both lines, in the one
    order they began to wait, so releases start them one after the other."""
    c, cx, cy = coord(), coord(), coord()
    c.set_limit("a", 2)
    c.set_limit("b", 2)
    ha = c.job([], [], duration=30, limits={"a": 1}).start()
    hb = c.job([], [], duration=30, limits={"b": 1}).start()
    x = cx.job([], [], limits={"a": 2, "b": 1}, wait=10, job_id="x")
    y = cy.job([], [], limits={"b": 2, "a": 1}, wait=10, job_id="y")
    rx = started_in(x)
    assert until(lambda: waiting(c) == ["x"])
    ry = started_in(y)
    assert until(lambda: waiting(c) == ["x", "y"])
    assert in_line(c, "a") == ["x", "y"] and in_line(c, "b") == ["x", "y"]
    hb.stop()  # b has 2 free, but x is ahead in b's line and keeps the 1 it asks for: y waits
    time.sleep(0.2)
    assert "state" not in rx[1] and "state" not in ry[1]
    ha.stop()  # x starts; then b has 1 free and a 0: y waits for x
    assert until(lambda: rx[1].get("state") == "started", 2)
    assert "state" not in ry[1]
    x.stop()
    assert until(lambda: ry[1].get("state") == "started", 2)
    assert {i.name: i.used for i in c.limits()} == {"a": 1, "b": 2}
    y.stop()


def test_one_job_id_from_two_coordinators_holds_its_slots_once(coord):
    """A second start of a running id waits for the first (job_running), not for the limit; the
    first's stop hands it the id and the slots it frees, and the count never goes over."""
    c1, c2 = coord(), coord()
    c1.set_limit("w", 2)
    first = c1.job([], [], duration=30, limits={"w": 2}, job_id="same").start()
    second = c2.job([], [], limits={"w": 2}, wait=10, job_id="same")
    thread, result = started_in(second)
    assert until(lambda: waiting(c1) == ["same"])
    with pytest.raises(ResourceUnavailable) as caught:
        c2.job([], [], limits={"w": 1}, job_id="same").start()
    assert "job_running" in caught.value.reasons
    first.stop()
    thread.join(3)
    assert result["state"] == "started"
    (info,) = c1.limits()
    assert info.used == 2 and [(h.token, n) for h, n in info.holders] == [(second.token, 2)]
    second.stop()
    assert c1.limits()[0].used == 0


def test_a_limit_and_a_name_of_the_same_text_are_independent(coord):
    c = coord()
    c.set_limit("report", 1)
    job = c.job([], ["report"], limits={"report": 1}).start()
    assert c.output_info("report").write_lock.job_id == job.id and c.limits()[0].used == 1
    job.stop()
    assert c.written(["report"]).keys() == {"report"} and c.limits()[0].used == 0
    reader = c.job(["report"], ["out"], limits={"report": 1}).start()
    reader.stop()
    assert c.limits()[0].capacity == 1


def test_a_lapsed_start_does_not_release_the_slots_a_later_start_of_its_id_holds(coord):
    """Slot members are named by job id (``same#1``): a later start of the id takes the same
    members. The lapsed start's refresh and stop must say LockLost and leave them alone."""
    c1, c2 = coord(), coord()
    c1.set_limit("w", 2)
    first = c1.job([], ["x"], duration=0.3, heartbeat=False, limits={"w": 2}, job_id="same").start()
    time.sleep(0.4)
    second = c2.job([], ["y"], duration=30, limits={"w": 1}, job_id="same").start()
    with pytest.raises(LockLost):
        first.refresh()
    with pytest.raises(LockLost):
        first.stop()
    (info,) = c1.limits()
    assert info.used == 1 and [(h.token, n) for h, n in info.holders] == [(second.token, 1)]
    assert c1.why_blocked(limits={"w": 2}).reasons == {"limit_full": ["w"]}
    second.stop()
    assert c1.written(["x", "y"]).keys() == {"y"} and c1.limits()[0].used == 0


# -- replays: a reply lost in flight, the call sent again -----------------------------------------


def test_replayed_starts_and_leaves_with_limits_take_and_release_once(coord):
    c = coord()
    c.set_limit("w", 3)
    job = c.job([], ["x"], duration=5, heartbeat=False, limits={"w": 2}).start()
    plan = job._plan
    nonce = c.client.hget(c.prefix + "jobs:holder:" + job.id, "nonce")
    nonce = nonce.decode() if isinstance(nonce, bytes) else nonce
    reply = c.scripts.start(plan.keys, plan.start_args(nonce))
    assert int(reply[0]) == 1 and int(reply[1]) == job.token
    assert c.limits()[0].used == 2  # not 4
    job.stop()
    # a waiter granted by a release, whose give-up is then sent twice
    holder = c.job([], [], duration=30, limits={"w": 3}, job_id="holder").start()
    waiter = c.job([], [], limits={"w": 2}, wait=5, job_id="waiter")
    wplan = waiter._plan_now()
    blocked = c.scripts.start(wplan.keys, wplan.start_args("n1", "wait", 5, ""))
    assert int(blocked[0]) == 0 and in_line(c, "w") == ["waiter"]
    holder.stop()  # grants the waiter: it holds 2 slots for call n1
    assert [h.job_id for h, _ in c.limits()[0].holders] == ["waiter"]
    other = c.job([], [], duration=30, limits={"w": 1}, job_id="other").start()
    assert list(c.scripts.leave(wplan.keys, wplan.leave_args("n1")))[:2] == [0, 1]  # released
    assert [h.job_id for h, _ in c.limits()[0].holders] == ["other"]
    again = c.job([], [], duration=30, limits={"w": 2}, job_id="waiter").start()  # its id again
    assert list(c.scripts.leave(wplan.keys, wplan.leave_args("n1")))[:2] == [0, 0]  # the replay: nothing
    assert sorted((h.job_id, n) for h, n in c.limits()[0].holders) == [("other", 1), ("waiter", 2)]
    again.stop()
    other.stop()
    assert c.limits()[0].used == 0 and in_line(c, "w") == []


# -- a limit and a name at once: who waits for whom ------------------------------------------------


def test_slots_freed_while_a_waiters_name_is_busy_go_to_the_next_and_the_name_waits_one_hold(coord, server):
    """``both`` waits for x (held by a job that passed nobody) and for w's only slot. When the slot
    comes free, ``both`` cannot run, so it is passed: ``small`` behind it takes the slot (and is
    marked a passer). When x comes free, ``both`` waits only for that passer now: it keeps x's
    turn (a newcomer writing x waits), and the passer's release starts it."""
    c = coord()
    c.set_limit("w", 1)
    slot = c.job([], [], duration=30, limits={"w": 1}, job_id="slot").start()
    x = c.job([], ["x"], duration=30, job_id="x-holder").start()
    both = c.job([], ["x"], limits={"w": 1}, wait=10, job_id="both")
    t_both, r_both = started_in(both)
    assert until(lambda: in_line(c, "w") == ["both"])
    small = c.job([], [], limits={"w": 1}, wait=10, job_id="small")
    t_small, r_small = started_in(small)
    assert until(lambda: in_line(c, "w") == ["both", "small"])
    slot.stop()
    assert until(lambda: r_small.get("state") == "started", 2)
    assert c.client.hget(c.prefix + "jobs:holder:small", "passer") in (b"1", "1")
    x.stop()
    time.sleep(0.1)
    assert "state" not in r_both and c.output_info("x").write_lock is None  # x stays free for it
    # a newcomer of another process (one of the passer's own may pass: README, Bounds)
    r = subprocess.run([sys.executable, "-m", "jobs_core", "start", "newcomer", "-o", "x",
                        "--duration", "30"], capture_output=True,
                       text=True, env=clean_env(server.url, c.prefix), timeout=30)
    assert r.returncode == 1 and "output_queued" in r.stderr, r.stderr
    small.stop()
    assert until(lambda: r_both.get("state") == "started", 2)
    assert c.output_info("x").write_lock.job_id == "both" and c.limits()[0].used == 1
    both.stop()
    for t in (t_both, t_small):
        t.join(5)


def test_a_heartbeat_keeps_the_slots_past_the_first_lease(coord):
    c = coord()
    c.set_limit("w", 1)
    job = c.job([], ["x"], duration=0.4, limits={"w": 1}).start()  # heartbeat on (the default)
    time.sleep(1.2)
    assert c.why_blocked(limits={"w": 1}).reasons == {"limit_full": ["w"]}
    job.stop()
    assert c.written(["x"]).keys() == {"x"} and c.limits()[0].used == 0


def test_async_wait_ready_on_a_limit_is_woken_by_the_release(coord, server, prefix):
    c = coord()
    c.set_limit("w", 1)
    holder = c.job([], [], duration=30, limits={"w": 1}).start()

    async def main():
        ac = jobs_core.AsyncCoordinator(server.async_client(), prefix, poll=30)
        try:
            task = asyncio.ensure_future(ac.wait_ready(limits={"w": 1}, timeout=5))
            await asyncio.sleep(0.3)
            t0 = time.monotonic()
            await asyncio.to_thread(holder.stop)
            report = await task
            return report, time.monotonic() - t0
        finally:
            await ac.aclose()

    report, after = asyncio.run(main())
    assert report.can_start and after < 1.5


# -- a slots key clobbered by something else --------------------------------------------------------


def test_a_clobbered_slots_key_does_not_keep_a_holder_from_releasing_its_names(coord):
    """Something wrote a string over ``jobs:limit:w`` while a job held a slot: its refresh and
    stop report the slot lost (LockLost), and the stop still releases its names, as a stop that
    lost a lock does; limits() flags the key. (Starts asking for w fail with Redis's error until
    the key is deleted.)"""
    c = coord()
    c.set_limit("w", 2)
    job = c.job([], ["y"], duration=30, limits={"w": 1}).start()
    key = c.prefix + "jobs:limit:w"
    c.client.delete(key)
    c.client.set(key, "garbage")
    with pytest.raises(LockLost) as caught:
        job.refresh()
    assert caught.value.lost == {"limit_lost": ["w"]}
    with pytest.raises(LockLost):
        job.stop()
    assert c.output_info("y").write_lock is None and c.written(["y"]) == {}
    assert c.limits()[0].problems == ("slots of limit 'w': the key is not a zset",)


# -- bad input and big numbers ----------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda c: c.remove_limit("bad\x00name"), lambda c: c.remove_limit(""), lambda c: c.remove_limit(5),
    lambda c: c.limits("warehouse"), lambda c: c.limits(["ok", "bad\nname"]), lambda c: c.limits([None]),
    lambda c: c.set_limit("w", 10**9 + 1), lambda c: c.set_limit(("w",), 1), lambda c: c.set_limit("a -> b", 1),
    lambda c: c.job([], [], limits={"w": 2**63}), lambda c: c.job([], [], limits={"w": float("nan")}),
    lambda c: c.job([], [], limits=[["w", 1, 2]]), lambda c: c.job([], [], limits={("w",): 1}),
    lambda c: c.wait_ready(limits={"w": 0}, timeout=1),
])
def test_more_bad_input_writes_nothing(coord, call):
    c = coord()
    with pytest.raises((jobs_core.InvalidArgument, jobs_core.InvalidType)):
        call(c)
    assert list(c.client.scan_iter(match=c.prefix + "*")) == []


def test_a_job_taking_the_most_slots_of_a_huge_limit(coord):
    c = coord()
    assert c.set_limit("big", 10**9) is None
    t0 = time.monotonic()
    jobs = [c.job([], [], limits={"big": 1000}).start() for _ in range(5)]
    assert c.limits()[0].used == 5000
    for job in jobs:
        job.refresh()
        job.stop()
    assert time.monotonic() - t0 < 3 and c.limits()[0].used == 0
    assert c.remove_limit("big") == 10**9 and c.limits() == []


# -- a holder record reused by a later start of the same id -----------------------------------------


def test_a_later_start_of_an_id_without_limits_does_not_inherit_the_earlier_starts_limits(coord):
    """The holder record of a stopped start stays a while (it answers a repeated stop); a later
    start of the same id writes its own record over it. The earlier start's ``limits`` field must
    not survive into it: running_jobs() would show slots it does not hold, and a stop from outside
    would try to release them, find them not held and write nothing (LockLost)."""
    c = coord()
    c.set_limit("w", 2)
    c.job([], ["x"], limits={"w": 2}, job_id="same").start().stop()
    job = c.job([], ["x"], duration=30, job_id="same").start()
    assert {j.job_id: j.limits for j in c.running_jobs()} == {"same": ()}
    assert c.stop_job("same", failed=False) == "written"
    assert c.written(["x"]).keys() == {"x"}
    with pytest.raises(LockLost):
        job.stop()  # stopped from outside


# -- a holder's lease lapses: who finds out ---------------------------------------------------------


def test_after_a_lapse_the_waiters_behind_the_head_that_fit_start_with_it(coord):
    """Nobody announces a lapse: the head of the line looks when the dead holder's lease ends and
    starts by its own try. A job behind it that fits in the slots left must start then too, not at
    its own next look (it waits for the head's place, up to 10 s)."""
    c = coord()
    c.set_limit("w", 4)
    c.job([], [], duration=0.5, heartbeat=False, limits={"w": 3}, job_id="dead").start()
    head = c.job([], [], limits={"w": 2}, wait=10, job_id="head")
    t_head, r_head = started_in(head)
    assert until(lambda: in_line(c, "w") == ["head"])
    small = c.job([], [], limits={"w": 1}, wait=10, job_id="small")
    t_small, r_small = started_in(small)
    assert until(lambda: in_line(c, "w") == ["head", "small"])
    assert until(lambda: r_head.get("state") == "started", 3)
    assert until(lambda: r_small.get("state") == "started", 2), in_line(c, "w")
    assert c.limits()[0].used == 3
    head.stop()
    small.stop()
    t_head.join(5)
    t_small.join(5)


def test_stop_all_ends_its_waits_before_it_frees_its_slots(coord):
    """stop_all on a coordinator that holds a slot and has a job waiting for it: the wait ends
    first, so the freed slot goes to the next job in line (another coordinator's), not to it."""
    c, cb = coord(), coord()
    c.set_limit("w", 1)
    held = cb.job([], ["x"], duration=30, limits={"w": 1}, job_id="held").start()
    mine = cb.job([], [], limits={"w": 1}, wait=10, job_id="mine")
    t_mine, r_mine = started_in(mine)
    assert until(lambda: in_line(c, "w") == ["mine"])
    other = c.job([], [], limits={"w": 1}, wait=10, job_id="other")
    t_other, r_other = started_in(other)
    assert until(lambda: in_line(c, "w") == ["mine", "other"])
    cb.stop_all()
    t_mine.join(5)
    assert isinstance(r_mine["state"], jobs_core.CoordinatorClosed), r_mine
    assert until(lambda: r_other.get("state") == "started", 2)
    assert [h.job_id for h, _ in c.limits()[0].holders] == ["other"] and c.written(["x"]) == {}
    assert not held.is_running  # stopped as failed: x not written
    other.stop()
    t_other.join(5)


def test_limits_reads_are_consistent_while_jobs_come_and_go(coord, server, prefix):
    """limits() reads a limit's slots and line in one atomic read: at every sample, the slots
    held never pass the capacity, they add up, and no job both holds slots and waits in line."""
    c = coord()
    c.set_limit("a", 2)
    c.set_limit("b", 2)  # 3 jobs each: some wait
    proc = subprocess.Popen([sys.executable, "-c", SMALL_STREAM, server.url, prefix, "2.5"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        samples = lines = 0
        end = time.monotonic() + 2
        while time.monotonic() < end:
            for info in c.limits():
                samples += 1
                lines += bool(info.line)
                holders = [h.job_id for h, _ in info.holders]
                waiters = [w.job_id for w, _ in info.line]
                assert info.used == sum(n for _, n in info.holders) <= info.capacity == 2, info
                assert len(set(waiters)) == len(waiters) and not set(holders) & set(waiters), info
                assert all(n == 1 for _, n in info.line), info
        assert samples > 20 and lines > 0
    finally:
        proc.terminate()  # the process this test started
        proc.wait(10)
        proc.stdout.close()


def test_a_waiter_failed_by_a_lower_capacity_lets_the_ones_behind_it_elsewhere_start(coord):
    """``e`` asks w:3 and v:2 and keeps its turn in v's line (1 of 2 free); ``s`` (v:1) waits
    behind it. Lowering w to 2 ends e's wait: s, in v's line, must start then, not at its next look."""
    c = coord()
    c.set_limit("w", 3)
    c.set_limit("v", 2)
    hv = c.job([], [], duration=30, limits={"v": 1}, job_id="hv").start()
    e = c.job([], [], limits={"w": 3, "v": 2}, wait=10, job_id="e")
    t_e, r_e = started_in(e)
    assert until(lambda: in_line(c, "v") == ["e"])
    s = c.job([], [], limits={"v": 1}, wait=10, job_id="s")
    t_s, r_s = started_in(s)
    assert until(lambda: in_line(c, "v") == ["e", "s"])
    time.sleep(0.1)
    c.set_limit("w", 2)
    t_e.join(3)
    assert isinstance(r_e.get("state"), LimitTooSmall), r_e
    assert until(lambda: r_s.get("state") == "started", 1.5), in_line(c, "v")
    s.stop()
    hv.stop()
    t_s.join(5)


def test_a_waiter_that_can_never_start_lets_the_ones_behind_it_in_a_limits_line_start(coord):
    """``e`` writes x with overwrite off and asks v:2, keeping its turn in v's line (1 of 2 free);
    ``s`` (v:1) waits behind it. x gets written: e can never start and leaves every line; s must
    start then, not at its next look."""
    c = coord()
    c.set_limit("v", 2)
    hv = c.job([], [], duration=30, limits={"v": 1}, job_id="hv").start()
    e = c.job([], ["x"], overwrite=False, limits={"v": 2}, wait=10, job_id="e")
    t_e, r_e = started_in(e)
    assert until(lambda: in_line(c, "v") == ["e"])
    s = c.job([], [], limits={"v": 1}, wait=10, job_id="s")
    t_s, r_s = started_in(s)
    assert until(lambda: in_line(c, "v") == ["e", "s"])
    time.sleep(0.1)
    c.create_outputs(["x"])
    t_e.join(3)
    assert isinstance(r_e.get("state"), ResourceUnavailable) and "output_exists" in r_e["state"].reasons
    assert until(lambda: r_s.get("state") == "started", 1.5), in_line(c, "v")
    s.stop()
    hv.stop()
    t_s.join(5)
