"""Model-based testing: hypothesis drives several clients against a real redis-server.

A :class:`RuleBasedStateMachine` makes jobs on three coordinators (redis-py
with bytes replies, redis-py decoding, valkey-py), all in one namespace, and
starts, refreshes, checks and stops them (as written or failed), lets short
leases run out for real, force-unlocks names, creates outputs, starts a
second copy of a running job id, and asks why a job would be blocked. Some
jobs also take slots of a limit (``L``) whose capacity changes, or is removed,
as they run. Jobs also wait: a waiting start takes its place in the line of each of its names
(start.lua in mode ``wait``, driven call by call so that every outcome is
decided), tries again, gives up (leave.lua), and is started by releases (the
direct grant), in the order README "Waiting, in order" states: by ticket,
readers behind a waiting writer, heads that cannot run passed, jobs that
passed someone marked; a limit's line keeps for each waiter ahead the slots
it asks for. After each step the outcome (token, blockers, lost
locks, errors, grants published) and the state in Redis (outputs, write
locks, live read locks, live slots, fencing counter, lines, waiting records,
passers)
must match :class:`Model`, a few lines of Python per rule of DESIGN.md §1, §4
and §7.

Time is real: short leases are 0.25 s. The model knows each start's lease
expiry only within the window [sent + lease, answered + lease] (the monotonic
clock runs at the server clock's rate on one machine), so before each step
it sleeps past any expiry due within the next 50 ms, and discards the rare
example whose step still overlapped one (``ambiguous``).

CI runs a bounded number of examples; ``-m long`` runs many more.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

import jobs_core
from jobs_core import LimitTooSmall, LockLost, NotRunning, ResourceUnavailable, UnknownLimit
from jobs_core.waiting import Started, Wait

from .reliability import report

#: hypothesis warns when the global ``random`` state changes while it draws an example; a thread
#: another test left behind (redis-py's retry backoff draws its jitter there) can do that, and
#: has nothing to do with the examples drawn here
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")

NAMES = ("a", "b", "c")
#: The limit some jobs take slots of; its line is kept beside the names' (a name never has this form).
LIMIT = "L"
#: Reasons waiting cannot help with.
FINAL = {"output_exists", "limit_unknown", "limit_too_small"}
SHORT, LONG = 0.25, 30.0
#: Slack around a lease's expiry window (clock rates, millisecond rounding of PX).
MARGIN = 0.015
#: A step is assumed to take less than this; expiries due sooner are waited out first.
BUDGET = 0.05

FIGURES: dict[str, int] = {"examples": 0, "steps": 0, "starts": 0, "refused": 0, "lost_reports": 0,
                           "expiries": 0, "unlocks": 0, "creates": 0, "twins": 0, "ambiguous": 0, "waits": 0,
                           "queued": 0, "grants": 0, "passers": 0, "limited_starts": 0, "limit_full": 0,
                           "capacity_changes": 0}


class JobModel:
    """One Job object and what the model expects of it."""

    def __init__(self, job: jobs_core.Job, lease: float) -> None:
        self.job = job
        self.id = job.id
        self.inputs, self.outputs = job.inputs, job.outputs
        self.slots = dict(job.limits).get(LIMIT, 0)  # slots of the limit it takes (0: none)
        self.lease = lease
        self.active = False  # started and not stopped, as the Job object sees itself
        self.token: int | None = None
        self.window: tuple[float, float] | None = None  # lease expiry of its current start, monotonic
        self.lost = False  # job.lost is set
        self.call: object | None = None  # the start() call of its current (or last) start or wait
        self.nonce = ""  # that call's nonce, while it waits or was granted
        self.ticket = 0  # its place in line (the order it began to wait), while it waits
        self.waiting = False  # it has a place in line
        self.granted = False  # a release started it; its Job object has not taken it over yet
        self.passer = False  # its current start passed a waiter ahead of it
        self.host = job.coordinator.host  # each coordinator plays another machine (the passer rule)
        self.grant_sent = 0.0

    def __repr__(self) -> str:
        return f"<{self.id} {'active' if self.active else 'idle'} token={self.token}>"


class Model:
    """DESIGN.md's rules over names a, b, c; liveness decided for one step's time window."""

    def __init__(self) -> None:
        self.written: dict[str, str] = {}
        self.writer: dict[str, JobModel] = {}
        self.readers: dict[str, dict[str, JobModel]] = {n: {} for n in NAMES}
        self.record: dict[str, tuple[JobModel, bool]] = {}  # holder record per id: (start, running?)
        self.counter = 0
        self.queue: dict[str, list[JobModel]] = {n: [] for n in (*NAMES, LIMIT)}  # each line, in ticket order
        self.capacity: int | None = None  # the limit's
        self.slots: dict[str, JobModel] = {}  # the start holding slots of the limit, per job id
        self.idqueue: dict[str, list[JobModel]] = {}  # waiting for another start of their id to end
        self.tickets = 0
        self.grants: dict[str, int] = {}  # published in the current step: nonce -> token
        self.nudged: set[str] = set()  # told to look again in the current step
        self.left: list[str] = []  # lines left by waiters that can never start, to look at (drain)
        self.left_seen: set[str] = set()  # every such line of the current step (one look each)

    @staticmethod
    def live(jm: JobModel, s: float, r: float) -> bool:
        # the caller made sure the step [s, r] is not within the window
        return jm.window is not None and jm.window[0] - MARGIN > r

    def holder(self, job_id: str, s: float, r: float) -> JobModel | None:
        """The start whose holder record exists for ``job_id`` (a running one only while live)."""
        rec = self.record.get(job_id)
        if rec is None or (rec[1] and not self.live(rec[0], s, r)):
            return None
        return rec[0]

    def running(self, job_id: str, s: float, r: float) -> JobModel | None:
        rec = self.record.get(job_id)
        return rec[0] if rec and rec[1] and self.live(rec[0], s, r) else None

    def live_writer(self, name: str, s: float, r: float) -> JobModel | None:
        w = self.writer.get(name)
        return w if w is not None and self.live(w, s, r) else None

    def live_readers(self, name: str, s: float, r: float) -> dict[str, JobModel]:
        return {i: jm for i, jm in self.readers[name].items() if self.live(jm, s, r)}

    def used(self, job_id: str, s: float, r: float) -> list[JobModel]:
        """The live holders of the limit's slots other than ``job_id``."""
        return [jm for i, jm in self.slots.items() if i != job_id and self.live(jm, s, r)]

    def conflicts(self, job_id: str, call: object | None, inputs: Any, outputs: Any, overwrite: bool, s: float,
                  r: float, slots: int = 0) -> list[tuple[str, str, JobModel | None]]:
        """What keeps a start from running, lines aside: ``(reason, name, holder)`` in start.lua's order."""
        out: list[tuple[str, str, JobModel | None]] = []
        if job_id:
            running = self.running(job_id, s, r)
            if running is not None and running.call is not call:
                out.append(("job_running", job_id, None))
        for n in inputs:
            w = self.live_writer(n, s, r)
            if w is not None and w.id != job_id:
                out.append(("input_missing", n, w))
            elif n not in self.written:
                out.append(("input_missing", n, None))
        for n in outputs:
            if not overwrite and n in self.written:
                out.append(("output_exists", n, None))
                continue
            w = self.live_writer(n, s, r)
            if w is not None and w.id != job_id:
                out.append(("output_locked", n, w))
            else:
                out += [("output_used", n, rd) for i, rd in self.live_readers(n, s, r).items() if i != job_id]
        if slots:
            holders = self.used(job_id, s, r)
            if self.capacity is None:
                out.append(("limit_unknown", LIMIT, None))
            elif slots > self.capacity:
                out.append(("limit_too_small", LIMIT, None))
            elif slots > self.capacity - sum(h.slots for h in holders):
                out += [("limit_full", LIMIT, h) for h in holders]
        return out

    def blockers(self, job_id: str, inputs: Any, outputs: Any, overwrite: bool, s: float, r: float, host: str = "",
                 slots: int = 0) -> set[tuple[str, str]]:
        """A newcomer's blockers (a start that does not wait, or a dry run), as ``(reason, name)``."""
        found, _ = self.full(job_id, None, None, list(inputs), list(outputs), overwrite, s, r, host, slots)
        return {(reason, n) for reason, n, _ in found}

    # -- the lines --------------------------------------------------------------------------

    def ahead(self, n: str, w: JobModel | None) -> list[JobModel]:
        """The waiters ahead of ``w`` in ``n``'s line (all of them for a newcomer)."""
        q = self.queue[n]
        if w is not None and w in q:
            return q[:q.index(w)]
        if w is not None and w.ticket:
            return [e for e in q if e.ticket < w.ticket]
        return list(q)

    @staticmethod
    def only_reads(jm: JobModel, n: str) -> bool:
        return n not in jm.outputs

    @staticmethod
    def lines_of(jm: JobModel) -> list[str]:
        """The lines a waiting job has a place in: its names', then the limit's."""
        return [*jm.inputs, *jm.outputs] + ([LIMIT] if jm.slots else [])

    def standing(self, e: JobModel, n: str, host: str, depth: int, s: float, r: float) -> str:
        """How waiter ``e`` stands on ``n`` for a start of ``host``'s process behind it: final (it will
        leave), passable (blocked by something no passer of another process caused, or behind another
        waiter), on (blocked only on n itself), strict (runnable, or waiting only for passers)."""
        found = self.conflicts(e.id, e.call, e.inputs, e.outputs, e.job.overwrite, s, r, e.slots)
        if any(reason in FINAL for reason, _, _ in found):
            return "final"
        on = elsewhere = False
        for reason, name, holder in found:
            if reason != "job_running" and name == n and not (reason == "input_missing" and holder is None):
                on = True
            elif holder is None or reason == "job_running" or not holder.passer or holder.host == host:
                elsewhere = True
        if elsewhere:
            return "passable"
        if on:
            return "on"
        if not found and depth < 2 and any(m != n and self.line(e, m, e.host, depth + 1, s, r)[0] is not None
                                           for m in self.lines_of(e)):
            return "passable"
        return "strict"

    def line(self, w: JobModel | None, n: str, host: str, depth: int, s: float, r: float
             ) -> tuple[JobModel | None, bool]:
        """The waiter ahead of ``w`` (None: a newcomer of ``host``) that keeps ``n`` from it, and
        whether it passed someone on the way."""
        passed = False
        if n == LIMIT:
            return self.limit_line(w, w.id, w.slots, host, depth, s, r)
        reads_only = w is None or self.only_reads(w, n)
        for e in self.ahead(n, w):
            if self.only_reads(e, n) and reads_only and (w is None or n in w.inputs):
                continue  # readers do not keep a name from readers
            if self.standing(e, n, host, depth, s, r) in ("passable", "final"):
                passed = True
                continue
            return e, passed
        return None, passed

    def limit_line(self, w: JobModel | None, job_id: str, slots: int, host: str, depth: int, s: float, r: float
                   ) -> tuple[JobModel | None, bool]:
        """The limit's line: each waiter ahead that keeps its turn keeps the slots it asks for; the
        first that leaves too few for ``slots`` keeps the limit from it."""
        passed = False
        free = (self.capacity or 0) - sum(h.slots for h in self.used(job_id, s, r)) - slots
        for e in self.ahead(LIMIT, w):
            if self.standing(e, LIMIT, host, depth, s, r) in ("passable", "final"):
                passed = True
                continue
            free -= e.slots
            if free < 0:
                return e, passed
        return None, passed

    def full(self, job_id: str, call: object | None, w: JobModel | None, inputs: list[str], outputs: list[str],
             overwrite: bool, s: float, r: float, host: str = "", slots: int = 0
             ) -> tuple[list[tuple[str, str, JobModel | None]], bool]:
        """Conflicts, then for each name (and the limit) free of them the waiter ahead that keeps it;
        and whether the start passed someone."""
        found = self.conflicts(job_id, call, inputs, outputs, overwrite, s, r, slots)
        if found or not self.waiters():
            return found, False  # the lines matter only to a start that could run
        passed = False
        if slots:
            e, p = self.limit_line(w, job_id, slots, host, 0, s, r)
            passed = p
            if e is not None:
                found.append(("limit_queued", LIMIT, e))
        # per name index, as the server reports them: a name both read and written is in line twice
        for n, reason in [*((n, "input_queued") for n in inputs), *((n, "output_queued") for n in outputs)]:
            if w is None:
                # a newcomer: compatible with readers only if it only reads n
                reads_only = n in inputs and n not in outputs
                e, p = None, False
                for x in self.ahead(n, None):
                    if self.only_reads(x, n) and reads_only:
                        continue
                    if self.standing(x, n, host, 0, s, r) in ("passable", "final"):
                        p = True
                        continue
                    e = x
                    break
            else:
                e, p = self.line(w, n, host, 0, s, r)
            passed = passed or p
            if e is not None:
                found.append((reason, n, e))
        return found, passed

    def waiters(self) -> list[JobModel]:
        return [jm for q in self.queue.values() for jm in q] + [jm for q in self.idqueue.values() for jm in q]

    def unqueue(self, jm: JobModel) -> None:
        for q in [*self.queue.values(), *self.idqueue.values()]:
            if jm in q:
                q.remove(jm)
        jm.waiting = False

    def take(self, jm: JobModel, passed: bool, s: float, r: float) -> None:
        """A start (by its own try or a grant): every lock, the next token, its place in line gone."""
        self.counter += 1
        FIGURES["passers"] += passed
        jm.token, jm.passer, jm.lost, jm.window = self.counter, passed, False, (s + jm.lease, r + jm.lease)
        self.record[jm.id] = (jm, True)
        for n in jm.inputs:
            self.readers[n][jm.id] = jm
        for n in jm.outputs:
            self.writer[n] = jm
        if jm.slots:
            self.slots[jm.id] = jm
            FIGURES["limited_starts"] += 1
        self.unqueue(jm)

    def scan(self, q: list[JobModel], n: str | None, s: float, r: float) -> None:
        """A release's look at one line: start, in order, those that can run; tell those that cannot
        ever (an existing output); stop at the first that keeps its turn (on the limit's line, at the
        first blocked by the limit itself: one keeping its turn for another reason keeps its slots,
        and those behind it that fit in the rest start)."""
        for e in list(q):
            if not e.waiting:
                continue
            found, passed = self.full(e.id, e.call, e, e.inputs, e.outputs, e.job.overwrite, s, r, e.host, e.slots)
            if not found:
                self.take(e, passed, s, r)
                e.granted, e.grant_sent = True, s
                self.grants[e.nonce] = e.token
                FIGURES["grants"] += 1
            elif any(reason in FINAL for reason, _, _ in found):
                self.unqueue(e)
                self.nudged.add(e.nonce)
                for x in self.lines_of(e):  # its other lines: looked at after (drain)
                    if x != n and x not in self.left_seen and len(self.left_seen) < 32:
                        self.left_seen.add(x)
                        self.left.append(x)
            else:
                if found[0][0] == "job_running" and e not in self.idqueue.setdefault(e.id, []):
                    self.idqueue[e.id].append(e)
                if n is None:
                    if found[0][0] == "job_running":
                        return
                elif self.standing(e, n, "", 0, s, r) in (("on",) if n == LIMIT else ("on", "strict")):
                    return

    def scan_names(self, names: Any, s: float, r: float) -> None:
        """The lines of ``names`` (and of the limit, named LIMIT), in that order; then drain."""
        if self.waiters():
            for n in names:
                self.scan(self.queue[n], n, s, r)
            self.drain(s, r)

    def drain(self, s: float, r: float) -> None:
        """The lines that waiters found unable to start left, in the order they were found."""
        left, self.left = self.left, []
        for n in left:
            self.scan(self.queue[n], n, s, r)

    def held(self, jm: JobModel) -> set[tuple[str, str]]:
        """What ``jm``'s start still holds, as lost reasons would name it."""
        return ({("input_lock_lost", n) for n in jm.inputs if self.readers[n].get(jm.id) is jm}
                | {("output_lock_lost", n) for n in jm.outputs if self.writer.get(n) is jm}
                | ({("limit_lost", LIMIT)} if jm.slots and self.slots.get(jm.id) is jm else set()))

    def release(self, jm: JobModel) -> None:
        if jm.slots and self.slots.get(jm.id) is jm:
            del self.slots[jm.id]
        for n in jm.inputs:
            if self.readers[n].get(jm.id) is jm:
                del self.readers[n][jm.id]
        for n in jm.outputs:
            if self.writer.get(n) is jm:
                del self.writer[n]


def lost_pairs(lost: dict[str, list[str]]) -> set[tuple[str, str]]:
    return {(reason, n) for reason, names in lost.items() for n in names}


def all_lost(jm: JobModel) -> set[tuple[str, str]]:
    return ({("input_lock_lost", n) for n in jm.inputs} | {("output_lock_lost", n) for n in jm.outputs}
            | ({("limit_lost", LIMIT)} if jm.slots else set()))


def text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


names = st.lists(st.sampled_from(NAMES), unique=True, max_size=3)
ACTIONS = ["start", "refresh", "start", "stop", "check", "repair", "stop_failed", "start", "why_blocked", "stop",
           "pause", "expire", "wait", "wait", "retry", "give_up", "capacity"]
#: The channel suffix the waits of this test publish their grants to (read back after each step).
CHANNEL = "model"
#: slots of the limit a job takes (0: none)
slot_counts = st.sampled_from([0, 0, 1, 1, 2, 3])
#: client, inputs, outputs, overwrite, short lease, slots
job_specs = st.tuples(st.integers(0, 2), st.lists(st.sampled_from(NAMES), unique=True, max_size=2),
                      names.filter(bool), st.sampled_from([True, True, False]), st.booleans(), slot_counts)


def machine(url: str) -> type[RuleBasedStateMachine]:
    class Jobs(RuleBasedStateMachine):
        jobs = Bundle("jobs")

        def __init__(self) -> None:
            super().__init__()
            FIGURES["examples"] += 1
            self.prefix = f"m{secrets.token_hex(4)}:"
            import valkey
            options = {"socket_timeout": 10}
            self.clients = [redis.Redis.from_url(url, **options),
                            redis.Redis.from_url(url, decode_responses=True, **options),
                            valkey.Valkey.from_url(url, **options)]
            self.coordinators = [jobs_core.Coordinator(c, self.prefix) for c in self.clients]
            for i, c in enumerate(self.coordinators):
                c.host = f"host{i}"  # three machines: a process's own jobs may pass its heads
            self.admin = self.clients[0]
            self.spy = self.admin.pubsub()
            self.spy.subscribe(self.prefix + "jobs:wake:" + CHANNEL)
            while (self.spy.get_message(timeout=5) or {}).get("type") != "subscribe":
                pass
            self.model = Model()
            self.all: list[JobModel] = []
            self.serial = 0

        # -- time ----------------------------------------------------------------------------

        def settle(self) -> None:
            """Sleep past every lease expiry due within the next BUDGET seconds."""
            while True:
                now = time.monotonic()
                due = [jm.window[1] + MARGIN for jm in self.all if jm.window is not None
                       and jm.window[0] - MARGIN < now + BUDGET and jm.window[1] + MARGIN > now]
                if not due:
                    return
                time.sleep(max(due) - now + 0.001)

        def step(self, call: Any) -> tuple[Any, BaseException | None, float, float]:
            """Run one call after settling; returns (result, error, sent, answered)."""
            self.settle()
            FIGURES["steps"] += 1
            self.model.grants, self.model.nudged = {}, set()
            self.model.left, self.model.left_seen = [], set()
            s = time.monotonic()
            try:
                result, error = call(), None
            except (ResourceUnavailable, LockLost, NotRunning, UnknownLimit, LimitTooSmall) as exc:
                result, error = None, exc
            r = time.monotonic()
            self.unambiguous(s, r)
            return result, error, s, r

        def unambiguous(self, s: float, r: float) -> None:
            """Discard the example if a lease expiry fell within [s, r]: the model cannot tell."""
            ambiguous = any(jm.window is not None and jm.window[0] - MARGIN < r and jm.window[1] + MARGIN > s
                            for jm in self.all)
            if ambiguous:
                FIGURES["ambiguous"] += 1
            assume(not ambiguous)

        # -- rules ---------------------------------------------------------------------------

        @initialize(target=jobs, specs=st.lists(job_specs, min_size=3, max_size=4))
        def seed(self, specs):
            self.model.written.update(a="seed", b="seed")
            self.coordinators[0].create_outputs(["a", "b"], job_id="seed")
            self.model.counter += 1
            self.coordinators[0].set_limit(LIMIT, 3)
            self.model.capacity = 3
            return multiple(*(self.make(*spec) for spec in specs))

        def make(self, client, inputs, outputs, overwrite, short, slots) -> JobModel:
            outputs = [n for n in outputs if n not in inputs]
            lease = SHORT if short else LONG
            self.serial += 1
            job = self.coordinators[client].job(inputs, outputs, duration=lease, overwrite=overwrite,
                                                heartbeat=False, job_id=f"j{self.serial}",
                                                limits={LIMIT: slots} if slots else None)
            jm = JobModel(job, lease)
            self.all.append(jm)
            return jm

        @precondition(lambda self: len(self.all) < 7)
        @rule(target=jobs, spec=job_specs)
        def new_job(self, spec):
            return self.make(*spec)

        @precondition(lambda self: len(self.all) < 8)
        @rule(target=jobs, of=jobs, client=st.integers(0, 2))
        def twin(self, of, client):
            """Another Job with the same id (the same task run elsewhere): one start per id at a time."""
            FIGURES["twins"] += 1
            job = self.coordinators[client].job(of.inputs, of.outputs, duration=of.lease,
                                                overwrite=of.job.overwrite, heartbeat=False, job_id=of.id,
                                                limits=of.job.limits)
            jm = JobModel(job, of.lease)
            self.all.append(jm)
            return jm

        @rule(jm=jobs, action=st.sampled_from(ACTIONS), data=st.data())
        def act(self, jm, action, data):
            """One call: on a job, or a repair or question on the namespace. One rule with weighted
            actions, so that hypothesis's choice of rules does not starve the starts."""
            if (jm.waiting or jm.granted) and action not in ("give_up", "expire", "pause", "repair", "why_blocked",
                                                             "capacity"):
                action = "retry"  # its start() call is still under way
            FIGURES[action] = FIGURES.get(action, 0) + 1
            if action == "stop_failed":
                self._stop(jm, failed=True)
            elif action == "stop":
                self._stop(jm, failed=False)
            elif action == "expire":
                self._expire(data)
            elif action == "pause":
                time.sleep(data.draw(st.sampled_from([0.01, 0.05]), label="seconds"))
            elif action == "repair":
                self._repair(data.draw(st.integers(0, 2), label="client"), data.draw(names, label="inputs"),
                             data.draw(names, label="outputs"), data.draw(st.booleans(), label="create"))
            elif action == "why_blocked":
                self._why_blocked(data.draw(st.integers(0, 2), label="client"), data.draw(names, label="inputs"),
                                  data.draw(names, label="outputs"), data.draw(st.booleans(), label="overwrite"),
                                  data.draw(slot_counts, label="slots"))
            elif action == "capacity":
                self._capacity(data.draw(st.sampled_from([0, 1, 2, 2, 3, 3, 4]), label="capacity"))
            else:
                getattr(self, "_" + action)(jm)

        def _start(self, jm: JobModel) -> None:
            before = jm.token
            _, error, s, r = self.step(jm.job.start)
            m = self.model
            if jm.active:
                assert error is None and jm.job.token == before  # already running: no-op
                return
            found, passed = m.full(jm.id, None, None, jm.inputs, jm.outputs, jm.job.overwrite, s, r, jm.host,
                                   jm.slots)
            expected = {(reason, n) for reason, n, _ in found}
            if expected:
                FIGURES["refused"] += 1
                FIGURES["limit_full"] += ("limit_full", LIMIT) in expected
                if ("limit_unknown", LIMIT) in expected:
                    assert isinstance(error, UnknownLimit), (error, expected)
                    return
                if ("limit_too_small", LIMIT) in expected:
                    assert isinstance(error, LimitTooSmall) and error.capacity == m.capacity, (error, expected)
                    return
                assert isinstance(error, ResourceUnavailable), (error, expected)
                assert {(b.reason, b.name) for b in error.blockers} == expected
                assert set(error.args[0]) == {reason for reason, _ in expected}
                assert not jm.job.is_running
                return
            assert error is None, (error, m.written, m.writer, m.readers)
            FIGURES["starts"] += 1
            jm.call = object()
            m.take(jm, passed, s, r)
            assert jm.job.token == m.counter  # fencing: the next integer of the namespace
            jm.active = True

        # -- waiting, call by call (what jobs_core.waiting does, with every outcome decided) -------

        def _script(self, name: str, jm: JobModel, args: list[Any]) -> Any:
            c = jm.job.coordinator
            return getattr(c.scripts, name)(jm.job._plan_now().keys, args)

        def _wait(self, jm: JobModel) -> None:
            """A start() that may wait: its try in mode ``wait`` (a newcomer: behind every waiter)."""
            if jm.active:
                return
            FIGURES["waits"] += 1
            call, nonce = object(), secrets.token_hex(8)
            plan = jm.job._plan_now()
            reply, _, s, r = self.step(lambda: self._script("start", jm, plan.start_args(nonce, "wait", 60, CHANNEL)))
            self._first_try(jm, call, nonce, reply, s, r)

        def _first_try(self, jm: JobModel, call: object, nonce: str, reply: Any, s: float, r: float) -> None:
            """The outcome of a waiting call's try while it has no place in line (its first)."""
            m = self.model
            found, passed = m.full(jm.id, call, None, jm.inputs, jm.outputs, jm.job.overwrite, s, r, jm.host,
                                   jm.slots)
            jm.call, jm.nonce = call, nonce
            if not found:
                assert int(reply[0]) == 1, reply
                m.take(jm, passed, s, r)
                self._adopt(jm, int(reply[1]), s, int(reply[3]) / 1000)
                return
            assert int(reply[0]) == 0, (reply, found)
            got = {(text(reply[i]), jm.job._plan.name(reply[i + 1])) for i in range(4, len(reply), 5)}
            assert got == {(reason, n) for reason, n, _ in found}
            final = any(reason in FINAL for reason, _, _ in found)
            assert int(reply[2]) == int(final)
            if final:
                return
            FIGURES["queued"] += 1
            m.tickets += 1
            jm.ticket, jm.waiting = m.tickets, True
            for n in m.lines_of(jm):
                m.queue[n].append(jm)
            if found[0][0] == "job_running":
                m.idqueue.setdefault(jm.id, []).append(jm)

        def _retry(self, jm: JobModel) -> None:
            """The waiting call tries again (woken, or its sleep ended), or takes over a grant."""
            if not (jm.waiting or jm.granted):
                return self._wait(jm)
            plan = jm.job._plan_now()
            reply, _, s, r = self.step(lambda: self._script("start", jm, plan.start_args(jm.nonce, "wait", 60,
                                                                                        CHANNEL)))
            m = self.model
            if jm.granted:
                if m.running(jm.id, s, r) is jm:
                    assert int(reply[0]) == 1 and int(reply[1]) == jm.token, reply
                    self._adopt(jm, jm.token, jm.grant_sent, jm.lease)
                    return
                # the grant's lease ran out unclaimed (the process paused): the call tries anew
                jm.granted, jm.waiting, jm.window = False, False, None
                self._first_try(jm, jm.call, jm.nonce, reply, s, r)
                return
            found, passed = m.full(jm.id, jm.call, jm, jm.inputs, jm.outputs, jm.job.overwrite, s, r, jm.host,
                                   jm.slots)
            if not found:
                assert int(reply[0]) == 1, (reply, m.queue)
                m.take(jm, passed, s, r)
                if jm.inputs or jm.slots:  # readers beside it, and the limit's line behind it
                    m.scan_names([*jm.inputs] + ([LIMIT] if jm.slots else []), s, r)
                self._adopt(jm, int(reply[1]), s, jm.lease)
                self.grants_published()
                return
            assert int(reply[0]) == 0, (reply, found)
            got = {(text(reply[i]), jm.job._plan.name(reply[i + 1])) for i in range(4, len(reply), 5)}
            assert got == {(reason, n) for reason, n, _ in found}, (got, found)
            if any(reason in FINAL for reason, _, _ in found):
                m.unqueue(jm)
                m.scan_names(m.lines_of(jm), s, r)
            self.grants_published()

        def _give_up(self, jm: JobModel) -> None:
            """The waiting call gives up (an interrupt, a cancelled task): leave.lua."""
            if not (jm.waiting or jm.granted):
                return
            plan = jm.job._plan_now()
            reply, _, s, r = self.step(lambda: self._script("leave", jm, plan.leave_args(jm.nonce)))
            m = self.model
            queued = jm.waiting
            released = jm.granted and m.running(jm.id, s, r) is jm
            assert [int(reply[0]), int(reply[1])] == [int(queued), int(released)], (reply, queued, released)
            m.unqueue(jm)
            if released:
                m.release(jm)
                m.record[jm.id] = (jm, False)
            jm.granted, jm.window = False, None
            if queued or released:
                m.scan_names(m.lines_of(jm), s, r)
                if released:
                    m.scan(m.idqueue.get(jm.id, []), None, s, r)
                    m.drain(s, r)
            self.grants_published()

        def _adopt(self, jm: JobModel, token: int, sent: float, lease: float) -> None:
            """The Job object takes over the start made for its call (as a grant message makes it)."""
            job = jm.job
            job._begin(Wait(job._plan_now(), jm.nonce, 60, time.monotonic, 2), Started(token, sent, lease))
            job.coordinator.track(job, None)
            jm.active, jm.granted, jm.waiting = True, False, False
            assert job.token == jm.token == token

        def grants_published(self) -> None:
            """The grants and nudges published to the waits' channel in this step are the model's."""
            marker = secrets.token_hex(4)
            self.admin.publish(self.prefix + "jobs:wake:" + CHANNEL, marker)
            grants, nudged = {}, set()
            while True:
                message = self.spy.get_message(timeout=5)
                assert message is not None, "the marker"
                if message.get("type") != "message":
                    continue
                data = text(message["data"])
                if data == marker:
                    break
                for line in data.split("\n"):
                    nonce, _, rest = line.partition("\t")
                    if rest:
                        grants[nonce] = int(rest.split("\t")[0])
                    else:
                        nudged.add(nonce)
            assert grants == self.model.grants, (grants, self.model.grants)
            assert nudged == self.model.nudged, (nudged, self.model.nudged)

        def _refresh(self, jm: JobModel) -> None:
            _, error, s, r = self.step(jm.job.refresh)
            m = self.model
            if not jm.active:
                assert isinstance(error, NotRunning), error
                return
            if m.holder(jm.id, s, r) is not jm:
                lost = all_lost(jm)
            else:
                lost = all_lost(jm) - m.held(jm)
                jm.window = (s + jm.lease, r + jm.lease)  # what it still holds is renewed, lost or not
            if lost:
                FIGURES["lost_reports"] += 1
                assert isinstance(error, LockLost), (error, lost)
                assert lost_pairs(error.lost) == lost
                assert lost_pairs(jm.job.lost) >= lost
                jm.lost = True
            else:
                assert error is None, error

        def _stop(self, jm: JobModel, failed: bool) -> None:
            _, error, s, r = self.step(lambda: jm.job.stop(failed=failed))
            m = self.model
            if not jm.active:
                assert error is None
                return
            holder = m.holder(jm.id, s, r)
            if holder is not None and holder is not jm:
                lost = all_lost(jm)  # a later start of the id owns it all: nothing is touched
            elif holder is None:
                lost = all_lost(jm)  # its lease ran out, and its holder record with it
                m.release(jm)
                if m.record.get(jm.id, (None,))[0] is jm:
                    del m.record[jm.id]
                m.scan_names(m.lines_of(jm), s, r)
            else:
                lost = all_lost(jm) - m.held(jm)
                m.release(jm)
                if not failed and not lost:
                    for n in jm.outputs:
                        m.written[n] = jm.id
                m.record[jm.id] = (jm, False)
                m.scan_names(m.lines_of(jm), s, r)
                m.scan(m.idqueue.get(jm.id, []), None, s, r)
                m.drain(s, r)
            self.grants_published()
            jm.active, jm.window = False, None
            assert not jm.job.is_running
            if failed or not lost:
                assert error is None, error
            else:
                FIGURES["lost_reports"] += 1
                assert isinstance(error, LockLost), (error, lost)
                assert lost_pairs(error.lost) == lost
                jm.lost = True

        def _check(self, jm: JobModel) -> None:
            """check(): no round trip; raises once a loss is known or the lease may have run out."""
            _, error, s, r = self.step(jm.job.check)
            if jm.lost:
                assert isinstance(error, LockLost), error
            elif not jm.active:
                assert isinstance(error, NotRunning), error
            elif jm.window[0] - MARGIN < s:
                assert isinstance(error, LockLost), error
            else:
                assert error is None, error

        def _expire(self, data: Any) -> None:
            """Let the lease of a running job's start run out (for real: it is short)."""
            now = time.monotonic()
            due = [jm for jm in self.all if jm.window is not None and jm.lease == SHORT and jm.window[1] + MARGIN > now]
            if due:
                jm = data.draw(st.sampled_from(due), label="expire")
                FIGURES["expiries"] += 1
                time.sleep(jm.window[1] + MARGIN - time.monotonic() + 0.001)

        def _repair(self, client: int, inputs: list[str], outputs: list[str], create: bool) -> None:
            """Force-unlock names (every reader of the inputs, the writer of the outputs), or mark
            outputs written (fencing their writers out)."""
            m = self.model
            if create and outputs:
                FIGURES["creates"] += 1
                self.serial += 1
                writer = f"repair{self.serial}"
                token, _, s, r = self.step(lambda: self.coordinators[client].create_outputs(outputs, job_id=writer))
                m.counter += 1
                assert token == m.counter
                for n in outputs:
                    m.written[n] = writer
                    m.writer.pop(n, None)
                m.scan_names(outputs, s, r)
                self.grants_published()
                return
            FIGURES["unlocks"] += 1
            _, _, s, r = self.step(lambda: self.coordinators[client].unlock(inputs, outputs))
            m.counter += 1
            for n in inputs:
                m.readers[n].clear()
            for n in outputs:
                m.writer.pop(n, None)
            m.scan_names([*inputs, *outputs], s, r)
            self.grants_published()

        def _capacity(self, capacity: int) -> None:
            """Change the limit's capacity (0: remove it) as jobs hold and wait for it."""
            FIGURES["capacity_changes"] += 1
            c = self.coordinators[0]
            before, _, s, r = self.step(lambda: c.set_limit(LIMIT, capacity) if capacity else c.remove_limit(LIMIT))
            m = self.model
            assert before == m.capacity
            names: list[str] = []
            if m.capacity and (not capacity or capacity < m.capacity):
                # removed, or less room: whoever asks for more than there now is leaves every line at
                # once, told; the other lines it leaves are looked at before the limit's (limit.lua)
                for e in [e for e in m.queue[LIMIT] if e.waiting and (not capacity or e.slots > capacity)]:
                    m.unqueue(e)
                    m.nudged.add(e.nonce)
                    names += [n for n in [*e.inputs, *e.outputs] if n not in names]
            m.capacity = capacity or None
            m.scan_names([*names, LIMIT], s, r)
            self.grants_published()

        def _why_blocked(self, client: int, inputs: list[str], outputs: list[str], overwrite: bool, slots: int
                         ) -> None:
            limits = {LIMIT: slots} if slots else None
            report_, _, s, r = self.step(lambda: self.coordinators[client].why_blocked(inputs, outputs, overwrite,
                                                                                      limits))
            expected = self.model.blockers("", inputs, outputs, overwrite, s, r, self.coordinators[client].host,
                                           slots)
            assert report_.can_start == (not expected)
            assert {(b.reason, b.name) for b in report_.blockers} == expected, (report_.blockers, expected)

        # -- the state in Redis ------------------------------------------------------------------

        @invariant()
        def redis_matches_the_model(self):
            p, m = self.prefix, self.model
            pipe = self.admin.pipeline(transaction=True)  # one atomic snapshot, with the server's clock
            pipe.time()
            pipe.get(p + "jobs:token")
            for n in NAMES:
                pipe.get(p + n)
                pipe.get(p + "olock:" + n)
                pipe.zrange(p + "ilock:" + n, 0, -1, withscores=True)
                pipe.zrange(p + "jobs:queue:" + n, 0, -1)
            pipe.zrange(p + "jobs:limit:" + LIMIT, 0, -1, withscores=True)
            pipe.zrange(p + "jobs:limitq:" + LIMIT, 0, -1)
            pipe.zrange(p + "jobs:waiting", 0, -1)
            running = [jm for jm in self.all if m.running(jm.id, 0, 0) is jm]
            for jm in running:
                pipe.hget(p + "jobs:holder:" + jm.id, "passer")
            self.settle()
            s = time.monotonic()
            replies = pipe.execute()
            r = time.monotonic()
            self.unambiguous(s, r)
            (sec, usec), counter, rest = replies[0], replies[1], replies[2:]
            now = sec + usec / 1e6
            assert int(counter or 0) == m.counter
            slots, limit_line, waiting, passers = rest[4 * len(NAMES):4 * len(NAMES) + 3] + [rest[4 * len(NAMES) + 3:]]
            held: dict[str, int] = {}
            for member, score in slots:
                if score > now:
                    job_id = text(member).rpartition("#")[0]
                    held[job_id] = held.get(job_id, 0) + 1
            assert held == {i: jm.slots for i, jm in m.slots.items() if m.live(jm, s, r)}, (held, m.slots)
            assert [text(x) for x in limit_line] == [jm.nonce for jm in m.queue[LIMIT]]
            assert {text(w) for w in waiting} == {jm.nonce for jm in m.waiters()}
            for jm, passer in zip(running, passers):
                if m.running(jm.id, s, r) is jm:
                    assert text(passer) == ("1" if jm.passer else "0"), jm
            for i, n in enumerate(NAMES):
                value, lock, readers, line = rest[4 * i: 4 * i + 4]
                assert [text(x) for x in line] == [jm.nonce for jm in m.queue[n]], n
                live = {text(member) for member, score in readers if score > now}
                assert text(value) == m.written.get(n), n
                writer = m.live_writer(n, s, r)
                assert text(lock) == (writer.id if writer else None), n
                assert live == set(m.live_readers(n, s, r)), n
                # the rules themselves, on what Redis holds: one writer, and no reader beside it
                assert lock is None or live <= {text(lock)}, n

        def teardown(self):
            for jm in self.all:
                if jm.active:
                    try:
                        jm.job.stop(failed=True)
                    except Exception:
                        pass
            keys = list(self.admin.scan_iter(match=self.prefix + "*"))
            if keys:
                self.admin.delete(*keys)
            self.spy.close()
            for c in self.clients:
                c.close()

    return Jobs


def run_machine(url: str, examples: int, steps: int, name: str) -> None:
    for key in FIGURES:
        FIGURES[key] = 0
    began = time.monotonic()
    run_state_machine_as_test(machine(url), settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    report(name, {**FIGURES, "seconds": round(time.monotonic() - began, 1), "max_examples": examples,
                  "steps_per_example": steps})
    assert FIGURES["starts"] > 0 and FIGURES["refused"] > 0 and FIGURES["lost_reports"] > 0
    assert FIGURES["queued"] > 0 and FIGURES["grants"] > 0 and FIGURES["give_up"] > 0
    assert FIGURES["limited_starts"] > 0 and FIGURES["limit_full"] > 0 and FIGURES["capacity_changes"] > 0


def test_model(redis_server):
    run_machine(redis_server.url, examples=100, steps=30, name="model")


@pytest.mark.long
@pytest.mark.timeout(3600)  # the project's 300 s limit is for the CI-sized runs
def test_model_long(redis_server):
    run_machine(redis_server.url, examples=int(os.environ.get("JOBS_MODEL_EXAMPLES", 2000)), steps=60,
                name="model-long")
