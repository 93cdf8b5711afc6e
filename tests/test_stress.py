"""Stress: many real processes run random readers and writers over overlapping names.

Each process (tests/stress_worker.py) records every critical section with the
server's clock and its fencing token; :func:`check` then verifies, over all of
them: never two writers of one name at once, never a reader while a writer
holds the name, fencing tokens unique and growing in the order the critical
sections of one name ran (and in each process), every output's value (and its
facts) that of the last successful writer, at most one successful writer of an
overwrite=False output, exact non-atomic counters, and whatever the workers
saw inside their critical sections (storage records being written, refused
tokens, inputs changing under a reader).

CI runs 16 processes for about 12 s; ``-m long`` runs 32 for three minutes.
"""

from __future__ import annotations

import bisect
import collections
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from .reliability import report
from .stress_worker import ONCE, SHARED, count_key

ROOT = Path(__file__).resolve().parent.parent


def check(records: list[dict[str, Any]], values: dict[str, str | None], facts: dict[str, Any],
          counts: dict[str, int]) -> list[str]:
    """Every violation of the locking rules found in the recorded critical sections.

    ``values`` are the outputs' values at the end, ``facts`` their decoded
    ``jobs:output:<name>`` records and ``counts`` the non-atomic counters.
    """
    bad: list[str] = []
    started = [r for r in records if "token" in r]
    for r in records:
        bad += [f"{r.get('job')}: {v}" for v in r.get("violations", ())]
        if "error" in r:
            bad.append(f"process {r['proc']} failed: {r['error']}")
    tokens = collections.Counter(r["token"] for r in started)
    bad += [f"token {t} given to {n} starts" for t, n in tokens.items() if n > 1]
    by_proc: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in started:
        by_proc[r["proc"]].append(r)
        if not r["enter"] <= r["exit"]:
            bad.append(f"{r['job']}: exit before entry")
    for proc, rs in by_proc.items():
        rs.sort(key=lambda r: r["seq"])
        bad += [f"process {proc}: token {a['token']} then {b['token']}" for a, b in zip(rs, rs[1:])
                if a["token"] >= b["token"]]
    for name in SHARED + ONCE:
        writers = sorted((r for r in started if name in r["outputs"]), key=lambda r: r["enter"])
        readers = [r for r in started if name in r["inputs"]]
        longest = None  # the writer with the latest exit so far
        for w in writers:
            if longest is not None:
                if w["enter"] < longest["exit"]:
                    bad.append(f"{name}: writers {longest['job']} and {w['job']} at once "
                               f"({w['enter']:.6f} < {longest['exit']:.6f})")
                elif w["token"] <= longest["token"]:
                    bad.append(f"{name}: writer {w['job']} came later with an older token")
            if longest is None or w["exit"] > longest["exit"]:
                longest = w
        enters = [w["enter"] for w in writers]
        for r in readers:
            i = bisect.bisect_left(enters, r["exit"])  # writers[:i] entered before the reader left
            if i and writers[i - 1]["exit"] > r["enter"]:
                bad.append(f"{name}: reader {r['job']} while writer {writers[i - 1]['job']} held it")
            if i and writers[i - 1]["token"] > r["token"]:
                bad.append(f"{name}: reader {r['job']} has an older token than the writer before it")
            if i < len(writers) and writers[i]["token"] < r["token"]:
                bad.append(f"{name}: reader {r['job']} has a newer token than the writer after it")
        written = [w for w in writers if w["outcome"] == "written"]
        last = max(written, key=lambda w: w["token"]) if written else None
        if values.get(name) != (last and last["job"]):
            bad.append(f"{name}: value {values.get(name)!r}, last successful writer {last and last['job']!r}")
        if last and (facts.get(name) or {}).get("token") != last["token"]:
            bad.append(f"{name}: facts {facts.get(name)!r} do not name token {last['token']}")
        if counts.get(name, 0) != len(writers):
            bad.append(f"{name}: counter {counts.get(name, 0)} after {len(writers)} writers (lost updates)")
        if name in ONCE:
            if len(written) > 1:
                bad.append(f"{name}: written {len(written)} times although every writer had overwrite=False")
            if any(w["overwrite"] for w in writers):
                bad.append(f"{name}: a writer with overwrite=True (the workload is wrong)")
    return bad


def run(url: str, prefix: str, tmp: Path, processes: int, seconds: float, sabotage: bool = False
        ) -> dict[str, Any]:
    """Run the workload; return the figures (with the violations)."""
    apis = ["sync"] * processes
    if not sabotage:  # (only the sync workers have rogue writers)
        apis[1::8] = ["async"] * len(apis[1::8])
        apis[2::8] = ["compat"] * len(apis[2::8])
    start = time.time() + 1.5 + processes * 0.1  # time for every interpreter to come up
    procs, outs = [], []
    for me, api in enumerate(apis):
        out = tmp / f"worker{me}.jsonl"
        cfg = {"url": url, "prefix": prefix, "me": me, "seed": secrets.randbits(32), "api": api,
               "start": start, "until": start + seconds, "out": str(out), "sabotage": sabotage}
        procs.append(subprocess.Popen([sys.executable, "-m", "tests.stress_worker", json.dumps(cfg)], cwd=ROOT))
        outs.append(out)
    codes = [p.wait(timeout=seconds + 120) for p in procs]
    records = [json.loads(line) for out in outs if out.exists() for line in out.read_text().splitlines()]
    client = redis.Redis.from_url(url)
    names = SHARED + ONCE
    values = dict(zip(names, (v and v.decode() for v in client.mget([prefix + n for n in names]))))
    facts = dict(zip(names, (v and json.loads(v) for v in client.mget([prefix + "jobs:output:" + n for n in names]))))
    counts = dict(zip(names, (int(v or 0) for v in client.mget([count_key(prefix, n) for n in names]))))
    violations = check(records, values, facts, counts)
    violations += [f"worker {i} exited with {c}" for i, c in enumerate(codes) if c != 0]
    leftovers = [k.decode() for pattern in ("olock:*", "ilock:*") for k in client.keys(prefix + pattern)]
    leftovers += [f"running: {m.decode()}" for m in client.zrange(prefix + "jobs:running", 0, -1)]
    violations += [f"lock left after every job stopped: {k}" for k in leftovers]
    client.delete(*[count_key(prefix, n) for n in names], *[f"stress:{prefix}data:{n}" for n in names])
    client.close()

    started = [r for r in records if "token" in r]
    outcomes = collections.Counter(r.get("outcome", "error") for r in records)
    unavailable = collections.Counter(reason for r in records if r.get("outcome") == "unavailable"
                                      for reason in r["reasons"])
    return {
        "processes": processes, "seconds": seconds, "apis": dict(collections.Counter(apis)),
        "jobs_tried": len(records), "jobs_run": len(started), "outcomes": dict(outcomes),
        "readers_run": sum(1 for r in started if not r["outputs"]),
        "writers_run": sum(1 for r in started if r["outputs"]),
        "overwrite_false_run": sum(1 for r in started if not r["overwrite"]),
        "waited_then_ran": sum(1 for r in started if r.get("blocked")),
        "waited_then_gave_up": sum(1 for r in records if r.get("outcome") == "unavailable" and r.get("waited")),
        "refused_reasons": dict(unavailable),
        "max_token": max((r["token"] for r in started), default=0),
        "violations": len(violations), "violation_kinds": kinds(violations), "violation_list": violations[:50],
    }


KINDS = {"writers at once": "at once", "reader during a writer": "while writer", "lost updates": "lost updates",
         "duplicate tokens": "starts", "token order": "token", "final values": "value", "inside a section": ": "}


def kinds(violations: list[str]) -> dict[str, int]:
    """How many violations of each kind (the first kind whose words appear)."""
    counts: dict[str, int] = {}
    for v in violations:
        kind = next((k for k, words in KINDS.items() if words in v), "other")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def stress(redis_server: Any, tmp_path: Path, processes: int, seconds: float, name: str) -> dict[str, Any]:
    prefix = f"stress{secrets.token_hex(3)}:"
    figures = run(redis_server.url, prefix, tmp_path, processes, seconds)
    report(name, figures)
    assert figures["violations"] == 0, "\n".join(figures["violation_list"])
    # the workload did what it is meant to: enough jobs of every kind, waits, failures
    assert figures["jobs_run"] >= 100 * seconds / 12, figures
    assert figures["overwrite_false_run"] >= 1 and figures["waited_then_ran"] >= 5, figures
    assert figures["outcomes"].get("failed", 0) >= 5 and figures["outcomes"].get("written", 0) >= 20, figures
    assert figures["outcomes"].get("lost", 0) == 0, figures  # leases of 2-6 s never lapse under a heartbeat
    assert {"output_locked", "output_used", "input_missing"} <= set(figures["refused_reasons"]), figures
    return figures


@pytest.mark.slow
def test_stress(redis_server, tmp_path):
    stress(redis_server, tmp_path, processes=16, seconds=12, name="stress")


@pytest.mark.long
@pytest.mark.timeout(3600)  # the project's 300 s limit is for the CI-sized runs
def test_stress_long(redis_server, tmp_path):
    seconds = float(os.environ.get("JOBS_STRESS_SECONDS", 180))
    stress(redis_server, tmp_path, processes=int(os.environ.get("JOBS_STRESS_PROCESSES", 32)), seconds=seconds,
           name="stress-long")


# -- the checker finds what it is meant to find ------------------------------------------------------


@pytest.mark.slow
def test_stress_catches_a_writer_that_takes_no_lock(redis_server, tmp_path):
    """The same harness, with rogue writers that take no lock (every job of two of the four processes,
    and every writer of the other two; their readers still lock): violations are found, of every kind
    the overlaps produce."""
    figures = run(redis_server.url, f"rogue{secrets.token_hex(3)}:", tmp_path, processes=4, seconds=4,
                  sabotage=True)
    report("stress-sabotaged", {k: figures[k] for k in ("jobs_tried", "jobs_run", "violations", "violation_kinds")})
    found = figures["violation_kinds"]
    overlaps = sum(found.get(k, 0) for k in ("writers at once", "reader during a writer", "lost updates"))
    assert found.get("duplicate tokens") and overlaps, found


def _rec(job: str, token: int, enter: float, exit: float, inputs=(), outputs=(), outcome="written", proc=0,
         seq=0) -> dict[str, Any]:
    return {"job": job, "token": token, "enter": enter, "exit": exit, "inputs": list(inputs),
            "outputs": list(outputs), "outcome": outcome, "overwrite": True, "proc": proc, "seq": seq,
            "violations": []}


def test_checker_finds_planted_violations():
    good = [_rec("w1", 1, 0.0, 1.0, outputs=["s0"], seq=1), _rec("r1", 2, 1.5, 2.0, inputs=["s0"], seq=2),
            _rec("w2", 3, 2.5, 3.0, outputs=["s0"], outcome="failed", seq=3)]
    clean = {"s0": "w1"}
    facts = {"s0": {"job": "w1", "token": 1}}
    assert check(good, clean, facts, {"s0": 2}) == []

    def found(records, values=clean, counts=None):
        return check(records, values, facts, counts or {"s0": sum("s0" in r["outputs"] for r in records)})

    overlap = good + [_rec("w3", 4, 0.5, 0.7, outputs=["s0"], outcome="failed", proc=1)]
    assert any("writers w1 and w3 at once" in v for v in found(overlap))
    reader = good + [_rec("r2", 4, 2.6, 2.7, inputs=["s0"], proc=1)]
    assert any("reader r2 while writer w2" in v for v in found(reader))
    assert any("value 'w2'" in v for v in found(good, {"s0": "w2"}))
    assert any("lost updates" in v for v in found(good, counts={"s0": 1}))
    assert any("token 2 given to 2 starts" in v for v in found(good + [_rec("x", 2, 5, 6, proc=2)]))
    backwards = [_rec("w1", 5, 0.0, 1.0, outputs=["s0"], seq=1), _rec("w2", 3, 2.0, 3.0, outputs=["s0"], seq=2,
                                                                         outcome="failed")]
    assert any("older token" in v for v in check(backwards, {"s0": "w1"}, {"s0": {"token": 5}}, {"s0": 2}))
    once = [_rec("o1", 1, 0, 1, outputs=["once0"]), _rec("o2", 2, 2, 3, outputs=["once0"], proc=1)]
    for r in once:
        r["overwrite"] = False
    assert any("written 2 times" in v for v in check(once, {"once0": "o2"}, {"once0": {"token": 2}}, {"once0": 2}))
