"""Triggers that run in the triggerer, on ``redis.asyncio``.

``JobsInputTrigger`` and ``JobsOutputTrigger`` wait on jobs_core names: they
sleep on the namespace's push wake-ups (``<prefix>jobs:wake``: every release
or write of a jobs_core job publishes the names) and look again at least
every ``poll_interval`` seconds, for writers that do not publish (a jobs.py
client, a plain ``SET``) and locks left to expire. ``JobsLockWaitTrigger``
waits until a deferred locked task could take its locks. ``JobsLockedTrigger``
runs the trigger of a deferred locked task and settles its locks if that
trigger ends the task itself.

Nothing here blocks the triggerer's event loop: this module imports only
Airflow (already loaded there), since the triggerer imports a trigger's module
and makes the trigger on its loop; jobs_core, redis-py and the connection are
loaded in a worker thread (or asynchronously) when a trigger starts running.
No ``repr()`` shows a password.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .version_compat import BaseEventTrigger, BaseTaskEndEvent, BaseTrigger, TaskFailedEvent, TriggerEvent

if TYPE_CHECKING:
    import jobs_core

#: First delay between looks when no wake-up comes; it doubles up to ``poll_interval``.
FIRST_POLL = 0.5
#: Key of a lock wait's outcome in :class:`JobsLockWaitTrigger`'s event (``jobs_airflow.locks.LOCK_WAIT_KEY``).
LOCK_WAIT_KEY = "jobs_core_lock_wait"
#: Pause before looking again after an error worth retrying (the server restarting, a dropped connection).
RETRY_PAUSE = 2.0


def _printable(value: Any) -> str:
    from jobs_core.display import printable  # loaded in a worker thread when the trigger started

    return printable(value)


def _transient() -> tuple[type[BaseException], ...]:
    """Errors worth retrying: the server restarting or a connection dropping."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return RedisConnectionError, RedisTimeoutError, OSError


def _shown(classpath: str, kwargs: dict[str, Any]) -> str:
    """A trigger as Airflow shows one (``<classpath k=v, ...>``), with its Redis URL's secrets hidden."""
    from jobs_core.urls import hide_password

    shown = {k: hide_password(v) if k == "redis_url" and v is not None else v for k, v in kwargs.items()}
    return f"<{classpath} " + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ">"


def _interval(value: float | timedelta, what: str) -> float:
    """A positive number of seconds (the sensor and assets check their arguments before)."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not seconds > 0:
        raise ValueError(f"{what} must be positive, not {value!r}")
    return seconds


class _Namespace:
    """Where a trigger's jobs_core namespace is (:class:`jobs_airflow.hooks.JobsHook`'s settings),
    resolved only when the trigger runs."""

    def __init__(self, redis_conn_id: str | None, redis_url: str | None, prefix: str | None, poll: float) -> None:
        self.redis_conn_id, self.redis_url, self.prefix, self.poll = redis_conn_id, redis_url, prefix, float(poll)

    def settings(self) -> dict[str, Any]:
        return {"redis_conn_id": self.redis_conn_id, "redis_url": self.redis_url, "prefix": self.prefix,
                "poll": self.poll}

    async def coordinator(self) -> jobs_core.AsyncCoordinator:
        """A new asyncio coordinator: modules imported in a worker thread, the connection fetched
        asynchronously, the client made in a worker thread (:meth:`JobsHook.aget_conn`)."""
        hooks = await asyncio.to_thread(importlib.import_module, "jobs_airflow.hooks")
        coordinator: jobs_core.AsyncCoordinator = await hooks.JobsHook(**self.settings()).aget_conn()
        return coordinator


class _Watch:
    """Connection settings and the wake-up loop shared by the triggers."""

    def __init__(self, names: list[str], redis_conn_id: str | None, redis_url: str | None, prefix: str | None,
                 poll: float, poll_interval: float | timedelta) -> None:
        self.names = list(names)
        self.hook = _Namespace(redis_conn_id, redis_url, prefix, poll)
        self.poll_interval = _interval(poll_interval, "poll_interval")

    async def looks(self, coordinator: jobs_core.AsyncCoordinator, deadline: float | None) -> AsyncIterator[bool]:
        """Yield whenever it is time to look again; the value says whether a wake-up came.

        The registration for wake-ups is confirmed before the first look, so a
        release between a look and the next sleep still wakes the sleep. Ends
        at ``deadline`` (epoch seconds).
        """
        backoff = FIRST_POLL
        wakeup = await coordinator.wakeups(self.names)
        try:
            woke = False
            while True:
                yield woke
                sleep = min(backoff, self.poll_interval)
                if deadline is not None:
                    left = deadline - time.time()
                    if left <= 0:
                        return
                    sleep = min(sleep, left)
                woke = await wakeup.wait(sleep)
                backoff = FIRST_POLL if woke else backoff * 2
        finally:
            wakeup.close()


class JobsInputTrigger(BaseTrigger):
    """Fires once every input exists and nobody is writing it, or at ``deadline``.

    Events: ``{"status": "ready", "inputs": [...]}``, or ``{"status": "timeout",
    "inputs": [...], "blockers": ["input_missing: 'x' ...", ...]}``.

    Args:
        inputs: jobs_core names to wait for.
        redis_conn_id, redis_url, prefix, poll: as for :class:`jobs_airflow.hooks.JobsHook`.
        poll_interval: longest time between two looks when no wake-up comes.
        deadline: epoch seconds (the triggerer's clock) after which it gives up; None: never.
    """

    def __init__(self, inputs: list[str], redis_conn_id: str | None = None, redis_url: str | None = None,
                 prefix: str | None = None, poll: float = 2.0, poll_interval: float | timedelta = 30.0,
                 deadline: float | None = None) -> None:
        super().__init__()
        self.watch = _Watch(inputs, redis_conn_id, redis_url, prefix, poll, poll_interval)
        self.deadline = None if deadline is None else float(deadline)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "inputs": list(self.watch.names), **self.watch.hook.settings(),
            "poll_interval": self.watch.poll_interval, "deadline": self.deadline,
        }

    def __repr__(self) -> str:
        return _shown(*self.serialize())

    async def run(self) -> AsyncIterator[TriggerEvent]:
        coordinator = await self.watch.hook.coordinator()
        report = None
        try:
            async for _ in self.watch.looks(coordinator, self.deadline):
                try:
                    report = await coordinator.why_blocked(self.watch.names)
                except _transient() as exc:
                    self.log.warning("jobs_core: cannot check %s now (%s); trying again",
                                     _printable(self.watch.names), _printable(exc))
                    continue
                if report.can_start:
                    yield TriggerEvent({"status": "ready", "inputs": self.watch.names})
                    return
            blockers = [_printable(b.describe()) for b in report.blockers] if report is not None else ["not checked"]
            yield TriggerEvent({"status": "timeout", "inputs": self.watch.names, "blockers": blockers})
        finally:
            await coordinator.aclose()


class JobsLockWaitTrigger(BaseTrigger):
    """Fires once a deferred locked task could take its locks (and limit slots), or at ``deadline``.

    Waits with the core's wake-ups (:meth:`jobs_core.AsyncCoordinator.wait_ready`),
    taking nothing: the task takes its locks when it resumes (and defers again
    if another job took them first). Events carry ``{"jobs_core_lock_wait":
    {"status": "ready" | "timeout" | "error", "deadline", "blockers": [...],
    "error"}}``, which :func:`jobs_airflow.operators.with_jobs_lock` reads.

    Args:
        inputs, outputs, overwrite, limits: what the task's job asks for.
        deadline: epoch seconds at which the wait ends (the task's first try plus ``jobs_wait``).
        job_id: the task's job (for the log).
        redis_conn_id, redis_url, prefix, poll: as for :class:`jobs_airflow.hooks.JobsHook`.
    """

    def __init__(self, inputs: list[str], outputs: list[str], deadline: float, overwrite: bool = True,
                 limits: dict[str, int] | None = None, job_id: str = "", redis_conn_id: str | None = None,
                 redis_url: str | None = None, prefix: str | None = None, poll: float = 2.0) -> None:
        super().__init__()
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.overwrite = bool(overwrite)
        self.limits = dict(limits or {})
        self.deadline = float(deadline)
        self.job_id = job_id
        self.namespace = _Namespace(redis_conn_id, redis_url, prefix, poll)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "inputs": self.inputs, "outputs": self.outputs, "deadline": self.deadline, "overwrite": self.overwrite,
            "limits": self.limits, "job_id": self.job_id, **self.namespace.settings(),
        }

    def __repr__(self) -> str:
        return _shown(*self.serialize())

    def _event(self, status: str, blockers: list[str] | None = None, error: str | None = None) -> TriggerEvent:
        return TriggerEvent({LOCK_WAIT_KEY: {"status": status, "deadline": self.deadline, "blockers": blockers or [],
                                             "error": error}})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        coordinator = await self.namespace.coordinator()
        import jobs_core

        asked: dict[str, Any] = {"overwrite": self.overwrite, "limits": self.limits or None}
        try:
            self.log.info("jobs_core: %s waits for its locks until %s", _printable(self.job_id),
                          time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.deadline)))
            while True:
                left = self.deadline - time.time()
                try:
                    if left > 0:
                        await coordinator.wait_ready(self.inputs, self.outputs, timeout=left, **asked)
                    elif not (report := await coordinator.why_blocked(self.inputs, self.outputs, **asked)).can_start:
                        yield self._event("timeout", [_printable(b.describe()) for b in report.blockers])
                        return
                except jobs_core.ResourceUnavailable as exc:
                    yield self._event("timeout", [_printable(b.describe()) for b in exc.blockers])
                    return
                except (jobs_core.UnknownLimit, jobs_core.LimitTooSmall) as exc:
                    yield self._event("error", error=_printable(exc))
                    return
                except _transient() as exc:
                    if left <= 0:
                        yield self._event("timeout", [f"Redis not reachable: {_printable(exc)}"])
                        return
                    self.log.warning("jobs_core: cannot check the locks of %s now (%s); trying again",
                                     _printable(self.job_id), _printable(exc))
                    await asyncio.sleep(min(RETRY_PAUSE, left))
                    continue
                self.log.info("jobs_core: the locks of %s are free; the task resumes to take them",
                              _printable(self.job_id))
                yield self._event("ready")
                return
        finally:
            await coordinator.aclose()


if BaseEventTrigger is not None:

    class JobsOutputTrigger(BaseEventTrigger):
        """Fires each time the jobs_core output ``name`` is written, by anything (Airflow 3 only).

        For an :class:`airflow.sdk.AssetWatcher`, so that a DAG runs when a
        cron script, a Luigi task or another Airflow writes the output. A write
        is a change of the output's facts: from not written to written, or a
        new writer, token or write time, compared with what the trigger saw
        when it started (so a write made while no triggerer ran it is not
        reported). Events: ``{"name", "writer", "token", "written_at"}``.

        Args:
            name: the jobs_core output to watch.
            redis_conn_id, redis_url, prefix, poll: as for :class:`jobs_airflow.hooks.JobsHook`.
            poll_interval: longest time between two looks when no wake-up comes.
        """

        def __init__(self, name: str, redis_conn_id: str | None = None, redis_url: str | None = None,
                     prefix: str | None = None, poll: float = 2.0, poll_interval: float | timedelta = 30.0) -> None:
            super().__init__()
            self.watch = _Watch([name], redis_conn_id, redis_url, prefix, poll, poll_interval)

        @property
        def name(self) -> str:
            return self.watch.names[0]

        def serialize(self) -> tuple[str, dict[str, Any]]:
            return f"{type(self).__module__}.{type(self).__qualname__}", {
                "name": self.name, **self.watch.hook.settings(), "poll_interval": self.watch.poll_interval,
            }

        def __repr__(self) -> str:
            return _shown(*self.serialize())

        async def run(self) -> AsyncIterator[TriggerEvent]:
            coordinator = await self.watch.hook.coordinator()
            seen: tuple | None = None
            try:
                async for _ in self.watch.looks(coordinator, None):
                    try:
                        info = await coordinator.output_info(self.name)
                    except _transient() as exc:
                        self.log.warning("jobs_core: cannot read %s now (%s); trying again",
                                         _printable(repr(self.name)), _printable(exc))
                        continue
                    facts = (info.written, info.writer, info.token, info.written_at)
                    if seen is None:
                        seen = facts
                        continue
                    if info.written and facts != seen:
                        yield TriggerEvent({"name": self.name, "writer": info.writer, "token": info.token,
                                            "written_at": info.written_at})
                    seen = facts
            finally:
                await coordinator.aclose()


def _make(classpath: str, kwargs: dict[str, Any]) -> BaseTrigger:
    module, _, name = classpath.rpartition(".")
    trigger: BaseTrigger = getattr(importlib.import_module(module), name)(**kwargs)
    return trigger


class JobsLockedTrigger(BaseTrigger):
    """The trigger of a deferred task holding jobs_core locks, run inside this one.

    :meth:`jobs_airflow.locks.JobsLock.hand_over` wraps every deferral's
    trigger in one. Events that resume the task pass through unchanged (the
    resumed task adopts the locks). A trigger may also end the task itself
    (``end_from_trigger``: ``TaskSuccessEvent``, ``TaskFailedEvent``,
    ``TaskSkippedEvent``); the task then never resumes, so this trigger settles
    the locks first: a success writes the outputs (or, if the locks were lost,
    becomes a ``TaskFailedEvent``), any other end releases them. A user
    killing the deferred task (``on_kill``) releases them too.

    Args:
        trigger_classpath, trigger_kwargs: the wrapped trigger, as it serializes itself.
        job_id, token: the start holding the locks.
        redis_conn_id, redis_url, prefix, poll: as for :class:`jobs_airflow.hooks.JobsHook`.
    """

    #: Attributes the triggerer sets on the trigger it runs; the wrapped trigger gets them too.
    RUNTIME_ATTRIBUTES = ("task_instance", "trigger_id", "triggerer_job_id", "timeout_after")

    def __init__(self, trigger_classpath: str, trigger_kwargs: dict[str, Any], job_id: str, token: int,
                 redis_conn_id: str | None = None, redis_url: str | None = None, prefix: str | None = None,
                 poll: float = 2.0, *, _trigger: BaseTrigger | None = None) -> None:
        super().__init__()
        self.trigger_classpath = trigger_classpath
        self.trigger_kwargs = dict(trigger_kwargs)
        self.job_id = job_id
        self.token = int(token)
        self.hook = _Namespace(redis_conn_id, redis_url, prefix, poll)
        #: The wrapped trigger: given when wrapping, else made when this one runs (its module is
        #: imported in a worker thread, not on the triggerer's loop).
        self.trigger = _trigger
        if _trigger is not None:
            self.supports_triggerer_queue = getattr(_trigger, "supports_triggerer_queue", True)

    async def _inner(self) -> BaseTrigger:
        if self.trigger is None:
            self.trigger = await asyncio.to_thread(_make, self.trigger_classpath, self.trigger_kwargs)
        return self.trigger

    @classmethod
    def around(cls, trigger: BaseTrigger, job_id: str, token: int, **settings: Any) -> JobsLockedTrigger:
        """Wrap ``trigger`` (a deferral's) for the start ``job_id``/``token``; ``settings`` are the hook's."""
        classpath, kwargs = trigger.serialize()
        return cls(classpath, kwargs, job_id, token, **settings, _trigger=trigger)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "trigger_classpath": self.trigger_classpath, "trigger_kwargs": self.trigger_kwargs,
            "job_id": self.job_id, "token": self.token, **self.hook.settings(),
        }

    def __repr__(self) -> str:
        return _shown(*self.serialize())

    async def run(self) -> AsyncIterator[TriggerEvent]:
        trigger = await self._inner()
        for attribute in self.RUNTIME_ATTRIBUTES:
            value = getattr(self, attribute, None)
            if value is not None:
                setattr(trigger, attribute, value)
        async for event in trigger.run():
            if isinstance(event, BaseTaskEndEvent):
                yield await self._settle(event)
                return
            yield event

    async def _settle(self, event: Any) -> Any:
        """Write (success) or release (any other end) the locks of a task its trigger ends."""
        state = str(getattr(event.task_instance_state, "value", event.task_instance_state))
        coordinator = await self.hook.coordinator()
        try:
            if state != "success":
                await self._release(coordinator)
                self.log.info("jobs_core: %s ended %s in the triggerer; its locks were released",
                              _printable(self.job_id), state)
                return event
            import jobs_core

            try:
                await coordinator.stop_job(self.job_id, failed=False, token=self.token)
            except (jobs_core.LockLost, jobs_core.NotRunning) as exc:
                self.log.error("jobs_core: %s ended successfully in the triggerer but had lost its locks, so "
                               "its outputs were not written and the task fails: %s", _printable(self.job_id),
                               _printable(exc))
                return TaskFailedEvent()
            self.log.info("jobs_core: %s ended successfully in the triggerer; its outputs are written",
                          _printable(self.job_id))
            return event
        finally:
            await coordinator.aclose()

    async def _release(self, coordinator: jobs_core.AsyncCoordinator) -> None:
        import jobs_core

        try:
            await coordinator.stop_job(self.job_id, failed=True, token=self.token)
        except (jobs_core.LockLost, jobs_core.NotRunning):
            pass  # nothing left to release

    async def cleanup(self) -> None:
        if self.trigger is not None:  # else it never ran
            await self.trigger.cleanup()

    async def on_kill(self) -> None:
        """A user ended the deferred task (mark failed or success, clear): it will not resume, and
        writes nothing; its locks are released."""
        try:
            inner = getattr(self.trigger, "on_kill", None)  # None: it never ran
            if inner is not None:
                await inner()
        finally:
            coordinator = await self.hook.coordinator()
            try:
                await self._release(coordinator)
            finally:
                await coordinator.aclose()
