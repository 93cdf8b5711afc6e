"""Several real processes contend for one output: the critical section is exclusive."""

from __future__ import annotations

import multiprocessing as mp

import pytest

import jobs_core

PROCESSES, ITERATIONS = 8, 200


def _worker(url: str, prefix: str, n: int) -> None:
    c = jobs_core.Coordinator.from_url(url, prefix)
    for _ in range(n):
        with c.job([], ["counter"], duration=10, wait=120):
            value = int(c.client.get(prefix + "count") or 0)  # read ...
            c.client.set(prefix + "count", value + 1)  # ... then write: lost updates if two get in


@pytest.mark.slow
@pytest.mark.parametrize("server", ["redis_server", "valkey_server"])
def test_counter_is_exact_under_contention(server, prefix, request):
    url = request.getfixturevalue(server).url
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(url, prefix, ITERATIONS)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    client = jobs_core.Coordinator.from_url(url, prefix).client
    assert int(client.get(prefix + "count")) == PROCESSES * ITERATIONS
    assert client.get(prefix + "olock:counter") is None
