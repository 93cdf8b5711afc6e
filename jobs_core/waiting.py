"""How a waiting job sleeps: push wake-ups over pub/sub, and how long to sleep.

The release scripts publish the names they release on the namespace's channel.
A waiter subscribes (and sees the subscription confirmed) before the try that
follows its first failure, so no release between a failed try and the sleep
is missed. Writers that do not publish (jobs.py clients, a plain ``SET``) are
caught by a bounded fallback poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .facts import Blocker
from .protocol import text

log = logging.getLogger("jobs_core")

#: First fallback poll delay; it doubles after each sleep that no wake-up cut short.
POLL_MIN = 0.025
#: Longest sleep on a lock held by a jobs_core holder before looking again.
MAX_QUIET_SLEEP = 30.0
#: Slack added after a lease's expiry so the retry finds it expired.
EXPIRY_SLACK = 0.002
#: How long to wait for the server to confirm a subscription.
SUBSCRIBE_TIMEOUT = 5.0


def subscribed(message: Mapping[str, Any] | None) -> bool:
    """Whether a pub/sub message confirms our subscription."""
    return bool(message) and text(message.get("type")) in ("subscribe", "ssubscribe")


def relevant(message: Mapping[str, Any] | None, names: frozenset[str]) -> bool:
    """Whether a pub/sub message announces a release of one of ``names``."""
    if not message or text(message.get("type")) not in ("message", "smessage"):
        return False
    return not names.isdisjoint(text(message["data"]).split("\n"))


def final(blockers: Iterable[Blocker]) -> bool:
    """Whether waiting cannot help: an existing output with ``overwrite=False``."""
    return any(b.reason == "output_exists" for b in blockers)


def sleep_for(blockers: Iterable[Blocker], publishes: Mapping[str, bool], now: float, backoff: float) -> float:
    """How long to sleep before the next try, unless a wake-up comes first.

    When every blocker is a lock held by a jobs_core holder, its release will
    publish, so only the lease's expiry (a crashed holder) needs a look: sleep
    until the first one. Otherwise something that does not publish may end the
    wait, so poll with ``backoff``.
    """
    first = None
    for b in blockers:
        h = b.holder
        if h is None or h.expires is None or not publishes.get(h.job_id):
            return backoff
        first = h.expires if first is None else min(first, h.expires)
    if first is None:
        return backoff
    return min(max(first - now, 0.0) + EXPIRY_SLACK, MAX_QUIET_SLEEP)


class _WakerBase:
    """What the sync and asyncio wakers share: the subscription's settings."""

    def __init__(self, client: Any, channel: str, names: frozenset[str], sharded: bool, poll: float) -> None:
        self._client = client
        self._channel = channel
        self._names = names
        self._sharded = sharded
        self._poll = poll
        self._pubsub: Any = None

    def _giving_up(self, exc: Exception) -> None:
        log.warning("no wake-ups on %r (%s); polling every %ss instead", self._channel, exc, self._poll)


class Waker(_WakerBase):
    """A subscription to the wake-up channel, used as a context manager by one waiting job.

    If the subscription cannot be made or breaks (a user without channel
    permissions, a dropped connection), the waker degrades to sleeping for at
    most ``poll`` seconds at a time: the wait goes on as a plain poll.
    """

    def _read(self, timeout: float) -> Any:
        if self._sharded:
            return self._pubsub.get_sharded_message(timeout=timeout)
        return self._pubsub.get_message(timeout=timeout)

    def __enter__(self) -> Waker:
        try:
            self._pubsub = self._client.pubsub()
            if self._sharded:
                self._pubsub.ssubscribe(self._channel)
            else:
                self._pubsub.subscribe(self._channel)
            deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
            while time.monotonic() < deadline:
                if subscribed(self._read(deadline - time.monotonic())):
                    return self
            raise TimeoutError(f"no confirmation within {SUBSCRIBE_TIMEOUT}s")
        except Exception as exc:
            self._give_up(exc)
        return self

    def _give_up(self, exc: Exception) -> None:
        self._giving_up(exc)
        self.__exit__()

    def __exit__(self, *exc: object) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:  # closing a broken connection must not hide the wait's outcome
                log.debug("closing the wake-up subscription failed", exc_info=True)

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True if a relevant release woke us."""
        if self._pubsub is None:
            time.sleep(min(timeout, self._poll))
            return False
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                msg = self._read(left)
            except Exception as exc:
                self._give_up(exc)
                return False
            if relevant(msg, self._names):
                return True


class AsyncWaker(_WakerBase):
    """The asyncio twin of :class:`Waker`, on a ``redis.asyncio`` client."""

    async def _read(self, timeout: float) -> Any:
        if self._sharded:
            return await self._pubsub.get_sharded_message(timeout=timeout)
        return await self._pubsub.get_message(timeout=timeout)

    async def __aenter__(self) -> AsyncWaker:
        try:
            self._pubsub = self._client.pubsub()
            if self._sharded:
                await self._pubsub.ssubscribe(self._channel)
            else:
                await self._pubsub.subscribe(self._channel)
            deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
            while time.monotonic() < deadline:
                if subscribed(await self._read(deadline - time.monotonic())):
                    return self
            raise TimeoutError(f"no confirmation within {SUBSCRIBE_TIMEOUT}s")
        except Exception as exc:
            await self._give_up(exc)
        return self

    async def _give_up(self, exc: Exception) -> None:
        self._giving_up(exc)
        await self.__aexit__()

    async def __aexit__(self, *exc: object) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                close = getattr(pubsub, "aclose", None) or pubsub.close
                await close()
            except Exception:  # closing a broken connection must not hide the wait's outcome
                log.debug("closing the wake-up subscription failed", exc_info=True)

    async def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True if a relevant release woke us."""
        if self._pubsub is None:
            await asyncio.sleep(min(timeout, self._poll))
            return False
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                msg = await self._read(left)
            except Exception as exc:
                await self._give_up(exc)
                return False
            if relevant(msg, self._names):
                return True
