"""The wait loop (jobs_core.waiting) without a server: canned replies, a fake clock.

A flow yields steps; these tests answer them by hand, as redis-py's own lock
tests swap ``mod_time`` for a fake clock, so every branch of the schedule is
checked in microseconds: first try, registration, places in line, sleeps,
grants, nudges, the last try at the deadline, giving up.
"""

from __future__ import annotations

from typing import Any

import pytest

from jobs_core import CoordinatorClosed, ResourceUnavailable
from jobs_core.keys import Keys
from jobs_core.plan import CHECK, START, WAIT, Plan
from jobs_core.steps import Call, Expect, Sleep, Watch
from jobs_core.waiting import MAX_QUIET_SLEEP, POLL_MIN, Closed, Grant, Retry, Started, Wait, ready_flow

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def plan(inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = ("x",)) -> Plan:
    return Plan(Keys("p:"), "job.1", inputs, outputs, lease=60, renews=True, overwrite=True, history=True,
                output_ttl=None, host="h", pid=1)


def started(token: int = 7, lease_ms: int = 60_000) -> list[Any]:
    return [1, token, f"{NOW:.6f}", lease_ms]


def blocked(*blockers: tuple[str, int, str, float | None, int], final: bool = False, now: float = NOW,
            last_token: int = 5) -> list[Any]:
    out: list[Any] = [0, f"{now:.6f}", int(final), last_token]
    for reason, index, holder, until, publishes in blockers:
        out += [reason, index, holder, "" if until is None else f"{until:.6f}", publishes]
    return out


LOCKED = ("output_locked", 1, "holder.1", NOW + 5, 1)  # a jobs_core holder: its release wakes us
POLLED = ("output_locked", 1, "jobspy.1", NOW + 50, 0)  # a jobs.py holder: nothing wakes us


class Driver:
    """Runs a flow, answering each step from a script of (expected step type, answer or effect)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.steps: list[Any] = []

    def run(self, flow: Any, answer: Any) -> Any:
        result = None
        try:
            step = next(flow)
            while True:
                self.steps.append(step)
                result = answer(step)
                step = flow.send(result)
        except StopIteration as done:
            return done.value


def modes(steps: list[Any]) -> list[str]:
    """The start mode of each try (and the wait left, ms), in order."""
    return [f"{s.args[2]}:{s.args[9]}" for s in steps if isinstance(s, Call) and s.script == "start"]


def test_a_free_start_is_one_call_and_needs_no_registration():
    clock = Clock()
    wait = Wait(plan(), "n1", 0.0, clock, poll=2)
    d = Driver(clock)
    result = d.run(wait.flow(), lambda step: started())
    assert isinstance(result, Started) and result.token == 7 and result.lease == 60 and not result.granted
    assert [type(s) for s in d.steps] == [Call] and modes(d.steps) == [f"{START}:0"]
    assert not wait.dirty


def test_wait_zero_refused_leaves_nothing_behind():
    clock = Clock()
    wait = Wait(plan(), "n1", 0.0, clock, poll=2)
    with pytest.raises(ResourceUnavailable) as e:
        Driver(clock).run(wait.flow(), lambda step: blocked(LOCKED))
    assert e.value.args[0] == {"output_locked": ["x"]} and not wait.dirty
    assert wait.blockers[0].holder.job_id == "holder.1"


@pytest.mark.parametrize("reply", [started(), blocked(LOCKED), blocked(("output_exists", 1, "w.1", None, 0),
                                                                     final=True)])
def test_a_single_try_made_directly_is_the_flow_of_a_wait_of_zero(reply):
    """Wait.once (what a sync start with wait=0 runs) answers exactly as the flow does."""
    calls = []

    def call(script, keys, args):
        calls.append(Call(script, keys, args))
        return reply

    direct, flowed = Wait(plan(), "n1", 0.0, Clock(), poll=2), Wait(plan(), "n1", 0.0, Clock(), poll=2)
    d = Driver(Clock())
    try:
        got: Any = direct.once(call)
    except ResourceUnavailable as exc:
        got = (exc.args, exc.blockers)
    try:
        want: Any = d.run(flowed.flow(), lambda step: reply)
    except ResourceUnavailable as exc:
        want = (exc.args, exc.blockers)
    assert got == want and calls == d.steps
    assert (direct.dirty, direct.blockers, direct.waited) == (flowed.dirty, flowed.blockers, flowed.waited)


def test_a_single_try_whose_call_failed_may_have_left_a_start():
    def call(script, keys, args):
        raise ConnectionError("reply lost")

    wait = Wait(plan(), "n1", 0.0, Clock(), poll=2)
    with pytest.raises(ConnectionError):
        wait.once(call)
    assert wait.dirty  # the job leaves (leave.lua releases a start made for it)


def test_first_wait_registers_before_the_try_that_takes_a_place():
    """Not listening yet: a plain try, then the registration (confirmed), then tries that queue."""
    clock = Clock()
    wait = Wait(plan(), "n1", 30.0, clock, poll=2)
    d = Driver(clock)
    answers = iter([None, blocked(LOCKED), "chan", blocked(LOCKED), Grant(9, 25_000)])

    def answer(step: Any) -> Any:
        if isinstance(step, Sleep):
            clock.t += 0.5
        return next(answers)

    result = d.run(wait.flow(), answer)
    kinds = [type(s).__name__ for s in d.steps]
    assert kinds == ["Expect", "Call", "Expect", "Call", "Sleep"]
    assert d.steps[0].only_if_up and not d.steps[2].only_if_up
    assert modes(d.steps) == [f"{START}:0", f"{WAIT}:30000"]
    assert d.steps[3].args[10] == "chan"  # grants go to this coordinator's channel
    assert result == Started(9, 100.0, 25.0, granted=True)  # lease counted from the last try sent
    assert not wait.dirty


def test_already_listening_queues_on_the_first_try():
    clock = Clock()
    wait = Wait(plan(), "n1", 30.0, clock, poll=2)
    d = Driver(clock)
    answers = iter(["chan", started()])
    d.run(wait.flow(), lambda step: next(answers))
    assert modes(d.steps) == [f"{WAIT}:30000"]


def test_sleeps_until_a_lease_ends_when_the_holder_wakes_us():
    clock = Clock()
    wait = Wait(plan(), "n1", 30.0, clock, poll=2)
    d = Driver(clock)
    answers = iter(["chan", blocked(LOCKED), None, started()])
    d.run(wait.flow(), lambda step: next(answers))
    (sleep,) = [s for s in d.steps if isinstance(s, Sleep)]
    assert sleep.seconds == pytest.approx(5.002)  # until the holder's lease ends, plus the slack


@pytest.mark.parametrize("poll", [0.1, 2.0, 60.0, 3600.0])
def test_polled_blockers_back_off_but_every_sleep_is_at_most_ten_seconds(poll):
    """Whatever ``poll`` is, a waiter tries again within MAX_QUIET_SLEEP, which keeps its place (30 s)."""
    clock = Clock()
    wait = Wait(plan(), "n1", 600.0, clock, poll=poll)
    d = Driver(clock)
    sleeps: list[float] = []

    def answer(step: Any) -> Any:
        if isinstance(step, Expect):
            return "chan"
        if isinstance(step, Sleep):
            sleeps.append(step.seconds)
            clock.t += step.seconds
            return None
        return started() if len(sleeps) >= 12 else blocked(POLLED)

    d.run(wait.flow(), answer)
    assert sleeps[0] == POLL_MIN and sleeps == sorted(sleeps)
    assert max(sleeps) == min(poll, MAX_QUIET_SLEEP) <= 10.0


def test_a_nudge_resets_the_backoff():
    clock = Clock()
    wait = Wait(plan(), "n1", 600.0, clock, poll=60)
    d = Driver(clock)
    sleeps: list[float] = []
    replies = iter([None, None, Retry(), None, None])

    def answer(step: Any) -> Any:
        if isinstance(step, Expect):
            return "chan"
        if isinstance(step, Sleep):
            sleeps.append(step.seconds)
            return next(replies)
        return started() if len(sleeps) == 5 else blocked(POLLED)

    d.run(wait.flow(), answer)
    assert sleeps == [POLL_MIN, 2 * POLL_MIN, 4 * POLL_MIN, POLL_MIN, 2 * POLL_MIN]


def test_the_last_try_at_the_deadline_leaves_the_lines():
    clock = Clock()
    wait = Wait(plan(), "n1", 3.0, clock, poll=2)
    d = Driver(clock)

    def answer(step: Any) -> Any:
        if isinstance(step, Expect):
            return "chan"
        if isinstance(step, Sleep):
            clock.t += step.seconds
            return None
        return blocked(LOCKED)

    with pytest.raises(ResourceUnavailable) as e:
        d.run(wait.flow(), answer)
    assert modes(d.steps)[-1] == f"{WAIT}:0"  # the last try: leave if still blocked
    assert not wait.dirty  # so nothing is left to undo
    assert e.value.waited == pytest.approx(3.0)
    assert sum(s.seconds for s in d.steps if isinstance(s, Sleep)) == pytest.approx(3.0)


def test_the_last_try_may_still_start():
    clock = Clock()
    wait = Wait(plan(), "n1", 1.0, clock, poll=2)
    d = Driver(clock)
    tries = []

    def answer(step: Any) -> Any:
        if isinstance(step, Expect):
            return "chan"
        if isinstance(step, Sleep):
            clock.t += step.seconds
            return None
        tries.append(step)
        return started() if step.args[9] == 0 else blocked(LOCKED)

    assert d.run(wait.flow(), answer).token == 7


def test_waiting_cannot_help_with_an_existing_output():
    clock = Clock()
    wait = Wait(plan(), "n1", 30.0, clock, poll=2)
    answers = iter(["chan", blocked(("output_exists", 1, "writer.1", None, 0), final=True)])
    with pytest.raises(ResourceUnavailable) as e:
        Driver(clock).run(wait.flow(), lambda step: next(answers))
    assert e.value.args[0] == {"output_exists": ["x"]}
    assert not wait.dirty  # start.lua already dropped its place


def test_a_closed_coordinator_ends_the_wait():
    clock = Clock()
    wait = Wait(plan(), "n1", 30.0, clock, poll=2)
    answers = iter(["chan", blocked(LOCKED), Closed()])
    with pytest.raises(CoordinatorClosed):
        Driver(clock).run(wait.flow(), lambda step: next(answers))
    assert wait.dirty  # the caller leaves the lines


def test_leave_flow_is_one_call_that_says_whether_a_start_was_released():
    clock = Clock()
    wait = Wait(plan(("a",), ("x",)), "n1", 30.0, clock, poll=2)
    wait.dirty = True
    d = Driver(clock)
    assert d.run(wait.leave_flow(), lambda step: [1, 1, f"{NOW:.6f}"]) is True
    (call,) = d.steps
    assert call.script == "leave" and call.args[:2] == ["job.1", "n1"] and call.args[-2:] == ["a", "x"]


def test_ready_flow_watches_names_and_sleeps_on_them():
    clock = Clock()
    p = Plan(Keys("p:"), "", ("a",), (), lease=1, renews=False, overwrite=True, history=False, output_ttl=None,
             host="h", pid=1)
    d = Driver(clock)
    answers = iter([blocked(("input_missing", 1, "", None, 0)), None, blocked(("input_missing", 1, "", None, 0)),
                    Retry(), [1, 0, f"{NOW:.6f}", 0]])
    reply = d.run(ready_flow(p, 10.0, clock, 2.0), lambda step: next(answers))
    assert reply.started
    assert [type(s) for s in d.steps] == [Call, Watch, Call, Sleep, Call]
    assert d.steps[1].names == frozenset({"a"})
    assert all(s.args[2] == CHECK for s in d.steps if isinstance(s, Call))
