"""``--profile``: where a cycle's time goes, per Redis command (server) and per Python function (client)."""

from __future__ import annotations

import cProfile
import pstats
import sys
from collections.abc import Callable
from typing import Any

from .env import Env
from .headline import Metric, _names, _seed
from .libs import LIBS


def _commandstats(env: Env, fn: Callable[[], object], n: int) -> dict[str, dict[str, float]]:
    """Calls and server µs per call of ``fn`` for each command, EVALSHA included (INFO commandstats)."""
    env.client.config_resetstat()
    for _ in range(n):
        fn()
    stats = env.client.info("commandstats")
    out = {}
    for key, v in sorted(stats.items(), key=lambda kv: -kv[1]["usec"]):
        name = key.removeprefix("cmdstat_")
        if name in ("info",) or name.startswith("config"):
            continue
        out[name] = {"calls": round(v["calls"] / n, 2), "usec": round(v["usec"] / n, 2)}
    return out


def _python(fn: Callable[[], object], n: int, top: int = 15) -> list[dict[str, Any]]:
    """The functions with the most own time over ``n`` calls of ``fn`` (cProfile, so inflated)."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        fn()
    prof.disable()
    stats = pstats.Stats(prof)
    rows = []
    for (path, line, func), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = path.split("site-packages/")[-1].split("/work/main/")[-1]
        rows.append({"function": f"{short}:{line}({func})", "calls": round(calls / n, 2),
                     "own_us": round(tottime / n * 1e6, 2), "cum_us": round(cumtime / n * 1e6, 2)})
    rows.sort(key=lambda r: -r["own_us"])
    return rows[:top]


def profile(env: Env) -> Metric:
    """Per library, fresh 1x1 and 10x10 cycles: server time per command, then the hottest Python functions."""
    n = max(200, env.params.breakdown_cycles)
    out: Metric = {"metric": "profile", "cycles": n, "goal": "diagnosis", "met": None}
    for size in (1, 10):
        env.reset()
        inputs, outputs = _names("p.in", size), _names("p.out", size)
        _seed(env, inputs)
        for lib in LIBS:
            cycle = env.libs[lib].fresh_cycle(inputs, outputs)
            cycle()
            out.setdefault(lib, {})[f"{size}x{size}"] = {
                "server_per_cycle": _commandstats(env, cycle, n), "python_per_cycle": _python(cycle, n)}
    for lib in LIBS:
        for size, part in out[lib].items():
            print(f"\n== {lib} {size}: server µs per cycle, by command (INFO commandstats)", file=sys.stderr)
            for cmd, v in part["server_per_cycle"].items():
                print(f"   {cmd:24} {v['calls']:8.2f} calls {v['usec']:9.2f} µs", file=sys.stderr)
            print(f"== {lib} {size}: Python own µs per cycle under cProfile (inflated)", file=sys.stderr)
            for r in part["python_per_cycle"]:
                print(f"   {r['own_us']:8.2f} own {r['cum_us']:9.2f} cum {r['calls']:6.2f}x  {r['function']}",
                      file=sys.stderr)
    return out
