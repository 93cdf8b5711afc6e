"""Helpers of the test DAGs (importable as ``jobs_test_support``: the DAGs folder is on sys.path).

``record`` writes what a task saw to ``$JOBS_TEST_OUT/<what>.json`` for the test to read.

``LockProbeTrigger`` runs while its task is deferred and reports who holds the
write lock on ``name`` then, and for how long, so a test can see that a
wrapped deferrable operator keeps its locks while deferred.
"""

from __future__ import annotations

import json
import os
import signal
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


class EndingTrigger(BaseTrigger):
    """Ends its task itself from the triggerer (``end_from_trigger``), with ``state``: success, failed or skipped."""

    def __init__(self, state: str = "success") -> None:
        super().__init__()
        self.state = state

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return "jobs_test_support.EndingTrigger", {"state": self.state}

    async def run(self):
        from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent

        events = {"success": TaskSuccessEvent, "failed": TaskFailedEvent, "skipped": TaskSkippedEvent}
        yield events[self.state]()


class EndInTriggerOperator(BaseOperator):
    """Defers to EndingTrigger(state): the triggerer ends the task; ``dag.test()`` resumes it anyway."""

    template_fields = ("state",)

    def __init__(self, *, state: str = "success", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = state

    def execute(self, context: Any) -> None:
        self.defer(trigger=EndingTrigger(self.state), method_name="execute_complete")

    def execute_complete(self, context: Any, event: Any = None) -> None:
        record(self.task_id, {"resumed_with": str(event)})


def kill_myself() -> None:
    """What Airflow does to stop a running task: SIGTERM to the task's process."""
    os.kill(os.getpid(), signal.SIGTERM)


def _parked_task_instance(session: Any, dag_id: str, task_id: str) -> Any:
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    return session.scalars(select(TaskInstance).where(
        TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id,
        TaskInstance.state == "awaiting_input")).first()


def answer_when_parked(dag_id: str, task_id: str, option: str, name: str, wait: float, timeout: float = 120) -> None:
    """Play the human of a Human-in-the-loop task (Airflow 3.3), from another process than dag.test()'s.

    Once the task awaits input: record the lock facts of ``name``, wait ``wait`` seconds, record
    them again (as ``$JOBS_TEST_OUT/answered.json``), then answer ``option`` as the api-server's
    response handler does (``handle_event_submit``). If anything goes wrong the task instance is
    failed, so that dag.test() ends.
    """
    import time

    import airflow.models.hitl  # noqa: F401  (the ORM mappers the answer needs)
    from airflow.models.hitl import HITLDetail
    from airflow.models.trigger import handle_event_submit
    from airflow.triggers.base import TriggerEvent
    from airflow.utils import timezone
    from airflow.utils.session import create_session
    from sqlalchemy import select

    def facts() -> dict[str, Any]:
        coordinator = jobs_core.Coordinator.from_env()
        try:
            info = coordinator.output_info(name)
        finally:
            coordinator.close()
        lock = info.write_lock
        return {"now": info.now, "written": info.written, "write_lock": None if lock is None else {
            "job_id": lock.job_id, "token": lock.token, "expires": lock.expires}}

    deadline = time.monotonic() + timeout
    ti_id = None
    try:
        while ti_id is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id}.{task_id} never awaited input")
            time.sleep(0.2)
            with create_session() as session:
                ti = _parked_task_instance(session, dag_id, task_id)
                ti_id = ti.id if ti is not None else None
        seen = {"parked": facts()}
        time.sleep(wait)
        seen["later"] = facts()
        record("answered", seen)
        with create_session() as session:
            ti = _parked_task_instance(session, dag_id, task_id)
            detail = session.scalars(select(HITLDetail).where(HITLDetail.ti_id == ti.id)).one()
            detail.responded_by = {"id": "tester", "name": "tester"}
            detail.responded_at = timezone.utcnow()
            detail.chosen_options = [option]
            detail.params_input = {}
            handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)
    except BaseException:
        with create_session() as session:
            ti = _parked_task_instance(session, dag_id, task_id)
            if ti is not None:
                ti.state = "failed"
        raise


def limit_holders(limit: str) -> list[str]:
    """The job ids holding slots of ``limit`` now."""
    coordinator = jobs_core.Coordinator.from_env()
    try:
        (info,) = coordinator.limits([limit])
    finally:
        coordinator.close()
    return sorted({h.job_id for h, _ in info.holders})
