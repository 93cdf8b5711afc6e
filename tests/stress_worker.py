"""One process of the stress test (tests/test_stress.py): random jobs until a deadline.

Run as ``python -m tests.stress_worker '<json settings>'``. Every critical section
is recorded, one JSON line per job in the ``out`` file, with the server's clock
(``TIME``) read after the start returned and before the stop was sent, so the
recorded interval lies inside the time the locks were really held; the
checker in tests/test_stress.py then looks for overlaps.

Inside each critical section the worker also acts as a careful user would:

* a writer checks the fencing token against the "storage" record of each output
  (``stress:<prefix>data:<name>``: ``"<token> <job> <state>"``), marks it
  ``writing``, and at the end ``done`` (or ``aborted`` when the job fails);
  it also bumps a per-output counter non-atomically (GET, then SET), which
  loses updates if two writers ever overlap;
* a reader checks that each input exists, that its storage record is not being
  written and carries an older token, and that it is unchanged when it is done.

What it finds wrong goes into the job's ``violations``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import traceback
from typing import Any

import redis

import jobs_core
from jobs_core import LockLost, ResourceUnavailable

#: Outputs every writer may write (and readers read).
SHARED = [f"s{i}" for i in range(6)]
#: Outputs written only by jobs with overwrite=False: at most one successful writer each.
ONCE = [f"once{i}" for i in range(8)]


def data_key(prefix: str, name: str) -> str:
    return f"stress:{prefix}data:{name}"


def count_key(prefix: str, name: str) -> str:
    return f"stress:{prefix}count:{name}"


def server_time(client: Any) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def plan(rnd: random.Random) -> dict[str, Any]:
    """A random job: readers, writers (some reading too), and overwrite=False writers."""
    roll = rnd.random()
    overwrite = True
    if roll < 0.42:
        outputs = rnd.sample(SHARED, rnd.choice([1, 1, 2]))
        inputs = rnd.sample([n for n in SHARED if n not in outputs], rnd.choice([0, 0, 1, 2]))
    elif roll < 0.52:
        outputs, overwrite = [rnd.choice(ONCE)], False
        inputs = rnd.sample(SHARED, rnd.choice([0, 1]))
    else:
        outputs = []
        inputs = rnd.sample(SHARED + ONCE[:3], rnd.choice([1, 2, 3]))
    hold = min(rnd.expovariate(1 / 0.01), 0.2)
    if rnd.random() < 0.03:
        hold = rnd.uniform(0.4, 1.0)  # a long job: others queue and wait for it
    return {
        "inputs": inputs, "outputs": outputs, "overwrite": overwrite,
        "lease": round(rnd.uniform(2.0, 6.0), 3),
        "wait": 0.0 if rnd.random() < 0.4 else round(rnd.uniform(0.2, 3.0), 3),
        "hold": hold, "fail": rnd.random() < 0.15,
    }


def parse_data(value: Any) -> tuple[int, str, str] | None:
    if value is None:
        return None
    token, job, state = value.decode().split(" ")
    return int(token), job, state


def enter(client: Any, prefix: str, rec: dict[str, Any]) -> dict[str, Any]:
    """Record the entry and do the checks a reader or writer makes on the way in."""
    rec["enter"] = server_time(client)
    token, job, bad = rec["token"], rec["job"], rec["violations"]
    seen = {}
    for n in rec["inputs"]:
        if client.get(prefix + n) is None:
            bad.append(f"input {n} does not exist inside the critical section")
        raw = client.get(data_key(prefix, n))
        seen[n] = raw
        data = parse_data(raw)
        if data and data[2] == "writing":
            bad.append(f"input {n} is being written by {data[1]} (token {data[0]}) while read")
        if data and data[0] >= token:
            bad.append(f"input {n} carries token {data[0]} >= the reader's {token}")
    for n in rec["outputs"]:
        data = parse_data(client.get(data_key(prefix, n)))
        if data and data[0] >= token:
            bad.append(f"storage of {n} refuses token {token}: it holds {data[0]} from {data[1]}")
        if data and data[2] == "writing":
            bad.append(f"output {n} is still being written by {data[1]} (token {data[0]})")
        client.set(data_key(prefix, n), f"{token} {job} writing")
    return seen


def leave(client: Any, prefix: str, rec: dict[str, Any], seen: dict[str, Any]) -> None:
    """The checks and writes on the way out, then record the exit."""
    for n in rec["inputs"]:
        if client.get(data_key(prefix, n)) != seen[n]:
            rec["violations"].append(f"input {n} changed while it was read")
    for n in rec["outputs"]:
        count = int(client.get(count_key(prefix, n)) or 0)  # read ...
        client.set(count_key(prefix, n), count + 1)  # ... then write: a lost update if writers overlap
        state = "aborted" if rec["fail"] else "done"
        client.set(data_key(prefix, n), f"{rec['token']} {rec['job']} {state}")
    rec["exit"] = server_time(client)


def record(spec: dict[str, Any], me: int, seq: int, api: str) -> dict[str, Any]:
    return {"proc": me, "seq": seq, "api": api, **{k: spec[k] for k in
            ("inputs", "outputs", "overwrite", "lease", "wait", "fail")}, "violations": []}


def run_sync(cfg: dict[str, Any], rnd: random.Random, out: Any) -> None:
    prefix, me = cfg["prefix"], cfg["me"]
    client = redis.Redis.from_url(cfg["url"])
    coordinator = jobs_core.Coordinator.from_url(cfg["url"], prefix)
    jobs_core.GLOBAL_PREFIX = prefix  # the compat API's namespace
    seq = 0
    while time.time() < cfg["until"]:
        spec, seq = plan(rnd), seq + 1
        rec = record(spec, me, seq, cfg["api"])
        if cfg["api"] == "compat":
            manager = jobs_core.ResourceManager(spec["inputs"], spec["outputs"], spec["lease"], spec["wait"],
                                                spec["overwrite"], conn=client, identifier=f"stress.p{me}.compat")
            rec["job"] = manager.identifier
            try:
                manager.start(auto_refresh=True)
            except ResourceUnavailable as exc:
                out.write(json.dumps({**rec, "outcome": "unavailable", "reasons": exc.args[0]}) + "\n")
                continue
            rec["token"] = manager._job.token  # the compat API does not show the token; the job does
            rec["blocked"] = bool(manager._job.blockers)
            stop = manager.stop
        elif cfg.get("sabotage") and (spec["outputs"] or me % 2 == 0):
            # a rogue writer that takes no lock (to show the checker catches one): it reuses the last
            # token and writes its outputs the way a client ignoring the locks would; every job of an
            # even process is one, the odd processes also run honest readers
            rec["job"] = f"stress.p{me}.rogue.{seq}"
            rec["inputs"] = [n for n in rec["inputs"] if n != "s0"]
            rec["outputs"] = [n for n in dict.fromkeys(["s0", *rec["outputs"]]) if n not in rec["inputs"]]
            spec["hold"] = 0.2  # every rogue writes s0 for a while: they run into each other
            rec["token"] = int(client.get(prefix + "jobs:token") or 0)

            def stop(failed: bool, rec: dict[str, Any] = rec) -> None:
                if not failed:
                    client.mset({prefix + n: rec["job"] for n in rec["outputs"]})
        else:
            job = coordinator.job(spec["inputs"], spec["outputs"], duration=spec["lease"], wait=spec["wait"],
                                  overwrite=spec["overwrite"], name=f"stress.p{me}")
            rec["job"] = job.id
            try:
                job.start()
            except ResourceUnavailable as exc:
                out.write(json.dumps({**rec, "outcome": "unavailable", "reasons": exc.args[0],
                                      "waited": exc.waited}) + "\n")
                continue
            rec["token"], rec["blocked"] = job.token, bool(job.blockers)
            stop = job.stop
        seen = enter(client, prefix, rec)
        time.sleep(spec["hold"])
        leave(client, prefix, rec, seen)
        try:
            stop(failed=spec["fail"])
            rec["outcome"] = "failed" if spec["fail"] else "written"
        except LockLost as exc:
            rec["outcome"], rec["lost"] = "lost", exc.lost
        out.write(json.dumps(rec) + "\n")
    coordinator.close()


async def run_async(cfg: dict[str, Any], rnd: random.Random, out: Any) -> None:
    import redis.asyncio

    prefix, me = cfg["prefix"], cfg["me"]
    client = redis.Redis.from_url(cfg["url"])  # recording and storage: short blocking calls
    coordinator = jobs_core.AsyncCoordinator(redis.asyncio.Redis.from_url(cfg["url"]), prefix)
    seq = 0
    while time.time() < cfg["until"]:
        spec, seq = plan(rnd), seq + 1
        rec = record(spec, me, seq, "async")
        job = coordinator.job(spec["inputs"], spec["outputs"], duration=spec["lease"], wait=spec["wait"],
                              overwrite=spec["overwrite"], name=f"stress.p{me}.async")
        rec["job"] = job.id
        try:
            await job.start()
        except ResourceUnavailable as exc:
            out.write(json.dumps({**rec, "outcome": "unavailable", "reasons": exc.args[0],
                                  "waited": exc.waited}) + "\n")
            continue
        rec["token"], rec["blocked"] = job.token, bool(job.blockers)
        seen = enter(client, prefix, rec)
        await asyncio.sleep(spec["hold"])
        leave(client, prefix, rec, seen)
        try:
            await job.stop(failed=spec["fail"])
            rec["outcome"] = "failed" if spec["fail"] else "written"
        except LockLost as exc:
            rec["outcome"], rec["lost"] = "lost", exc.lost
        out.write(json.dumps(rec) + "\n")
    await coordinator.aclose()


def main(cfg: dict[str, Any]) -> None:
    rnd = random.Random(cfg["seed"])
    with open(cfg["out"], "w", encoding="utf-8") as out:
        delay = cfg["start"] - time.time()
        if delay > 0:
            time.sleep(delay)  # every process begins together
        try:
            if cfg["api"] == "async":
                asyncio.run(run_async(cfg, rnd, out))
            else:
                run_sync(cfg, rnd, out)
        except BaseException:
            out.write(json.dumps({"proc": cfg["me"], "error": traceback.format_exc()}) + "\n")
            raise


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
