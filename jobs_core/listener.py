"""One pub/sub subscription per coordinator, waking the jobs waiting in this process.

The release scripts publish the names they release on the namespace's channel.
A waiting job registers its names with the coordinator's listener; the first
registration starts the listener (a thread, or an asyncio task) and returns
only once the server confirmed the subscription, so a release after the
registration is never missed. Every waiting job of a process shares that one
connection: a wait costs no connection of its own, nothing to set up or tear
down on the hand-off's path, and no pool slot.

If the subscription cannot be made or breaks (a user without channel
permissions, a dropped connection), waiting jobs poll every ``poll`` seconds
at most until it is back; once it is, every waiting job is woken to look
again, since a release may have gone unheard meanwhile.

On a cluster the channel is a shard channel (``SSUBSCRIBE``), held on a
connection of its own to the master serving the channel's slot (the
namespace's slot). When that master fails over or the slot moves, the server
drops the subscription; the listener then refreshes the cluster's slot map and
subscribes again on the new master.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from .protocol import text

log = logging.getLogger("jobs_core")

#: How long a registration waits for the server to confirm the subscription.
SUBSCRIBE_TIMEOUT = 5.0
#: The listener stops (and closes its connection) after this many seconds without waiters.
IDLE_EXIT = 5.0
#: How often an idle listener checks whether it still has waiters.
READ_TIMEOUT = 1.0


class SubscriptionLost(Exception):
    """The server ended the subscription (on a cluster: the channel's slot moved to another master)."""


def _released(message: Any) -> dict[str, str] | None:
    """``{name: first queued waiter or ""}`` of a release message, or None if it is not one.

    A line is ``<name>`` or ``<name>\t<waiter>`` (see stop.lua).

    Raises:
        SubscriptionLost: the message says the server unsubscribed us.
    """
    kind = text(message.get("type")) if message else None
    if kind in ("unsubscribe", "sunsubscribe"):
        raise SubscriptionLost(f"the server ended the subscription to {text(message.get('channel'))!r}")
    if kind not in ("message", "smessage"):
        return None
    out = {}
    for line in text(message["data"]).split("\n"):
        name, _, head = line.partition("\t")
        out[name] = head
    return out


class _Registration:
    """What a waiting job waits for: its names, and those it is queued for as a writer."""

    __slots__ = ("names", "job_id", "queued", "event", "_listener")

    def __init__(self, listener: Any, names: Iterable[str], job_id: str | None, event: Any) -> None:
        self.names = frozenset(names)
        self.job_id = job_id
        self.queued: frozenset[str] = frozenset()
        self.event = event
        self._listener = listener

    def wants(self, released: dict[str, str] | None) -> bool:
        """Whether a release concerns this job: one of its names, and for a name it is queued
        for, only when it is first in line (or the line is empty)."""
        if released is None:
            return True
        for name in self.names.intersection(released):
            if name not in self.queued or released[name] in ("", self.job_id):
                return True
        return False


def _confirms(message: Any) -> bool:
    return bool(message) and text(message.get("type")) in ("subscribe", "ssubscribe")


class _ListenerBase:
    """What the thread and task listeners share: settings, waiters, and who to wake."""

    def __init__(self, client: Any, channel: str, sharded: bool, poll: float) -> None:
        self._client = client
        self._channel = channel
        self._sharded = sharded
        self.poll = poll
        #: True while no subscription is up: waits then poll.
        self.polling = False
        self._waiters: set[Any] = set()

    def _subscribe_call(self, pubsub: Any) -> Any:
        if not self._sharded:
            return pubsub.subscribe(self._channel)
        if not hasattr(pubsub, "ssubscribe"):  # valkey-py's asyncio PubSub
            return pubsub.execute_command("SSUBSCRIBE", self._channel)
        return pubsub.ssubscribe(self._channel)

    def _read_call(self, pubsub: Any, timeout: float) -> Any:
        return pubsub.get_message(timeout=timeout)

    def _wake(self, released: dict[str, str] | None) -> None:
        """Wake the waiters a release concerns (all of them for None)."""
        for w in list(self._waiters):
            if w.wants(released):
                w.event.set()

    def _broken(self, exc: BaseException) -> None:
        if not self.polling:
            log.warning("no wake-ups on %r (%s); waiting jobs poll every %ss until the subscription is back",
                        self._channel, exc, self.poll)
        self.polling = True


class Wakeup(_Registration):
    """One waiting job's registration with a :class:`Listener`; a context manager."""

    __slots__ = ()

    def __init__(self, listener: Listener, names: Iterable[str], job_id: str | None) -> None:
        super().__init__(listener, names, job_id, threading.Event())

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True if a release of one of the names came."""
        if self._listener.polling:
            timeout = min(timeout, self._listener.poll)
        woke = self.event.wait(timeout)
        self.event.clear()  # before the next try: a release during that try wakes the next wait
        return woke

    def close(self) -> None:
        self._listener._remove(self)

    def __enter__(self) -> Wakeup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Listener(_ListenerBase):
    """The sync listener: a daemon thread holding the subscription while jobs wait."""

    def __init__(self, client: Any, channel: str, sharded: bool, poll: float) -> None:
        super().__init__(client, channel, sharded, poll)
        self._reset()

    def _reset(self) -> None:
        # Also run in a forked child: the parent's thread, lock state and waiters stay behind.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._waiters = set()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._closing = False

    def wakeups(self, names: Iterable[str], job_id: str | None = None) -> Wakeup:
        """Register a waiting job; returns once the subscription is confirmed (or known broken)."""
        if self._pid != os.getpid():
            self._reset()
        wakeup = Wakeup(self, names, job_id)
        with self._lock:
            self._waiters.add(wakeup)
            self._closing = False
            if self._thread is None:
                self._ready.clear()
                self._thread = threading.Thread(target=self._run, name="jobs_core-listener", daemon=True)
                self._thread.start()
        if not self._ready.wait(SUBSCRIBE_TIMEOUT):
            self._broken(TimeoutError(f"no subscription confirmed within {SUBSCRIBE_TIMEOUT}s"))
        return wakeup

    def listening(self, names: Iterable[str], job_id: str | None = None) -> Wakeup | None:
        """Register a waiting job if the subscription is up already (no round trip), else None."""
        if self._pid != os.getpid() or self.polling or not self._ready.is_set():
            return None
        wakeup = Wakeup(self, names, job_id)
        with self._lock:
            if self._thread is None or self._closing:
                return None
            self._waiters.add(wakeup)
        return wakeup

    def _remove(self, wakeup: Wakeup) -> None:
        with self._lock:
            self._waiters.discard(wakeup)

    def close(self) -> None:
        """Stop the thread (within a second) and close its connection."""
        with self._lock:
            self._closing = True

    def _done(self) -> bool:
        """Whether the thread may end: closing, or no waiter for ``IDLE_EXIT`` seconds."""
        with self._lock:
            if self._closing or (not self._waiters and time.monotonic() - self._idle_since > IDLE_EXIT):
                self._thread = None
                self._ready.clear()
                return True
            if self._waiters:
                self._idle_since = time.monotonic()
            return False

    def _pubsub(self, refresh: bool) -> Any:
        """A pub/sub object: the client's, or on a cluster one on the node serving the channel
        (after reloading the slot map if ``refresh``: the last subscription failed)."""
        if not self._sharded:
            return self._client.pubsub()
        if refresh:
            self._client.nodes_manager.initialize()
        node = self._client.get_node_from_key(self._channel)
        client = getattr(node, "redis_connection", None) or node.valkey_connection  # redis-py / valkey-py
        return client.pubsub()

    def _run(self) -> None:
        backoff = 0.1
        self._idle_since = time.monotonic()
        stop = False
        failed = False
        while not stop:
            pubsub = None
            try:
                pubsub = self._pubsub(failed)
                failed = True
                self._subscribe_call(pubsub)
                deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
                while not _confirms(self._read_call(pubsub, max(deadline - time.monotonic(), 0.01))):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no subscription confirmed within {SUBSCRIBE_TIMEOUT}s")
                if self.polling:
                    log.info("wake-ups on %r are back", self._channel)
                self.polling = failed = False
                backoff = 0.1
                self._ready.set()
                with self._lock:
                    self._wake(None)  # a release may have gone unheard before this subscription
                while not (stop := self._done()):
                    names = _released(self._read_call(pubsub, READ_TIMEOUT))
                    if names is not None:
                        with self._lock:
                            self._wake(names)
            except Exception as exc:  # keep serving: waits poll meanwhile
                with self._lock:
                    if self._closing:  # the coordinator closed the client under the read
                        self._thread = None
                        self._ready.clear()
                        return
                self._broken(exc)
                self._ready.set()
                with self._lock:
                    self._wake(None)
                time.sleep(backoff)
                backoff = min(backoff * 2, max(self.poll, 0.1))
                stop = self._done()
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        log.debug("closing the wake-up subscription failed", exc_info=True)


class AsyncWakeup(_Registration):
    """One waiting job's registration with an :class:`AsyncListener`; an async context manager."""

    __slots__ = ()

    def __init__(self, listener: AsyncListener, names: Iterable[str], job_id: str | None) -> None:
        super().__init__(listener, names, job_id, asyncio.Event())

    async def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True if a release of one of the names came."""
        if self._listener.polling:
            timeout = min(timeout, self._listener.poll)
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
            woke = True
        except asyncio.TimeoutError:
            woke = False
        self.event.clear()
        return woke

    def close(self) -> None:
        self._listener._waiters.discard(self)

    async def __aenter__(self) -> AsyncWakeup:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class AsyncListener(_ListenerBase):
    """The asyncio listener: a task holding the subscription while jobs of its event loop wait."""

    def __init__(self, client: Any, channel: str, sharded: bool, poll: float) -> None:
        super().__init__(client, channel, sharded, poll)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._ready: asyncio.Event | None = None

    async def wakeups(self, names: Iterable[str], job_id: str | None = None) -> AsyncWakeup:
        """Register a waiting job; returns once the subscription is confirmed (or known broken)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (asyncio.run again): start afresh
            self._loop, self._task, self._ready, self._waiters = loop, None, asyncio.Event(), set()
        wakeup = AsyncWakeup(self, names, job_id)
        self._waiters.add(wakeup)
        if self._task is None:
            self._ready.clear()
            self._task = loop.create_task(self._run())
        try:
            await asyncio.wait_for(self._ready.wait(), SUBSCRIBE_TIMEOUT)
        except asyncio.TimeoutError:
            self._broken(TimeoutError(f"no subscription confirmed within {SUBSCRIBE_TIMEOUT}s"))
        return wakeup

    def listening(self, names: Iterable[str], job_id: str | None = None) -> AsyncWakeup | None:
        """Register a waiting job if the subscription is up already (no round trip), else None."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if self._loop is not loop or self._task is None or self.polling or not self._ready.is_set():
            return None
        wakeup = AsyncWakeup(self, names, job_id)
        self._waiters.add(wakeup)
        return wakeup

    async def aclose(self) -> None:
        """Stop the task and close its connection."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def _done(self) -> bool:
        """Whether the task may end (no waiter for ``IDLE_EXIT`` seconds); if so, it is forgotten
        at once, so a later registration starts a new one."""
        if self._waiters:
            self._idle_since = time.monotonic()
            return False
        if time.monotonic() - self._idle_since <= IDLE_EXIT:
            return False
        self._task = None
        self._ready.clear()
        return True

    async def _pubsub(self, refresh: bool) -> tuple[Any, Any]:
        """``(pubsub, pool to close after it)``: the client's, or on a cluster one on a connection
        of its own to the node serving the channel (the cluster client's pub/sub would share that
        node's command connections)."""
        client = self._client
        if not self._sharded:
            return client.pubsub(), None
        await client.initialize()
        if refresh:
            await client.nodes_manager.initialize()
        node = client.get_node_from_key(self._channel)
        package = importlib.import_module(type(client).__module__.split(".")[0] + ".asyncio")
        pool = package.ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
        return package.Redis(connection_pool=pool).pubsub(), pool

    async def _run(self) -> None:
        backoff = 0.1
        self._idle_since = time.monotonic()
        stop = False
        failed = False
        while not stop:
            pubsub = pool = None
            try:
                pubsub, pool = await self._pubsub(failed)
                failed = True
                await self._subscribe_call(pubsub)
                deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
                while not _confirms(await self._read_call(pubsub, max(deadline - time.monotonic(), 0.01))):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no subscription confirmed within {SUBSCRIBE_TIMEOUT}s")
                self.polling = failed = False
                backoff = 0.1
                self._ready.set()
                self._wake(None)  # a release may have gone unheard before this subscription
                while not (stop := self._done()):
                    names = _released(await self._read_call(pubsub, READ_TIMEOUT))
                    if names is not None:
                        self._wake(names)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep serving: waits poll meanwhile
                self._broken(exc)
                self._ready.set()
                self._wake(None)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, max(self.poll, 0.1))
                stop = self._done()
            finally:
                try:
                    if pubsub is not None:
                        close = getattr(pubsub, "aclose", None) or pubsub.close
                        await close()
                    if pool is not None:
                        await pool.disconnect()
                except Exception:
                    log.debug("closing the wake-up subscription failed", exc_info=True)
