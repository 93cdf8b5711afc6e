"""The asyncio coordinator and job, on ``redis.asyncio`` clients.

They run the same flows as the sync ones (:mod:`jobs_core.steps`); the
heartbeat is one task per running job.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Iterable
from typing import Any

from .connect import aclose_client
from .coordinator import CoordinatorBase
from .errors import JobsError, LockLost, NotRunning
from .facts import BlockReport, Holder, OutputInfo, RunningJob, Waiter
from .job import JobBase, caller_name, new_job_id
from .listener import AsyncListener, AsyncWakeup
from .names import check_job_id
from .steps import BATCH, CALL, SLEEP, SUBSCRIBE, Flow, queue

log = logging.getLogger("jobs_core")


class AsyncJob(JobBase):
    """A job on an :class:`AsyncCoordinator`: ``async with coordinator.job(...) as job:``."""

    coordinator: AsyncCoordinator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = asyncio.Lock()
        self._beat_task: asyncio.Task | None = None

    def clone(self) -> AsyncJob:
        other = super().clone()
        other._lock = asyncio.Lock()
        other._beat_task = None
        return other

    async def start(self) -> AsyncJob:
        """Take the locks, waiting up to ``wait`` seconds; see :meth:`jobs_core.Job.start`."""
        async with self._lock:
            if self._active:
                return self
            c = self.coordinator
            nonce = secrets.token_hex(8)
            try:
                await c._run(self._start_flow(nonce))
            except JobsError:
                raise
            except BaseException:
                if self._plan is not None:
                    try:
                        await asyncio.shield(c._run(self._abandon_flow(nonce)))
                    except BaseException:
                        log.warning("job %s: could not check whether a failed start took locks; they expire "
                                    "with their lease (%ss)", self.id, self.duration, exc_info=True)
                raise
            self._start_beating()
            return self

    async def resume(self, token: int) -> AsyncJob:
        """Take over a start of this job id made elsewhere, given its token; see :meth:`jobs_core.Job.resume`."""
        async with self._lock:
            if self._active:
                raise NotRunning(f"job {self.id!r} is already running here (token {self.token})")
            await self.coordinator._run(self._resume_flow(token))
            self._start_beating()
            return self

    async def detach(self, lease: float | None = None) -> int:
        """Stop looking after the locks here without releasing them; see :meth:`jobs_core.Job.detach`."""
        self._check_owner()
        async with self._lock:
            self._check_owner()
            token = await self.coordinator._run(self._detach_flow(lease))
            task, self._beat_task = self._beat_task, None
            if task is not None and task is not asyncio.current_task():
                task.cancel()
            return token

    async def stop(self, failed: bool = False) -> None:
        """Release the locks, writing outputs unless ``failed``; see :meth:`jobs_core.Job.stop`."""
        if self._forked():
            self._check_owner()
        async with self._lock:
            if not self._active:
                return
            try:
                await self.coordinator._run(self._stop_flow(not failed))
            except BaseException:
                self._stop_failed = self._active
                raise
            finally:
                task, self._beat_task = self._beat_task, None
                if task is not None and task is not asyncio.current_task():
                    task.cancel()  # after a failed stop the lease lapses unless stop() is repeated

    async def refresh(self) -> None:
        """Renew every lease now; raises :class:`LockLost` if some lock was lost."""
        self._check_owner()
        async with self._lock:
            self._check_owner()
            lost = await self.coordinator._run(self._refresh_flow(renew=True))
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

    def _start_beating(self) -> None:
        if self.heartbeat is not None:
            self._beat_task = asyncio.get_running_loop().create_task(self._beat_loop())
            self.coordinator._track_beat(self._beat_task)

    async def _beat_loop(self) -> None:
        delay = self.heartbeat
        while delay is not None:
            await asyncio.sleep(delay)
            try:
                async with self._lock:
                    if not self._active:
                        return
                    renew, delay = self._beat_plan()
                    lost = await self.coordinator._run(self._refresh_flow(renew))
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
    _listener: AsyncListener | None = None

    def __init__(self, client: Any, prefix: str = "", **kwargs: Any) -> None:
        super().__init__(client, prefix, **kwargs)
        self._beat_tasks: set[asyncio.Task[None]] = set()  # the running jobs' heartbeats, for aclose()

    async def _run(self, flow: Flow) -> Any:
        """Drive a flow on this client: the asyncio driver of :mod:`jobs_core.steps`."""
        waker = None
        if self.sharded:
            # redis-py's asyncio cluster client sets itself up on first use; coroutines racing
            # through that set-up break each other's new connections, so set it up first
            await self.client.initialize()
        try:
            step = next(flow)
            while True:
                kind = step[0]
                if kind == CALL:
                    result = await getattr(self.scripts, step[1])(step[2], step[3])
                elif kind == BATCH:
                    async with self.client.pipeline(transaction=step[2]) as pipe:
                        result = await queue(pipe, step[1]).execute()
                elif kind == SUBSCRIBE:
                    if step[3]:
                        waker = self._listener.listening(step[1], step[2]) if self._listener else None
                        result = waker is not None
                    else:
                        waker = await self.wakeups(step[1], step[2])
                        result = None
                    if waker is not None:
                        waker.queued = step[4]  # until a try says which outputs it queues for
                else:
                    assert kind == SLEEP
                    waker.queued = step[2]
                    result = await waker.wait(step[1])
                step = flow.send(result)
        except StopIteration as done:
            return done.value
        finally:
            if waker is not None:
                waker.close()

    def job(self, inputs: Iterable[str] = (), outputs: Iterable[str] = (), duration: float = 60.0,
            wait: float | None = 0.0, overwrite: bool = True, heartbeat: bool | float = True,
            **options: Any) -> AsyncJob:
        """An :class:`AsyncJob`; the arguments are those of :meth:`jobs_core.Coordinator.job`."""
        options.setdefault("_depth", 3)
        return AsyncJob(self, inputs, outputs, duration, wait, overwrite, heartbeat, **options)

    async def wait_ready(self, inputs: Iterable[str] = (), outputs: Iterable[str] = (), *, timeout: float,
                         overwrite: bool = True) -> BlockReport:
        return await self._run(self._wait_ready_flow(inputs, outputs, overwrite, timeout))

    async def holder(self, job_id: str) -> Holder | None:
        return await self._run(self._holder_flow(job_id))

    async def written(self, names: Iterable[str]) -> dict[str, str]:
        return await self._run(self._written_flow(names))

    async def server_time(self) -> float:
        return await self._run(self._now_flow())

    async def stop_job(self, job_id: str, failed: bool = False, token: int | None = None,
                       output_ttl: float | None = None) -> str:
        return await self._run(self._stop_job_flow(job_id, failed, token, output_ttl))

    async def why_blocked(self, inputs: Iterable[str] = (), outputs: Iterable[str] = (), overwrite: bool = True
                          ) -> BlockReport:
        return await self._run(self._why_blocked_flow(inputs, outputs, overwrite))

    async def output_info(self, name: str) -> OutputInfo:
        return await self._run(self._output_info_flow(name))

    async def running_jobs(self) -> list[RunningJob]:
        return await self._run(self._running_jobs_flow())

    async def waiting_jobs(self) -> list[Waiter]:
        return await self._run(self._waiting_flow())

    async def unlock(self, inputs: Iterable[str] = (), outputs: Iterable[str] = (), *,
                     expected: Iterable[OutputInfo] | None = None) -> int:
        return await self._run(self._unlock_flow(inputs, outputs, expected))

    async def create_outputs(self, outputs: Iterable[str], job_id: str | None = None,
                             ttl: float | None = None, *, expected: Iterable[OutputInfo] | None = None) -> int:
        job_id = check_job_id(job_id, "job id") if job_id is not None else new_job_id(caller_name(1))
        return await self._run(self._create_flow(outputs, job_id, ttl, expected))

    async def edges(self, before: Any = None, after: Any = None) -> tuple[list[str], list[str]]:
        return await self._run(self._edges_flow(before, after))

    async def wakeups(self, names: Iterable[str], job_id: str | None = None) -> AsyncWakeup:
        """Register for wake-ups on releases of ``names``; see :meth:`jobs_core.Coordinator.wakeups`."""
        if self._listener is None:
            self._listener = AsyncListener(self.client, self.keys.channel, self.sharded, self.poll)
        return await self._listener.wakeups(names, job_id)

    def _track_beat(self, task: asyncio.Task[None]) -> None:
        """Keep a running job's heartbeat task, so that :meth:`aclose` can stop it."""
        self._beat_tasks.add(task)
        task.add_done_callback(self._beat_tasks.discard)

    async def aclose(self) -> None:
        """Stop the wake-up listener and the heartbeats, and close the client's connections.

        Jobs still running keep their locks until their leases run out: they
        are no longer renewed (a warning says how many).
        """
        if self._listener is not None:
            await self._listener.aclose()
        beating = [task for task in self._beat_tasks if not task.done()]
        for task in beating:
            task.cancel()
        if beating:
            log.warning("coordinator closed with %d running job(s) on its heartbeat: their leases are no "
                        "longer renewed and lapse", len(beating))
        await aclose_client(self.client)
