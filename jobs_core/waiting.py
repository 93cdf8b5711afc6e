"""Waiting to start: the whole of a wait, from its first try to its end.

One start() call is one :class:`Wait`. Its first try takes the locks or says
what blocks them. If it may wait, it registers with the coordinator's
listener for its grant (:class:`jobs_core.steps.Expect`) and tries again in
mode ``wait``: from then on it has a place in the line of each of its names
(start.lua), by the server time it began to wait. Then it sleeps until one of
these comes first:

* a :class:`Grant`: a release found it first in line and able to run, and
  took every lock for it (the direct grant): it runs, with no round trip;
* a :class:`Retry`: something it waits for changed in a way a release could
  not settle for it (an output now exists, a long line): it tries again;
* the end of its sleep: a holder's lease ends (a holder that died), a blocker
  that never wakes anyone (a jobs.py holder, a missing input) is polled, and
  in any case it tries again within :data:`MAX_QUIET_SLEEP`, which keeps its
  place alive (``ALIVE_MS``).

At its deadline it tries a last time, which leaves every line if it is still
blocked. If anything else ends the wait (an interrupt, a cancelled task, a
closed coordinator), the job calls :meth:`Wait.leave_flow` (leave.lua): one
replay-safe call that drops its place everywhere, releases a grant made for it
meanwhile, and starts or tells whoever is next. If that call cannot reach
Redis either, its place lapses by itself within ``ALIVE_MS``.

Everything here is a flow (:mod:`jobs_core.steps`): the clock is injected and
the replies can be canned, so the whole schedule is tested without a server.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import CoordinatorClosed, LimitTooSmall, ResourceUnavailable, UnknownLimit
from .events import WaitProgress
from .facts import Blocker, BlockReport, group_reasons
from .limits import wake_mark
from .plan import CHECK, START, WAIT, Plan, StartReply, parse_start
from .steps import Call, Expect, Flow, Sleep, Watch

#: First fallback poll delay; it doubles after each sleep no wake-up cut short.
POLL_MIN = 0.025
#: Longest sleep before trying again, whatever ``poll`` is: a waiter's place in line stays
#: alive ``protocol.ALIVE_MS`` (30 s) after each try, so it is renewed well before it lapses.
MAX_QUIET_SLEEP = 10.0
#: Slack added after a lease's expiry so the next try finds it expired.
EXPIRY_SLACK = 0.002


@dataclass(frozen=True)
class Grant:
    """A release started the waiting call: its ``token``, the lease it got in milliseconds, and the
    server time it was granted at (epoch seconds)."""

    token: int
    lease_ms: int
    at: float = 0.0


@dataclass(frozen=True)
class Retry:
    """Something the waiting call waits for changed: look again."""


@dataclass(frozen=True)
class Closed:
    """The wait must end: ``reason`` says why (the coordinator closed, or stopped its jobs)."""

    reason: str = "its coordinator was closed"


Message = Grant | Retry | Closed


@dataclass(frozen=True)
class Started:
    """How a start ended well: its token, and its lease counted from ``sent`` (the client's clock
    when the try that started it, or the last try before its grant, was sent: a lower bound)."""

    token: int
    sent: float
    lease: float
    granted: bool = False


class Schedule:
    """When a blocked job looks again, unless a message comes first."""

    def __init__(self, poll: float) -> None:
        self.poll = min(poll, MAX_QUIET_SLEEP)
        self.backoff = POLL_MIN

    def delay(self, reply: StartReply) -> float:
        """Seconds until the next try after ``reply``.

        Blockers that wake this job when they end (jobs_core holders, waiters
        ahead) need a look only when a lease runs out first (a holder that
        died): sleep until the earliest. Others are polled with a backoff.
        """
        if reply.polls:
            delay, self.backoff = self.backoff, min(self.backoff * 2, self.poll)
            return delay
        ends = [b.holder.expires for b in reply.blockers if b.holder is not None and b.holder.expires is not None]
        if not ends or len(ends) < len(reply.blockers):
            return MAX_QUIET_SLEEP
        return min(max(min(ends) - reply.now, 0.0) + EXPIRY_SLACK, MAX_QUIET_SLEEP)

    def woke(self) -> None:
        self.backoff = POLL_MIN


class Wait:
    """One start() call of a job, from its first try to its end.

    Args:
        plan: the job's script arguments.
        nonce: this call's nonce (the server answers a repeated try with its token).
        wait: seconds it may wait.
        clock: the coordinator's monotonic clock.
        poll: the coordinator's longest fallback poll.
    """

    __slots__ = ("plan", "nonce", "wait", "clock", "poll", "progress", "describe", "on_progress", "dirty",
                 "blockers", "waited", "ended")

    def __init__(self, plan: Plan, nonce: str, wait: float, clock: Callable[[], float], poll: float, *,
                 progress: float | None = None,
                 describe: Callable[[float, tuple[Blocker, ...]], Flow[BlockReport]] | None = None,
                 on_progress: Callable[[WaitProgress], None] | None = None) -> None:
        self.plan = plan
        self.nonce = nonce
        self.wait = wait
        self.clock = clock
        self.poll = poll
        #: Seconds between progress reports (the first when the wait begins); None: none. Each
        #: report reads the blockers' holder facts with ``describe`` and hands it to ``on_progress``.
        self.progress = progress if describe is not None and on_progress is not None else None
        self.describe = describe
        self.on_progress = on_progress
        #: Whether Redis may hold something of this call (a place in line, or a start whose reply
        #: was lost): if the wait ends otherwise than by a start, :meth:`leave_flow` must run.
        self.dirty = False
        #: What blocked the first try, and how long the wait took.
        self.blockers: tuple[Blocker, ...] = ()
        self.waited = 0.0
        #: Set (by ``stop_all``) when the wait must end before its next step.
        self.ended: Closed | None = None

    def flow(self) -> Flow[Started]:
        """Try, and while blocked and allowed, wait: see the module's description.

        Raises:
            ResourceUnavailable: still blocked at the deadline, or waiting cannot help.
            CoordinatorClosed: the coordinator was closed meanwhile.
        """
        clock = self.clock
        began = clock()
        deadline = began + self.wait
        channel = (yield Expect(self.nonce, only_if_up=True)) if self.wait > 0 else None
        sent, reply = yield from self._try(WAIT if channel is not None else START, deadline - clock(), channel)
        self.blockers = reply.blockers
        schedule = Schedule(self.poll)
        next_report: float | None = None  # the first report when the wait begins
        while not reply.started:
            if self.ended is not None:
                raise CoordinatorClosed(f"job {self.plan.job_id!r} gave up waiting: {self.ended.reason}")
            left = deadline - clock()
            if reply.final or left <= 0 or self.wait <= 0:
                if self.dirty:  # the last try: it leaves every line if still blocked
                    sent, reply = yield from self._try(WAIT, 0.0, channel or "")
                    if reply.started:
                        break
                raise self._unavailable(reply, began)
            if channel is None:
                channel = yield Expect(self.nonce)  # confirmed before the next try, so no grant is missed
            else:
                sleep = min(schedule.delay(reply), left)
                if self.progress is not None:
                    if next_report is None or clock() >= next_report:
                        yield from self._report(reply, began, deadline)
                        next_report = clock() + self.progress
                    sleep = min(sleep, max(next_report - clock(), 0.0))
                message = yield Sleep(sleep)
                if isinstance(message, Grant) and message.token > reply.token:
                    self.waited = clock() - began
                    self.dirty = False
                    # the lease runs from the grant: the server's time since the last try, on our clock
                    granted_at = sent + max(message.at - reply.now, 0.0)
                    return Started(message.token, granted_at, message.lease_ms / 1000, granted=True)
                if isinstance(message, Closed):
                    raise CoordinatorClosed(f"job {self.plan.job_id!r} gave up waiting: {message.reason}")
                if message is not None:  # a nudge, or a grant already ended before the last try
                    schedule.woke()
            sent, reply = yield from self._try(WAIT, deadline - clock(), channel)
        self.waited = clock() - began if self.wait > 0 else 0.0
        self.dirty = False
        return Started(reply.token, sent, reply.lease)

    def once(self, call: Callable[[str, Sequence[str], Sequence[Any]], Any]) -> Started:
        """What :meth:`flow` does for a wait of 0 seconds (one try), calling the script directly with
        ``call(script, keys, args)``: a sync start runs no step machinery for it."""
        assert self.wait <= 0
        sent = self.clock()
        self.dirty = True
        reply = self._took(START, 0.0, call("start", self.plan.keys, self.plan.start_args(self.nonce)))
        self.blockers = reply.blockers
        if not reply.started:
            raise self._unavailable(reply, sent)
        self.waited = 0.0
        self.dirty = False
        return Started(reply.token, sent, reply.lease)

    def _try(self, mode: str, left: float, channel: str | None) -> Flow[tuple[float, StartReply]]:
        sent = self.clock()
        self.dirty = True
        args = self.plan.start_args(self.nonce, mode, max(left, 0.0) if mode == WAIT else 0.0, channel or "")
        return sent, self._took(mode, left, (yield Call("start", self.plan.keys, args)))

    def _took(self, mode: str, left: float, raw: Any) -> StartReply:
        reply = parse_start(raw, self.plan)
        if not reply.started and (mode == START or left <= 0 or reply.final):
            self.dirty = False  # blocked, and nothing of this call stays in Redis
        return reply

    def _report(self, reply: StartReply, began: float, deadline: float) -> Flow[None]:
        assert self.describe is not None and self.on_progress is not None
        report = yield from self.describe(reply.now, reply.blockers)
        now = self.clock()
        self.on_progress(WaitProgress(self.plan.job_id, now - began, max(deadline - now, 0.0), report))

    def _unavailable(self, reply: StartReply, began: float) -> Exception:
        self.waited = self.clock() - began if self.wait > 0 else 0.0
        return limit_error(reply, self.plan) or ResourceUnavailable(group_reasons(reply.blockers), reply.blockers,
                                                                     self.waited)

    def leave_flow(self) -> Flow[bool]:
        """Give up: leave every line, release a start made for this call meanwhile; True if one was.

        Replay-safe, and safe to run from another thread than the waiting one
        (``stop_all``): it changes nothing of this object.
        """
        raw = yield Call("leave", self.plan.keys, self.plan.leave_args(self.nonce))
        return int(raw[1]) == 1


def limit_error(reply: StartReply, plan: Plan) -> Exception | None:
    """The error of a start that asks for a limit not set, or for more slots than a limit has
    (waiting cannot help: a mistake to fix, not a busy resource); None for any other blocked start."""
    for b in reply.blockers:
        if b.reason == "limit_unknown":
            return UnknownLimit(b.name, f"job {plan.job_id!r} asks for slots of limit {b.name!r}, which is not set "
                                        f"in this namespace: set its capacity first (coordinator.set_limit"
                                        f"({b.name!r}, N), or jobs-core limit set {shlex.quote(b.name)} N)")
        if b.reason == "limit_too_small":
            slots, capacity = dict(plan.limits)[b.name], reply.capacities.get(b.name)
            return LimitTooSmall(b.name, slots, capacity, f"job {plan.job_id!r} asks for {slots} slots of limit "
                                                          f"{b.name!r}, whose whole capacity is {capacity}: it "
                                                          "could never start")
    return None


def ready_flow(plan: Plan, timeout: float, clock: Callable[[], float], poll: float) -> Flow[StartReply]:
    """Wait until a job of ``plan`` could start (dry runs), woken by the namespace's releases.

    Returns the ready reply; the last blocked one when ``timeout`` passes or
    waiting cannot help (the caller raises).
    """
    began = clock()
    args = plan.start_args("", CHECK)
    reply = parse_start((yield Call("start", plan.keys, args)), plan)
    if reply.started or reply.final or timeout <= 0:
        return reply
    # confirmed before the next look: no release is missed (of a name, or of slots of a limit)
    yield Watch(frozenset(plan.names) | {wake_mark(name) for name, _ in plan.limits})
    schedule = Schedule(poll)
    while True:
        reply = parse_start((yield Call("start", plan.keys, args)), plan)
        left = began + timeout - clock()
        if reply.started or reply.final or left <= 0:
            return reply
        if (yield Sleep(min(schedule.delay(reply), left))) is not None:
            schedule.woke()

