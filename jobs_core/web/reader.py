"""The one reader of a ``jobs-core serve`` process: every browser, ``/api/status`` and ``/metrics``
share what it read, so Redis sees one status read per second at most however many watch.

It reads the namespace (running jobs, waiting jobs, limits, whether the
waiting jobs' inputs are written) when something changed and at most every
``min_interval`` seconds:

* a release, a stop or a repair publishes the names it changed on the
  namespace's wake-up channel (``<prefix>jobs:wake``): the reader subscribes
  to it (:class:`jobs_core.listener.AsyncListener`) and reads at once;
* a start publishes nothing (nobody waits for it), nor does a jobs.py
  client: every ``probe`` seconds one pipelined round trip of three O(1)
  commands (the fencing counter, which every start increments, and the
  number of running and of waiting jobs) tells whether to read;
* every ``poll`` seconds it reads anyway (a renewed lease, a jobs.py
  client that started as another stopped).

When Redis cannot be reached the snapshot says so (keeping the last state
read, marked stale) and the reader keeps trying, so the page recovers by itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from ..aio import AsyncCoordinator
from ..display import safe_json
from ..listener import EVERY_NAME, AsyncListener, AsyncWakeup
from ..urls import describe_error
from .snapshot import outage, snapshot

log = logging.getLogger("jobs_core.web")

#: Seconds a read may take before it counts as failed (an unreachable host can hang a connect).
READ_TIMEOUT = 10.0


class Snapshot:
    """One state read: the document, its JSON text (one line, safe for an SSE ``data:`` field), a version."""

    __slots__ = ("document", "text", "version", "taken")

    def __init__(self, document: dict[str, Any], version: int, taken: float) -> None:
        self.document = document
        self.text = safe_json(_dumps(document))
        self.version = version
        #: ``time.monotonic()`` when it was read.
        self.taken = taken


def _dumps(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


class SharedReader:
    """Reads the namespace for everyone; :meth:`run` is the background task.

    Args:
        coordinator: the namespace (an asyncio coordinator; the reader does not close it).
        where: where it is, for people (a URL with its password hidden).
        url: its Redis URL if known, only to mask its secrets in error messages.
        min_interval: least seconds between two reads.
        probe: seconds between two change probes.
        poll: most seconds between two reads.
        clock: monotonic clock.
    """

    def __init__(self, coordinator: AsyncCoordinator, where: str, *, url: str | None = None, min_interval: float = 1.0,
                 probe: float = 0.5, poll: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.coordinator = coordinator
        self.where = where
        self._url = url
        self.min_interval = min_interval
        self.probe = probe
        self.poll = poll
        self.clock = clock
        self.reads = 0
        self.latest: Snapshot | None = None
        self._changed = asyncio.Event()
        self._asked = asyncio.Event()
        self._fingerprint: Any = None
        self._down_since: float | None = None
        self._last_good: dict[str, Any] | None = None
        self._last_read = float("-inf")
        self._lock = asyncio.Lock()

    # -- for the endpoints ------------------------------------------------------------------------

    async def next(self, version: int, timeout: float) -> Snapshot | None:
        """The first snapshot newer than ``version``, or None after ``timeout`` seconds without one."""
        latest = self.latest
        if latest is not None and latest.version > version:
            return latest
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except asyncio.TimeoutError:
            return None
        return self.latest

    async def fresh(self, max_age: float | None = None) -> Snapshot:
        """A snapshot at most ``max_age`` seconds old (default ``min_interval``): the latest, or one read
        now (callers asking at once share that read)."""
        max_age = self.min_interval if max_age is None else max_age
        latest = self.latest
        if latest is not None and self.clock() - latest.taken <= max_age:
            return latest
        async with self._lock:
            latest = self.latest
            if latest is not None and self.clock() - latest.taken <= max_age:
                return latest
            return await self._read()

    # -- the task ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read until cancelled."""
        wakeup: AsyncWakeup | None = None
        listener = AsyncListener(self.coordinator.client, self.coordinator.keys.channel, self.coordinator.sharded,
                                 self.probe, by_nonce=False)
        try:
            await self.fresh(0)
            wakeup = await listener.register(EVERY_NAME)  # the page hears of every release
            while True:
                woken = await wakeup.take(self.probe) is not None
                await self._step(woken)
        finally:
            if wakeup is not None:
                wakeup.close()
            await listener.aclose()

    async def _step(self, woken: bool) -> None:
        now = self.clock()
        due = woken or self._down_since is not None or now - self._last_read >= self.poll
        if not due:
            try:
                fingerprint = await asyncio.wait_for(self._probe(), READ_TIMEOUT)
            except (redis.RedisError, OSError, asyncio.TimeoutError) as exc:
                self._failed(exc)
                return
            due = fingerprint != self._fingerprint
        if not due:
            return
        wait = self._last_read + self.min_interval - self.clock()
        if wait > 0:
            await asyncio.sleep(wait)
        await self.fresh(0)

    async def _probe(self) -> tuple[Any, ...]:
        keys = self.coordinator.keys
        pipe = self.coordinator.client.pipeline(transaction=False)
        pipe.get(keys.token)
        pipe.zcard(keys.running)
        pipe.zcard(keys.waiting)
        return tuple(await pipe.execute())

    async def _read(self) -> Snapshot:
        """Read the namespace now; on failure, an outage snapshot. Never raises a Redis error."""
        began = self.clock()
        self._last_read = began
        try:
            fingerprint = await asyncio.wait_for(self._probe(), READ_TIMEOUT)
            document = await asyncio.wait_for(self._document(), READ_TIMEOUT)
        except (redis.RedisError, OSError, asyncio.TimeoutError) as exc:
            return self._failed(exc)
        self.reads += 1
        if self._down_since is not None:
            log.warning("Redis at %s is reachable again", self.where)
        self._down_since = None
        self._fingerprint = fingerprint
        document["read_seconds"] = round(self.clock() - began, 6)
        self._last_good = document
        return self._publish(document)

    async def _document(self) -> dict[str, Any]:
        c = self.coordinator
        # side by side, on connections of their own: a read of a big namespace is mostly round trips
        running, waiting, limits = await asyncio.gather(c.running_jobs(), c.waiting_jobs(), c.limits())
        names = list(dict.fromkeys(n for w in waiting for n in w.inputs))
        written = await c.written(names) if names else {}
        now = await c.server_time()
        return snapshot(c.prefix, self.where, now, running, waiting, written, limits, 0.0)

    def _failed(self, exc: BaseException) -> Snapshot:
        error = "timed out" if isinstance(exc, asyncio.TimeoutError) else describe_error(exc, self._url)
        if self._down_since is None:
            self._down_since = time.time()
            log.warning("cannot read Redis at %s: %s; the page shows the last state read until it is back",
                        self.where, error)
        self._fingerprint = None
        self._last_read = self.clock()
        return self._publish(outage(self._last_good, self.coordinator.prefix, self.where,
                                    f"cannot read Redis at {self.where}: {error}", self._down_since))

    def _publish(self, document: dict[str, Any]) -> Snapshot:
        version = (self.latest.version if self.latest else 0) + 1
        self.latest = Snapshot(document, version, self.clock())
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return self.latest
