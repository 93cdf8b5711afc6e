"""What ``jobs-core serve`` costs Redis, and how fast a change reaches the page, with a big namespace.

``python -m benchmarks.web_load [--running 1000] [--waiting 1000] [--clients 5] [--window 20]``

It starts a redis-server on a free port, fills a namespace with ``--running``
running jobs and ``--waiting`` jobs waiting for their outputs (asyncio tasks
of this process, each a real waiting ``start()``), then measures:

* Redis commands per second (``INFO commandstats`` before and after a window):
  the namespace alone (the waiters' own retries), then with the web view
  serving ``--clients`` SSE clients, idle and while a job starts and stops
  every half second; the difference is the web view's cost;
* page update latency: from a job's start (and its stop) to the snapshot that
  shows it arriving at every SSE client, over ``--trials`` starts and stops;
* the time one snapshot read takes, and its size.

The web view runs in this process (uvicorn in a thread) so its reader's
count of reads can be shown beside the command counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import redis

import jobs_core


def commandstats(client: redis.Redis) -> dict[str, int]:
    return {k: int(v["calls"]) for k, v in client.info("commandstats").items()}


def rate(client: redis.Redis, seconds: float, during: Callable[[], None] | None = None) -> tuple[float, dict[str, int]]:
    """Commands per second over ``seconds`` (running ``during`` in a loop meanwhile), and the top commands."""
    before = commandstats(client)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if during is None:
            time.sleep(0.1)
        else:
            during()
    after = commandstats(client)
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    diff = {k: v for k, v in diff.items() if v > 0 and k not in ("cmdstat_info",)}
    return sum(diff.values()) / seconds, dict(sorted(diff.items(), key=lambda kv: -kv[1])[:6])


class Watchers:
    """``n`` SSE clients in threads, each noting when it first saw each job id appear or disappear."""

    def __init__(self, base: str, n: int) -> None:
        self.base = base
        self.seen: list[dict[tuple[str, bool], float]] = [{} for _ in range(n)]
        self.wanted: set[str] = set()
        self.sizes: list[int] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._watch, args=(i,), daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def _watch(self, i: int) -> None:
        with httpx.Client(base_url=self.base, timeout=httpx.Timeout(10, read=60)) as http, \
                http.stream("GET", "/events") as response:
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if not line.startswith("data: "):
                    continue
                now = time.monotonic()
                if i == 0:
                    self.sizes.append(len(line))
                doc = json.loads(line[6:])
                running = {j["job_id"] for j in doc["status"]["running"]}
                for job_id in list(self.wanted):
                    present = job_id in running
                    if present or (job_id, True) in self.seen[i]:  # gone: only once it was seen
                        self.seen[i].setdefault((job_id, present), now)

    def latency(self, job_id: str, present: bool, since: float, timeout: float = 10) -> float:
        """Seconds from ``since`` until every client saw ``job_id`` present (or absent)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            times = [s.get((job_id, present)) for s in self.seen]
            if all(t is not None for t in times):
                return max(t for t in times if t is not None) - since
            time.sleep(0.005)
        raise TimeoutError(f"not every client saw {job_id} {'start' if present else 'stop'} within {timeout}s")


async def fill(url: str, prefix: str, running: int, waiting: int) -> tuple[Any, list[asyncio.Task[Any]]]:
    """``running`` jobs holding ``out.<i>``, and ``waiting`` tasks waiting to write those outputs."""
    c = jobs_core.AsyncCoordinator.from_url(url, prefix, max_connections=running + waiting + 100)
    for first in range(0, running, 100):
        await asyncio.gather(*(c.job([], [f"out.{i}"], duration=3600, heartbeat=False, job_id=f"holder.{i}").start()
                               for i in range(first, min(first + 100, running))))

    async def wait(i: int) -> None:
        try:
            await c.job([], [f"out.{i % max(running, 1)}"], duration=60, wait=3600, job_id=f"waiter.{i}").start()
        except jobs_core.JobsError:
            pass

    tasks = [asyncio.create_task(wait(i)) for i in range(waiting)]
    return c, tasks


class RoundTrips:
    """Counts what one client sends Redis: one per command, one per pipeline (its connections' sends)."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        pool = client.connection_pool
        make = pool.make_connection

        def counted() -> Any:
            conn = make()
            send = conn.send_packed_command

            async def send_counted(*args: Any, **kwargs: Any) -> Any:
                self.count += 1
                return await send(*args, **kwargs)

            conn.send_packed_command = send_counted
            return conn

        pool.make_connection = counted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.web_load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--running", type=int, default=1000)
    ap.add_argument("--waiting", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=5, help="SSE clients watching (browsers)")
    ap.add_argument("--window", type=float, default=20.0, help="seconds per commands/s window")
    ap.add_argument("--trials", type=int, default=10, help="starts and stops timed")
    args = ap.parse_args(argv)

    from tests.servers import RedisServer
    from tests.web_server import WebServer

    server = RedisServer().start()
    prefix = "bench:"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        c, tasks = asyncio.run_coroutine_threadsafe(fill(server.url, prefix, args.running, args.waiting),
                                                    loop).result(600)
        admin = redis.Redis.from_url(server.url)
        sync = jobs_core.Coordinator.from_url(server.url, prefix)
        deadline = time.monotonic() + 120
        while len(sync.waiting_jobs()) < args.waiting and time.monotonic() < deadline:
            time.sleep(0.5)
        print(f"namespace: {len(sync.running_jobs())} running, {len(sync.waiting_jobs())} waiting "
              f"(redis-server {admin.info('server')['redis_version']})")
        base_rate, base_top = rate(admin, args.window)
        print(f"without the web view: {base_rate:.1f} commands/s (the waiters' own retries) {base_top}")

        web = WebServer(server.url, prefix, min_interval=1.0)  # the defaults of jobs-core serve
        trips = RoundTrips(web.app.state.web.coordinator.client)
        web.start()
        watchers = Watchers(web.base, args.clients)
        time.sleep(3)
        sent, reads_before = trips.count, web.reader.reads
        idle_rate, idle_top = rate(admin, args.window)
        idle_trips, idle_reads = (trips.count - sent) / args.window, web.reader.reads - reads_before
        sent, reads_before = trips.count, web.reader.reads
        counter = iter(range(10**9))

        def churn() -> None:
            job = sync.job([], [f"churn.{next(counter)}"], duration=30, heartbeat=False).start()
            time.sleep(0.25)
            job.stop()
            time.sleep(0.25)

        busy_rate, busy_top = rate(admin, args.window, churn)
        busy_trips, busy_reads = (trips.count - sent) / args.window, web.reader.reads - reads_before
        print(f"web view, {args.clients} SSE clients, idle: its round trips {idle_trips:.1f}/s, "
              f"{idle_reads} snapshot reads in {args.window:g}s; server commands {idle_rate:.1f}/s "
              f"(+{idle_rate - base_rate:.1f}, counting calls inside scripts) {idle_top}")
        print(f"web view, {args.clients} SSE clients, a start and a stop every 0.5s: its round trips "
              f"{busy_trips:.1f}/s, {busy_reads} snapshot reads in {args.window:g}s; server commands "
              f"{busy_rate:.1f}/s (+{busy_rate - base_rate:.1f}, with the churn's own) {busy_top}")

        starts, stops = [], []
        for n in range(args.trials):
            job_id = f"timed.{n}"
            watchers.wanted.add(job_id)
            time.sleep(1.2)  # a quiet second before each change, as a real change would find it
            t0 = time.monotonic()
            job = sync.job([], [f"timed.{n}"], duration=30, heartbeat=False, job_id=job_id).start()
            starts.append(watchers.latency(job_id, True, t0))
            time.sleep(1.2)
            t0 = time.monotonic()
            job.stop()
            stops.append(watchers.latency(job_id, False, t0))
        snap = web.reader.latest.document

        def fmt(values: list[float]) -> str:
            return (f"median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms "
                    f"(n={len(values)})")

        print(f"update latency to all {args.clients} clients: start (published by no one: the probe) "
              f"{fmt(starts)}; stop (the wake-up channel) {fmt(stops)}")
        print(f"one snapshot read: {snap['read_seconds'] * 1000:.0f} ms; snapshot size "
              f"{statistics.median(watchers.sizes) / 1024:.0f} KiB")
        web.stop()
        watchers.stop.set()
        async def end() -> None:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await c.aclose()

        asyncio.run_coroutine_threadsafe(end(), loop).result(120)
        sync.close()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        server.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
