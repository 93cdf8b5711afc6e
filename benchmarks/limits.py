"""Limits (shared capacities): jobs of many processes sharing one limit, and what a limit adds to a cycle.

jobspy has no limits: its columns stay empty, and the cycle cost is shown
beside jobs_core's cycle without a limit (and jobspy's, for scale), measured
interleaved in one run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from .env import Env
from .headline import Metric, _r
from .libs import JOBS_CORE, JOBSPY, LEASE
from .measure import clock, interleave, median, percentile
from .workers import Workers

LIMIT = "bench.limit"


def limit_share(env: Env) -> Metric:
    """``limit_procs`` processes run ``limit_jobs`` jobs each, every job holding one slot of a limit of
    ``limit_capacity`` for ``limit_hold_s``: exactness (peak holders), throughput against the ideal
    (capacity ÷ hold), and how evenly the waits and turns are spread."""
    p = env.params
    env.reset()
    c = env.libs[JOBS_CORE].coordinator
    c.set_limit(LIMIT, p.limit_capacity)
    gauge, peak, order = "bench:limit:gauge", "bench:limit:peak", "bench:limit:order"
    with Workers(env.ctx, JOBS_CORE, env.url, p.limit_procs) as w:
        for i, conn in enumerate(w.conns):
            conn.send(("limited", LIMIT, p.limit_jobs, p.limit_hold_s, gauge, peak, i, order))
        w.recv_all()
        go = clock()
        w.send_all("go")
        replies = w.recv_all(timeout=600)
    wall = max(end for end, _ in replies) - go
    waits = [x for _, ws in replies for x in ws]
    per_proc = [median(ws) for _, ws in replies]
    turns = [int(t) for t in env.client.lrange(order, 0, -1)]
    half = Counter(turns[: len(turns) // 2])
    shares = [half.get(i, 0) / max(len(turns) // 2, 1) for i in range(p.limit_procs)]
    total = p.limit_procs * p.limit_jobs
    ideal = p.limit_capacity / p.limit_hold_s
    peak_holders = int(env.client.get(peak) or 0)
    exact = peak_holders <= p.limit_capacity and len(turns) == total
    throughput = total / wall
    stats = {
        "exact": exact, "peak_holders": peak_holders, "wall_s": _r(wall), "jobs_per_s": _r(throughput, 1),
        "ideal_jobs_per_s": _r(ideal, 1), "efficiency": _r(throughput / ideal),
        "wait_p50_s": _r(percentile(waits, 50)), "wait_p99_s": _r(percentile(waits, 99)), "wait_max_s": _r(max(waits)),
        "proc_median_wait_min_s": _r(min(per_proc)), "proc_median_wait_max_s": _r(max(per_proc)),
        "share_min": _r(min(shares)), "share_max": _r(max(shares)),
    }
    return {"metric": "limit_share", "unit": "exact / efficiency / wait spread", "processes": p.limit_procs,
            "capacity": p.limit_capacity, "jobs": total, "hold_s": p.limit_hold_s,
            "jobs_core": {k: stats[k] for k in ("exact", "efficiency", "wait_p50_s", "wait_max_s")},
            "jobspy": None, "goal": "exact (peak slots in use <= capacity)", "met": exact, "details": stats}


def limit_cycle(env: Env) -> Metric:
    """µs per fresh 1-in/1-out start+stop with one slot of a limit, without it, and jobspy's cycle,
    interleaved with the raw EVALSHA floor."""
    env.reset()
    jc, jp = env.libs[JOBS_CORE], env.libs[JOBSPY]
    c = jc.coordinator
    c.set_limit(LIMIT, 1_000_000)
    for lib in (jc, jp):
        env.client.set(lib.key("lc.in"), "seed")
    sha = env.client.script_load("return 1")

    def with_limit() -> None:
        with c.job(["lc.in"], ["lc.out"], duration=LEASE, limits={LIMIT: 1}):
            pass

    fns: dict[str, Callable[[], object]] = {
        "raw": lambda: env.client.evalsha(sha, 0), "limit": with_limit,
        "no_limit": jc.fresh_cycle(["lc.in"], ["lc.out"]), JOBSPY: jp.fresh_cycle(["lc.in"], ["lc.out"]),
    }
    res = interleave(fns, baseline="raw", budget_s=env.params.floor_budget_s, block_s=env.params.block_s)
    added = res.us("limit") - res.us("no_limit")
    return {"metric": "limit_cycle", "unit": "µs per cycle", "jobs_core": _r(res.us("limit"), 1),
            "jobspy": _r(res.us(JOBSPY), 1), "goal": "report", "met": None,
            "details": {"with_limit_us": _r(res.us("limit"), 1), "without_limit_us": _r(res.us("no_limit"), 1),
                        "added_us": _r(added, 1), "added_ratio": _r(res.us("limit") / res.us("no_limit")),
                        "jobspy_us": _r(res.us(JOBSPY), 1), "rounds": res.rounds}}
