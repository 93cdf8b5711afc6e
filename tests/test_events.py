"""Waits that talk, and observers of every job (jobs_core.events), on real servers."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

import jobs_core
from jobs_core import LockLost, ResourceUnavailable
from jobs_core.events import Observer, WaitProgress


class Recorder(Observer):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def wait_progress(self, job: Any, progress: WaitProgress) -> None:
        self.events.append(("progress", job.id, progress))

    def wait_ended(self, job: Any, outcome: str, waited: float) -> None:
        self.events.append(("wait_ended", job.id, outcome))

    def job_started(self, job: Any) -> None:
        self.events.append(("started", job.id, job.token))

    def job_stopped(self, job: Any, state: str, held: float) -> None:
        self.events.append(("stopped", job.id, state))

    def locks_lost(self, job: Any, lost: dict[str, list[str]]) -> None:
        self.events.append(("lost", job.id, lost))

    def repaired(self, kind: str, names: tuple[str, ...]) -> None:
        self.events.append(("repaired", kind, names))

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]


def test_a_wait_reports_what_blocks_it_and_who_holds_it(real_backend, prefix, caplog):
    """At the start of the wait, then every `progress` seconds: logged at INFO on jobs_core, and given
    to on_progress, with the holder's facts (its host and pid); a summary when it starts."""
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    holder = c.job([], ["x"], duration=30, job_id="the.holder").start()
    threading.Timer(0.75, holder.stop).start()
    seen: list[WaitProgress] = []
    with caplog.at_level(logging.INFO, logger="jobs_core"):
        job = c.job([], ["x"], duration=30, wait=10, progress=0.2, on_progress=lambda j, p: seen.append(p)).start()
    job.stop()
    assert 3 <= len(seen) <= 6
    first = seen[0]
    assert first.job_id == job.id and first.waited < 0.1 and 9 < first.left <= 10
    (blocker,) = first.report.blockers
    assert (blocker.reason, blocker.name, blocker.holder.job_id) == ("output_locked", "x", "the.holder")
    assert blocker.holder.host == c.host and blocker.holder.token == holder.token
    assert [p.waited for p in seen] == sorted(p.waited for p in seen)
    lines = [r.getMessage() for r in caplog.records if r.name == "jobs_core" and r.levelno == logging.INFO]
    waits = [m for m in lines if m.startswith(f"job {job.id} waited ")]
    assert len(waits) == len(seen) and "held by the.holder on " in waits[0]
    assert any(m.startswith(f"job {job.id} granted after waiting 0.7") for m in lines)


def test_no_report_for_a_job_that_does_not_wait(real_backend, prefix):
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30)
    seen: list[WaitProgress] = []
    c.job([], ["x"], duration=30, wait=10, progress=0.01, on_progress=lambda j, p: seen.append(p)).start().stop()
    assert seen == []


def test_observers_hear_every_job(real_backend, prefix):
    recorder = Recorder()
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30, observers=[recorder])
    with c.job([], ["a"], duration=30, job_id="one") as one:
        pass
    with pytest.raises(ResourceUnavailable):
        c.job(["missing"], [], duration=30, wait=0.2, job_id="late", progress=0.05).start()
    failing = c.job([], ["b"], duration=30, job_id="failing").start()
    failing.stop(failed=True)
    lost = c.job([], ["c"], duration=30, job_id="lost", heartbeat=False).start()
    c.unlock(outputs=["c"])
    with pytest.raises(LockLost):
        lost.stop()
    c.create_outputs(["made"], job_id="repair")
    assert recorder.events[:4] == [("wait_ended", "one", "started"), ("started", "one", one.token),
                                   ("stopped", "one", "written"), ("progress", "late", recorder.events[3][2])]
    kinds = recorder.kinds()
    assert ("wait_ended", "late", "timed_out") in recorder.events
    assert ("stopped", "failing", "failed") in recorder.events
    assert ("repaired", "unlock", ("c",)) in recorder.events
    assert ("stopped", "lost", "lost") in recorder.events and ("lost", "lost", {"output_lock_lost": ["c"]}) in \
        recorder.events
    assert ("repaired", "create", ("made",)) in recorder.events
    assert kinds.count("started") == 3


def test_a_cancelled_wait_is_heard_and_an_observer_that_fails_does_not_fail_the_job(redis7, prefix, caplog):
    recorder = Recorder()

    class Broken(Observer):
        def job_started(self, job: Any) -> None:
            raise RuntimeError("observer bug")

    async def main() -> None:
        c = jobs_core.AsyncCoordinator(redis7.async_client(), prefix, poll=30, observers=[Broken(), recorder])
        holder = await c.job([], ["x"], duration=30).start()
        job = c.job([], ["x"], duration=30, wait=10)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(job.start(), 0.2)
        await holder.stop()
        await c.aclose()

    with caplog.at_level(logging.ERROR, logger="jobs_core"):
        asyncio.run(main())
    assert recorder.kinds()[:2] == ["wait_ended", "started"]
    assert any(e[0] == "wait_ended" and e[2] == "cancelled" for e in recorder.events)
    assert any("observer" in r.getMessage() and "failed on job_started" in r.getMessage() for r in caplog.records)
