"""What one benchmark run needs: its sizes (quick or full), the server, clients and worker context."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from .libs import JOBS_CORE, JOBSPY, JobsCore, JobsPy, make_client
from .workers import context


@dataclass(frozen=True)
class Params:
    """Sizes and time budgets of every metric; ``QUICK`` runs in seconds, ``FULL`` in minutes."""

    block_s: float              # one interleaved block
    floor_budget_s: float       # per floor-ratio size
    breakdown_cycles: int       # cycles per commandstats sample
    handoff_trials: int         # per library
    handoff_settle_s: float     # the holder waits this (plus jitter) before releasing
    idle_many: int              # the "many waiters" of idle_waiter_load_many
    idle_window_s: float        # jobspy's waiters, and the holder alone
    idle_window_jobs_core_s: float  # jobs_core's waiters: two of their 10-s quiet sleeps, and a bit
    drain_waiters: int
    drain_reps: int
    contention_procs: int
    contention_iterations: int
    contention_reps: int
    relay_readers: int          # processes reading one name in turns that overlap
    relay_hold_s: float         # how long each of their reads holds it
    relay_wait_s: float         # how long the writer among them may wait
    relay_reps: int
    limit_procs: int            # processes sharing one limit
    limit_capacity: int
    limit_jobs: int             # jobs per process
    limit_hold_s: float         # how long each holds its slot
    async_coroutines: int
    async_block_s: float
    async_rounds: int
    point_budget_s: float       # per point of a scaling curve
    keys_points: tuple[int, ...]
    running_points: tuple[int, ...]
    waiter_points: tuple[int, ...]
    history_points: tuple[int, ...]
    memory_jobs: int


QUICK = Params(
    block_s=0.004, floor_budget_s=0.25, breakdown_cycles=50, handoff_trials=20, handoff_settle_s=0.01,
    idle_many=5, idle_window_s=0.3, idle_window_jobs_core_s=0.3, drain_waiters=5, drain_reps=1,
    contention_procs=4, contention_iterations=20, contention_reps=1,
    relay_readers=3, relay_hold_s=0.1, relay_wait_s=1.0, relay_reps=1,
    limit_procs=4, limit_capacity=2, limit_jobs=5, limit_hold_s=0.005,
    async_coroutines=20, async_block_s=0.05, async_rounds=2,
    point_budget_s=0.05, keys_points=(1, 10, 100), running_points=(0, 100, 1000), waiter_points=(0, 1, 10),
    history_points=(0, 1000), memory_jobs=200,
)

FULL = Params(
    block_s=0.01, floor_budget_s=8.0, breakdown_cycles=1000, handoff_trials=240, handoff_settle_s=0.02,
    idle_many=50, idle_window_s=3.0, idle_window_jobs_core_s=21.0, drain_waiters=50, drain_reps=5,
    contention_procs=8, contention_iterations=200, contention_reps=3,
    relay_readers=4, relay_hold_s=0.4, relay_wait_s=4.0, relay_reps=3,
    limit_procs=16, limit_capacity=4, limit_jobs=50, limit_hold_s=0.02,
    async_coroutines=100, async_block_s=0.3, async_rounds=10,
    point_budget_s=1.0, keys_points=(1, 2, 10, 30, 100, 300, 1000),
    running_points=(0, 10, 100, 1000, 10_000, 100_000), waiter_points=(0, 1, 10, 100, 1000),
    history_points=(0, 1000, 10_000, 100_000), memory_jobs=5000,
)


class Env:
    """One server under test, the main process's client on it, both libraries, the worker context."""

    def __init__(self, kind: str, url: str, params: Params, quick: bool) -> None:
        self.kind = kind
        self.url = url
        self.params = params
        self.quick = quick
        self.client: redis.Redis = make_client(url)
        info = self.client.info("server")
        version = info.get("valkey_version") or info["redis_version"]
        self.server = f"{'valkey' if 'valkey_version' in info else 'redis'} {version}"
        self.libs: dict[str, Any] = {JOBS_CORE: JobsCore(self.client), JOBSPY: JobsPy(self.client)}
        self.ctx = context()

    def reset(self) -> None:
        """Empty the server (ours, started for this run) between metrics.

        SYNC: Valkey frees a plain FLUSHALL in the background by default
        (lazyfree-lazy-user-flush), which would skew the next memory reading.
        """
        self.client.execute_command("FLUSHALL", "SYNC")

    def commands(self) -> int:
        """Commands the server has executed, scripts' own calls included."""
        return int(self.client.info("stats")["total_commands_processed"])

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def wait_for_waiters(self, n: int, timeout: float = 60.0) -> bool:
        """Until ``n`` jobs_core jobs are recorded as waiting (each subscribed and past its first retry)."""
        coordinator = self.libs[JOBS_CORE].coordinator
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(coordinator.waiting_jobs()) >= n:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.client.close()
