"""Worker processes: the other jobs of a benchmark (waiters, contenders), driven over pipes.

Workers are forked from a forkserver that preloads this module (so redis-py,
jobs_core and jobspy are imported once), each with its own client, and obey
small commands sent by the main process. Their stdout goes to stderr: the
harness's stdout carries only JSON lines and the table.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from .libs import JobsCore, JobsPy, make_client, make_lib
from .measure import clock

#: How long any worker waits for a lock before giving up: far beyond any benchmark.
LONG_WAIT = 600


def context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def serve(conn: Connection, lib_name: str, url: str) -> None:
    """A worker's main loop: run commands ``(op, *args)`` until ``("quit",)``."""
    sys.stdout = sys.stderr
    lib = make_lib(lib_name, make_client(url))
    while True:
        op, *args = conn.recv()
        if op == "quit":
            conn.close()
            os._exit(0)  # waiter threads may still be blocked in a start: leave without joining them
        OPS[op](lib, conn, *args)


def handoff(lib: JobsCore | JobsPy, conn: Connection, inp: str, out: str) -> None:
    """Wait for ``inp`` (being written elsewhere), report when start() returned, then stop."""
    job = lib.job([inp], [out], wait=LONG_WAIT)
    conn.send("ready")
    job.start()
    started = clock()
    job.stop()
    conn.send(started)


def wake_floor(lib: JobsCore | JobsPy, conn: Connection, channel: str) -> None:
    """The floor of a pushed hand-off: subscribed, woken by a PUBLISH, then one raw EVALSHA."""
    client = lib.client
    sha = client.script_load("return 1")
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    while (pubsub.get_message(timeout=10) or {}).get("type") != "subscribe":
        pass
    conn.send("ready")
    while (pubsub.get_message(timeout=LONG_WAIT) or {}).get("type") != "message":
        pass
    client.evalsha(sha, 0)
    done = clock()
    pubsub.close()
    conn.send(done)


def turn(lib: JobsCore | JobsPy, conn: Connection, name: str) -> None:
    """Wait for a turn to write ``name``; report when the turn ended (stop() returned)."""
    job = lib.job([], [name], wait=LONG_WAIT)
    conn.send("ready")
    job.start()
    job.stop()
    conn.send(clock())


def contend(lib: JobsCore | JobsPy, conn: Connection, name: str, iterations: int, counter: str, order: str,
            worker: int) -> None:
    """On "go": ``iterations`` jobs writing ``name``, each bumping a counter non-atomically."""
    r = lib.client
    conn.send("ready")
    conn.recv()
    for _ in range(iterations):
        with lib.job([], [name], duration=30, wait=LONG_WAIT):
            value = int(r.get(counter) or 0)
            r.set(counter, value + 1)
            r.rpush(order, worker)
    conn.send(clock())


def relay(lib: JobsCore | JobsPy, conn: Connection, name: str, hold: float, offset: float, until: float) -> None:
    """Read ``name`` in turns of ``hold`` seconds, from ``offset`` seconds on, until the clock passes ``until``."""
    conn.send("ready")
    time.sleep(offset)
    reads = 0
    while clock() < until:
        with lib.job([name], [], duration=30, wait=LONG_WAIT):
            reads += 1
            time.sleep(hold)
    conn.send(reads)


def wait_forever(lib: JobsCore | JobsPy, conn: Connection, inputs: Sequence[str], outputs: Sequence[str],
                 threads: int) -> None:
    """Start ``threads`` jobs that wait (in threads) on something held elsewhere."""
    def wait() -> None:
        try:
            lib.job(inputs, outputs, wait=LONG_WAIT).start()
        except Exception as exc:  # a waiter that errors shows up as a missing waiter in the figures
            print(f"waiter failed: {exc!r}", file=sys.stderr)

    for _ in range(threads):
        threading.Thread(target=wait, daemon=True).start()
    conn.send("ready")


def limited(lib: JobsCore | JobsPy, conn: Connection, limit: str, jobs: int, hold: float, gauge: str,
            peak: str, worker: int, order: str) -> None:
    """On "go": ``jobs`` jobs each taking one slot of ``limit`` and holding it ``hold`` seconds; reports
    the seconds each start waited. ``gauge`` counts the holders (its peak goes to ``peak``)."""
    assert isinstance(lib, JobsCore), "jobspy has no limits"
    c, r = lib.coordinator, lib.client
    conn.send("ready")
    conn.recv()
    waits = []
    for _ in range(jobs):
        began = clock()
        with c.job([], [], duration=30, wait=LONG_WAIT, limits={limit: 1}):
            waits.append(clock() - began)
            holders = r.incr(gauge)
            r.eval("if tonumber(redis.call('GET', KEYS[1]) or 0) < tonumber(ARGV[1]) then "
                   "redis.call('SET', KEYS[1], ARGV[1]) end", 1, peak, holders)
            r.rpush(order, worker)
            time.sleep(hold)
            r.decr(gauge)
    conn.send((clock(), waits))


OPS = {"handoff": handoff, "limited": limited, "wake_floor": wake_floor, "turn": turn, "contend": contend,
       "wait_forever": wait_forever, "relay": relay}


class Workers:
    """``n`` worker processes of one library: ``send``/``recv`` one, or all at once."""

    def __init__(self, ctx: Any, lib_name: str, url: str, n: int) -> None:
        self.conns: list[Connection] = []
        self.procs = []
        for _ in range(n):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=serve, args=(there, lib_name, url), daemon=True)
            proc.start()
            there.close()
            self.conns.append(here)
            self.procs.append(proc)

    def send_all(self, *msg: Any) -> None:
        for conn in self.conns:
            conn.send(msg)

    def recv_all(self, timeout: float = 120.0) -> list[Any]:
        replies = []
        for conn in self.conns:
            if not conn.poll(timeout):
                raise TimeoutError(f"a worker did not answer within {timeout}s")
            replies.append(conn.recv())
        return replies

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("quit",))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
