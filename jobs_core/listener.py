"""Pub/sub subscriptions of a coordinator, delivering messages to the waits of this process.

A coordinator has up to two, each started on first use (a thread, or an
asyncio task) and stopped after ``IDLE_EXIT`` seconds without registrations:

* its **own channel** ``<prefix>jobs:wake:<id>``, on which the release
  scripts publish to this coordinator only: a grant for one of its waiting
  start() calls (``<nonce>\\t<token>\\t<lease ms>``), or a nudge to look again
  (``<nonce>``). A release thus wakes the one process concerned;
* the namespace's **broadcast channel** ``<prefix>jobs:wake``, on which
  every release publishes the names it changed (a JSON array), for waits on
  names rather than on a start (``wait_ready``, the Airflow triggers).

A registration returns once the server confirmed the subscription, so a
message published after it is never missed. Every wait of a process shares
the coordinator's connections: a wait costs no connection of its own.

If a subscription cannot be made or breaks (a user without channel
permissions, a dropped connection), waits poll every ``poll`` seconds at most
until it is back; once it is, every registration is told to look again, since
a message may have gone unheard meanwhile.

On a cluster the channels are shard channels (``SSUBSCRIBE``), held on a
connection of their own to the master serving the channel's slot (the
namespace's slot). When that master fails over or the slot moves, the server
drops the subscription; the listener then refreshes the cluster's slot map and
subscribes again on the new master.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from .protocol import text
from .waiting import Closed, Grant, Message, Retry

log = logging.getLogger("jobs_core")

#: How long a registration waits for the server to confirm the subscription.
SUBSCRIBE_TIMEOUT = 5.0
#: The listener stops (and closes its connection) after this many seconds without registrations.
IDLE_EXIT = 5.0
#: How often an idle listener checks whether it still has registrations.
READ_TIMEOUT = 1.0
RETRY = Retry()
CLOSED = Closed()


class SubscriptionLost(Exception):
    """The server ended the subscription (on a cluster: the channel's slot moved to another master)."""


def _payload(message: Any) -> str | None:
    """The data of a published message, or None if it is none.

    Raises:
        SubscriptionLost: the message says the server unsubscribed us.
    """
    kind = text(message.get("type")) if message else None
    if kind in ("unsubscribe", "sunsubscribe"):
        raise SubscriptionLost(f"the server ended the subscription to {text(message.get('channel'))!r}")
    if kind not in ("message", "smessage"):
        return None
    return text(message["data"])


def _confirms(message: Any) -> bool:
    return bool(message) and text(message.get("type")) in ("subscribe", "ssubscribe")


def _merge(old: Message | None, new: Message) -> Message:
    """Of two messages not yet read, the one that matters: a grant or a close over a nudge."""
    return old if isinstance(old, (Grant, Closed)) else new


class _EveryName:
    """The registration key of a watcher of every announcement on the broadcast channel (the web view's
    reader), whatever names it carries: :data:`EVERY_NAME`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "EVERY_NAME"


#: Register with this key to hear of every release announced on the broadcast channel.
EVERY_NAME = _EveryName()


class _Registration:
    """One wait's registration: the message delivered to it, until it reads it."""

    def __init__(self, key: Any) -> None:
        self.key = key
        self.message: Message | None = None

    def deliver(self, message: Message) -> None:
        """Hand ``message`` to the wait (the listener calls it; a grant or a close is kept over a nudge)."""
        raise NotImplementedError

    def wants(self, names: frozenset[str]) -> bool:
        """Whether a release of ``names`` concerns this wait on names."""
        if self.key is EVERY_NAME:
            return True
        return isinstance(self.key, frozenset) and not self.key.isdisjoint(names)


class _Routes:
    """Who a payload is for: by nonce on a coordinator's own channel, by name on the broadcast one."""

    def __init__(self, by_nonce: bool) -> None:
        self.by_nonce = by_nonce
        self.regs: dict[int, _Registration] = {}
        self.nonces: dict[str, _Registration] = {}

    def add(self, reg: _Registration) -> None:
        self.regs[id(reg)] = reg
        if self.by_nonce:
            self.nonces[reg.key] = reg

    def remove(self, reg: _Registration) -> None:
        self.regs.pop(id(reg), None)
        if self.by_nonce and self.nonces.get(reg.key) is reg:
            del self.nonces[reg.key]

    def route(self, payload: str) -> Iterator[tuple[_Registration, Message]]:
        if self.by_nonce:
            for line in payload.split("\n"):
                nonce, _, rest = line.partition("\t")
                reg = self.nonces.get(nonce)
                if reg is None:
                    continue
                if rest:
                    token, lease, at = (rest.split("\t") + ["0", "0"])[:3]
                    yield reg, Grant(int(token), int(lease), float(at))
                else:
                    yield reg, RETRY
            return
        try:
            names = frozenset(str(n) for n in json.loads(payload))
        except (ValueError, TypeError):
            return
        for reg in list(self.regs.values()):
            if reg.wants(names):
                yield reg, RETRY


class _ListenerBase:
    """What the thread and task listeners share: settings, registrations, and delivery."""

    def __init__(self, client: Any, channel: str, sharded: bool, poll: float, by_nonce: bool) -> None:
        self._client = client
        self.channel = channel
        self._sharded = sharded
        self.poll = poll
        self._by_nonce = by_nonce
        #: True while no subscription is up: waits then poll.
        self.polling = False
        self._routes = _Routes(by_nonce)

    def _subscribe_call(self, pubsub: Any) -> Any:
        if not self._sharded:
            return pubsub.subscribe(self.channel)
        if not hasattr(pubsub, "ssubscribe"):  # valkey-py's asyncio PubSub
            return pubsub.execute_command("SSUBSCRIBE", self.channel)
        return pubsub.ssubscribe(self.channel)

    def _read_call(self, pubsub: Any, timeout: float) -> Any:
        return pubsub.get_message(timeout=timeout)

    def _deliver(self, reg: Any, message: Message) -> None:
        raise NotImplementedError

    def _dispatch(self, payload: str) -> None:
        for reg, message in list(self._routes.route(payload)):
            self._deliver(reg, message)

    def _all(self, message: Message) -> None:
        for reg in list(self._routes.regs.values()):
            self._deliver(reg, message)

    def _broken(self, exc: BaseException) -> None:
        if not self.polling:
            log.warning("no wake-ups on %r (%s); waiting jobs poll every %ss until the subscription is back",
                        self.channel, exc, self.poll)
        self.polling = True


class Wakeup(_Registration):
    """A sync registration: ``wait(timeout)``, and a context manager that ends it."""

    def __init__(self, listener: Listener, key: Any) -> None:
        super().__init__(key)
        self._listener = listener
        self._event = threading.Event()
        self._lock = threading.Lock()

    def deliver(self, message: Message) -> None:
        """Hand ``message`` to the wait (the listener calls it; a grant or a close is kept over a nudge)."""
        with self._lock:
            self.message = _merge(self.message, message)
            self._event.set()

    def take(self, timeout: float) -> Message | None:
        """Sleep up to ``timeout`` seconds for a message; return it, or None."""
        if self._listener.polling:
            timeout = min(timeout, self._listener.poll)
        self._event.wait(max(timeout, 0.0))
        with self._lock:
            message, self.message = self.message, None
            self._event.clear()
        return message

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True if a wake-up came."""
        return self.take(timeout) is not None

    def close(self) -> None:
        """End the registration."""
        self._listener._remove(self)

    def __enter__(self) -> Wakeup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Listener(_ListenerBase):
    """The sync listener: a daemon thread holding one subscription while waits are registered."""

    def __init__(self, client: Any, channel: str, sharded: bool, poll: float, by_nonce: bool) -> None:
        super().__init__(client, channel, sharded, poll, by_nonce)
        self._reset()

    def _reset(self) -> None:
        # Also run in a forked child: the parent's thread, lock state and registrations stay behind.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._routes = _Routes(self._by_nonce)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._closing = False
        self._closed: Closed | None = None
        self._idle_since = time.monotonic()

    def _deliver(self, reg: Any, message: Message) -> None:
        reg.deliver(message)

    def register(self, key: Any) -> Wakeup:
        """Register a wait (a nonce, a frozenset of names, or :data:`EVERY_NAME`); returns once the subscription is
        confirmed (or known broken). After :meth:`close`, the wait is told at once."""
        if self._pid != os.getpid():
            self._reset()
        wakeup = Wakeup(self, key)
        with self._lock:
            if self._closed is not None:
                wakeup.deliver(self._closed)
                return wakeup
            self._routes.add(wakeup)
            if self._thread is None:
                self._ready.clear()
                self._thread = threading.Thread(target=self._run, name="jobs_core-listener", daemon=True)
                self._thread.start()
        try:
            confirmed = self._ready.wait(SUBSCRIBE_TIMEOUT)
        except BaseException:  # interrupted while it subscribes: nothing of this wait may stay
            self._remove(wakeup)
            raise
        if not confirmed:
            self._broken(TimeoutError(f"no subscription confirmed within {SUBSCRIBE_TIMEOUT}s"))
        return wakeup

    def registered(self, key: Any) -> Wakeup | None:
        """Register a wait if the subscription is up already (no round trip), else None."""
        if self._pid != os.getpid() or self.polling or not self._ready.is_set():
            return None
        wakeup = Wakeup(self, key)
        with self._lock:
            if self._thread is None or self._closing:
                return None
            self._routes.add(wakeup)
        return wakeup

    def _remove(self, wakeup: Wakeup) -> None:
        with self._lock:
            self._routes.remove(wakeup)

    def end(self, nonce: str, message: Closed) -> None:
        """End the wait registered for ``nonce`` (if it is) with ``message``."""
        with self._lock:
            reg = self._routes.nonces.get(nonce)
            if reg is not None:
                reg.deliver(message)

    def close(self) -> None:
        """Tell every registered wait, and any registered later, that the coordinator closed; stop
        the thread (within a second)."""
        with self._lock:
            self._closing = True
            self._closed = CLOSED
            self._all(CLOSED)

    def _done(self) -> bool:
        """Whether the thread may end: closing, or no registration for ``IDLE_EXIT`` seconds."""
        with self._lock:
            if self._closing or (not self._routes.regs and time.monotonic() - self._idle_since > IDLE_EXIT):
                self._thread = None
                self._ready.clear()
                return True
            if self._routes.regs:
                self._idle_since = time.monotonic()
            return False

    def _pubsub(self, refresh: bool) -> Any:
        """A pub/sub object: the client's, or on a cluster one on the node serving the channel
        (after reloading the slot map if ``refresh``: the last subscription failed)."""
        if not self._sharded:
            return self._client.pubsub()
        if refresh:
            self._client.nodes_manager.initialize()
        node = self._client.get_node_from_key(self.channel)
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
                    log.info("wake-ups on %r are back", self.channel)
                self.polling = failed = False
                backoff = 0.1
                self._ready.set()
                with self._lock:
                    self._all(RETRY)  # a message may have gone unheard before this subscription
                while not (stop := self._done()):
                    payload = _payload(self._read_call(pubsub, READ_TIMEOUT))
                    if payload is not None:
                        with self._lock:
                            self._dispatch(payload)
            except Exception as exc:  # keep serving: waits poll meanwhile
                with self._lock:
                    if self._closing:  # the coordinator closed the client under the read
                        self._thread = None
                        self._ready.clear()
                        return
                self._broken(exc)
                self._ready.set()
                with self._lock:
                    self._all(RETRY)
                time.sleep(backoff)
                backoff = min(backoff * 2, max(self.poll, 0.1))
                stop = self._done()
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        log.debug("closing the wake-up subscription failed", exc_info=True)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AsyncWakeup(_Registration):
    """An asyncio registration: ``await wait(timeout)``, and an async context manager that ends it.

    Its sleep awaits a plain future (no ``asyncio.wait_for``), so a cancellation
    is never swallowed, on any Python version.
    """

    def __init__(self, listener: AsyncListener, key: Any) -> None:
        super().__init__(key)
        self._listener = listener
        self._future: asyncio.Future[None] | None = None

    def deliver(self, message: Message) -> None:
        """Hand ``message`` to the wait (the listener calls it; a grant or a close is kept over a nudge)."""
        self.message = _merge(self.message, message)
        if self._future is not None:
            _resolve(self._future)

    async def take(self, timeout: float) -> Message | None:
        """Sleep up to ``timeout`` seconds for a message; return it, or None."""
        if self.message is None:
            if self._listener.polling:
                timeout = min(timeout, self._listener.poll)
            loop = asyncio.get_running_loop()
            self._future = future = loop.create_future()
            handle = loop.call_later(max(timeout, 0.0), _resolve, future)
            try:
                await future
            finally:
                handle.cancel()
                self._future = None
        message, self.message = self.message, None
        return message

    async def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True if a wake-up came."""
        return (await self.take(timeout)) is not None

    def close(self) -> None:
        """End the registration."""
        self._listener._routes.remove(self)

    async def __aenter__(self) -> AsyncWakeup:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class AsyncListener(_ListenerBase):
    """The asyncio listener: a task holding one subscription while waits of its event loop are registered."""

    def __init__(self, client: Any, channel: str, sharded: bool, poll: float, by_nonce: bool) -> None:
        super().__init__(client, channel, sharded, poll, by_nonce)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._closed: Closed | None = None

    def _deliver(self, reg: Any, message: Message) -> None:
        reg.deliver(message)

    def _start(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._ready is None:  # a new event loop (asyncio.run again): start afresh
            self._loop, self._task, self._ready, self._routes = loop, None, asyncio.Event(), _Routes(self._by_nonce)
        if self._task is None or self._task.done():  # none yet, or it ended (cancelled at a shutdown)
            self._ready.clear()
            self._task = loop.create_task(self._run())
        return self._ready

    async def register(self, key: Any) -> AsyncWakeup:
        """Register a wait (a nonce, a frozenset of names, or :data:`EVERY_NAME`); returns once the subscription is
        confirmed (or known broken). After :meth:`aclose`, the wait is told at once."""
        wakeup = AsyncWakeup(self, key)
        if self._closed is not None:
            wakeup.deliver(self._closed)
            return wakeup
        ready = self._start()
        self._routes.add(wakeup)
        if not ready.is_set():
            waiter = asyncio.ensure_future(ready.wait())
            try:
                done, _ = await asyncio.wait([waiter], timeout=SUBSCRIBE_TIMEOUT)
            except BaseException:
                wakeup.close()
                raise
            finally:
                waiter.cancel()
            if not done:
                self._broken(TimeoutError(f"no subscription confirmed within {SUBSCRIBE_TIMEOUT}s"))
        return wakeup

    def registered(self, key: Any) -> AsyncWakeup | None:
        """Register a wait if the subscription is up already (no round trip), else None."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if (self._loop is not loop or self._task is None or self._task.done() or self.polling or not self._ready
                or not self._ready.is_set() or self._closed is not None):
            return None
        wakeup = AsyncWakeup(self, key)
        self._routes.add(wakeup)
        return wakeup

    def end(self, nonce: str, message: Closed) -> None:
        """End the wait registered for ``nonce`` (if it is) with ``message``."""
        reg = self._routes.nonces.get(nonce)
        if reg is not None:
            reg.deliver(message)

    async def aclose(self) -> None:
        """Tell every registered wait, and any registered later, that the coordinator closed; stop the
        task and close its connection."""
        self._closed = CLOSED
        self._all(CLOSED)
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def _done(self) -> bool:
        """Whether the task may end (no registration for ``IDLE_EXIT`` seconds); if so, it is
        forgotten at once, so a later registration starts a new one."""
        if self._routes.regs:
            self._idle_since = time.monotonic()
            return False
        if time.monotonic() - self._idle_since <= IDLE_EXIT:
            return False
        self._task = None
        if self._ready is not None:
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
        node = client.get_node_from_key(self.channel)
        package = importlib.import_module(type(client).__module__.split(".")[0] + ".asyncio")
        pool = package.ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
        return package.Redis(connection_pool=pool).pubsub(), pool

    async def _run(self) -> None:
        backoff = 0.1
        self._idle_since = time.monotonic()
        stop = False
        failed = False
        ready = self._ready
        assert ready is not None
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
                ready.set()
                self._all(RETRY)  # a message may have gone unheard before this subscription
                while not (stop := self._done()):
                    payload = _payload(await self._read_call(pubsub, READ_TIMEOUT))
                    if payload is not None:
                        self._dispatch(payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep serving: waits poll meanwhile
                self._broken(exc)
                ready.set()
                self._all(RETRY)
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

