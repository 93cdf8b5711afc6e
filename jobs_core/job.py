"""A job: the locks it takes on its inputs and outputs, and their lifecycle.

:class:`JobBase` holds the state and the flows (see :mod:`jobs_core.steps`)
shared by the sync :class:`Job` and the asyncio :class:`jobs_core.aio.AsyncJob`;
those two add locking, the heartbeat and the context-manager forms. A job
reaches its coordinator only through :class:`Host`; how a start waits is
:mod:`jobs_core.waiting`'s business.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from .errors import InvalidArgument, InvalidType, LockLost, NotRunning, ResourceUnavailable
from .events import CANCELLED, STARTED, TIMED_OUT, Observer, WaitProgress, emit
from .facts import Blocker, BlockReport
from .keys import Keys
from .limits import check_limits
from .names import check_job_id, fold
from .plan import Plan, StopReply, parse_refresh, parse_stop
from .protocol import FAILED, LOST, WRITTEN, check_seconds
from .steps import Call, Flow
from .waiting import Started, Wait

log = logging.getLogger("jobs_core")
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
UNSET: Any = object()


class Host(Protocol):
    """What a job needs of its coordinator (:class:`jobs_core.coordinator.CoordinatorBase`)."""

    keys: Keys
    host: str
    publish: str
    poll: float
    history: bool
    output_ttl: float | None
    clock: Callable[[], float]
    observers: tuple[Observer, ...]

    def run(self, flow: Flow[T]) -> Any:
        """Run ``flow`` on the coordinator's client (sync: its result; asyncio: an awaitable of it)."""

    def plan_for(self, key: tuple[Any, ...], build: Callable[[], Plan]) -> Plan:
        """The coordinator's plan template for ``key``, built once with ``build``."""

    def checked_io(self, inputs: Any, outputs: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``check_io(inputs, outputs)``, remembered for the lists a coordinator sees again."""

    def report_flow(self, now: float, blockers: Iterable[Blocker]) -> Flow[BlockReport]:
        """A :class:`BlockReport` of ``blockers`` with their holders' facts."""

    def wait_began(self, wait: Wait) -> None:
        """A start() call of this coordinator's is under way (``stop_all`` ends it first)."""

    def wait_ended(self, wait: Wait) -> None:
        """That start() call ended."""


class SyncHost(Host, Protocol):
    """What a sync job needs besides: its coordinator's heartbeat thread, and its script calls made
    directly (a single start try and a stop need no flow)."""

    call: Callable[[str, Any, Any], Any]

    def track(self, job: Any, first_beat: float | None) -> None:
        """Count ``job`` as running here, renewed after ``first_beat`` seconds (None: never)."""

    def untrack(self, job: Any) -> None:
        """``job`` no longer runs here."""

    def unbeat(self, job: Any) -> None:
        """No more renewals of ``job``."""


def caller_name(depth: int) -> str:
    """``<file>:<function>`` of the frame ``depth`` levels above the caller, as jobs.py names jobs."""
    code = sys._getframe(depth + 1).f_code
    return f"{code.co_filename}:{code.co_name}"


def new_job_id(base: str) -> str:
    """``<base>.<48-bit random decimal>``, the jobs.py job id form."""
    return f"{base}.{int.from_bytes(os.urandom(6), 'big')}"


class JobBase:
    """State and rules of one job; see :meth:`jobs_core.Coordinator.job` for the arguments."""

    def __init__(
        self,
        coordinator: Host,
        inputs: Iterable[str],
        outputs: Iterable[str],
        duration: float,
        wait: float | None = 0.0,
        overwrite: bool = True,
        heartbeat: bool | float = True,
        *,
        job_id: str | None = None,
        name: str | None = None,
        on_lost: Callable[[Any], Any] | None = None,
        max_hold: float | None = None,
        progress: float | None = 30.0,
        on_progress: Callable[[Any, WaitProgress], Any] | None = None,
        lineage_name: str | None = None,
        limits: Any = None,
        output_ttl: float | None = UNSET,
        history: bool = UNSET,
        _depth: int = 2,
    ) -> None:
        self.inputs, self.outputs = coordinator.checked_io(inputs, outputs)
        #: The slots of shared capacity it takes with its locks: ``((limit, slots), ...)``.
        self.limits = check_limits(limits)
        self.duration = check_seconds(duration, "duration", minimum=0.001)
        self.wait = check_seconds(wait or 0, "wait")
        if heartbeat is True:
            self.heartbeat: float | None = self.duration / 3
        elif heartbeat is False or heartbeat is None:
            self.heartbeat = None
        else:
            self.heartbeat = check_seconds(heartbeat, "heartbeat", minimum=0.001)
            if self.heartbeat >= self.duration:
                raise InvalidArgument(f"heartbeat ({heartbeat}s) must be shorter than the lease ({duration}s)")
        self.max_hold = check_seconds(max_hold, "max_hold", minimum=0.001, allow_none=True)
        if on_lost is not None and not callable(on_lost):
            raise InvalidType(f"on_lost must be callable, not {type(on_lost).__name__}")
        if on_progress is not None and not callable(on_progress):
            raise InvalidType(f"on_progress must be callable, not {type(on_progress).__name__}")
        #: Seconds between reports of a wait's progress (logged, and passed to ``on_progress``); None: none.
        self.progress = check_seconds(progress or None, "progress", minimum=0.01, allow_none=True)
        self.on_progress = on_progress
        self.overwrite = bool(overwrite)
        self.output_ttl = coordinator.output_ttl if output_ttl is UNSET else check_seconds(
            output_ttl, "output_ttl", minimum=0.001, allow_none=True)
        self.history = coordinator.history if history is UNSET else bool(history)
        self.on_lost = on_lost
        self.coordinator = coordinator
        if job_id is not None:
            self._base, self._fixed = check_job_id(job_id, "job id"), True
        else:
            self._base, self._fixed = check_job_id(name or caller_name(_depth), "job name"), False
        self._named = job_id is not None or name is not None
        #: The job's name in lineage edges: ``lineage_name``, else its id with digit runs folded.
        self.lineage_name = None if lineage_name is None else check_job_id(lineage_name, "lineage name")
        self.id = self._base if self._fixed else new_job_id(self._base)
        #: The fencing token of the current (or last) start; None before the first.
        self.token: int | None = None
        self._active = False
        #: ``{reason: [names]}`` of locks found lost since the start, else None.
        self.lost: dict[str, list[str]] | None = None
        #: Seconds the last start waited, and what blocked its first try.
        self.waited = 0.0
        self.blockers: tuple[Blocker, ...] = ()
        self._plan: Plan | None = None
        self._pid = 0
        self._deadline = 0.0
        self._started_at = 0.0
        self._wait_began = 0.0
        self._renewing = True
        self._stop_failed = False
        self._stop_nonce: str | None = None
        self._start_nonce = ""

    def __repr__(self) -> str:
        state = f"running, token {self.token}" if self._active else "not running"
        return f"<{type(self).__name__} {self.id!r} {state}>"

    @property
    def is_running(self) -> bool:
        """Whether the job was started (in this process or its parent) and not stopped."""
        return self._active

    def clone(self) -> Any:
        """A job with the same names and settings, not started, with a fresh id unless fixed."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.id = self._base if self._fixed else new_job_id(self._base)
        other.token, other._active, other.lost, other.waited, other.blockers = None, False, None, 0.0, ()
        other._stop_nonce = None
        # its plan is this one's with its own id (same base, so the same lineage form: a job renamed
        # after its clone, as a decorated function's, drops the plan itself)
        return other

    def _plan_now(self) -> Plan:
        """The script plan, rebuilt when this process is not the one that built it."""
        pid = os.getpid()
        plan = self._plan
        if plan is None or plan.pid != pid:
            c = self.coordinator
            # jobs made afresh for every run of the same work share one template (per process)
            lineage = self.lineage_name or fold(self.id)
            key = (self.inputs, self.outputs, self.limits, self.duration, self.heartbeat is not None,
                   self.overwrite, self.history, self.output_ttl, lineage, pid)

            def build() -> Plan:
                return Plan(c.keys, self.id, self.inputs, self.outputs, lease=self.duration,
                            renews=self.heartbeat is not None, overwrite=self.overwrite, history=self.history,
                            output_ttl=self.output_ttl, host=c.host, pid=pid, publish=c.publish, lineage=lineage,
                            limits=self.limits)

            plan = c.plan_for(key, build)
        if plan.job_id != self.id:
            plan = plan.with_id(self.id)
        self._plan = plan
        self._pid = pid
        return plan

    def _check_owner(self) -> None:
        if not self._active:
            raise NotRunning(f"job {self.id!r} is not running")
        if self._pid != os.getpid():
            raise NotRunning(f"job {self.id!r} was started by process {self._pid}; "
                             f"a forked child (pid {os.getpid()}) cannot refresh or stop it")

    def _forked(self) -> bool:
        return self._active and self._pid != os.getpid()

    # -- start -----------------------------------------------------------------------------

    def _new_wait(self) -> Wait:
        self.blockers, self.waited = (), 0.0
        c = self.coordinator
        self._wait_began = c.clock()
        return Wait(self._plan_now(), os.urandom(8).hex(), self.wait, c.clock, c.poll, progress=self.progress,
                    describe=c.report_flow, on_progress=self._progressed)

    def _progressed(self, progress: WaitProgress) -> None:
        """A wait's progress: logged, passed to ``on_progress`` and to the coordinator's observers."""
        log.info("job %s %s", self.id, progress.describe())
        if self.on_progress is not None:
            try:
                self.on_progress(self, progress)
            except Exception:
                log.exception("on_progress callback of job %s failed", self.id)
        emit(self.coordinator.observers, "wait_progress", self, progress)

    def _begin(self, wait: Wait, started: Started) -> float | None:
        """Record a start; returns the delay to its first renewal (None: it does not renew)."""
        self.blockers, self.waited = wait.blockers, wait.waited
        self._start_nonce = wait.nonce
        self.token = started.token
        self._active = True
        self._stop_failed = False
        self._stop_nonce = None
        self.lost = None
        self._started_at = started.sent
        self._deadline = started.sent + started.lease
        self._renewing = True
        if log.isEnabledFor(logging.INFO):
            how = f"granted after waiting {self.waited:.3f}s" if started.granted else (
                f"started after waiting {self.waited:.3f}s" if self.waited > 0 else "started")
            log.info("job %s %s with token %d", self.id, how, started.token)
        observers = self.coordinator.observers
        if observers:
            emit(observers, "wait_ended", self, STARTED, self.waited)
            emit(observers, "job_started", self)
        if self.heartbeat is None:
            return None
        return min(self.heartbeat, started.lease / 3)

    def _renew_grant(self, started: Started) -> bool:
        """Whether a start must renew its lease before it returns: a grant gives a waiter no longer
        than its place would have lived; a job with a heartbeat renews at its first beat, one
        without renews now."""
        return started.granted and self.heartbeat is None and started.lease < self.duration

    def _not_started(self, wait: Wait, exc: BaseException) -> None:
        # a wait cut short (a cancelled task, an interrupt) did not get to count its time itself
        waited = wait.waited or (self.coordinator.clock() - self._wait_began if wait.wait > 0 else 0.0)
        self.blockers, self.waited = wait.blockers, waited
        if isinstance(exc, ResourceUnavailable):
            log.info("job %s could not start: %s", self.id, exc)
        emit(self.coordinator.observers, "wait_ended", self,
             TIMED_OUT if isinstance(exc, ResourceUnavailable) else CANCELLED, waited)

    # -- flows: run by the coordinator's driver -----------------------------------------

    def _refresh_flow(self, renew: bool) -> Flow[tuple[dict[str, list[str]], bool] | None]:
        """One refresh; returns ``(lost, first_time)`` if locks were lost, else None."""
        plan = self._plan
        assert plan is not None and self.token is not None
        sent = self.coordinator.clock()
        reply = yield Call("refresh", plan.keys, plan.refresh_args(self.token, renew))
        _, lost = parse_refresh(reply, plan)
        if renew and not lost:
            self._deadline = sent + self.duration
        if lost:
            return lost, self._note_lost(lost)
        return None

    def _resume_flow(self, token: int) -> Flow[None]:
        """Adopt a start made elsewhere: renew its leases under ``token``, or raise LockLost."""
        if isinstance(token, bool) or not isinstance(token, int) or token < 1:
            raise InvalidType(f"a fencing token is a positive int, not {token!r}")
        plan = self._plan_now()
        sent = self.coordinator.clock()
        reply = yield Call("refresh", plan.keys, plan.refresh_args(token, True, strict=True))
        _, lost = parse_refresh(reply, plan)
        if lost:
            raise LockLost(self.id, lost, f"job {self.id!r} with token {token} cannot be resumed: it does not "
                                          f"hold {lost!r} (nothing was renewed)")
        self.token, self._active, self._stop_failed, self.lost, self._stop_nonce = token, True, False, None, None
        self._start_nonce = ""
        self._started_at = sent
        self._deadline = sent + self.duration
        self._renewing = True
        log.info("job %s resumed with token %d", self.id, token)

    def _detach_flow(self, lease: float | None) -> Flow[int]:
        """Leave the locks held for another process to :meth:`resume`; see :meth:`Job.detach`."""
        if lease is not None:
            lease = check_seconds(lease, "lease", minimum=0.001)
            plan = self._plan
            assert plan is not None and self.token is not None
            reply = yield Call("refresh", plan.keys, plan.refresh_args(self.token, True, True, lease))
            _, lost = parse_refresh(reply, plan)
            if lost:
                self._note_lost(lost)
                raise LockLost(self.id, lost, f"job {self.id!r} cannot be handed over: it lost {lost!r} "
                                              f"(nothing was renewed)")
        self._active = False
        log.info("job %s (token %s) detached: its locks stay held%s", self.id, self.token,
                 f" for {lease}s" if lease is not None else "")
        assert self.token is not None  # it is running
        return self.token

    def _stop_flow(self, commit: bool) -> Flow[None]:
        self._stop_done((yield self._stop_call(commit)), commit)

    def _stop_call(self, commit: bool) -> Call:
        plan = self._plan
        assert plan is not None
        if self._stop_nonce is None:
            # kept across repeats of a stop that failed in flight; one per start
            self._stop_nonce = f"{self._start_nonce}.stop" if self._start_nonce else os.urandom(8).hex()
        return Call("stop", plan.keys, plan.stop_args(self.token, commit, self._stop_nonce))

    def _stop_done(self, raw: Any, commit: bool) -> None:
        plan = self._plan
        assert plan is not None
        reply = parse_stop(raw, plan)
        self._active = False
        self._stopped(reply, commit)

    def _stopped(self, reply: StopReply, commit: bool) -> None:
        """Log a stop's outcome, or raise :class:`LockLost` when it could not do what was asked."""
        plan = self._plan
        assert plan is not None
        token = self.token
        observers = self.coordinator.observers
        if observers:
            state = reply.state if reply.status in (1, 2) or not commit else LOST
            if reply.status == 3 and commit and not reply.forced and reply.state == WRITTEN:
                state = WRITTEN
            emit(observers, "job_stopped", self, state, self.coordinator.clock() - self._started_at)
        if reply.status == 3:
            if commit and (reply.forced or reply.state != WRITTEN):
                lost = self.lost or plan.all_lost()
                self._note_lost(lost)
                how = "stopped from outside" if reply.forced else "stopped by the process that resumed it"
                raise LockLost(self.id, lost, f"job {self.id!r} (token {token}) was {how} (as {reply.state}) before "
                                              f"this stop, which wrote nothing")
            log.info("job %s (token %s) was already stopped (as %s) by another call", self.id, token, reply.state)
            return
        again = " (by an earlier try of this stop)" if reply.status == 2 else ""
        if reply.state == WRITTEN:
            log.info("job %s (token %s) stopped, outputs written%s", self.id, token, again)
        elif reply.state == FAILED or not commit:
            log.info("job %s (token %s) stopped as failed%s%s", self.id, token, again,
                     f"; locks already gone: {reply.lost!r}" if reply.lost else "")
        elif self._stop_failed and reply.status == 0:
            raise LockLost(self.id, reply.lost or plan.all_lost(),
                           f"job {self.id!r}: an earlier stop failed in flight and its outcome is no longer on "
                           f"record; its outputs may or may not have been written")
        else:
            lost = reply.lost or self.lost or plan.all_lost()
            self._note_lost(lost)
            raise LockLost(self.id, lost, f"job {self.id!r} lost locks before it stopped{again}, so no output "
                                          f"was written: {lost!r}")

    # -- shared rules -------------------------------------------------------------------

    def _note_lost(self, lost: dict[str, list[str]]) -> bool:
        """Record lost locks; True the first time (so ``on_lost`` runs once)."""
        first = self.lost is None
        merged = dict(self.lost or {})
        for reason, names in lost.items():
            merged[reason] = list(dict.fromkeys(merged.get(reason, []) + names))
        self.lost = merged
        if first:
            log.warning("job %s lost locks: %r", self.id, lost)
            emit(self.coordinator.observers, "locks_lost", self, lost)
        return first

    def _beat_plan(self) -> tuple[bool, float]:
        """``(renew, delay)``: past ``max_hold`` the heartbeat stops renewing and only
        checks again ``delay`` seconds later, when the lease should have run out."""
        if self.max_hold is not None and self.coordinator.clock() - self._started_at >= self.max_hold:
            if self._renewing:
                self._renewing = False
                log.warning("job %s held its locks for max_hold=%ss; no longer renewing them", self.id, self.max_hold)
            return False, max(self._deadline - self.coordinator.clock(), 0.0) + 0.05
        return True, self.heartbeat or 0.0

    def _check(self) -> None:
        if self.lost:
            raise LockLost(self.id, self.lost)
        self._check_owner()
        if self.coordinator.clock() >= self._deadline:
            assert self._plan is not None
            raise LockLost(self.id, self._plan.all_lost(), f"job {self.id!r}: its lease may have run out "
                                                           f"(not renewed within {self.duration}s)")

    def _for_function(self, fn: Callable[..., Any]) -> tuple[Any, bool]:
        """The job a decorated ``fn`` runs as (named after ``fn`` unless named), and whether
        ``fn`` takes a ``job`` parameter."""
        job = self
        if not self._named:
            job = self.clone()
            code = getattr(fn, "__code__", None)
            if code is not None:
                job._base = check_job_id(f"{code.co_filename}:{code.co_name}", "job name")
                job.id, job._plan = new_job_id(job._base), None
            job._plan_now()  # built once; every call's clone reuses it
        return job, "job" in inspect.signature(fn).parameters


class Job(JobBase):
    """A job on a sync :class:`jobs_core.Coordinator`: a context manager and a decorator.

    ``with coordinator.job(["in"], ["out"], duration=60) as job:`` starts it
    (waiting up to ``wait`` seconds) and stops it on exit: outputs written on
    success, left untouched on an exception.
    """

    coordinator: SyncHost

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.RLock()

    def clone(self) -> Job:
        other = super().clone()
        other._lock = threading.RLock()
        return other

    def start(self) -> Job:
        """Take the locks, waiting up to ``wait`` seconds; return the job (already running: no-op).

        Whatever ends a wait early (an interrupt, the coordinator closing), the
        job leaves every line at once and never starts afterwards.

        Raises:
            ResourceUnavailable: inputs missing or being written, outputs locked
                or read (or existing, with ``overwrite=False``), waiters ahead in
                line, or another start of the same job id running, when the wait ran out.
            CoordinatorClosed: the coordinator was closed while the job waited.
        """
        with self._lock:
            if self._active:
                return self
            c = self.coordinator
            wait = self._new_wait()
            c.wait_began(wait)
            try:
                # a single try needs none of the flow's steps
                started = wait.once(c.call) if wait.wait <= 0 else c.run(wait.flow())
            except BaseException as exc:
                self._not_started(wait, exc)
                if wait.dirty:
                    self._leave(wait)
                raise
            finally:
                c.wait_ended(wait)
            first_beat = self._begin(wait, started)
            if self._renew_grant(started):
                self._claim()
            c.track(self, first_beat)
            return self

    def _claim(self) -> None:
        """Renew a granted start's shortened lease at once (a job without a heartbeat)."""
        try:
            lost = self.coordinator.run(self._refresh_flow(renew=True))
        except BaseException:
            self.coordinator.run(self._stop_flow(False))
            raise
        if lost is not None:
            self._active = False
            raise LockLost(self.id, lost[0], f"job {self.id!r} lost the locks granted to it before it could renew "
                                             f"them: {lost[0]!r}")

    def _leave(self, wait: Wait) -> None:
        try:
            if self.coordinator.run(wait.leave_flow()):
                log.info("job %s gave up waiting after a start was made for it; released it", self.id)
        except Exception:
            log.warning("job %s: could not leave its place in line; it lapses within 30s (and locks taken for it "
                        "with their lease, %ss)", self.id, self.duration, exc_info=True)

    def resume(self, token: int) -> Job:
        """Take over a start of this job id made elsewhere (another process, a shell), given its token.

        The leases are renewed at once, and from then on the job is this
        process's: refresh, heartbeat and stop work as after :meth:`start`.

        Raises:
            LockLost: that start no longer holds every lock (or never had this token).
        """
        with self._lock:
            if self._active:
                raise NotRunning(f"job {self.id!r} is already running here (token {self.token})")
            self.coordinator.run(self._resume_flow(token))
            self.coordinator.track(self, self.heartbeat)
            return self

    def detach(self, lease: float | None = None) -> int:
        """Stop looking after the locks here without releasing them; return the token.

        For a hand-over to another process (a deferred Airflow task, a shell
        script) that takes over with :meth:`resume`: the heartbeat stops, and the
        locks stay held until their lease ends. With ``lease``, every lease is
        first set to that many seconds from now.

        Raises:
            LockLost: with ``lease``, some lock was already lost (nothing renewed).
            NotRunning: the job is not running in this process.
        """
        self._check_owner()
        with self._lock:
            self._check_owner()
            c = self.coordinator
            token = c.run(self._detach_flow(lease))
            c.untrack(self)
            return token

    def stop(self, failed: bool = False) -> None:
        """Release the locks; unless ``failed``, write the outputs first.

        Outputs are written only if the job still holds every one of its locks;
        otherwise nothing is written and :class:`LockLost` says what was lost.
        Stopping a job that is not running does nothing. A stop that failed on a
        connection error can be repeated: it completes, or reports what the
        first one did.

        Raises:
            LockLost: a successful stop could not write the outputs: locks were
                lost, or something else ended this start first (a forced stop,
                ``stop_job``); nothing was written by this stop.
            NotRunning: called in a forked child of the process that started it.
        """
        if self._forked():
            self._check_owner()
        with self._lock:
            if not self._active:
                return
            c = self.coordinator
            try:
                step = self._stop_call(not failed)
                self._stop_done(c.call(step.script, step.keys, step.args), not failed)
            except BaseException:
                self._stop_failed = self._active
                raise
            finally:
                if self._active:
                    c.unbeat(self)  # after a failed stop the lease lapses unless stop() is repeated
                else:
                    c.untrack(self)

    def refresh(self) -> None:
        """Renew every lease now.

        Raises:
            LockLost: some lock was lost (the others were renewed; ``lost`` says which).
            NotRunning: the job is not running in this process.
        """
        self._check_owner()
        with self._lock:
            self._check_owner()
            lost = self.coordinator.run(self._refresh_flow(renew=True))
        if lost is not None:
            if lost[1]:
                self._call_on_lost()
            raise LockLost(self.id, lost[0])

    def check(self) -> None:
        """Raise :class:`LockLost` if the job is known to have lost a lock; no round trip.

        Known means: the heartbeat or a refresh found a lock lost, or no renewal
        succeeded for a whole lease.
        """
        self._check()

    def _call_on_lost(self) -> None:
        if self.on_lost is not None:
            try:
                self.on_lost(self)
            except Exception:
                log.exception("on_lost callback of job %s failed", self.id)

    def _beat(self) -> float | None:
        """Called by the heartbeat thread: renew (or, past max_hold, check) and say when next."""
        if self._pid != os.getpid():
            return None
        with self._lock:
            if not self._active:
                return None
            renew, delay = self._beat_plan()
            try:
                lost = self.coordinator.run(self._refresh_flow(renew))
            except Exception:  # keep beating: the lease still has two intervals left
                log.exception("heartbeat of job %s failed; retrying in %.3gs", self.id, delay / 2)
                return delay / 2
        if lost is not None and lost[1] and self.on_lost is not None:
            # its own thread: a slow callback must not delay the other jobs' renewals
            threading.Thread(target=self._call_on_lost, name="jobs_core-on_lost", daemon=True).start()
        return delay if renew or lost is None else None

    def __enter__(self) -> Job:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._forked():
            log.debug("job %s: leaving its block in forked child %d does not release the parent's locks",
                      self.id, os.getpid())
            return
        self.stop(failed=exc_type is not None)

    def __call__(self, fn: F) -> F:
        """Decorate ``fn`` to run as this job, started afresh for every call.

        If ``fn`` has a parameter named ``job``, the running job is passed in it.
        """
        spec, takes_job = self._for_function(fn)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with spec.clone() as job:
                if takes_job:
                    kwargs["job"] = job
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]
