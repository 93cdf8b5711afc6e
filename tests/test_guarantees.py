"""The README's fencing example, run as written: storage that checks tokens refuses a stale writer.

The block after ``<!-- fencing-example`` in README.md is executed with a real
coordinator; then a holder whose lease ran out while it was paused comes back
and tries to save: the storage refuses it, and its ``stop()`` writes nothing.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import jobs_core
from jobs_core import LockLost

README = Path(__file__).resolve().parent.parent / "README.md"


def example() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- fencing-example[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its fencing example"
    return match.group(1)


@pytest.fixture
def ran(redis_server, tmp_path, monkeypatch) -> dict[str, Any]:
    """The README block's namespace after running it once in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    client = redis.Redis.from_url(redis_server.url)
    coordinator = jobs_core.Coordinator(client, f"g{secrets.token_hex(4)}:")
    coordinator.create_outputs(["raw"])
    scope: dict[str, Any] = {"coordinator": coordinator, "build_report": lambda: "report v1"}
    exec(compile(example(), "README.md (fencing example)", "exec"), scope)
    yield scope
    scope["db"].close()
    coordinator.close()
    client.close()


def stored(tmp_path: Path) -> tuple[str, int, str]:
    with sqlite3.connect(tmp_path / "reports.db") as db:
        return db.execute("SELECT body, token, job FROM reports WHERE name = 'report'").fetchone()


def test_the_example_stores_the_report_with_its_token(ran, tmp_path):
    body, token, job = stored(tmp_path)
    assert (body, token, job) == ("report v1", ran["job"].token, ran["job"].id)
    assert ran["coordinator"].written(["report"]) == {"report": ran["job"].id}


def test_a_writer_paused_past_its_lease_is_refused_by_the_storage(ran, tmp_path):
    c, save = ran["coordinator"], ran["save"]
    stale = c.job(["raw"], ["report"], duration=0.3, heartbeat=False).start()
    time.sleep(0.5)  # "paused": the lease runs out, nobody renews it
    newer = c.job(["raw"], ["report"], duration=30).start()
    save(newer, "report", "report v3")
    newer.stop()
    with pytest.raises(RuntimeError, match="refused, a writer newer than token"):
        save(stale, "report", "report v2")  # it wakes up and writes before asking Redis
    with pytest.raises(LockLost):
        stale.stop()
    assert stored(tmp_path) == ("report v3", newer.token, newer.id)
    assert c.written(["report"]) == {"report": newer.id}


def test_the_same_job_may_save_again_with_its_token(ran, tmp_path):
    """A retry by the same start (same token, same job id) is accepted; another job with an equal
    token (possible after a failover) is not."""
    c, save = ran["coordinator"], ran["save"]
    with c.job(["raw"], ["report"], duration=30) as job:
        save(job, "report", "first try")
        save(job, "report", "second try")
        impostor = c.job([], ["other"], duration=30, job_id="someone-else")
        impostor.token = job.token
        with pytest.raises(RuntimeError, match="refused"):
            save(impostor, "report", "impostor")
    assert stored(tmp_path) == ("second try", job.token, job.id)
