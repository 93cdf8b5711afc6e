"""An adversarial review of the waiting mechanism (issue 12), on real servers.

Each test here states a scenario the design of jobs_core.waiting and lua/lib.lua
should handle and the behaviour it should have. They were written to fail on
the code as reviewed (commit 2ffcb69): each one is a bug report with its proof.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest

import jobs_core
from jobs_core import CoordinatorClosed, ResourceUnavailable
from jobs_core.protocol import text
from jobs_core.steps import Call, Expect

from .conftest import Backend, _backend


@pytest.fixture(params=["redis7", "valkey9"])
def server(request: pytest.FixtureRequest) -> Backend:
    """Redis 7.0 and Valkey 9 through redis-py: where the scripts' behaviour is at stake."""
    return _backend(request.param, request)


def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn`` in a thread; the list gets its result or the exception it raised."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def register_waiter(c: jobs_core.Coordinator, job: Any, nonce: str, wait: float, channel: str = "nobody") -> None:
    """Give ``job`` a place in line as its start() call ``nonce`` would (grants go to ``channel``)."""
    plan = job._plan_now()
    reply = c.scripts.start(plan.keys, plan.start_args(nonce, "wait", wait, channel))
    assert int(reply[0]) == 0, "the waiter was meant to be blocked"


class Hooked(jobs_core.Coordinator):
    """A coordinator whose flows call ``self.before(step)`` (when set) before each of their steps.

    It stands for another thread acting at that exact moment; every step still
    runs on the real server.
    """

    before: Callable[[Any], None] | None = None

    def run(self, flow: Any) -> Any:
        return super().run(self._interpose(flow))

    def _interpose(self, flow: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
        try:
            step = next(flow)
            while True:
                if self.before is not None:
                    self.before(step)
                step = flow.send((yield step))
        except StopIteration as done:
            return done.value


# -- whoever should wake, wakes -------------------------------------------------------------------------


def test_a_waiter_that_becomes_blocked_by_its_own_id_is_woken_when_that_start_stops(server, prefix):
    """A start of job id "same" waits for y (held by H). Meanwhile another start of "same" runs
    (a newcomer writing z). When H stops, the release finds the waiter blocked by job_running now,
    passes over it and tells it nothing; the waiter never entered jobs:idqueue:same, because its
    first blocker was y's lock. So when the other start of "same" stops, nobody wakes it: it sleeps
    until its next poll (up to 10 s), or as here until its deadline.

    Expected: a waiter found blocked by job_running by a release is queued for that id (as start.lua
    does when job_running is its first blocker), and is started as soon as that start stops.
    """
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    holder = c.job([], ["y"], duration=30).start()
    waiter = c.job([], ["y"], duration=30, wait=4, job_id="same")
    t, out = in_thread(waiter.start)
    until(lambda: c.waiting_jobs())
    other = c.job([], ["z"], duration=30, job_id="same").start()  # the same id, other names
    holder.stop()  # y is free, but the waiter is blocked by "same" running
    time.sleep(0.2)
    assert not waiter.is_running
    t0 = time.monotonic()
    other.stop()
    t.join(5)
    took = time.monotonic() - t0
    try:
        assert out and out[0] is waiter
        assert took < 1.0, f"the waiter started {took:.2f}s after the start blocking it stopped"
    finally:
        if waiter.is_running:
            waiter.stop()
        c.close()


def test_the_line_of_a_job_id_does_not_stop_at_a_first_that_cannot_run(server, prefix):
    """Two starts of job id "J" wait while a third start of "J" runs: W1 (writes x, which H holds)
    and W2 (writes y, free), both in jobs:idqueue:J, W1 first. When the running start stops, the
    id's line is scanned, but scan() with no name returns at its first entry whatever blocks it
    ("only its first may run"): W1, blocked by x, keeps W2 out although the id is free and W2 could
    run. W2 sleeps until its next look (up to 10 s; here its deadline).

    Expected: as in the lines of names, a first that cannot run for another reason is passed: W2
    starts when the running start of "J" stops.
    """
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    running = c.job([], ["z"], duration=30, job_id="J").start()
    first = c.job([], ["x"], duration=30, wait=4, job_id="J")
    t1, out1 = in_thread(first.start)
    until(lambda: len(c.waiting_jobs()) == 1)
    second = c.job([], ["y"], duration=30, wait=4, job_id="J")
    t2, out2 = in_thread(second.start)
    until(lambda: len(c.waiting_jobs()) == 2)
    t0 = time.monotonic()
    running.stop()
    t2.join(5)
    took = time.monotonic() - t0
    try:
        assert out2 and out2[0] is second
        assert took < 1.0, f"W2 started {took:.2f}s after the id was free"
    finally:
        if second.is_running:
            second.stop()
        holder.stop()
        t1.join(5)
        if first.is_running:
            first.stop()
        c.close()


def test_more_than_scan_max_readers_behind_a_writer_are_all_started_when_it_stops(server, prefix):
    """40 readers wait behind a writer of x (a daily table read by many jobs). Its stop scans x's
    line: it grants the first 32 (SCAN_MAX) readers together, then nudges "the next one" to look
    for itself, fetched as ZRANGE q 32 32. But the 32 granted have just left the line, so index 32
    is now past the end (or, in a longer line, 32 places too far): nobody is nudged, and readers
    33 to 40 sleep until their next look, the writer's lease or 10 s later.

    Expected: every reader is started within moments of the writer's stop (the 33rd is nudged, and
    its own start lets the rest in, as start.lua does for a reader that waited).
    """
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    c.create_outputs(["x"])
    writer = c.job([], ["x"], duration=30).start()
    started: list[float] = []
    finished: list[bool] = []
    done = threading.Event()

    def read() -> None:
        try:
            with c.job(["x"], [], duration=30, wait=20):
                started.append(time.monotonic())
                done.wait(10)
            finished.append(True)
        except CoordinatorClosed:
            pass  # the test ended before its turn

    threads = [threading.Thread(target=read, daemon=True) for _ in range(40)]
    for t in threads:
        t.start()
    until(lambda: len(c.waiting_jobs()) == 40, 20)
    t0 = time.monotonic()
    writer.stop()
    deadline = time.monotonic() + 3
    while len(started) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert len(started) == 40, f"{len(started)} of 40 readers started within 3 s of the writer's stop"
        assert max(started) - t0 < 1.0
    finally:
        done.set()
        until(lambda: len(finished) == len(started))  # those reading stop before the coordinator closes
        c.close()  # readers still waiting give up
        for t in threads:
            t.join(5)


# -- grants: the lease a granted start gets, and knows it has ---------------------------------------------


@pytest.mark.parametrize("heartbeat", [False, True], ids=["heartbeat off", "heartbeat on"])
def test_a_granted_start_does_not_count_its_lease_from_its_last_try(server, prefix, heartbeat):
    """A waiter (lease 1 s) tries once, then sleeps on its holder; 1.3 s later the holder stops and
    grants it the locks with a fresh 1 s lease. Started.sent is the time of the waiter's last try, so
    the job counts its lease as having ended 0.3 s before it even started: check() raises LockLost
    ("its lease may have run out") on a job that holds every lock for most of a second more. With
    the heartbeat off it stays so for the whole hold; with it on, until the first renewal.

    Expected: right after a grant, check() passes: the lease is counted from no earlier than the
    grant (for example from sent + (server time of the grant - server time of the last try), the
    grant line carrying its server time), which is still a safe lower bound.
    """
    client = server.client()
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    waiter = c.job([], ["x"], duration=1.0, wait=10, heartbeat=heartbeat)
    t, out = in_thread(waiter.start)
    until(lambda: c.waiting_jobs())
    time.sleep(1.3)
    holder.stop()
    t.join(5)
    assert out and out[0] is waiter
    assert client.pttl(prefix + "olock:x") > 500  # it does hold x, for most of its lease
    try:
        waiter.check()
    finally:
        waiter.stop(failed=True)
        c.close()


def test_a_grant_near_the_waiters_deadline_gives_a_usable_lease(server, prefix):
    """A renewing waiter (lease 30 s) tried 0.25 s ago with 0.3 s left to wait, so its process is
    alive. The release grants it x, but with a lease of only what is left of its wait (about 50 ms,
    down to 1 ms), because grant_lease() bounds the lease by the waiting zset's score, which
    start.lua caps at the waiter's deadline. The job must then receive the grant over pub/sub, wake
    its thread and get its first renewal to Redis within that time; otherwise its lock expires at
    once, a newcomer takes x, and the granted job finds its locks lost right after it started.

    Expected: the granted lease is bounded by the waiter's liveness (its last try + ALIVE_MS, at
    least 29 s here), not by its wait deadline; a waiter whose deadline has passed is not granted.
    """
    client = server.client()
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    waiter = c.job([], ["x"], duration=30, heartbeat=True, job_id="late.waiter")
    register_waiter(c, waiter, "nonce-late", 0.3)
    time.sleep(0.25)
    holder.stop()  # grants x to "late.waiter"
    assert text(client.get(prefix + "olock:x")) == "late.waiter"
    lease = client.pttl(prefix + "olock:x")
    client.delete(prefix + "olock:x")
    c.close()
    assert lease > 29_000, f"granted a lease of {lease} ms for a job asking 30 s"


def test_a_waiter_without_heartbeat_that_died_does_not_get_its_whole_lease(server, prefix):
    """A process waiting for x with heartbeat=False and a one-hour lease is killed (OOM, SIGKILL)
    right after its last try; its place stays alive 30 s. A release within those 30 s grants it x
    directly with its full lease, since grant_lease() shortens only the leases of jobs that renew:
    x is then locked for an hour by a process that never ran the job. (A renewing waiter gets at
    most what is left of its 30 s, tests/test_waiting.py checks it; jobs.py, which has no grants,
    never locks anything for a dead waiter.)

    Expected: a waiter that cannot be given a short lease is not granted blind: it is nudged to
    look again and takes x with its own try (one round trip), or gets at most its liveness window.
    """
    client = server.client()
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    dead = c.job([], ["x"], duration=3600, heartbeat=False, job_id="dead.waiter")
    register_waiter(c, dead, "nonce-dead", 600)  # then the process died
    holder.stop()
    owner, lease = client.get(prefix + "olock:x"), client.pttl(prefix + "olock:x")
    client.delete(prefix + "olock:x")
    c.close()
    assert owner is None or lease <= 30_000, f"x locked for {lease} ms by {text(owner)!r}, which died waiting"


# -- fairness and bounds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("waiting", [32, 40])
def test_a_reader_is_not_held_up_by_a_long_line_of_compatible_readers(server, prefix, waiting):
    """Readers of x that also need a missing input m wait in x's line (each hourly job of a pipeline
    waiting for today's partition, all reading the same dimension table x). A new job reading only
    x is compatible with every one of them and x is free. line() reads the first SCAN_MAX (32)
    entries and, when it got all 32 (the line may be longer), keeps the newcomer behind the 32nd
    however compatible it is: from 32 waiting readers on, the newcomer is refused (input_queued)
    and, if it waits, waits until m appears, possibly forever. With 31 it starts.

    Expected: the same answer with 32 or 40 waiting readers as with 31: the reader starts.
    """
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    c.create_outputs(["x"])
    for i in range(waiting):
        register_waiter(c, c.job(["x", "m"], [], duration=30, job_id=f"hourly.{i}"), f"nonce-{i}", 20)
    try:
        c.job(["x"], [], duration=5).start().stop()
    finally:
        c.close()


def test_readers_are_not_serialized_behind_a_writer_that_cannot_run(server, prefix):
    """A writer W of dim (and of other) waits: other is held by a long job L. W is first in dim's
    line, but cannot run before L ends, so a reader R1 passes it (as designed). A second reader R2
    then comes while R1 reads: W now counts as blocked on dim itself (by R1, a passer) and keeps
    its turn, so R2 is refused. Readers that could all read dim together are let in one at a time,
    for as long as L runs (an hour, say): with wait=0 every reader that overlaps another fails; with
    a wait, they queue one behind the other.

    Expected: R2 reads beside R1. Letting it in costs W nothing the design's bound does not already
    allow: once L ends, W waits only for the passers reading dim, which read side by side (one
    passer hold); only then do new readers queue behind W.
    """
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    c.create_outputs(["dim"])
    long_job = c.job([], ["other"], duration=30).start()
    writer = c.job([], ["dim", "other"], duration=30, wait=20)
    t, out = in_thread(writer.start)
    until(lambda: c.waiting_jobs())
    r1 = c.job(["dim"], [], duration=30).start()  # passes W: W cannot run before L ends
    try:
        r2 = c.job(["dim"], [], duration=30).start()
        r2.stop()
    finally:
        r1.stop()
        c.close()
        t.join(5)
        long_job.stop()


def test_a_waiter_second_in_another_line_does_not_keep_a_free_name_idle(server, prefix):
    """y's line: R1 (a reader of y also waiting for a missing input z), then W (a writer of y,
    blocked by Q, a reader of y), then E (reads y, writes n). E cannot run: it is behind W in y's
    line. But when a newcomer N wants the free name n, standing(E, n) asks behind(E, n), which looks
    only at the first live entry of y's line: R1, a reader like E, so E counts as able to run
    ("strict") and keeps n idle. N is refused for as long as Q reads y, a hold the design's bound
    (one passer hold) does not cover; a waiting writer of n would sleep as long, since releases of n
    stop at E too.

    Expected: E is passable on n (it is kept out of y by W, a waiter ahead of it): N starts.
    """
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    c.create_outputs(["y"])
    q = c.job(["y"], [], duration=30).start()
    register_waiter(c, c.job(["y", "z"], [], duration=30, job_id="r1"), "nonce-r1", 20)
    register_waiter(c, c.job([], ["y"], duration=30, job_id="w"), "nonce-w", 20)
    register_waiter(c, c.job(["y"], ["n"], duration=30, job_id="e"), "nonce-e", 20)
    try:
        c.job([], ["n"], duration=5).start().stop()
    finally:
        q.stop()
        c.close()


def test_new_readers_wait_behind_a_waiting_writer_that_also_reads_the_name(server, prefix):
    """An in-place update: a job reading and writing the same table x (inputs ["x"], outputs ["x"]).
    It waits for x's current reader. line() and behind() judge compatibility from index_of(e, n),
    the first index of n in e's names: the input one, so a waiting job that also writes x counts as
    a reader of x, and new readers pass it. Readers relaying on x then keep it out for good, the
    starvation writer preference was meant to end.

    Expected: as for any waiting writer of x, a new reader of x is refused (input_queued).
    """
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    c.create_outputs(["x"])
    reader = c.job(["x"], [], duration=30).start()
    updater = c.job(["x"], ["x"], duration=30, wait=20)
    t, out = in_thread(updater.start)
    until(lambda: c.waiting_jobs())
    try:
        with pytest.raises(ResourceUnavailable) as e:
            c.job(["x"], [], duration=5).start().stop()
        assert e.value.args[0] == {"input_queued": ["x"]}
    finally:
        reader.stop()
        t.join(5)
        if updater.is_running:
            updater.stop()
        c.close()


def test_a_waiter_behind_32_waiters_that_cannot_run_gets_a_free_name(server, prefix):
    """32 writers wait for x and for "busy" (held by a long job): each is passable on x. A 33rd
    waiter W needs only x. When x's holder stops, scan() passes the 32 and, having looked at
    SCAN_MAX entries, nudges the 33rd (W) to look for itself; W's try then runs line(), which sees
    32 entries and keeps W behind the 32nd. W never gets the free x while 32 waiters that cannot
    run stand before it (with 31 it does), and x stays idle.

    Expected: W starts when x is released.
    """
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    busy = c.job([], ["busy"], duration=30).start()
    holder = c.job([], ["x"], duration=30).start()
    for i in range(32):
        register_waiter(c, c.job([], ["x", "busy"], duration=30, job_id=f"blocked.{i}"), f"nonce-{i}", 20)
    waiter = c.job([], ["x"], duration=30, wait=2.5)
    t, out = in_thread(waiter.start)
    until(lambda: len(c.waiting_jobs()) == 33)
    holder.stop()
    t.join(5)
    try:
        assert out and out[0] is waiter, f"start() gave {out!r}"
    finally:
        if waiter.is_running:
            waiter.stop()
        busy.stop()
        c.close()


def test_a_reservation_does_not_wait_for_the_job_it_waits_on(server, prefix):
    """A (writes o and y) waits: y is written by L. M, a newcomer writing o, passes A (A cannot run
    while L holds y), so M is a passer. L stops: y is now kept for A, which waits only for a passer
    (M). M then needs to read y: a Luigi task's dynamic dependency (LockSet.add_inputs), or any job
    taking a second lock while it holds the first. M's reader waits behind A, A waits for M, M waits
    for its reader: a deadlock, broken only by the reader's wait running out (M then fails).

    Expected: M's reader starts: a name is not kept idle for a head that waits only for passers,
    against those passers themselves (here: jobs of M's process), since the passer hold the bound
    counts on cannot end before they run.
    """
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    c.create_outputs(["y"])
    writer_of_y = c.job([], ["y"], duration=30).start()
    head = c.job([], ["o", "y"], duration=30, wait=10)
    t, out = in_thread(head.start)
    until(lambda: c.waiting_jobs())
    main = c.job([], ["o"], duration=30).start()  # passes the head: a passer
    writer_of_y.stop()  # y is free, and kept for the head, which waits only for "main"
    try:
        with c.job(["y"], [], duration=30, wait=1.5):  # main's dynamic dependency
            pass
    finally:
        main.stop(failed=True)
        t.join(5)
        if head.is_running:
            head.stop(failed=True)
        c.close()


# -- hostile or odd input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("record", [
    {"names": ["x"], "nin": 0},  # no id, no nonce, no lease
    {"names": ["x"], "nin": 0, "id": "j", "nonce": "bad", "ch": "nobody"},  # no lease, ttl, host, pid
    {"names": [["x"]], "nin": 0, "id": "j", "nonce": "bad"},  # a name that is not a string
], ids=["no id", "no lease", "odd name"])
def test_a_malformed_waiter_record_does_not_break_every_start_of_its_names(server, prefix, record):
    """A waiter record that decodes, with a names list and a numeric nin, is taken as a start
    request by entry(); its other fields are then used without a check. A record written by a
    future or past version, or by hand, that lacks one of them makes start.lua and stop.lua fail
    with a Lua error for every job of x: newcomers cannot start, and a holder's stop raises after
    part of its work was done (Redis does not roll back a script that fails half-way).

    Expected: a record that is not a well-formed start request is dropped from the line, like one
    that does not decode; the holder's stop writes x, and the next job of x starts.
    """
    client = server.client()
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    client.zadd(prefix + "jobs:waiting", {"bad": time.time() + 30})
    client.set(prefix + "jobs:waiting:bad", json.dumps(record), px=30_000)
    client.zadd(prefix + "jobs:queue:x", {"bad": time.time() - 10})
    try:
        holder.stop()
        assert client.get(prefix + "x") is not None
        c.job([], ["x"], duration=5).start().stop()
    finally:
        client.delete(prefix + "olock:x")
        c.close()


# -- every way a wait ends --------------------------------------------------------------------------------


def test_a_wait_under_way_when_its_coordinator_closes_gives_up(server, prefix):
    """close() runs (in another thread: a shutdown) just after a job's first try found x busy and
    before its wait registers for grants. Listener.register() then clears the listener's closing
    flag and subscribes again, so this wait never hears that the coordinator closed: it takes its
    place in line, sleeps, and starts when x is released, on a coordinator its owner closed (the
    heartbeat, stopped by close(), is started again for it).

    Expected: as for a wait already sleeping when close() runs, the start raises CoordinatorClosed
    and leaves nothing in Redis; x goes to nobody of this coordinator.
    """
    client = server.client()
    other = jobs_core.Coordinator(server.client(), prefix, poll=30)
    holder = other.job([], ["x"], duration=30).start()
    c = Hooked(server.client(), prefix, poll=30)

    def close_before_registering(step: Any) -> None:
        if isinstance(step, Expect) and not step.only_if_up:
            c.before = None
            c.close()

    c.before = close_before_registering
    job = c.job([], ["x"], duration=30, wait=3)
    t, out = in_thread(job.start)
    time.sleep(0.5)
    holder.stop()
    t.join(5)
    try:
        assert out and isinstance(out[0], CoordinatorClosed), f"start() gave {out!r}"
        assert not job.is_running
        assert client.get(prefix + "olock:x") is None
        assert client.zcard(prefix + "jobs:waiting") == 0
    finally:
        if job.is_running:
            job.stop(failed=True)
        c.close()
        other.close()


def test_an_interrupt_while_subscribing_leaves_no_registration(redis_server, prefix, monkeypatch):
    """Ctrl-C (a real SIGINT to the main thread) while a sync start() waits for the server to confirm
    its coordinator's subscription (here the confirmation is held back by a proxy). The registration
    was added before Listener.register() waits, and the driver never got the Wakeup to close: it
    stays registered for good. The listener then never goes idle, so its thread and pub/sub
    connection live as long as the coordinator (the asyncio listener removes it: it handles this).

    Expected: the interrupted start leaves no registration; once idle (IDLE_EXIT), the listener
    unsubscribes, as after any other wait.
    """
    import redis

    from jobs_core import listener

    from .fault_proxy import Proxy

    monkeypatch.setattr(listener, "IDLE_EXIT", 0.2)
    monkeypatch.setattr(listener, "READ_TIMEOUT", 0.05)
    monkeypatch.setattr(listener, "SUBSCRIBE_TIMEOUT", 1.0)
    admin = redis.Redis(port=redis_server.port)
    proxy = Proxy(redis_server.port)
    c = jobs_core.Coordinator(redis.Redis(port=proxy.port), prefix, poll=30)
    holder = c.job([], ["x"], duration=30).start()
    proxy.hold(b"SUBSCRIBE")
    main = threading.main_thread().ident
    timer = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            c.job([], ["x"], duration=30, wait=10).start()
        assert proxy.held.is_set()  # it was interrupted while subscribing
        channel = prefix + "jobs:wake:" + c.channel_id
        time.sleep(2.0)  # the subscription comes up after its time-out; then it should go idle
        assert admin.pubsub_numsub(channel)[0][1] == 0
        assert c._grants is not None and c._grants._routes.regs == {}
    finally:
        timer.cancel()
        holder.stop()
        c.close()
        proxy.close()


# -- wake-ups on names (wait_ready, the Airflow triggers) -------------------------------------------------


@pytest.mark.parametrize("repair", ["unlock", "create_outputs"])
def test_repairs_wake_those_waiting_on_the_names(server, prefix, repair):
    """unlock.lua and create.lua publish the names they changed on the namespace's broadcast
    channel as lines ("x\\ny"), but the listener of that channel now reads a JSON array (what
    stop.lua and leave.lua send): json.loads("x") fails, and the message is dropped. So
    `jobs-core unlock`, Coordinator.unlock() and create_outputs() wake no wait_ready() and no
    Airflow trigger: they see the change only at their next poll (here: after their timeout).

    Expected: a wakeups() registration on x is woken by an unlock or a create of x.
    """
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    other = jobs_core.Coordinator(server.client(), prefix, poll=30)
    holder = other.job([], ["x"], duration=30).start()
    try:
        with c.wakeups(["x"]) as wakeup:
            wakeup.wait(0.2)  # the nudge every registration gets when the subscription comes up
            assert not wakeup.wait(0.2)
            if repair == "unlock":
                other.unlock(outputs=["x"])
            else:
                other.create_outputs(["x"])
            assert wakeup.wait(2.0), f"{repair} of x woke nobody waiting on x"
    finally:
        holder.stop(failed=True) if holder.is_running else None
        c.close()
        other.close()


def test_wait_ready_is_woken_by_an_unlock(server, prefix):
    """The same through wait_ready(): the output is held by a jobs_core job (which publishes when it
    stops, so wait_ready sleeps until its lease ends, up to 10 s); an operator unlocks it."""
    c = jobs_core.Coordinator(server.client(), prefix, poll=30)
    other = jobs_core.Coordinator(server.client(), prefix, poll=30)
    holder = other.job([], ["x"], duration=30).start()
    t, out = in_thread(lambda: c.wait_ready([], ["x"], timeout=4))
    time.sleep(0.3)
    t0 = time.monotonic()
    other.unlock(outputs=["x"])
    t.join(6)
    took = time.monotonic() - t0
    try:
        assert out and out[0].can_start
        assert took < 1.0, f"wait_ready saw the unlock {took:.2f}s later"
    finally:
        try:
            holder.stop(failed=True)
        except jobs_core.LockLost:
            pass
        c.close()
        other.close()


# -- grants that race the waiter's own tries -------------------------------------------------------------


def test_a_grant_ended_before_the_waiters_next_try_is_not_taken_for_a_start(server, prefix):
    """Job "w" waits for x. A nudge ("look again") wakes it; while its try is on its way, x's holder
    stops and grants x to "w" (the grant message reaches its registration), and an operator stops
    "w" from outside (`jobs-core stop`: stop_job), which hands x to the next waiter. The try then
    finds "w" not running and x held: it registers again (a new place in line) and sleeps. The sleep
    returns the grant message that arrived meanwhile, and the flow takes that dead grant for a
    start: start() returns a job "running" with the token of a start that was stopped, while its new
    place in line stays in Redis (the flow thinks it is clean). That place is later granted x in
    turn, to a call nobody waits on: x is held by nobody useful until the lease runs out.

    Expected: a grant older than a try that found the call not running is ignored: the job goes on
    waiting and starts with the token of the start it really holds (here once the next waiter stops);
    nothing of it is left in jobs:waiting.
    """
    client = server.client()
    other = jobs_core.Coordinator(server.client(), prefix, poll=30)
    c = Hooked(server.client(), prefix, poll=30)
    holder = other.job([], ["x"], duration=30).start()
    job = c.job([], ["x"], duration=30, wait=5, job_id="w")
    t, out = in_thread(job.start)
    until(lambda: other.waiting_jobs())
    (nonce,) = [text(m) for m in client.zrange(prefix + "jobs:waiting", 0, -1)]
    nxt = other.job([], ["x"], duration=30, wait=5, job_id="next")
    t2, out2 = in_thread(nxt.start)
    until(lambda: len(other.waiting_jobs()) == 2)

    def grant_then_stop_from_outside(step: Any) -> None:
        if isinstance(step, Call) and step.script == "start":
            c.before = None
            holder.stop()  # grants x to "w"
            time.sleep(0.2)  # the grant message reaches w's registration
            other.stop_job("w", failed=True)  # and x goes to "next"

    c.before = grant_then_stop_from_outside
    client.publish(prefix + "jobs:wake:" + c.channel_id, nonce)  # "look again"
    t2.join(5)
    assert out2 and out2[0] is nxt
    time.sleep(0.3)
    nxt.stop()  # "next" is done with x: "w" may have it now
    t.join(5)
    try:
        assert out and out[0] is job
        record = {text(k): text(v) for k, v in client.hgetall(prefix + "jobs:holder:w").items()}
        assert record.get("state") == "running" and int(record["token"]) == job.token, (job.token, record)
        assert client.zcard(prefix + "jobs:waiting") == 0
    finally:
        if job.is_running:
            try:
                job.stop(failed=True)
            except jobs_core.LockLost:
                pass
        client.delete(prefix + "olock:x")
        c.close()
        other.close()


# -- a process that goes away -----------------------------------------------------------------------------

_SIGTERM_CHILD = textwrap.dedent("""
    import sys, threading, time
    import redis
    import jobs_core

    url, prefix = sys.argv[1], sys.argv[2]
    c = jobs_core.Coordinator(redis.Redis.from_url(url), prefix, poll=30)
    jobs_core.release_on_signal([c])
    holder = c.job([], ["x"], duration=30, job_id="child.holder").start()

    def work():
        with c.job([], ["x"], duration=300, wait=60, heartbeat=False, job_id="child.waiter"):
            time.sleep(60)

    threading.Thread(target=work, daemon=True).start()
    print("ready", flush=True)
    time.sleep(60)
""")


def test_release_on_signal_does_not_hand_the_locks_to_a_wait_of_the_dying_process(server, prefix):
    """A process runs a job holding x in its main thread and, in a worker thread, a job waiting for x.
    On SIGTERM, release_on_signal stops the running jobs as failed: the stop of x's holder grants x
    directly to the first in line, the worker's wait in the same process, which is not running yet
    and so is not stopped. Then SystemExit ends the process (its worker is a daemon thread): x stays
    locked by a dead process for the waiter's whole lease (300 s here, heartbeat off; up to 30 s with
    it on). Had the worker been a normal thread, the process would instead have gone on after
    SIGTERM, to run a job started by its own shutdown.

    Expected: after the signal, no lock of the namespace is held by that process: its waits give up
    (leave.lua) before, or as part of, stopping its running jobs.
    """
    client = server.client()
    proc = subprocess.Popen([sys.executable, "-c", _SIGTERM_CHILD, server.url, prefix],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        until(lambda: client.zcard(prefix + "jobs:waiting") == 1, timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 128 + signal.SIGTERM
        holder = client.get(prefix + "olock:x")
        assert holder is None, (f"x is held by {text(holder)!r} of the process that exited, for "
                                f"{client.pttl(prefix + 'olock:x')} ms more")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        client.delete(prefix + "olock:x")


# -- the listener -------------------------------------------------------------------------------------------


def test_an_async_listener_task_that_was_cancelled_is_started_again(server, prefix):
    """An application's shutdown path cancels every other task of its event loop (a common
    pattern), then goes on using its AsyncCoordinator. The listener task is among the cancelled: it
    ends, but AsyncListener keeps it as its _task (and _ready stays set), so neither register() nor
    registered() starts a new one. Every later wait of that coordinator registers on a listener that
    no longer exists, hears no grant, and learns of its start only at its next look: its deadline
    here, up to 10 s in general, while the lock granted to it sits unused.

    Expected: a listener task that is done is replaced: the wait is woken by its grant at once.
    """
    async def main() -> float:
        c = jobs_core.AsyncCoordinator(server.async_client(), prefix, poll=30)
        loop = asyncio.get_running_loop()
        holder = await c.job([], ["x"], duration=30).start()
        loop.call_later(0.2, lambda: asyncio.ensure_future(holder.stop()))
        await (await c.job([], ["x"], duration=30, wait=5).start()).stop()  # the listener is up
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.sleep(0.1)
        holder = await c.job([], ["x"], duration=30).start()
        loop.call_later(0.3, lambda: asyncio.ensure_future(holder.stop()))
        t0 = time.monotonic()
        job = await c.job([], ["x"], duration=30, wait=3).start()
        took = time.monotonic() - t0
        await job.stop()
        await c.aclose()
        return took

    took = asyncio.run(main())
    assert took < 1.0, f"the grant was seen {took:.2f}s after the wait began (the release came at 0.3 s)"
