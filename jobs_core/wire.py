"""Script calls written to the socket as ready RESP bytes, for a plain sync redis-py client.

redis-py spends more of a start+stop cycle packing arguments and walking its
command machinery than the server spends running both scripts. A job's
arguments hardly change between calls (:class:`Argv` keeps the RESP form of
the fixed ones), so :class:`Wire` sends the whole ``EVALSHA`` as one prepared
buffer on a connection of the client's own pool and reads the reply with the
connection's own parser: the same connection settings (TLS, ACL user, Sentinel
master, timeouts, health checks) and the same replies and errors.

A dropped connection is retried, or reported, by the connection's own retry
policy, as redis-py does for its commands (sending a call again is safe: every
script is replay-safe, a repeated start answers with its token, a repeated stop
as it did); a script the server does not know yet (NOSCRIPT) goes through
redis-py's normal path (the registered ``Script``), which loads it.

The path is used only where it cannot change what the user configured: a
``redis.Redis`` that is not a single-connection client and whose command
execution nobody wrapped (OpenTelemetry's redis instrumentation, a subclass
that overrides it); cluster, asyncio and valkey-py clients use the normal path.
"""

from __future__ import annotations

import codecs
import inspect
import os
import select
import socket
import threading
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError


def bulk(value: Any) -> bytes:
    """One RESP bulk string: ``value`` as redis-py would send it (str as UTF-8, int and float as text)."""
    kind = type(value)
    if kind is str:
        data = value.encode()
    elif kind is bytes:
        data = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        data = repr(value).encode()
    elif isinstance(value, str):
        data = str(value).encode()
    elif isinstance(value, bytes):
        data = bytes(value)
    else:
        raise TypeError(f"a script argument is a str, bytes, int or float, not {type(value).__name__}")
    return b"$%d\r\n%b\r\n" % (len(data), data)


class Argv(list):
    """A script's ARGV, as a list (what redis-py takes), that knows its RESP form.

    A plan builds one per script once; a call copies it with :meth:`changed`.
    The RESP form is made when first asked for (only the wire asks): from the
    one it was copied from, with only the changed items encoded again.
    """

    __slots__ = ("_resp", "_base", "_changed")

    def __init__(self, items: Sequence[Any] = ()) -> None:
        super().__init__(items)
        self._resp: list[bytes] | None = None
        self._base: Argv | None = None
        self._changed: dict[int, Any] | tuple[()] = ()

    def changed(self, changes: dict[int, Any]) -> Argv:
        """A copy with the items at the given positions replaced."""
        other = list.__new__(Argv)  # without __init__: this runs for every call of a job
        other.extend(self)
        for i, value in changes.items():
            other[i] = value
        other._resp, other._base, other._changed = None, self, changes
        return other

    def bulks(self) -> list[bytes]:
        """The RESP bulk string of each item, in order."""
        got = self._resp
        if got is None:
            if self._base is None:
                got = [bulk(x) for x in self]
            else:
                got = self._base.bulks()[:]
                for i in self._changed:
                    got[i] = bulk(self[i])
            self._resp, self._base = got, None
        return got

    def resp(self) -> bytes:
        """The items as RESP bulk strings, concatenated."""
        return b"".join(self.bulks())


def _plain_checkout(pool: Any) -> bool:
    """Whether ``pool.get_connection()`` takes no argument (redis-py 5.3 and later)."""
    try:
        params = inspect.signature(pool.get_connection).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def usable(client: Any) -> bool:
    """Whether ``client`` is a plain sync redis-py client whose script calls :class:`Wire` may send."""
    if not isinstance(client, redis.Redis):
        return False
    run = redis.Redis.execute_command
    if getattr(run, "__wrapped__", None) is not None or type(client).execute_command is not run:
        return False  # instrumented, or overridden: its hooks must see every command
    if "execute_command" in vars(client) or getattr(client, "connection", None) is not None:
        return False  # patched on the instance, or a single-connection client
    pool = getattr(client, "connection_pool", None)
    if pool is None or not _plain_checkout(pool):
        return False
    options = getattr(pool, "connection_kwargs", {})
    try:  # bulk() encodes as redis-py's default encoder does
        utf8 = codecs.lookup(options.get("encoding", "utf-8")).name == "utf-8"
    except LookupError:
        return False
    return utf8 and options.get("encoding_errors", "strict") == "strict"


_UNKNOWN = object()

#: A pool of at least this many connections (redis-py's default is 100) lends the wire one to
#: keep; a smaller one, or a blocking pool, keeps all of its connections for the application.
KEEP_MIN_POOL = 32


class Wire:
    """Sends ``EVALSHA`` of registered scripts as prepared RESP on ``client``'s pool (see the module).

    It keeps one connection of the pool for itself (checking a connection out
    and in costs redis-py locks and bookkeeping on every call), checked before
    each call as the pool checks its own; a call made while another thread uses
    it takes one from the pool.
    """

    __slots__ = ("pool", "_heads", "_lock", "_conn", "_pid", "_keep")

    def __init__(self, client: Any) -> None:
        self.pool = client.connection_pool
        self._heads: dict[tuple[str, tuple[str, ...], int], bytes] = {}
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0
        limit = getattr(self.pool, "max_connections", 0) or 0
        self._keep = limit >= KEEP_MIN_POOL and not isinstance(self.pool, redis.BlockingConnectionPool)

    def _head(self, sha: str, keys: tuple[str, ...], nargs: int) -> bytes:
        head = self._heads.get((sha, keys, nargs))
        if head is None:
            head = (b"*%d\r\n" % (3 + len(keys) + nargs) + bulk("EVALSHA") + bulk(sha) + bulk(len(keys))
                    + b"".join(bulk(k) for k in keys))
            if len(self._heads) < 1024:
                self._heads[(sha, keys, nargs)] = head
        return head

    def call(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """``script(keys, args)``: through the prepared buffer, or redis-py's path where that cannot answer."""
        sha = getattr(script, "sha", None)
        if not isinstance(sha, str):
            return script(keys, args)  # not a registered script (a stand-in): it answers itself
        body = args.resp() if isinstance(args, Argv) else b"".join(bulk(a) for a in args)
        packed = self._head(sha, tuple(keys), len(args)) + body
        if self._keep and self._lock.acquire(blocking=False):
            try:
                pid = os.getpid()
                if self._conn is None or self._pid != pid:
                    self._conn, self._pid = self.pool.get_connection(), pid  # a forked child leaves the parent's
                else:
                    _check_idle(self._conn)
                done, reply = _send(self._conn, packed)
            finally:
                self._lock.release()
        else:
            conn = self.pool.get_connection()
            try:
                done, reply = _send(conn, packed)
            finally:
                self.pool.release(conn)
        return reply if done else script(keys, args)

    def close(self) -> None:
        """Give the kept connection back to the pool."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self.pool.release(self._conn)
            self._conn = None


def _check_idle(conn: Any) -> None:
    """Drop the kept connection if it is not idle (closed by the server, which a restart or a client
    kill does, or holding unread data), as the pool's checkout does for each of its connections."""
    sock = getattr(conn, "_sock", _UNKNOWN)
    try:
        if sock is None:
            return  # not connected: the send connects
        if isinstance(sock, socket.socket):  # one select(2), where can_read() costs three system calls
            stale = bool(select.select([sock], [], [], 0)[0])
        else:
            stale = conn.can_read(timeout=0)
    except (redis.ConnectionError, redis.TimeoutError, OSError, ValueError):
        stale = True
    if stale:
        conn.disconnect()  # the next send connects anew


def _send(conn: Any, packed: bytes) -> tuple[bool, Any]:
    """``(True, reply)``, or ``(False, None)`` when the server does not know the script yet (NOSCRIPT:
    redis-py's normal path loads it). A failed connection is retried, or its error raised, exactly as
    redis-py does for a command of its own: by the connection's retry policy."""

    def attempt() -> Any:
        conn.connect()  # as the pool's checkout does: a Sentinel connection looks up the master here
        conn.send_packed_command([packed])
        return conn.read_response()

    try:
        return True, conn.retry.call_with_retry(attempt, lambda error: conn.disconnect())
    except NoScriptError:
        return False, None
    except BaseException:
        # an interrupt, a time-out, a script error: a reply may still be on its way (Sentinel's
        # connections do not drop themselves on an interrupt), and must never be read as the
        # reply of the next call on this connection
        conn.disconnect()
        raise
    finally:
        if getattr(conn, "should_reconnect", None) is not None and conn.should_reconnect():
            conn.disconnect()
