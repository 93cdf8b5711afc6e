"""Timing on a noisy machine: small blocks, interleaved with the baseline, medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

clock = time.perf_counter  # CLOCK_MONOTONIC on Linux: one clock for every process of the machine


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100), interpolating between the two nearest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * p / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def run_block(fn: Callable[[], object], n: int) -> float:
    """Seconds per call of ``fn`` over ``n`` calls."""
    start = clock()
    for _ in range(n):
        fn()
    return (clock() - start) / n


def calibrate(fn: Callable[[], object], block_s: float) -> int:
    """How many calls of ``fn`` make a block of about ``block_s`` seconds (after a warm-up)."""
    n, spent = 0, 0.0
    start = clock()
    while n < 3 or (spent < max(block_s, 0.01) and n < 100_000):
        fn()
        n += 1
        spent = clock() - start
    return max(1, round(block_s / (spent / n)))


@dataclass
class Interleaved:
    """Per-call seconds of each function, one figure per round, and each one's ratio to the baseline."""

    baseline: str
    seconds: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        return min((len(r) for r in self.ratios.values()), default=0)

    def us(self, name: str) -> float:
        """Median microseconds per call."""
        return median(self.seconds[name]) * 1e6

    def ratio(self, name: str) -> float:
        """Median over rounds of ``baseline_calls_per_op * baseline_seconds / seconds``."""
        return median(self.ratios[name])


def interleave(fns: dict[str, Callable[[], object]], *, baseline: str, budget_s: float, block_s: float,
               baseline_calls: float = 2.0, min_rounds: int = 3) -> Interleaved:
    """Time every function in small blocks, each block between two blocks of the baseline.

    A round runs ``baseline, f1, baseline, f2, ..., baseline`` (the order of the
    others rotating each round); each function's ratio for the round is
    ``baseline_calls * t_baseline / t_function`` with ``t_baseline`` the mean
    of the two baseline blocks around it, so a change of machine speed
    between rounds cancels out. ``baseline_calls=2`` makes the ratio the
    round-trip floor ratio: a start+stop cycle is two round trips.
    """
    others = [name for name in fns if name != baseline]
    sizes = {name: calibrate(fn, block_s) for name, fn in fns.items()}
    result = Interleaved(baseline, {name: [] for name in fns}, {name: [] for name in others})
    base_fn, base_n = fns[baseline], sizes[baseline]
    deadline = clock() + budget_s
    rounds = 0
    while rounds < min_rounds or clock() < deadline:
        shift = rounds % max(len(others), 1)
        order = others[shift:] + others[:shift]
        before = run_block(base_fn, base_n)
        result.seconds[baseline].append(before)
        for name in order:
            t = run_block(fns[name], sizes[name])
            after = run_block(base_fn, base_n)
            result.seconds[baseline].append(after)
            result.seconds[name].append(t)
            result.ratios[name].append(baseline_calls * (before + after) / 2 / t)
            before = after
        rounds += 1
    return result
