"""One process of the limits stress test (tests/test_limits_stress.py): random jobs taking slots.

Run as ``python -m tests.limit_worker '<json settings>'``. Each job takes 1 or 2
slots of the limit ``pool`` (some also write an output, so that a job needs a
slot and a lock at once), waits up to a few seconds, holds a while and stops.
Every critical section is one JSON line with the server's clock (the
namespace's shard) read after the start returned (``enter``) and before the
stop was sent (``exit``), and the clock before the start was sent (``sent``):
the slots were surely held over ``[enter, exit]``. A few jobs let their lease
lapse (no heartbeat, a short lease, a long hold): for those only
``[enter, sent + lease]`` is sure.

With ``operator`` set, the process changes the limit's capacity instead, and
records each change between the server times before and after it.
"""

from __future__ import annotations

import json
import random
import sys
import time
import traceback
from typing import Any

import jobs_core
from jobs_core import LimitTooSmall, LockLost, ResourceUnavailable

LIMIT = "pool"
OUTPUTS = ["o0", "o1", "o2"]


def run_jobs(cfg: dict[str, Any], rnd: random.Random, out: Any) -> None:
    c = jobs_core.Coordinator.from_url(cfg["url"], cfg["prefix"])
    seq = 0
    while time.time() < cfg["until"]:
        seq += 1
        slots = rnd.choice([1, 1, 2])
        outputs = [rnd.choice(OUTPUTS)] if rnd.random() < 0.3 else []
        lapses = rnd.random() < 0.04
        lease = 0.3 if lapses else 5.0
        hold = 0.6 if lapses else min(rnd.expovariate(1 / 0.01), 0.1)
        rec: dict[str, Any] = {"proc": cfg["me"], "seq": seq, "slots": slots, "outputs": outputs, "lease": lease,
                               "lapses": lapses}
        job = c.job([], outputs, duration=lease, wait=rnd.choice([0.0, 1.0, 3.0]), heartbeat=not lapses,
                    limits={LIMIT: slots}, name=f"limits.p{cfg['me']}")
        rec["sent"] = c.server_time()
        try:
            job.start()
        except ResourceUnavailable as exc:
            out.write(json.dumps({**rec, "outcome": "unavailable", "reasons": exc.reasons}) + "\n")
            continue
        except LimitTooSmall:  # the operator lowered the capacity below its slots
            out.write(json.dumps({**rec, "outcome": "too_small", "reasons": {"limit_too_small": [LIMIT]}}) + "\n")
            continue
        rec["enter"], rec["token"], rec["waited"] = c.server_time(), job.token, job.waited
        time.sleep(hold)
        rec["exit"] = c.server_time()
        try:
            job.stop()
            rec["outcome"] = "written"
        except LockLost as exc:
            rec["outcome"], rec["lost"] = "lost", exc.lost
        out.write(json.dumps(rec) + "\n")
    c.close()


def run_operator(cfg: dict[str, Any], rnd: random.Random, out: Any) -> None:
    c = jobs_core.Coordinator.from_url(cfg["url"], cfg["prefix"])
    while time.time() < cfg["until"]:
        capacity = rnd.choice(cfg["capacities"])
        before = c.server_time()
        c.set_limit(LIMIT, capacity)
        out.write(json.dumps({"change": capacity, "before": before, "after": c.server_time()}) + "\n")
        time.sleep(rnd.uniform(0.1, 0.4))
    c.close()


def main(cfg: dict[str, Any]) -> None:
    rnd = random.Random(cfg["seed"])
    with open(cfg["out"], "w", encoding="utf-8") as out:
        delay = cfg["start"] - time.time()
        if delay > 0:
            time.sleep(delay)
        try:
            (run_operator if cfg.get("operator") else run_jobs)(cfg, rnd, out)
        except BaseException:
            out.write(json.dumps({"proc": cfg["me"], "error": traceback.format_exc()}) + "\n")
            raise


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
