"""Triggers that wait on jobs_core names in the triggerer, on ``redis.asyncio``.

They sleep on the namespace's push wake-ups (``<prefix>jobs:wake``: every
release or write of a jobs_core job publishes the names) and look again at
least every ``poll_interval`` seconds, for writers that do not publish (a
jobs.py client, a plain ``SET``) and locks left to expire. Nothing here
blocks the event loop.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

import jobs_core

from .hooks import JobsHook
from .version_compat import BaseEventTrigger, BaseTrigger, TriggerEvent

#: First delay between looks when no wake-up comes; it doubles up to ``poll_interval``.
FIRST_POLL = 0.5
#: Errors worth retrying: the server restarting or a connection dropping.
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)


class _Watch:
    """Connection settings and the wake-up loop shared by the triggers."""

    def __init__(self, names: list[str], redis_conn_id: str | None, redis_url: str | None, prefix: str | None,
                 poll: float, poll_interval: float) -> None:
        self.names = list(names)
        self.hook = JobsHook(redis_conn_id=redis_conn_id, redis_url=redis_url, prefix=prefix, poll=poll)
        self.poll_interval = float(poll_interval)

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
                 prefix: str | None = None, poll: float = 2.0, poll_interval: float = 30.0,
                 deadline: float | None = None) -> None:
        super().__init__()
        self.watch = _Watch(inputs, redis_conn_id, redis_url, prefix, poll, poll_interval)
        self.deadline = None if deadline is None else float(deadline)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "inputs": list(self.watch.names), **self.watch.hook.settings(),
            "poll_interval": self.watch.poll_interval, "deadline": self.deadline,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        coordinator = await self.watch.hook.aget_conn()
        report = None
        try:
            async for _ in self.watch.looks(coordinator, self.deadline):
                try:
                    report = await coordinator.why_blocked(self.watch.names)
                except TRANSIENT as exc:
                    self.log.warning("jobs_core: cannot check %s now (%s); trying again", self.watch.names, exc)
                    continue
                if report.can_start:
                    yield TriggerEvent({"status": "ready", "inputs": self.watch.names})
                    return
            blockers = [b.describe() for b in report.blockers] if report is not None else ["not checked"]
            yield TriggerEvent({"status": "timeout", "inputs": self.watch.names, "blockers": blockers})
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
                     prefix: str | None = None, poll: float = 2.0, poll_interval: float = 30.0) -> None:
            super().__init__()
            self.watch = _Watch([name], redis_conn_id, redis_url, prefix, poll, poll_interval)

        @property
        def name(self) -> str:
            return self.watch.names[0]

        def serialize(self) -> tuple[str, dict[str, Any]]:
            return f"{type(self).__module__}.{type(self).__qualname__}", {
                "name": self.name, **self.watch.hook.settings(), "poll_interval": self.watch.poll_interval,
            }

        async def run(self) -> AsyncIterator[TriggerEvent]:
            coordinator = await self.watch.hook.aget_conn()
            seen: tuple | None = None
            try:
                async for _ in self.watch.looks(coordinator, None):
                    try:
                        info = await coordinator.output_info(self.name)
                    except TRANSIENT as exc:
                        self.log.warning("jobs_core: cannot read %r now (%s); trying again", self.name, exc)
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
