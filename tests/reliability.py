"""Shared by the reliability suites (stress, model, faults): long mode and figures.

Tests marked ``long`` are deselected (not skipped) unless the run selects them
with ``-m long`` (tests/conftest.py); see README ("Reliability") for the command.
Figures are printed (visible with ``-s``) and, when ``JOBS_RELIABILITY_DIR`` is
set, written there as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest


def long_mode(config: pytest.Config) -> bool:
    """Whether the run selected the long tests (``-m long``, or an expression naming ``long``)."""
    expression = config.getoption("markexpr") or ""
    return "long" in expression and "not long" not in expression


def deselect_long(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside long mode, drop the ``long`` tests from the run (reported as deselected)."""
    if long_mode(config):
        return
    dropped = [item for item in items if item.get_closest_marker("long")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker("long")]


def report(name: str, figures: dict[str, Any]) -> None:
    """Print ``figures`` on one line and keep them as ``<JOBS_RELIABILITY_DIR>/<name>.json``."""
    print(f"\n[reliability] {name}: {json.dumps(figures, sort_keys=True)}")
    folder = os.environ.get("JOBS_RELIABILITY_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        Path(folder, f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
