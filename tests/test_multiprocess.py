"""Several real processes contend for one output: the critical section is exclusive."""

from __future__ import annotations

import multiprocessing as mp

import pytest

import jobs_core

PROCESSES, ITERATIONS = 8, 200


def _worker(url: str, prefix: str, n: int, me: int, barrier) -> None:
    c = jobs_core.Coordinator.from_url(url, prefix)
    barrier.wait(60)
    for _ in range(n):
        with c.job([], ["counter"], duration=10, wait=120):
            value = int(c.client.get(prefix + "count") or 0)  # read ...
            c.client.set(prefix + "count", value + 1)  # ... then write: lost updates if two get in
            c.client.rpush(prefix + "turns", me)


@pytest.mark.slow
@pytest.mark.parametrize("server", ["redis_server", "valkey_server"])
def test_counter_is_exact_under_contention(server, prefix, request):
    url = request.getfixturevalue(server).url
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=_worker, args=(url, prefix, ITERATIONS, i, barrier)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    client = jobs_core.Coordinator.from_url(url, prefix).client
    assert int(client.get(prefix + "count")) == PROCESSES * ITERATIONS
    assert client.get(prefix + "olock:counter") is None
    # waiting writers take turns in order: a process releasing the output queues behind the others
    turns = [int(t) for t in client.lrange(prefix + "turns", 0, -1)]
    middle = turns[len(turns) // 10: -len(turns) // 10]
    longest, run = 1, 1
    for a, b in zip(middle, middle[1:]):
        run = run + 1 if a == b else 1
        longest = max(longest, run)
    assert longest <= 3, longest
