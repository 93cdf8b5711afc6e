"""The headline metrics of the issue's table, each measured side by side with jobspy in one run."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import redis
import redis.asyncio

import jobs_core
from jobs_core.wire import Wire

from .env import Env
from .libs import JOBS_CORE, JOBSPY, LIBS, PREFIX, JobsCore, JobsPy, make_client, observed
from .measure import calibrate, clock, interleave, median, percentile, run_block
from .workers import Workers

Metric = dict[str, Any]


def _r(value: float, digits: int = 3) -> float:
    return round(value, digits)


def _names(kind: str, n: int) -> list[str]:
    return [f"{kind}.{i}" for i in range(n)]


def _seed(env: Env, inputs: list[str]) -> None:
    """Make ``inputs`` exist in both libraries' namespaces."""
    if inputs:
        env.client.mset({lib.key(n): "seed" for lib in env.libs.values() for n in inputs})


# -- round-trip floor ratio --------------------------------------------------------------

FLOOR_VARIANTS = {
    # name: (library, fresh job per cycle, heartbeat)
    "jobs_core": (JOBS_CORE, True, True),
    "jobs_core_reused": (JOBS_CORE, False, True),
    "jobs_core_no_heartbeat": (JOBS_CORE, True, False),
    "jobs_core_reused_no_heartbeat": (JOBS_CORE, False, False),
    "jobspy": (JOBSPY, True, True),
    "jobspy_reused": (JOBSPY, False, True),
}


def floor_ratio(env: Env, n: int) -> Metric:
    """start+stop cycles/s ÷ (raw EVALSHA of ``return 1``/s ÷ 2), interleaved on one connection.

    The headline is a fresh job per cycle with the default heartbeat, for both
    libraries: that is what ``with coordinator.job(...)``, the decorators and
    jobspy's ``with ResourceManager(...)`` do on every run of a job.
    """
    env.reset()
    inputs, outputs = _names("floor.in", n), _names("floor.out", n)
    _seed(env, inputs)
    sha = env.client.script_load("return 1")
    fns: dict[str, Callable[[], object]] = {"raw": lambda: env.client.evalsha(sha, 0)}
    for name, (lib, fresh, heartbeat) in FLOOR_VARIANTS.items():
        make = env.libs[lib].fresh_cycle if fresh else env.libs[lib].reused_cycle
        fns[name] = make(inputs, outputs, heartbeat=heartbeat)
    res = interleave(fns, baseline="raw", budget_s=env.params.floor_budget_s, block_s=env.params.block_s)
    goal = 1.1 if n == 1 else 1.0  # the cycle issue's goals, as multiples of jobspy's ratio in the same run
    jc, jp = res.ratio("jobs_core"), res.ratio("jobspy")
    return {
        "metric": f"floor_ratio_{n}x{n}", "unit": "ratio", "inputs": n, "outputs": n,
        "jobs_core": _r(jc), "jobspy": _r(jp), "vs_jobspy": _r(jc / jp), "goal": f">= {goal}x jobspy",
        "met": jc >= goal * jp,
        "headline": "fresh job per cycle, default heartbeat (jobs_core) / fresh ResourceManager (jobspy)",
        "raw_evalsha_per_s": round(1e6 / res.us("raw")), "rounds": res.rounds,
        "variants": {name: {"ratio": _r(res.ratio(name)), "us_per_cycle": _r(res.us(name), 1),
                            "cycles_per_s": round(1e6 / res.us(name))} for name in FLOOR_VARIANTS},
    }


# -- where a cycle's time goes -------------------------------------------------------------

class RecordingRedis(redis.Redis):
    """A client that can record the script calls it sends (both libraries call ``execute_command``)."""

    recording: list[tuple[Any, ...]] | None = None

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.recording is not None and args and args[0] in ("EVALSHA", "EVAL"):
            self.recording.append(args)
        return super().execute_command(*args, **options)


class _StubScript:
    def __init__(self, reply: Any) -> None:
        self.reply = reply

    def __call__(self, keys: Any = (), args: Any = (), client: Any = None) -> Any:
        return self.reply


class StubClient:
    """A client that answers every script call at once with a success: the library's own code, no I/O.

    jobs_core calls ``register_script(...)(keys, args)``; jobspy calls
    ``execute_command("EVALSHA" | "EVAL", ...)``. Each gets the reply of a
    successful start or stop.
    """

    def register_script(self, source: str) -> _StubScript:
        if "\n-- start.lua:" in source:
            return _StubScript([1, 7, b"1700000000.000000", 60000])
        if "\n-- stop.lua:" in source:
            return _StubScript([1, b"1700000000.000000", b"written"])
        return _StubScript([1, b"1700000000.000000"])

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def pubsub(self) -> Any:
        raise NotImplementedError

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return b'{"ok": true}' if str(args[-1]).startswith("{") else None


def library_code_us(lib_name: str, inputs: list[str], outputs: list[str], budget_s: float) -> float:
    """µs of the library's own Python per fresh cycle, on :class:`StubClient` (median of blocks)."""
    lib = JobsCore(StubClient()) if lib_name == JOBS_CORE else JobsPy(StubClient())  # type: ignore[arg-type]
    cycle = lib.fresh_cycle(inputs, outputs)
    n = calibrate(cycle, 0.005)
    blocks = max(3, round(budget_s / 0.005))
    return median([run_block(cycle, n) for _ in range(blocks)]) * 1e6


def _server_cost(env: Env, fn: Callable[[], object], n: int) -> tuple[float, float]:
    """``(evalsha µs, other commands)`` per call of ``fn``, from INFO commandstats."""
    env.client.config_resetstat()
    for _ in range(n):
        fn()
    stats = env.client.info("commandstats")
    usec = sum(v["usec"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))
    other = sum(v["calls"] for k, v in stats.items()
                if k not in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_info") and not k.startswith("cmdstat_config"))
    return usec / n, other / n


def _server_costs(env: Env, fns: dict[str, Callable[[], object]], n: int, samples: int = 5
                  ) -> dict[str, tuple[float, float]]:
    """Median over interleaved samples of :func:`_server_cost` for each function."""
    per: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(samples):
        for name, fn in fns.items():
            per[name].append(_server_cost(env, fn, max(1, n // samples)))
    return {name: (median([u for u, _ in v]), median([c for _, c in v])) for name, v in per.items()}


def cycle_breakdown(env: Env) -> Metric:
    """Split a fresh 1x1 and 10x10 cycle into round trips, payload, server script time and the rest.

    * floor: two round trips of EVALSHA ``return 1`` without arguments;
    * payload: the same two calls with the library's exact keys and arguments
      (``return 1`` again), sent as the library sends them, minus the floor:
      encoding, transfer, argument parsing (negative for jobs_core when its
      wire, which skips redis-py's command path, costs less than the floor's
      plain ``evalsha``);
    * script: server time of the real scripts minus that of the payload replay
      (INFO commandstats, which includes the commands the scripts call);
    * rest: everything else: the library's own Python (job object, plan, reply
      parsing, heartbeat bookkeeping), and the wall time that server work costs
      beyond its commandstats time (on a virtual machine a client that waits
      longer wakes up more slowly);
    * library_code: the library's own Python alone, on a client stub that answers
      at once (no redis-py, no I/O): the part of ``rest`` the library controls.
    """
    env.reset()
    rec = RecordingRedis.from_url(env.url, socket_timeout=120)
    # jobs_core's cycles run on a plain client, as users' do: a client that overrides execute_command
    # (the recorder) makes it take redis-py's path instead of its wire; its calls are recorded on
    # a second coordinator, and replayed through the wire
    plain = make_client(env.url)
    libs = {JOBS_CORE: JobsCore(plain), JOBSPY: JobsPy(rec)}
    recorders = {JOBS_CORE: JobsCore(rec), JOBSPY: libs[JOBSPY]}
    sha = rec.script_load("return 1")
    out: Metric = {"metric": "cycle_breakdown", "unit": "us per fresh start+stop cycle", "goal": "diagnosis",
                   "met": None, JOBS_CORE: {}, JOBSPY: {}}
    for n in (1, 10):
        inputs, outputs = _names("bd.in", n), _names("bd.out", n)
        _seed(env, inputs)
        fns: dict[str, Callable[[], object]] = {"raw": lambda: rec.evalsha(sha, 0)}
        for name, lib in libs.items():
            cycle = lib.fresh_cycle(inputs, outputs)
            cycle()
            recorded = recorders[name].fresh_cycle(inputs, outputs)
            recorded()  # scripts loaded, so the recording holds the calls of a normal cycle
            rec.recording = []
            recorded()
            calls, rec.recording = rec.recording, None
            fns[name] = cycle
            fns[f"{name}_payload"] = _replay_wire(plain, sha, calls) if name == JOBS_CORE else _replay(rec, sha, calls)
        res = interleave(fns, baseline="raw", budget_s=env.params.floor_budget_s / 2, block_s=env.params.block_s)
        server = _server_costs(env, {k: v for k, v in fns.items() if k != "raw"}, env.params.breakdown_cycles)
        for name in libs:
            (usec, commands), (replay_usec, _) = server[name], server[f"{name}_payload"]
            cycle_us, replay_us, floor_us = res.us(name), res.us(f"{name}_payload"), 2 * res.us("raw")
            script_us = usec - replay_usec
            out[name][f"{n}x{n}"] = {
                "cycle": _r(cycle_us, 1), "floor": _r(floor_us, 1), "payload": _r(replay_us - floor_us, 1),
                "script": _r(script_us, 1), "rest": _r(cycle_us - replay_us - script_us, 1),
                "library_code": _r(library_code_us(name, inputs, outputs, env.params.floor_budget_s / 8), 1),
                "server_us": _r(usec, 1), "redis_commands": _r(commands, 1),
            }
    rec.close()
    plain.close()
    return out


def _replay_wire(client: redis.Redis, sha: str, calls: list[tuple[Any, ...]]) -> Callable[[], None]:
    """The recorded script calls of one cycle, sent again with ``return 1`` as the script, as jobs_core
    sends them on a plain client (:mod:`jobs_core.wire`)."""
    wire = Wire(client)
    script = SimpleNamespace(sha=sha)  # loaded already: the wire never falls back to calling it
    payloads = [(call[3:3 + int(call[2])], list(call[3 + int(call[2]):])) for call in calls]

    def replay() -> None:
        for keys, args in payloads:
            wire.call(script, keys, args)

    return replay


def _replay(client: redis.Redis, sha: str, calls: list[tuple[Any, ...]]) -> Callable[[], None]:
    """The recorded script calls of one cycle, sent again with ``return 1`` as the script."""
    payloads = [call[2:] for call in calls]

    def replay() -> None:
        for payload in payloads:
            client.execute_command("EVALSHA", sha, *payload)

    return replay


# -- hand-off latency ------------------------------------------------------------------------

FLOOR = "floor"


def handoff_latency(env: Env) -> Metric:
    """A holds output X; B (another process) waits for X as its input; A's stop() → B's start().

    Both ends read ``time.perf_counter`` (CLOCK_MONOTONIC, one clock for the
    machine). jobs_core, jobspy and a floor alternate in blocks of 20 trials;
    A holds X for a settle time plus a random jitter, so polling phases do not
    line up. The floor is the least any pushed hand-off can take here: B
    subscribed to a channel, A's PUBLISH wakes it, B sends one EVALSHA
    ``return 1``. ``cold_rtt`` is one EVALSHA after the same idle time: on a
    virtual machine an idle process and server wake up slowly.
    """
    env.reset()
    p = env.params
    x = "handoff.x"
    sha = env.client.script_load("return 1")
    lat: dict[str, list[float]] = {lib: [] for lib in (*LIBS, FLOOR)}
    cold: list[float] = []
    workers = {name: Workers(env.ctx, JOBS_CORE if name == FLOOR else name, env.url, 1) for name in lat}
    try:
        while any(len(v) < p.handoff_trials for v in lat.values()):
            for name, w in workers.items():
                for _ in range(min(20, p.handoff_trials - len(lat[name]))):
                    holder = None
                    if name == FLOOR:
                        w.send_all("wake_floor", "handoff.floor")
                    else:
                        holder = env.libs[name].job([], [x], duration=30)
                        holder.start()
                        w.send_all("handoff", x, "handoff.y")
                    w.recv_all()
                    time.sleep(p.handoff_settle_s + random.uniform(0, p.handoff_settle_s / 2))
                    if holder is None:
                        env.client.publish("handoff.floor", "go")
                    else:
                        holder.stop()
                    released = clock()
                    (started,) = w.recv_all()
                    lat[name].append(started - released)
                    if name == FLOOR:
                        time.sleep(p.handoff_settle_s)
                        t = clock()
                        env.client.evalsha(sha, 0)
                        cold.append(clock() - t)
    finally:
        for w in workers.values():
            w.close()
    lat["cold_rtt"] = cold
    stats = {name: {"p50_ms": _r(percentile(v, 50) * 1e3), "p99_ms": _r(percentile(v, 99) * 1e3),
                    "mean_ms": _r(sum(v) / len(v) * 1e3), "max_ms": _r(max(v) * 1e3), "trials": len(v)}
             for name, v in lat.items()}
    jc = stats[JOBS_CORE]
    return {"metric": "handoff_latency", "unit": "ms (p50 / p99)",
            "jobs_core": [jc["p50_ms"], jc["p99_ms"]], "jobspy": [stats[JOBSPY]["p50_ms"], stats[JOBSPY]["p99_ms"]],
            "floor": [stats[FLOOR]["p50_ms"], stats[FLOOR]["p99_ms"]],
            "goal": "p50 <= 0.5, p99 <= 2", "met": jc["p50_ms"] <= 0.5 and jc["p99_ms"] <= 2.0, "details": stats}


# -- idle waiter load -----------------------------------------------------------------------------

def idle_waiter_load(env: Env, many: bool) -> Metric:
    """Redis commands per second per waiting job (INFO stats, scripts' own calls included).

    A holder (lease 600 s, no renewals, so it sends nothing) holds X; ``n``
    processes each wait to read X. A jobs_core waiter sleeps until the
    holder's lease ends, at most 10 s (``MAX_QUIET_SLEEP``), then looks again
    (which keeps its place in line alive). Its window spans two such sleeps;
    jobspy's waiters poll steadily, so a short window does. A window with the
    holder alone is subtracted, as is each INFO call.
    """
    p = env.params
    n = p.idle_many if many else 1
    x = "idle.x"
    result: dict[str, Any] = {}
    for lib_name in LIBS:
        env.reset()
        lib = env.libs[lib_name]
        holder = lib.job([], [x], duration=600, heartbeat=False)
        holder.start()
        try:
            baseline = _command_rate(env, p.idle_window_s)
            with Workers(env.ctx, lib_name, env.url, n) as w:
                w.send_all("wait_forever", [x], ["idle.y"], 1)
                w.recv_all()
                settled = env.wait_for_waiters(n) if lib_name == JOBS_CORE else True
                time.sleep(0.3)
                total = _command_rate(env, p.idle_window_jobs_core_s if lib_name == JOBS_CORE else p.idle_window_s)
        finally:
            holder.stop()
        result[lib_name] = {"per_waiter": _r((total - baseline) / n, 2), "total_per_s": _r(total, 1),
                            "holder_only_per_s": _r(baseline, 1), "settled": settled}
    jc = result[JOBS_CORE]["per_waiter"]
    return {"metric": f"idle_waiter_load_{'many' if many else 1}", "unit": "commands/s per waiter", "waiters": n,
            "jobs_core": jc, "jobspy": result[JOBSPY]["per_waiter"], "goal": "<= 2", "met": jc <= 2,
            "window_s": {JOBS_CORE: p.idle_window_jobs_core_s, JOBSPY: p.idle_window_s}, "details": result}


def _calls(env: Env) -> Counter[str]:
    """Calls so far of each command (INFO commandstats), INFO itself left out."""
    stats = env.client.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k != "cmdstat_info"})


def _per_turn(before: Counter[str], after: Counter[str], turns: int) -> dict[str, float]:
    """Script calls and all commands (scripts' own included) per turn between two :func:`_calls`."""
    delta = after - before
    scripts = delta["evalsha"] + delta["eval"]
    return {"scripts_per_turn": _r(scripts / turns, 2), "commands_per_turn": _r(sum(delta.values()) / turns, 1)}


def _command_rate(env: Env, seconds: float) -> float:
    before = env.commands()
    start = clock()
    time.sleep(seconds)
    after = env.commands()
    return (after - before - 1) / (clock() - start)  # the first INFO counts itself


# -- drain --------------------------------------------------------------------------------------

def drain(env: Env) -> Metric:
    """``n`` waiting processes all want to write X; time from the holder's release until the last turn ended."""
    p = env.params
    env.reset()
    x = "drain.x"
    times: dict[str, list[float]] = {lib: [] for lib in LIBS}
    gaps: dict[str, list[float]] = {lib: [] for lib in LIBS}
    work: dict[str, list[dict[str, float]]] = {lib: [] for lib in LIBS}
    workers = {lib: Workers(env.ctx, lib, env.url, p.drain_waiters) for lib in LIBS}
    try:
        for _ in range(p.drain_reps):
            for lib_name in LIBS:
                lib, w = env.libs[lib_name], workers[lib_name]
                holder = lib.job([], [x], duration=30)
                holder.start()
                w.send_all("turn", x)
                w.recv_all()
                if lib_name == JOBS_CORE:
                    env.wait_for_waiters(p.drain_waiters)
                time.sleep(0.3 if env.quick else 0.5)
                before = _calls(env)
                holder.stop()
                released = clock()
                ends = sorted(w.recv_all())
                work[lib_name].append(_per_turn(before, _calls(env), p.drain_waiters))
                times[lib_name].append(ends[-1] - released)
                gaps[lib_name].append(median([b - a for a, b in zip([released] + ends, ends)]))
    finally:
        for w in workers.values():
            w.close()
    stats = {lib: {"median_s": _r(median(v), 4), "max_s": _r(max(v), 4), "runs": len(v),
                   "median_turn_ms": _r(median(gaps[lib]) * 1e3),
                   **{k: median([w[k] for w in work[lib]]) for k in work[lib][0]}} for lib, v in times.items()}
    jc = stats[JOBS_CORE]["median_s"]
    return {"metric": "drain", "unit": "s", "waiters": p.drain_waiters, "jobs_core": jc,
            "jobspy": stats[JOBSPY]["median_s"], "goal": "<= 0.1", "met": jc <= 0.1, "details": stats}


# -- contention -----------------------------------------------------------------------------------

def contention(env: Env) -> Metric:
    """``procs`` processes x ``iterations`` jobs on one output, each bumping a counter non-atomically inside."""
    p = env.params
    env.reset()
    runs: dict[str, list[dict[str, Any]]] = {lib: [] for lib in LIBS}
    for rep in range(p.contention_reps):
        for lib_name in LIBS:
            counter, order = f"bench:counter:{lib_name}:{rep}", f"bench:order:{lib_name}:{rep}"
            with Workers(env.ctx, lib_name, env.url, p.contention_procs) as w:
                for i, conn in enumerate(w.conns):
                    conn.send(("contend", "contention.x", p.contention_iterations, counter, order, i))
                w.recv_all()
                before = _calls(env)
                go = clock()
                w.send_all("go")
                ends = w.recv_all(timeout=600)
                after = _calls(env)
            turns = [int(t) for t in env.client.lrange(order, 0, -1)]
            run = _fairness(turns, int(env.client.get(counter) or 0), ends, go, p)
            # each turn also runs GET, SET and RPUSH of the counter and the order list
            runs[lib_name].append({**run, **_per_turn(before, after, len(turns))})
    stats = {}
    for lib_name, rs in runs.items():
        stats[lib_name] = {
            "exact": all(r["exact"] for r in rs), "wall_s": _r(median([r["wall_s"] for r in rs])),
            "longest_streak": max(r["longest_streak"] for r in rs),
            "longest_streak_median": median([r["longest_streak"] for r in rs]),
            "share_min": _r(median([r["share_min"] for r in rs])),
            "share_max": _r(median([r["share_max"] for r in rs])),
            "first_done_frac": _r(median([r["first_done_frac"] for r in rs])),
            "scripts_per_turn": median([r["scripts_per_turn"] for r in rs]),
            "commands_per_turn": median([r["commands_per_turn"] for r in rs]), "runs": rs,
        }
    jc, jp = stats[JOBS_CORE], stats[JOBSPY]
    met = jc["exact"] and jc["wall_s"] <= jp["wall_s"] and jc["longest_streak"] <= 10
    summary = {lib: {k: s[k] for k in ("exact", "wall_s", "longest_streak")} for lib, s in stats.items()}
    return {"metric": "contention", "unit": "exact / wall s / longest streak", "processes": p.contention_procs,
            "iterations": p.contention_iterations, "jobs_core": summary[JOBS_CORE], "jobspy": summary[JOBSPY],
            "goal": "exact; wall <= jobspy; longest streak <= 10", "met": met, "details": stats}


def _fairness(turns: list[int], count: int, ends: list[float], go: float, p: Any) -> dict[str, Any]:
    """Exactness, wall time, longest run of turns by one process, shares of the first half of the turns."""
    expected = p.contention_procs * p.contention_iterations
    longest = run = 0
    for i, t in enumerate(turns):
        run = run + 1 if i and t == turns[i - 1] else 1
        longest = max(longest, run)
    half = Counter(turns[: len(turns) // 2])
    shares = [half.get(i, 0) / max(len(turns) // 2, 1) for i in range(p.contention_procs)]
    wall = max(ends) - go
    return {"exact": count == expected and len(turns) == expected, "count": count, "wall_s": _r(wall),
            "longest_streak": longest, "share_min": _r(min(shares)), "share_max": _r(max(shares)),
            "first_done_frac": _r((min(ends) - go) / wall)}


# -- a writer among relaying readers -----------------------------------------------------------------

def reader_relay(env: Env) -> Metric:
    """``relay_readers`` processes read one name in turns that overlap (each holds it ``relay_hold_s``),
    as many hourly jobs read one dimension table; a writer of it may wait ``relay_wait_s``. Time from
    its start() call until it starts, or None when its wait ran out."""
    p = env.params
    name = "relay.dim"
    took: dict[str, list[float | None]] = {lib: [] for lib in LIBS}
    reads: dict[str, list[int]] = {lib: [] for lib in LIBS}
    for _ in range(p.relay_reps):
        for lib_name in LIBS:
            env.reset()
            lib = env.libs[lib_name]
            env.client.set(lib.key(name), "seed")  # the table exists
            n = p.relay_readers
            until = clock() + 2 * p.relay_hold_s + p.relay_wait_s + 0.5
            with Workers(env.ctx, lib_name, env.url, n) as w:
                for i, conn in enumerate(w.conns):
                    conn.send(("relay", name, p.relay_hold_s, i * p.relay_hold_s / n, until))
                w.recv_all()
                time.sleep(2 * p.relay_hold_s)  # the readers relay
                writer = lib.job([], [name], wait=p.relay_wait_s)
                t0 = clock()
                try:
                    writer.start()
                    took[lib_name].append(clock() - t0)
                    writer.stop()
                except Exception:  # noqa: BLE001 - its wait ran out: both libraries raise their own error
                    took[lib_name].append(None)
                reads[lib_name].append(sum(w.recv_all(timeout=60)))
    stats = {}
    for lib_name, values in took.items():
        got = [v for v in values if v is not None]
        stats[lib_name] = {"started": f"{len(got)}/{len(values)}", "median_s": _r(median(got)) if got else None,
                           "max_s": _r(max(got)) if got else None, "reads": reads[lib_name]}
    jc = stats[JOBS_CORE]
    met = jc["max_s"] is not None and len([v for v in took[JOBS_CORE] if v is None]) == 0 and \
        jc["max_s"] <= p.relay_hold_s * 1.5
    return {"metric": "reader_relay", "unit": "s until the writer starts (None: its wait ran out)",
            "readers": p.relay_readers, "hold_s": p.relay_hold_s, "wait_s": p.relay_wait_s,
            "jobs_core": jc["median_s"], "jobspy": stats[JOBSPY]["median_s"],
            "goal": f"started within about one read ({p.relay_hold_s} s)", "met": met, "details": stats}


# -- asyncio ---------------------------------------------------------------------------------------

def async_cycles(env: Env) -> Metric:
    """Fresh start+stop cycles through AsyncCoordinator, many coroutines on distinct outputs, one loop.

    Interleaved in blocks with the same number of coroutines sending raw
    EVALSHA ``return 1``; also one coroutine alone, against one raw caller.
    """
    env.reset()
    _seed(env, ["async.in"])
    return asyncio.run(_async_cycles(env))


async def _async_cycles(env: Env) -> Metric:
    p = env.params
    client = redis.asyncio.Redis.from_url(env.url, socket_timeout=120)
    coordinator = observed(jobs_core.AsyncCoordinator(client, prefix=PREFIX[JOBS_CORE]))
    sha = await client.script_load("return 1")

    async def cycles(i: int, until: float) -> int:
        done = 0
        while clock() < until:
            async with coordinator.job(["async.in"], [f"async.out.{i}"], duration=60):
                pass
            done += 1
        return done

    async def raw(i: int, until: float) -> int:
        done = 0
        while clock() < until:
            await client.evalsha(sha, 0)
            done += 1
        return done

    async def rate(fn: Any, n: int) -> float:
        start = clock()
        counts = await asyncio.gather(*(fn(i, start + p.async_block_s) for i in range(n)))
        return sum(counts) / (clock() - start)

    out = {}
    for n in (p.async_coroutines, 1):
        await rate(cycles, n)  # warm-up: connections, scripts
        ratios, per_s, raw_per_s = [], [], []
        before = await rate(raw, n)
        for _ in range(p.async_rounds):
            c = await rate(cycles, n)
            after = await rate(raw, n)
            ratios.append(c / ((before + after) / 2 / 2))
            per_s.append(c)
            raw_per_s.append(after)
            before = after
        out[n] = {"cycles_per_s": round(median(per_s)), "ratio_to_floor": _r(median(ratios)),
                  "raw_evalsha_per_s": round(median(raw_per_s)), "coroutines": n}
    await coordinator.aclose()
    many = out[p.async_coroutines]
    return {"metric": "async_cycles", "unit": "cycles/s", "coroutines": p.async_coroutines,
            "jobs_core": many["cycles_per_s"], "jobspy": None, "goal": "report", "met": None,
            "ratio_to_floor": many["ratio_to_floor"], "raw_evalsha_per_s": many["raw_evalsha_per_s"],
            "single_coroutine": out[1]}
