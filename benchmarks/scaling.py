"""How a cycle's cost grows (keys per job, running jobs, waiters, lineage history), and memory per job."""

from __future__ import annotations

import string
import time
from collections.abc import Callable
from typing import Any

from .env import Env
from .headline import Metric, _names, _r, _seed
from .libs import JOBS_CORE, JOBSPY, LIBS
from .measure import interleave
from .workers import Workers


def _point(env: Env, inputs: list[str], outputs: list[str], libs: tuple[str, ...] = LIBS) -> dict[str, float]:
    """µs per fresh cycle of each library, and of two raw round trips, interleaved."""
    sha = env.client.script_load("return 1")
    fns: dict[str, Callable[[], object]] = {"raw": lambda: env.client.evalsha(sha, 0)}
    for lib in libs:
        fns[lib] = env.libs[lib].fresh_cycle(inputs, outputs)
    res = interleave(fns, baseline="raw", budget_s=env.params.point_budget_s, block_s=env.params.block_s,
                     min_rounds=2)
    point = {lib: _r(res.us(lib), 1) for lib in libs}
    point["floor"] = _r(2 * res.us("raw"), 1)
    return point


def scaling_keys(env: Env) -> Metric:
    """Cycle cost against names per job (half inputs, half outputs; 1 = one output)."""
    points = []
    for n in env.params.keys_points:
        env.reset()
        inputs, outputs = _names("k.in", n // 2), _names("k.out", n - n // 2)
        _seed(env, inputs)
        points.append({"x": n, **_point(env, inputs, outputs)})
    return {"metric": "scaling_keys", "unit": "us per fresh cycle", "x": "names per job (inputs + outputs)",
            "goal": "plot", "met": None, "points": points}


def scaling_running(env: Env) -> Metric:
    """Cycle cost against jobs already running (held, one output each, heartbeat off, long lease)."""
    env.reset()
    _seed(env, ["r.in"])
    held = dict.fromkeys(LIBS, 0)
    points = []
    memory = {}
    for n in env.params.running_points:
        for lib in LIBS:
            if n > held[lib]:
                before = env.used_memory()
                env.libs[lib].hold_many([f"held.{i}" for i in range(held[lib], n)], lease=3600)
                memory[lib] = (env.used_memory() - before) / (n - held[lib])
                held[lib] = n
        points.append({"x": n, **_point(env, ["r.in"], ["r.out"])})
    return {"metric": "scaling_running", "unit": "us per fresh cycle", "x": "jobs already running",
            "goal": "plot", "met": None, "points": points,
            "bytes_per_running_job": {lib: round(v) for lib, v in memory.items()}}


def scaling_waiters(env: Env) -> Metric:
    """Cycle cost (on other names) against jobs waiting on a held output, per library's own waiters.

    Waiters are threads in at most two processes. jobspy's poll every 10 ms;
    jobs_core's sleep on the wake-up channel, which every release publishes to.
    """
    points = []
    for n in env.params.waiter_points:
        point: dict[str, Any] = {"x": n}
        for lib_name in LIBS:
            env.reset()
            _seed(env, ["w.in"])
            lib = env.libs[lib_name]
            holder = lib.job([], ["w.held"])
            holder.start()
            procs = min(n, 2)
            workers = Workers(env.ctx, lib_name, env.url, procs) if n else None
            try:
                if workers:
                    for i, conn in enumerate(workers.conns):
                        conn.send(("wait_forever", [], ["w.held"], n // procs + (i < n % procs)))
                    workers.recv_all()
                    if lib_name == JOBS_CORE:
                        point[f"{lib_name}_settled"] = env.wait_for_waiters(n, timeout=60)
                    time.sleep(0.2 + n / 2000)
                measured = _point(env, ["w.in"], ["w.out"], libs=(lib_name,))
            finally:
                if workers:
                    workers.close()
                holder.stop()
            point[lib_name] = measured[lib_name]
            point[f"{lib_name}_floor"] = measured["floor"]
        points.append(point)
    return {"metric": "scaling_waiters", "unit": "us per fresh cycle", "x": "jobs waiting on another output",
            "goal": "plot", "met": None, "points": points}


def _word(i: int) -> str:
    """A letters-only name for ``i`` (lineage folds digits, so digits would not make distinct edges)."""
    letters = string.ascii_lowercase
    out = ""
    while True:
        i, r = divmod(i, 26)
        out = letters[r] + out
        if not i:
            return out


def scaling_history(env: Env) -> Metric:
    """Cycle cost against the number of lineage edges already recorded (each graph zset)."""
    env.reset()
    _seed(env, ["h.in"])
    have = 0
    points = []
    for n in env.params.history_points:
        for lib in env.libs.values():
            for start in range(have, n, 5000):
                pipe = env.client.pipeline(transaction=False)
                words = [_word(i) for i in range(start, min(n, start + 5000))]
                pipe.zadd(f"{lib.prefix}jobs:graph:input", {f"hist.{w} -> hjob.{w}": 1.0 for w in words})
                pipe.zadd(f"{lib.prefix}jobs:graph:output", {f"hjob.{w} -> hist.{w}": 1.0 for w in words})
                pipe.execute()
        have = max(have, n)
        points.append({"x": n, **_point(env, ["h.in"], ["h.out"])})
    return {"metric": "scaling_history", "unit": "us per fresh cycle", "x": "lineage edges recorded (per zset)",
            "goal": "plot", "met": None, "points": points}


def memory(env: Env) -> Metric:
    """Redis memory (INFO used_memory deltas) per running job and per written output, public API only.

    ``n`` jobs with one output each are started (heartbeat off), then stopped
    successfully. jobs_core keeps each stopped job's holder record for a
    minute (so a repeated stop learns the outcome); ``steady`` is measured
    after deleting those records, as their expiry would.
    """
    n = env.params.memory_jobs
    out: dict[str, Any] = {}
    for lib_name in LIBS:
        env.reset()
        lib = env.libs[lib_name]
        base = env.used_memory()
        started = [lib.job([], [f"mem.out.{i}"], duration=3600, heartbeat=False) for i in range(n)]
        for job in started:
            job.start()
        running = env.used_memory()
        for job in started:
            job.stop()
        written = env.used_memory()
        holders = list(env.client.scan_iter(match=f"{lib.prefix}jobs:holder:*", count=1000))
        for i in range(0, len(holders), 1000):
            env.client.delete(*holders[i:i + 1000])
        steady = env.used_memory()
        out[lib_name] = {"per_running_job": round((running - base) / n),
                         "per_written_output": round((written - base) / n),
                         "per_written_output_steady": round((steady - base) / n)}
    return {"metric": "memory", "unit": "bytes", "jobs": n,
            "jobs_core": out[JOBS_CORE]["per_running_job"], "jobspy": out[JOBSPY]["per_running_job"],
            "goal": "plot", "met": None, "details": out}


def run_scaling(env: Env, emit: Callable[[Metric], None]) -> None:
    emit(scaling_keys(env))
    emit(scaling_running(env))
    emit(scaling_waiters(env))
    emit(scaling_history(env))
    emit(memory(env))
