"""The asyncio coordinator and job, on ``redis.asyncio`` clients.

They run the same flows as the sync ones (:mod:`jobs_core.steps`); the
heartbeat is one task per running job.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from .connect import aclose_client
from .coordinator import CoordinatorBase
from .errors import LockLost, NotRunning
from .facts import BlockReport, Holder, LimitInfo, OutputInfo, RunningJob, Waiter
from .job import JobBase, caller_name, new_job_id
from .listener import AsyncListener, AsyncWakeup
from .names import check_job_id, check_names
from .steps import Batch, Call, Expect, Flow, Sleep, Watch, queue
from .waiting import Wait

log = logging.getLogger("jobs_core")
T = TypeVar("T")
#: Before 3.12, ``asyncio.wait_for`` (which redis-py uses to write a command under a socket
#: time-out) returns the result instead of raising when a cancellation arrives as its awaitable
#: completes, so a cancelled task would go on; such calls run shielded (see :func:`_io`).
SHIELD_CALLS = sys.version_info < (3, 12)


async def _io(call: Awaitable[T]) -> T:
    """Await a Redis call so that cancelling the caller always raises ``CancelledError``.

    The call itself goes on (a command half-written cannot be taken back); the
    caller waits for it to end before raising, so whatever it sends next (a
    job giving up, leave.lua) reaches Redis after it.
    """
    if not SHIELD_CALLS:
        return await call
    inner = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(inner)
    except asyncio.CancelledError:
        await asyncio.wait([inner])
        if not inner.cancelled():
            inner.exception()  # retrieved: it is this call's to report, and the caller gave up
        raise


class AsyncJob(JobBase):
    """A job on an :class:`AsyncCoordinator`: ``async with coordinator.job(...) as job:``."""

    coordinator: AsyncCoordinator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = asyncio.Lock()
        self._beat_task: asyncio.Task[None] | None = None

    def clone(self) -> AsyncJob:
        other = super().clone()
        other._lock = asyncio.Lock()
        other._beat_task = None
        return other

    async def start(self) -> AsyncJob:
        """Take the locks, waiting up to ``wait`` seconds; see :meth:`jobs_core.Job.start`.

        A cancellation (``asyncio.wait_for``'s time-out included) ends the wait
        at once: the job leaves every line, and never starts afterwards.
        """
        async with self._lock:
            if self._active:
                return self
            c = self.coordinator
            wait = self._new_wait()
            c.wait_began(wait)
            try:
                started = await c.run(wait.flow())
            except BaseException as exc:
                self._not_started(wait, exc)
                if wait.dirty:
                    await self._leave(wait)
                raise
            finally:
                c.wait_ended(wait)
            first_beat = self._begin(wait, started)
            if self._renew_grant(started):
                await self._claim()
            self._start_beating(first_beat)
            return self

    async def _claim(self) -> None:
        """Renew a granted start's shortened lease at once (a job without a heartbeat)."""
        try:
            lost = await self.coordinator.run(self._refresh_flow(renew=True))
        except BaseException:
            await self.coordinator.run(self._stop_flow(False))
            raise
        if lost is not None:
            self._active = False
            raise LockLost(self.id, lost[0], f"job {self.id!r} lost the locks granted to it before it could renew "
                                             f"them: {lost[0]!r}")

    async def _leave(self, wait: Wait) -> None:
        # shielded: a task cancelled again while it leaves still leaves
        try:
            if await asyncio.shield(self.coordinator.run(wait.leave_flow())):
                log.info("job %s gave up waiting after a start was made for it; released it", self.id)
        except BaseException:
            log.warning("job %s: could not leave its place in line; it lapses within 30s (and locks taken for it "
                        "with their lease, %ss)", self.id, self.duration, exc_info=True)

    async def resume(self, token: int) -> AsyncJob:
        """Take over a start of this job id made elsewhere, given its token; see :meth:`jobs_core.Job.resume`."""
        async with self._lock:
            if self._active:
                raise NotRunning(f"job {self.id!r} is already running here (token {self.token})")
            await self.coordinator.run(self._resume_flow(token))
            self._start_beating(self.heartbeat)
            return self

    async def detach(self, lease: float | None = None) -> int:
        """Stop looking after the locks here without releasing them; see :meth:`jobs_core.Job.detach`."""
        self._check_owner()
        async with self._lock:
            self._check_owner()
            token = await self.coordinator.run(self._detach_flow(lease))
            self._stop_beating()
            return token

    async def stop(self, failed: bool = False) -> None:
        """Release the locks, writing outputs unless ``failed``; see :meth:`jobs_core.Job.stop`."""
        if self._forked():
            self._check_owner()
        async with self._lock:
            if not self._active:
                return
            try:
                await self.coordinator.run(self._stop_flow(not failed))
            except BaseException:
                self._stop_failed = self._active
                raise
            finally:
                self._stop_beating()  # after a failed stop the lease lapses unless stop() is repeated

    async def refresh(self) -> None:
        """Renew every lease now; raises :class:`LockLost` if some lock was lost."""
        self._check_owner()
        async with self._lock:
            self._check_owner()
            lost = await self.coordinator.run(self._refresh_flow(renew=True))
        if lost is not None:
            if lost[1]:
                await self._call_on_lost()
            raise LockLost(self.id, lost[0])

    def check(self) -> None:
        """Raise :class:`LockLost` if the job is known to have lost a lock; no round trip."""
        self._check()

    async def _call_on_lost(self) -> None:
        if self.on_lost is None:
            return
        try:
            result = self.on_lost(self)
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("on_lost callback of job %s failed", self.id)

    def _start_beating(self, first_beat: float | None) -> None:
        self.coordinator._track_job(self)
        if first_beat is not None:
            self._beat_task = asyncio.get_running_loop().create_task(self._beat_loop(first_beat))

    def _stop_beating(self) -> None:
        task, self._beat_task = self._beat_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if not self._active:
            self.coordinator._untrack_job(self)

    async def _beat_loop(self, delay: float | None) -> None:
        while delay is not None:
            await asyncio.sleep(delay)
            try:
                async with self._lock:
                    if not self._active:
                        return
                    renew, delay = self._beat_plan()
                    lost = await self.coordinator.run(self._refresh_flow(renew))
            except asyncio.CancelledError:
                raise
            except Exception:  # keep beating: the lease still has two intervals left
                delay = (self.heartbeat or 1.0) / 2
                log.exception("heartbeat of job %s failed; retrying in %.3gs", self.id, delay)
                continue
            if lost is not None and lost[1]:
                await self._call_on_lost()
            if not renew and lost is not None:
                delay = None

    async def __aenter__(self) -> AsyncJob:
        return await self.start()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._forked():
            return
        await self.stop(failed=exc_type is not None)

    def __call__(self, fn: Any) -> Any:
        """Decorate a coroutine function to run as this job, started afresh for every call."""
        spec, takes_job = self._for_function(fn)

        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            async with spec.clone() as job:
                if takes_job:
                    kwargs["job"] = job
                return await fn(*args, **kwargs)

        return run


class AsyncCoordinator(CoordinatorBase):
    """Jobs on a ``redis.asyncio`` client; the same operations as :class:`jobs_core.Coordinator`, awaited."""

    _async = True

    def __init__(self, client: Any, prefix: str = "", **kwargs: Any) -> None:
        super().__init__(client, prefix, **kwargs)
        self._grants: AsyncListener | None = None
        self._names: AsyncListener | None = None

    async def __aenter__(self) -> AsyncCoordinator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _listener(self, grants: bool) -> AsyncListener:
        if grants:
            if self._grants is None:
                self._grants = AsyncListener(self.client, self.keys.wake(self.channel_id), self.sharded, self.poll,
                                             by_nonce=True)
            return self._grants
        if self._names is None:
            self._names = AsyncListener(self.client, self.keys.channel, self.sharded, self.poll, by_nonce=False)
        return self._names

    async def run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` on this client: the asyncio driver of :mod:`jobs_core.steps`."""
        wakeup: AsyncWakeup | None = None
        if self.sharded:
            # redis-py's asyncio cluster client sets itself up on first use; coroutines racing
            # through that set-up break each other's new connections, so set it up first
            await self.client.initialize()
        try:
            step = next(flow)
            while True:
                result: Any = None
                match step:
                    case Call(script, keys, args):
                        result = await _io(getattr(self.scripts, script)(keys, args))
                    case Batch(commands, transaction):
                        result = await _io(self._batch(commands, transaction))
                    case Expect(nonce, only_if_up):
                        grants = self._listener(grants=True)
                        found = grants.registered(nonce) if only_if_up else await grants.register(nonce)
                        if found is not None:
                            wakeup = found
                            result = self.channel_id
                    case Watch(names):
                        wakeup = await self._listener(grants=False).register(names)
                    case Sleep(seconds):
                        if wakeup is None:
                            await asyncio.sleep(seconds)
                        else:
                            result = await wakeup.take(seconds)
                step = flow.send(result)
        except StopIteration as done:
            return done.value
        finally:
            if wakeup is not None:
                wakeup.close()

    async def _batch(self, commands: Any, transaction: bool) -> list[Any]:
        async with self.client.pipeline(transaction=transaction) as pipe:
            return await queue(pipe, commands).execute()

    def job(self, inputs: Iterable[str] = (), outputs: Iterable[str] = (), duration: float = 60.0,
            wait: float | None = 0.0, overwrite: bool = True, heartbeat: bool | float = True,
            **options: Any) -> AsyncJob:
        """An :class:`AsyncJob`; the arguments are those of :meth:`jobs_core.Coordinator.job`."""
        options.setdefault("_depth", 3)
        return AsyncJob(self, inputs, outputs, duration, wait, overwrite, heartbeat, **options)

    async def stop_all(self, failed: bool = True) -> None:
        """Stop every job :meth:`running_here` (as failed by default); see :meth:`jobs_core.Coordinator.stop_all`."""
        for wait in self._end_waits("stop_all() ended it"):
            try:
                await self.run(wait.leave_flow())
            except Exception:
                log.warning("could not end the wait of job %s; its place lapses within 30s", wait.plan.job_id,
                            exc_info=True)
        for job in self.running_here():
            try:
                await job.stop(failed=failed)
            except Exception:
                log.exception("could not stop job %s", job.id)

    async def wait_ready(self, inputs: Iterable[str] = (), outputs: Iterable[str] = (), *, timeout: float,
                         overwrite: bool = True, limits: Any = None) -> BlockReport:
        """Wait until such a job could start; see :meth:`jobs_core.Coordinator.wait_ready`."""
        return await self.run(self._wait_ready_flow(inputs, outputs, overwrite, timeout, limits))

    async def holder(self, job_id: str) -> Holder | None:
        """The running jobs_core start of ``job_id``; see :meth:`jobs_core.Coordinator.holder`."""
        return await self.run(self._holder_flow(job_id))

    async def written(self, names: Iterable[str]) -> dict[str, str]:
        """``{name: writer}`` of the written ``names``; see :meth:`jobs_core.Coordinator.written`."""
        return await self.run(self._written_flow(names))

    async def server_time(self) -> float:
        """The Redis server's clock; see :meth:`jobs_core.Coordinator.server_time`."""
        return await self.run(self._now_flow())

    async def stop_job(self, job_id: str, failed: bool = False, token: int | None = None,
                       output_ttl: float | None = None) -> str:
        """Stop a running job by its id; see :meth:`jobs_core.Coordinator.stop_job`."""
        return await self.run(self._stop_job_flow(job_id, failed, token, output_ttl))

    async def why_blocked(self, inputs: Iterable[str] = (), outputs: Iterable[str] = (), overwrite: bool = True,
                          limits: Any = None) -> BlockReport:
        """What keeps such a job from starting now; see :meth:`jobs_core.Coordinator.why_blocked`."""
        return await self.run(self._why_blocked_flow(inputs, outputs, overwrite, limits))

    async def set_limit(self, name: str, capacity: int) -> int | None:
        """Set the capacity of a limit; see :meth:`jobs_core.Coordinator.set_limit`."""
        return await self.run(self._set_limit_flow(name, capacity, remove=False))

    async def remove_limit(self, name: str) -> int | None:
        """Remove a limit; see :meth:`jobs_core.Coordinator.remove_limit`."""
        return await self.run(self._set_limit_flow(name, None, remove=True))

    async def limits(self, names: Iterable[str] | None = None) -> list[LimitInfo]:
        """The namespace's limits; see :meth:`jobs_core.Coordinator.limits`."""
        return await self.run(self._limits_flow(names))

    async def output_info(self, name: str) -> OutputInfo:
        """What Redis knows about ``name``; see :meth:`jobs_core.Coordinator.output_info`."""
        return await self.run(self._output_info_flow(name))

    async def running_jobs(self) -> list[RunningJob]:
        """Every running job of the namespace; see :meth:`jobs_core.Coordinator.running_jobs`."""
        return await self.run(self._running_jobs_flow())

    async def waiting_jobs(self) -> list[Waiter]:
        """Jobs of the namespace waiting to start; see :meth:`jobs_core.Coordinator.waiting_jobs`."""
        return await self.run(self._waiting_flow())

    async def unlock(self, inputs: Iterable[str] = (), outputs: Iterable[str] = (), *,
                     expected: Iterable[OutputInfo] | None = None) -> int:
        """Force-release locks (a repair); see :meth:`jobs_core.Coordinator.unlock`."""
        return await self.run(self._unlock_flow(inputs, outputs, expected))

    async def create_outputs(self, outputs: Iterable[str], job_id: str | None = None,
                             ttl: float | None = None, *, expected: Iterable[OutputInfo] | None = None) -> int:
        """Mark outputs written without a job (a repair); see :meth:`jobs_core.Coordinator.create_outputs`."""
        job_id = check_job_id(job_id, "job id") if job_id is not None else new_job_id(caller_name(1))
        return await self.run(self._create_flow(outputs, job_id, ttl, expected))

    async def edges(self, before: Any = None, after: Any = None) -> tuple[list[str], list[str]]:
        """Lineage edges last seen in the time range; see :meth:`jobs_core.Coordinator.edges`."""
        return await self.run(self._edges_flow(before, after))

    async def wakeups(self, names: Iterable[str]) -> AsyncWakeup:
        """Register for wake-ups when any of ``names`` is released or written; see
        :meth:`jobs_core.Coordinator.wakeups`."""
        return await self._listener(grants=False).register(frozenset(check_names(names, "names")))

    async def aclose(self) -> None:
        """Stop the wake-up listeners and the heartbeats, and close the client's connections.

        Jobs waiting to start give up; jobs still running keep their locks until
        their leases run out (a warning says how many).
        """
        self.closed = True
        for listener in (self._grants, self._names):
            if listener is not None:
                await listener.aclose()
        running = self.running_here()
        for job in running:
            job._stop_beating()
        if running:
            log.warning("coordinator closed with %d running job(s): their leases are no longer renewed and "
                        "lapse", len(running))
        await aclose_client(self.client)
