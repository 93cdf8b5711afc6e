"""Helpers of the test DAGs (importable as ``jobs_test_support``: the DAGs folder is on sys.path).

``record`` writes what a task saw to ``$JOBS_TEST_OUT/<what>.json`` for the test to read.

``LockProbeTrigger`` runs while its task is deferred and reports who holds the
write lock on ``name`` then, and for how long, so a test can see that a
wrapped deferrable operator keeps its locks while deferred.
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from jobs_airflow.version_compat import BaseOperator

import jobs_core


def record(what: str, facts: dict[str, Any]) -> None:
    with open(os.path.join(os.environ["JOBS_TEST_OUT"], f"{what}.json"), "w") as f:
        json.dump(facts, f)


def lock_facts(name: str) -> dict[str, Any]:
    """Who writes and who reads ``name`` now, and whether it is written."""
    coordinator = jobs_core.Coordinator.from_env()
    try:
        info = coordinator.output_info(name)
    finally:
        coordinator.close()
    return {"name": name, "written": info.written, "writer": info.writer,
            "holder": info.write_lock.job_id if info.write_lock else None,
            "readers": [r.job_id for r in info.readers]}


class LockProbeTrigger(BaseTrigger):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return "jobs_test_support.LockProbeTrigger", {"name": self.name}

    async def run(self):
        coordinator = jobs_core.AsyncCoordinator.from_env()
        try:
            info = await coordinator.output_info(self.name)
        finally:
            await coordinator.aclose()
        lock = info.write_lock
        yield TriggerEvent({"holder": lock.job_id if lock else None, "token": lock.token if lock else None,
                            "left": (lock.expires - info.now) if lock else None, "written": info.written})


class DeferOnceOperator(BaseOperator):
    """Defers once to LockProbeTrigger(probe), then records its event and the lock seen after resuming."""

    template_fields = ("probe",)

    def __init__(self, *, probe: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.probe = probe

    def execute(self, context: Any) -> None:
        self.defer(trigger=LockProbeTrigger(self.probe), method_name="done", kwargs={"mine": "kept"})

    def done(self, context: Any, event: dict[str, Any], mine: str | None = None) -> None:
        record(self.task_id, {**event, "mine": mine, "after": lock_facts(self.probe)})
