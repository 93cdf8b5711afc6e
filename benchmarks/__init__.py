"""Benchmarks of jobs_core against jobspy 0.31 (module ``jobs``) on real Redis and Valkey servers.

Run ``python -m benchmarks`` (``--quick`` for a few-seconds smoke run, ``--server
redis|valkey|both``, ``--help`` for the rest). Every figure is a ratio or a
comparison measured in one run, interleaved in small blocks with what it is
compared to, because the machines this runs on are shared and noisy. Output:
one JSON line per metric on stdout, then a markdown table; plots go to
``benchmarks/plots/*.png`` and the recorded results to ``benchmarks/RESULTS.md``.
"""

#: Every metric the harness emits (one JSON line each, per server), in output order.
HEADLINE = (
    "floor_ratio_1x1",
    "floor_ratio_10x10",
    "cycle_breakdown",
    "handoff_latency",
    "idle_waiter_load_1",
    "idle_waiter_load_many",
    "drain",
    "contention",
    "reader_relay",
    "async_cycles",
    "limit_share",
    "limit_cycle",
)
SCALING = (
    "scaling_keys",
    "scaling_running",
    "scaling_waiters",
    "scaling_history",
    "memory",
)
METRICS = HEADLINE + SCALING
