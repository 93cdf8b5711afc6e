"""Limits under stress: real processes take slots of one limit; never more than its capacity.

Each process (tests/limit_worker.py) records the server-time interval over
which its job surely held its slots; :func:`over_capacity` finds every moment
more slots were held than the capacity allowed. With a fixed capacity the
check is a sweep over the intervals. With an operator process changing the
capacity under load, each start is checked against the largest capacity that
may have been in effect while its start ran (``[sent, enter]``), counting the
slots of the jobs that surely held theirs all along that window: lowering the
capacity evicts nobody, so only starts are bound by it.

Runs on Redis (12 processes), and on a Redis Cluster and a Valkey Cluster.
"""

from __future__ import annotations

import collections
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import jobs_core

from .limit_worker import LIMIT
from .reliability import report

ROOT = Path(__file__).resolve().parent.parent


def sure(r: dict[str, Any]) -> tuple[float, float]:
    """The interval over which a job surely held its slots: from the start's return to the stop's
    call, or for a lease that lapsed, to the earliest it may have lapsed (its start, or the grant
    made for it, came after ``sent``)."""
    if r["outcome"] == "lost":
        return r["enter"], min(r["exit"], r["sent"] + r["lease"])
    return r["enter"], r["exit"]


def over_capacity(records: list[dict[str, Any]], capacity: int) -> list[str]:
    """Moments more slots than ``capacity`` were surely held (a sweep over the intervals)."""
    events = []
    for r in records:
        start, end = sure(r)
        events += [(start, 1, r["slots"], r), (end, 0, -r["slots"], r)]  # at a tie, ends first
    events.sort(key=lambda e: (e[0], e[1]))
    held, bad = 0, []
    for at, _, delta, r in events:
        held += delta
        if held > capacity:
            bad.append(f"{held} slots held at {at:.6f} (capacity {capacity}), after job {r['proc']}.{r['seq']}")
    return bad


def capacity_between(changes: list[dict[str, Any]], first: int, t1: float, t2: float) -> int:
    """The largest capacity that may have been in effect at some time in ``[t1, t2]``."""
    value, out = first, None
    for ch in sorted(changes, key=lambda c: c["before"]):
        if ch["after"] < t1:
            value = ch["change"]  # surely in effect before the window
        elif ch["before"] <= t2:
            out = max(out or 0, ch["change"], value)  # changed (perhaps) within the window
    return max(out or 0, value)


def starts_over_capacity(records: list[dict[str, Any]], changes: list[dict[str, Any]], first: int) -> list[str]:
    bad = []
    for r in records:
        others = sum(o["slots"] for o in records if o is not r and sure(o)[0] < r["sent"] and sure(o)[1] > r["enter"])
        cap = capacity_between(changes, first, r["sent"], r["enter"])
        if others + r["slots"] > cap:
            bad.append(f"job {r['proc']}.{r['seq']} started with {r['slots']} slots while {others} were held "
                       f"(capacity at most {cap})")
    return bad


def run(url: str, tmp: Path, processes: int, seconds: float, capacities: list[int] | None = None) -> dict[str, Any]:
    prefix = f"{{lim{secrets.token_hex(3)}}}:"
    admin = jobs_core.Coordinator.from_url(url, prefix)
    first = 4
    admin.set_limit(LIMIT, first)
    start = time.time() + 1.5 + processes * 0.1
    procs, outs = [], []
    for me in range(processes + (1 if capacities else 0)):
        out = tmp / f"limits{me}.jsonl"
        cfg = {"url": url, "prefix": prefix, "me": me, "seed": secrets.randbits(32), "start": start,
               "until": start + seconds, "out": str(out), "operator": me == processes, "capacities": capacities}
        procs.append(subprocess.Popen([sys.executable, "-m", "tests.limit_worker", json.dumps(cfg)], cwd=ROOT))
        outs.append(out)
    codes = [p.wait(timeout=seconds + 120) for p in procs]
    lines = [json.loads(line) for out in outs if out.exists() for line in out.read_text().splitlines()]
    errors = [r["error"] for r in lines if "error" in r]
    changes = [r for r in lines if "change" in r]
    records = [r for r in lines if "enter" in r]
    tried = [r for r in lines if "outcome" in r]
    if capacities:
        violations = starts_over_capacity(records, changes, first)
    else:
        violations = over_capacity(records, first)
    violations += [f"process error: {e}" for e in errors]
    violations += [f"worker {i} exited with {c}" for i, c in enumerate(codes) if c != 0]
    tokens = collections.Counter(r["token"] for r in records)
    violations += [f"token {t} given {n} times" for t, n in tokens.items() if n > 1]
    (info,) = admin.limits([LIMIT])
    if info.used:
        violations.append(f"{info.used} slots still held after every job stopped")
    if info.line:
        violations.append(f"{len(info.line)} jobs still in line")
    admin.remove_limit(LIMIT)
    admin.close()
    waits = sorted(r["waited"] for r in records if r["waited"])
    outcomes = collections.Counter(r["outcome"] for r in tried)
    return {
        "processes": processes, "seconds": seconds, "jobs_tried": len(tried), "jobs_run": len(records),
        "outcomes": dict(outcomes), "capacity_changes": len(changes),
        "waited_then_ran": len(waits), "wait_p50": waits[len(waits) // 2] if waits else None,
        "wait_max": waits[-1] if waits else None,
        "refused": dict(collections.Counter(k for r in tried if r["outcome"] == "unavailable" for k in r["reasons"])),
        "violations": len(violations), "violation_list": violations[:30],
    }


def stress(url: str, tmp: Path, name: str, processes: int, seconds: float, **kwargs: Any) -> dict[str, Any]:
    figures = run(url, tmp, processes, seconds, **kwargs)
    report(name, figures)
    assert figures["violations"] == 0, "\n".join(figures["violation_list"])
    # the workload did what it is meant to: jobs waited for slots, ran, some lapsed
    assert figures["jobs_run"] >= 20 * seconds, figures
    assert figures["waited_then_ran"] >= 10 and "limit_full" in figures["refused"], figures
    return figures


@pytest.mark.slow
def test_limit_stress_redis(redis_server, tmp_path):
    figures = stress(redis_server.url, tmp_path, "limits-stress", processes=12, seconds=8)
    assert figures["outcomes"].get("lost", 0) >= 1, figures  # lapsed leases: their slots went to others


@pytest.mark.slow
def test_limit_stress_with_capacity_changes(redis_server, tmp_path):
    figures = stress(redis_server.url, tmp_path, "limits-stress-capacity", processes=8, seconds=6,
                     capacities=[1, 2, 3, 5])
    assert figures["capacity_changes"] >= 10, figures


@pytest.mark.slow
@pytest.mark.parametrize("which", ["redis_cluster", "valkey_cluster"])
def test_limit_stress_on_a_cluster(request, which, tmp_path):
    cluster = request.getfixturevalue(which)
    stress(cluster.url, tmp_path, f"limits-stress-{which}", processes=6, seconds=5)


# -- the checkers find what they are meant to find ------------------------------------------------------


def _rec(slots: int, enter: float, exit: float, sent: float | None = None, outcome: str = "written",
         lease: float = 5.0) -> dict[str, Any]:
    return {"proc": 0, "seq": enter, "slots": slots, "enter": enter, "exit": exit, "outcome": outcome,
            "lease": lease, "sent": enter - 0.01 if sent is None else sent}


def test_checkers_find_planted_violations():
    fine = [_rec(2, 0, 1), _rec(2, 0.5, 1.5), _rec(2, 1.0, 2.0), _rec(1, 1.6, 3)]
    assert over_capacity(fine, 4) == []
    assert over_capacity(fine + [_rec(1, 0.6, 0.7)], 4)  # 5 slots at 0.6
    lapsed = [_rec(2, 0, 5, outcome="lost", lease=0.3), _rec(2, 0.5, 1), _rec(2, 0.6, 1)]
    assert over_capacity(lapsed, 4) == []  # the lapsed holder's slots ended with its lease
    changes = [{"change": 1, "before": 0.9, "after": 0.95}]
    assert starts_over_capacity([_rec(2, 0, 2), _rec(1, 1.5, 2, sent=1.2)], changes, first=4)  # 3 > 1
    assert starts_over_capacity([_rec(2, 0, 2), _rec(1, 0.5, 2, sent=0.4)], changes, first=4) == []  # before it
    assert starts_over_capacity([_rec(2, 0, 2), _rec(1, 0.96, 2, sent=0.92)], changes, first=4) == []  # unsure
