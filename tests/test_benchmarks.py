"""The benchmark harness's quick mode runs and reports every metric, so the harness cannot rot.

It runs ``python -m benchmarks --quick`` in a subprocess (its own redis-server
on a free port) and checks the output, not the figures: a quick run on a
shared machine measures nothing worth asserting.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jobs", reason="jobspy 0.31 (the comparison) is in the dev extra")

from benchmarks import METRICS  # noqa: E402
from benchmarks.report import BEGIN, END  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    return []


@pytest.mark.slow
def test_quick_run_reports_every_metric(tmp_path: Path) -> None:
    report = tmp_path / "RESULTS.md"
    report.write_text(f"# Results\n\nhand-written notes\n\n{BEGIN}\nold\n{END}\n\nmore notes\n")
    plots = ["--plots", str(tmp_path / "plots")] if importlib.util.find_spec("matplotlib") else ["--no-plots"]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--server", "redis", "--report", str(report), *plots],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    metrics = [json.loads(line) for line in lines]
    assert [m["metric"] for m in metrics] == list(METRICS)
    by_name = {m["metric"]: m for m in metrics}
    for m in metrics:
        assert m["server"].startswith("redis "), m
        assert "goal" in m and "met" in m, m
        assert all(math.isfinite(n) for n in _numbers(m)), m
    for name in ("floor_ratio_1x1", "floor_ratio_10x10"):
        assert 0 < by_name[name]["jobs_core"] and 0 < by_name[name]["jobspy"], by_name[name]
    assert len(by_name["handoff_latency"]["jobs_core"]) == 2 and len(by_name["handoff_latency"]["jobspy"]) == 2
    assert by_name["contention"]["jobs_core"]["exact"] and by_name["contention"]["jobspy"]["exact"]
    for name in ("scaling_keys", "scaling_running", "scaling_waiters", "scaling_history"):
        for point in by_name[name]["points"]:
            assert point["jobs_core"] > 0 and point["jobspy"] > 0, (name, point)

    assert "| metric | jobs_core | jobspy | goal | met |" in proc.stdout
    text = report.read_text()
    assert text.startswith("# Results\n\nhand-written notes\n") and text.endswith("more notes\n")
    assert "old" not in text and "load before" in text and "python -m benchmarks --quick" in text
    if "--plots" in plots:
        for name in ("scaling_keys", "scaling_running", "scaling_waiters", "scaling_history", "memory"):
            assert (tmp_path / "plots" / f"{name}_redis.png").stat().st_size > 0


def test_the_observers_switch(redis7, monkeypatch) -> None:
    """``--observers`` (JOBS_BENCH_OBSERVERS): what the timed coordinators hear with, to measure its cost."""
    from benchmarks.libs import ENV_OBSERVERS, JobsCore, observers_mode

    for key in [k for k in os.environ if k.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv(ENV_OBSERVERS, "none")
    assert JobsCore(redis7.client()).coordinator.observers == ()
    monkeypatch.setenv(ENV_OBSERVERS, "default")
    assert [type(o).__name__ for o in JobsCore(redis7.client()).coordinator.observers] == ["MetricsObserver"]
    monkeypatch.setenv(ENV_OBSERVERS, "everything")
    with pytest.raises(ValueError, match="use one of none, default, sdk"):
        observers_mode()


@pytest.mark.slow
def test_observer_cost_runs() -> None:
    """``python -m benchmarks.observers`` (the figures of the README's Observability section) runs."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.observers", "--budget", "0.3"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("OPENLINEAGE")})
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert set(result["cycle_us"]) == {"none", "metrics", "metrics_sdk"}
    assert set(result["cycle_us_with_lineage"]) == {"none", "openlineage", "openlineage_job_thread"}
    assert set(result["library_code_us"]) == {"none", "metrics", "metrics_sdk", "openlineage",
                                              "openlineage_job_thread"}
    assert all(v > 0 for part in ("cycle_us", "library_code_us") for v in result[part].values())
    assert result["events_written"] > 0
