"""The two libraries under test behind one small interface, on clients they share.

Both are driven through their public job APIs for everything that is timed.
Only :meth:`hold_many`, which builds large populations of held jobs for the
scaling curves, calls each library's start script directly in a pipeline
(100,000 one-by-one starts would take minutes); the locks it leaves are the
ones a normal start leaves.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jobs  # jobspy 0.31 (LGPL): driven through its API, never copied
import redis

import jobs_core

JOBS_CORE, JOBSPY = "jobs_core", "jobspy"
LIBS = (JOBS_CORE, JOBSPY)
#: One namespace per library, so both can run side by side on one server.
PREFIX = {JOBS_CORE: "jc:", JOBSPY: "jp:"}
#: Lease of the jobs that are timed; long enough never to lapse during a measurement.
LEASE = 60


#: Which observers the timed jobs_core coordinators have (``python -m benchmarks --observers``):
#: ``none``; ``default``, as the library makes them (the metrics on the OpenTelemetry API, and
#: OpenLineage when the environment configures its client, e.g. OPENLINEAGE__TRANSPORT__TYPE=file);
#: ``sdk``, the same with an OpenTelemetry SDK recording them (an in-memory reader).
ENV_OBSERVERS = "JOBS_BENCH_OBSERVERS"
OBSERVERS = ("none", "default", "sdk")


def observers_mode() -> str:
    mode = os.environ.get(ENV_OBSERVERS) or "default"
    if mode not in OBSERVERS:
        raise ValueError(f"{ENV_OBSERVERS}={mode!r}: use one of {', '.join(OBSERVERS)}")
    return mode


def observed(coordinator: Any) -> Any:
    """``coordinator`` with the observers :func:`observers_mode` asks for."""
    if observers_mode() == "none":
        coordinator.observers = ()
    return coordinator


def install_sdk() -> None:
    """In ``sdk`` mode: an OpenTelemetry SDK meter provider for this process, as an application sets one."""
    if observers_mode() == "sdk":
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


#: Connections one client may open. redis-py 8 caps a pool at 100, and every waiting
#: jobs_core job holds a pub/sub connection of its own for the whole wait, so one
#: process with more than ~99 waiting jobs fails with "Too many connections".
MAX_CONNECTIONS = 5000


def make_client(url: str) -> redis.Redis:
    """A sync client with bytes replies (jobspy decodes its script replies itself)."""
    return redis.Redis.from_url(url, socket_timeout=120, max_connections=MAX_CONNECTIONS)


def quiet_jobspy() -> None:
    """Send jobspy's log through :mod:`logging` (it prints to stdout by default), and set its prefix.

    jobs_core's logger is left as it is: with no handler its ``info`` calls
    cost what jobspy's now cost, a level check.
    """
    logger = logging.getLogger("benchmarks.jobspy")
    logger.setLevel(logging.ERROR)  # its "another job already started in this process" warning
    jobs.DEFAULT_LOGGER = logger
    jobs.GLOBAL_PREFIX = PREFIX[JOBSPY]


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class JobsCore:
    """jobs_core through :class:`jobs_core.Coordinator`."""

    name = JOBS_CORE

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.prefix = PREFIX[JOBS_CORE]
        self.coordinator = observed(jobs_core.Coordinator(client, prefix=self.prefix))

    def key(self, name: str) -> str:
        """The Redis key of output ``name``."""
        return self.prefix + name

    def job(self, inputs: Sequence[str], outputs: Sequence[str], *, duration: int = LEASE, wait: float = 0,
            heartbeat: bool = True) -> Any:
        return self.coordinator.job(inputs, outputs, duration=duration, wait=wait, heartbeat=heartbeat)

    def fresh_cycle(self, inputs: Sequence[str], outputs: Sequence[str], heartbeat: bool = True) -> Callable[[], None]:
        """One start+stop of a new job per call: what ``with coordinator.job(...)`` and the decorator do."""
        c = self.coordinator

        def cycle() -> None:
            with c.job(inputs, outputs, duration=LEASE, heartbeat=heartbeat):
                pass

        return cycle

    def reused_cycle(self, inputs: Sequence[str], outputs: Sequence[str], heartbeat: bool = True
                     ) -> Callable[[], None]:
        """start(); stop() of one job object, again and again."""
        job = self.coordinator.job(inputs, outputs, duration=LEASE, heartbeat=heartbeat)

        def cycle() -> None:
            job.start()
            job.stop()

        return cycle

    def hold_many(self, names: Sequence[str], lease: int) -> None:
        """Start one held job per name (that name as its only output), pipelined, heartbeat off."""
        c = self.coordinator
        for chunk in chunks(names, 1000):
            pipe = self.client.pipeline(transaction=False)
            for name in chunk:
                plan = c.job([], [name], duration=lease, heartbeat=False)._plan_now()
                c.scripts.start(keys=plan.keys, args=plan.start_args(secrets.token_hex(8)), client=pipe)
            failed = [r for r in pipe.execute() if int(r[0]) != 1]
            if failed:
                raise RuntimeError(f"jobs_core: {len(failed)} held jobs did not start: {failed[:3]}")


class JobsPy:
    """jobspy 0.31 through ``jobs.ResourceManager`` (no auto-refresh, its default)."""

    name = JOBSPY

    def __init__(self, client: redis.Redis) -> None:
        quiet_jobspy()
        self.client = client
        self.prefix = PREFIX[JOBSPY]

    def key(self, name: str) -> str:
        return self.prefix + name

    def job(self, inputs: Sequence[str], outputs: Sequence[str], *, duration: int = LEASE, wait: float = 0,
            heartbeat: bool = True) -> Any:
        return jobs.ResourceManager(list(inputs), list(outputs), int(duration), wait, True, conn=self.client)

    def fresh_cycle(self, inputs: Sequence[str], outputs: Sequence[str], heartbeat: bool = True) -> Callable[[], None]:
        client, ins, outs = self.client, list(inputs), list(outputs)

        def cycle() -> None:
            with jobs.ResourceManager(ins, outs, LEASE, conn=client):
                pass

        return cycle

    def reused_cycle(self, inputs: Sequence[str], outputs: Sequence[str], heartbeat: bool = True
                     ) -> Callable[[], None]:
        job = jobs.ResourceManager(list(inputs), list(outputs), LEASE, conn=self.client)

        def cycle() -> None:
            job.start()
            job.stop()

        return cycle

    def hold_many(self, names: Sequence[str], lease: int) -> None:
        """Start one held job per name through jobspy's own start script, pipelined."""
        # a normal call first, so the script is loaded (a pipeline cannot recover from NOSCRIPT)
        jobs.ResourceManager([], [names[0]], lease, conn=self.client).can_run()
        base = f"{__file__}:hold_many"
        for chunk in chunks(names, 1000):
            pipe = self.client.pipeline(transaction=False)
            for name in chunk:
                job_id = f"{base}.{int.from_bytes(os.urandom(6), 'big')}"
                edges = ["", jobs.EDGE_RE.sub("*", name), "", jobs.EDGE_RE.sub("*", job_id)]
                spec = {"prefix": self.prefix, "id": job_id, "now": time.time(), "duration": lease,
                        "overwrite": True, "refresh": False, "edges": edges}
                jobs._run_if_possible_lua(pipe, keys=["", name], args=[json.dumps(spec)])
            failed = [r for r in pipe.execute() if not json.loads(r)["ok"]]
            if failed:
                raise RuntimeError(f"jobspy: {len(failed)} held jobs did not start: {failed[:3]}")


def make_lib(name: str, client: redis.Redis) -> JobsCore | JobsPy:
    return JobsCore(client) if name == JOBS_CORE else JobsPy(client)
