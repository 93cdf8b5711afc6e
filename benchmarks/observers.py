"""python -m benchmarks.observers [--budget SECONDS]: what the observers cost on a start+stop cycle.

One process, one redis-server on a free port, one client; coordinators that
differ only in their observers, timed in interleaved blocks (as the floor
ratio is) so that the machine's changing load cancels out:

* ``none``: no observer;
* ``metrics``: the metrics on the OpenTelemetry API with no SDK (every
  coordinator's default);
* ``metrics_sdk``: the metrics recorded by an SDK (an in-memory reader);
* ``openlineage``: OpenLineage with the client's file transport (and the
  metrics, without SDK), timed with the sending thread's work: each block
  ends when its events are written (``flush``), so it pays for both threads;
  ``openlineage_job_thread`` is the same blocks without that wait.

Also each variant's own Python per cycle on a client that answers at once (no
I/O), as ``cycle_breakdown``'s ``library_code`` measures it. One JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jobs_core
from jobs_core.metrics import MetricsObserver
from jobs_core.openlineage import OpenLineageObserver

from .headline import StubClient
from .libs import LEASE, make_client
from .measure import calibrate, clock, interleave, median, run_block


def coordinators(client: Any, events: Path) -> dict[str, Any]:
    from openlineage.client import OpenLineageClient
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    sdk = MeterProvider(metric_readers=[InMemoryMetricReader()])
    lineage = OpenLineageClient(config={"transport": {"type": "file", "log_file_path": str(events), "append": True}})

    def make(*observers: Any) -> Any:
        return jobs_core.Coordinator(client, "bench:", metrics=False, observers=observers)

    return {
        "none": make(),
        "metrics": make(MetricsObserver("bench:")),
        "metrics_sdk": make(MetricsObserver("bench:", meter_provider=sdk)),
        "openlineage": make(MetricsObserver("bench:"), OpenLineageObserver(lineage, "bench:", "redis://bench:0/0")),
    }


def cycle(c: Any) -> Callable[[], None]:
    def run() -> None:
        with c.job(["bench.in"], ["bench.out"], duration=LEASE):
            pass
    return run


def lineage_of(c: Any) -> OpenLineageObserver:
    return next(o for o in c.observers if isinstance(o, OpenLineageObserver))


def alternate(fns: dict[str, Callable[[], object]], budget_s: float, block_s: float, after: dict[str, Any],
              settle: Callable[[], object]) -> dict[str, float]:
    """µs per call of each function, in alternating blocks; ``after[name]()`` ends each of its blocks
    (inside the timing), ``settle()`` follows every block (outside it: what is left of one block's
    work must not slow the next)."""
    sizes = {name: calibrate(fn, block_s) for name, fn in fns.items()}
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    deadline = clock() + budget_s
    while clock() < deadline or min(len(s) for s in seconds.values()) < 3:
        for name, fn in fns.items():
            start = clock()
            run_block(fn, sizes[name])
            if name in after:
                after[name]()
            seconds[name].append((clock() - start) / sizes[name])
            settle()
    return {name: round(median(s) * 1e6, 1) for name, s in seconds.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.observers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per comparison (default 20)")
    args = ap.parse_args(argv)
    from tests.servers import RedisServer

    server = RedisServer().start()
    events = Path(tempfile.mkdtemp(prefix="jobs-core-bench-")) / "events.jsonl"
    try:
        client = make_client(server.url)
        client.set("bench:bench.in", "seed")
        made = coordinators(client, events)
        sha = client.script_load("return 1")
        fns: dict[str, Callable[[], object]] = {"raw": lambda: client.evalsha(sha, 0)}
        fns.update({name: cycle(c) for name, c in made.items() if name != "openlineage"})
        res = interleave(fns, baseline="raw", budget_s=args.budget, block_s=0.02)
        out: dict[str, Any] = {"metric": "observer_cost", "unit": "us per fresh 1x1 start+stop cycle",
                               "server": f"redis {client.info('server')['redis_version']}", "rounds": res.rounds}
        out["cycle_us"] = {name: round(res.us(name), 1) for name in fns if name != "raw"}
        out["floor_ratio"] = {name: round(res.ratio(name), 3) for name in fns if name != "raw"}
        lineage = made["openlineage"]
        with_sender = alternate({"none": cycle(made["none"]), "openlineage": cycle(lineage),
                                 "openlineage_job_thread": cycle(lineage)},
                                args.budget, 0.02, {"openlineage": lambda: lineage_of(lineage).flush(60)},
                                 lambda: lineage_of(lineage).flush(60))
        out["cycle_us_with_lineage"] = with_sender
        stubs = coordinators(StubClient(), events)
        stub_fns = {name: cycle(c) for name, c in stubs.items()}
        stub_fns["openlineage_job_thread"] = stub_fns["openlineage"]
        stub_lineage = lineage_of(stubs["openlineage"])
        out["library_code_us"] = alternate(stub_fns, args.budget / 2, 0.01,
                                           {"openlineage": lambda: stub_lineage.flush(60)},
                                           lambda: stub_lineage.flush(60))
        out["events_written"] = sum(1 for _ in events.open())
        print(json.dumps(out))
        client.close()
    finally:
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
