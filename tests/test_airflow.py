"""The Airflow adapter (jobs_airflow) in real dag.test() runs, on a real redis-server.

Runs under scripts/test-airflow, in the Airflow 3 and Airflow 2.11 virtualenvs; the main
venv has no Airflow and skips this module. Assets tests need Airflow 3 (version check).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "airflow_dags"))
import jobs_test_env  # noqa: E402  (configures Airflow before it is imported)

pytest.importorskip("airflow")

from jobs_airflow.hooks import JobsHook  # noqa: E402
from jobs_airflow.operators import JobsLock, JobsLockUnavailable, with_jobs_lock  # noqa: E402
from jobs_airflow.triggers import JobsInputTrigger  # noqa: E402
from jobs_airflow.version_compat import AIRFLOW_V_3_0_PLUS, BaseOperator  # noqa: E402

import jobs_core  # noqa: E402

pytestmark = [
    # Airflow 3's dag.test() runs tasks through its execution API in an in-process FastAPI TestClient,
    # which Starlette deprecates (StarletteDeprecationWarning, a UserWarning) in favour of httpx2.
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated:UserWarning"),
    # Airflow 2.11's SubprocessHook (under BashOperator) does not close the pipe of a command that failed.
    pytest.mark.filterwarnings("ignore:unclosed file <_io.BufferedReader:ResourceWarning"),
]
needs_assets = pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="assets and asset watchers exist from Airflow 3")


@pytest.fixture(scope="module", autouse=True)
def metadata_db():
    jobs_test_env.migrate()


@pytest.fixture
def jobs_env(redis_server, prefix, tmp_path, monkeypatch):
    """JOBS_REDIS_URL/JOBS_PREFIX for the DAGs' tasks, and where they record what they saw."""
    monkeypatch.setenv("JOBS_REDIS_URL", redis_server.url)
    monkeypatch.setenv("JOBS_PREFIX", prefix)
    monkeypatch.setenv("JOBS_TEST_OUT", str(tmp_path))
    coordinator = jobs_core.Coordinator.from_url(redis_server.url, prefix)
    yield SimpleNamespace(coordinator=coordinator, out=tmp_path, url=redis_server.url, prefix=prefix)
    coordinator.close()


def recorded(env, what):
    return json.loads((env.out / f"{what}.json").read_text())


_dagbag = None


def run_dag(dag_id, day, conf=None):
    """dag.test() one run of ``dag_id`` for ``day``; returns ``{task_id: state}`` (dag.test does not raise)."""
    global _dagbag
    if _dagbag is None:
        if AIRFLOW_V_3_0_PLUS:
            from airflow.dag_processing.dagbag import DagBag
        else:
            from airflow.models.dagbag import DagBag
        _dagbag = DagBag(dag_folder=str(jobs_test_env.DAGS))
        assert not _dagbag.import_errors, _dagbag.import_errors
    dag = _dagbag.get_dag(dag_id)
    when = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    if AIRFLOW_V_3_0_PLUS:
        run = dag.test(logical_date=when, run_conf=conf)
    else:
        run = dag.test(execution_date=when, run_conf=conf)
    return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.get_task_instances()}


def run_id_prefix(dag_id, task_id):
    return f"airflow/{dag_id}/{task_id}/"


def no_locks(coordinator, name):
    info = coordinator.output_info(name)
    return info.write_lock is None and not info.readers


# -- hook ------------------------------------------------------------------------------------


def test_hook_reads_a_redis_provider_connection(redis_server, prefix, monkeypatch):
    host, port = "127.0.0.1", redis_server.port
    monkeypatch.setenv("AIRFLOW_CONN_JOBS_TEST", json.dumps(
        {"conn_type": "redis", "host": host, "port": port, "extra": {"db": 0, "jobs_prefix": prefix}}))
    monkeypatch.delenv("JOBS_REDIS_URL", raising=False)
    coordinator = JobsHook(redis_conn_id="jobs_test").get_conn()
    assert coordinator.prefix == prefix
    coordinator.create_outputs(["from.conn"])
    coordinator.close()

    async def read():
        async_coordinator = await JobsHook(redis_conn_id="jobs_test").aget_conn()
        try:
            return await async_coordinator.output_info("from.conn")
        finally:
            await async_coordinator.aclose()

    assert asyncio.run(read()).written


def test_hook_settings_order(redis_server, prefix, monkeypatch):
    monkeypatch.setenv("JOBS_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("JOBS_PREFIX", prefix)
    target = JobsHook(redis_url=redis_server.url).target()
    assert (target.url, target.prefix, target.source) == (redis_server.url, prefix, "redis_url")
    target = JobsHook(prefix="other:").target()
    assert (target.url, target.prefix) == ("redis://127.0.0.1:1/0", "other:")
    monkeypatch.delenv("JOBS_REDIS_URL")
    monkeypatch.delenv("AIRFLOW_CONN_REDIS_DEFAULT", raising=False)
    with pytest.raises(jobs_core.ConfigurationError, match="redis_default"):
        JobsHook().target()
    with pytest.raises(jobs_core.ConfigurationError, match="'nope'"):
        JobsHook(redis_conn_id="nope").target()


# -- triggers --------------------------------------------------------------------------------


def test_input_trigger_serializes_to_plain_json(redis_server, prefix):
    trigger = JobsInputTrigger(inputs=["a.1", "b"], redis_url=redis_server.url, prefix=prefix, deadline=12.5)
    classpath, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, _, name = classpath.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (classpath, kwargs)


async def first_event(trigger, timeout=20.0):
    async def first():
        async for event in trigger.run():
            return event.payload

    return await asyncio.wait_for(first(), timeout)


def test_input_trigger_is_woken_by_the_release(jobs_env):
    """A long fallback poll, yet the event follows the writer's stop at once: the push wake-up."""
    writer = jobs_env.coordinator.job([], ["woken.in"], duration=30).start()
    released = []

    def release():
        time.sleep(0.5)
        released.append(time.monotonic())
        writer.stop()

    trigger = JobsInputTrigger(inputs=["woken.in"], redis_url=jobs_env.url, prefix=jobs_env.prefix,
                               poll_interval=30)
    thread = threading.Thread(target=release)
    thread.start()
    event = asyncio.run(first_event(trigger))
    fired = time.monotonic()
    thread.join()
    assert event == {"status": "ready", "inputs": ["woken.in"]}
    assert fired - released[0] < 1.0


def test_input_trigger_times_out_at_its_deadline(jobs_env):
    trigger = JobsInputTrigger(inputs=["never.written"], redis_url=jobs_env.url, prefix=jobs_env.prefix,
                               deadline=time.time() + 0.5)
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "timeout"
    assert "input_missing: 'never.written'" in event["blockers"][0]


@needs_assets
def test_output_trigger_fires_on_every_write_by_anything(jobs_env):
    from jobs_airflow.triggers import JobsOutputTrigger

    trigger = JobsOutputTrigger(name="watched.out", redis_url=jobs_env.url, prefix=jobs_env.prefix, poll_interval=0.5)
    classpath, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs and classpath == "jobs_airflow.triggers.JobsOutputTrigger"
    plain = jobs_env.coordinator.client

    def writes():
        time.sleep(0.5)
        with jobs_env.coordinator.job([], ["watched.out"], job_id="cron-script"):
            pass
        time.sleep(0.5)
        plain.set(jobs_env.prefix + "watched.out", "a-jobspy-writer")  # publishes nothing: the poll sees it

    async def two_events():
        events = []
        async for event in trigger.run():
            events.append(event.payload)
            if len(events) == 2:
                return events

    thread = threading.Thread(target=writes)
    thread.start()
    events = asyncio.run(asyncio.wait_for(two_events(), 20))
    thread.join()
    assert events[0]["writer"] == "cron-script" and events[0]["token"] >= 1
    assert events[1]["writer"] == "a-jobspy-writer"


# -- sensor ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_sensor_waits_for_inputs_written_by_a_plain_job(jobs_env, mode):
    day = "2026-11-02"
    jobs_env.coordinator.create_outputs(["raw.users"])
    writer = jobs_env.coordinator.job([], [f"raw.events.{day}"], duration=30)

    def write():
        with writer:
            time.sleep(1.0)

    thread = threading.Thread(target=write)
    thread.start()
    began = time.monotonic()
    states = run_dag(f"jobs_sensor_{mode}", day)
    took = time.monotonic() - began
    thread.join()
    assert states == {"wait": "success"}
    assert took >= 1.0
    assert jobs_env.coordinator.output_info(f"raw.events.{day}").writer == writer.id


# -- operator wrapper ------------------------------------------------------------------------


def test_wrapped_bash_operator_writes_only_on_success(jobs_env):
    c = jobs_env.coordinator
    c.create_outputs(["raw.events.2026-11-03", "raw.events.2026-11-04"])

    assert run_dag("jobs_bash", "2026-11-03") == {"write": "success"}
    seen = recorded(jobs_env, "bash")  # `jobs-core show --json` run by the task itself
    assert seen["write_lock"]["job_id"].startswith(run_id_prefix("jobs_bash", "write"))
    assert not seen["written"]
    info = c.output_info("clean.events.2026-11-03")
    assert info.written and info.writer == seen["write_lock"]["job_id"] and info.token == seen["write_lock"]["token"]
    assert info.writer.endswith("/-1/1")  # map index, try
    assert no_locks(c, "clean.events.2026-11-03") and no_locks(c, "raw.events.2026-11-03")

    assert run_dag("jobs_bash", "2026-11-04", conf={"exit": 3}) == {"write": "failed"}
    assert recorded(jobs_env, "bash")["write_lock"]["job_id"].startswith(run_id_prefix("jobs_bash", "write"))
    assert not c.output_info("clean.events.2026-11-04").written
    assert no_locks(c, "clean.events.2026-11-04") and no_locks(c, "raw.events.2026-11-04")


def test_wrapped_taskflow_functions_write_only_on_success(jobs_env):
    c = jobs_env.coordinator
    c.create_outputs(["raw.events.2026-11-05", "raw.events.2026-11-06"])

    assert run_dag("jobs_taskflow", "2026-11-05") == {"report": "success", "summary": "success"}
    for task_id, name in (("report", "report.2026-11-05"), ("summary", "summary.2026-11-05")):
        seen = recorded(jobs_env, task_id)
        assert seen["holder"].startswith(run_id_prefix("jobs_taskflow", task_id)) and not seen["written"]
        assert c.output_info(name).writer == seen["holder"]
        assert no_locks(c, name)
    assert no_locks(c, "raw.events.2026-11-05")

    assert run_dag("jobs_taskflow", "2026-11-06", conf={"fail": True}) == {"report": "failed", "summary": "failed"}
    for task_id, name in (("report", "report.2026-11-06"), ("summary", "summary.2026-11-06")):
        assert recorded(jobs_env, task_id)["holder"].startswith(run_id_prefix("jobs_taskflow", task_id))
        assert not c.output_info(name).written and no_locks(c, name)
    assert no_locks(c, "raw.events.2026-11-06")


def test_busy_output_waits_then_fails_the_task(jobs_env):
    c = jobs_env.coordinator
    c.create_outputs(["raw.events.2026-11-07"])
    with c.job([], ["clean.events.2026-11-07"], job_id="someone-else") as other:
        began = time.monotonic()
        assert run_dag("jobs_bash", "2026-11-07") == {"write": "failed"}  # jobs_wait=1
        assert time.monotonic() - began >= 1.0
        assert c.output_info("clean.events.2026-11-07").write_lock.job_id == other.id
        assert not (jobs_env.out / "bash.json").exists()  # the command never ran
    assert c.output_info("clean.events.2026-11-07").writer == "someone-else"


def test_busy_error_says_what_blocked_and_for_how_long(jobs_env):
    context = {"ti": SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=2)}
    lock = JobsLock(["in.missing"], ["out"], wait=0.3, redis_url=jobs_env.url, prefix=jobs_env.prefix)
    with pytest.raises(JobsLockUnavailable) as err:
        lock.start(context)
    message = str(err.value)
    assert "airflow/d/t/r/-1/2" in message and "jobs_wait" in message and "input_missing: 'in.missing'" in message


def test_wrapped_deferrable_operator_keeps_its_locks_while_deferred(jobs_env):
    c = jobs_env.coordinator
    name = "deferred.2026-11-08"
    assert run_dag("jobs_deferred", "2026-11-08") == {"deferred": "success"}
    seen = recorded(jobs_env, "deferred")
    job_id = seen["holder"]
    assert job_id.startswith(run_id_prefix("jobs_deferred", "deferred")) and not seen["written"]
    assert seen["left"] > 60  # the deferral lease, far beyond jobs_duration=5
    assert seen["after"]["holder"] == job_id and not seen["after"]["written"]  # resumed under the same start
    info = c.output_info(name)
    assert info.written and info.writer == job_id and info.token == seen["token"]
    assert no_locks(c, name)


def test_with_jobs_lock_makes_one_subclass_per_operator_class():
    from jobs_test_support import DeferOnceOperator

    locked = with_jobs_lock(DeferOnceOperator)
    assert with_jobs_lock(DeferOnceOperator) is locked and with_jobs_lock(locked) is locked
    assert issubclass(locked, DeferOnceOperator) and issubclass(locked, BaseOperator)
    assert {"probe", "jobs_inputs", "jobs_outputs"} <= set(locked.template_fields)
    with pytest.raises(TypeError):
        with_jobs_lock(dict)
    with pytest.raises(TypeError, match="list of names"):
        locked(task_id="x", probe="p", jobs_outputs="one.name")


@needs_assets
def test_example_dag_parses():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[1] / "examples" / "airflow"))
    assert not bag.import_errors
    assert set(bag.dag_ids) == {"reporting_events", "publish_report"}
    clean = bag.get_dag("reporting_events").get_task("clean")
    assert clean.jobs_outputs == ["clean.events.{{ ds }}"] and "jobs_outputs" in clean.template_fields


# -- provider registration -------------------------------------------------------------------


def test_provider_is_listed_and_task_jobs_resolves():
    listing = subprocess.run([sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
                             capture_output=True, text=True, check=True, timeout=120).stdout
    assert "jobs-core" in [p["package_name"] for p in json.loads(listing)]
    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk import task
    else:
        from airflow.decorators import task
    from jobs_airflow.decorators import jobs_task

    assert task.jobs is jobs_task


# -- assets (Airflow 3) ----------------------------------------------------------------------


@needs_assets
def test_outlet_asset_event_describes_the_written_outputs(jobs_env):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    assert run_dag("jobs_outlet", "2026-11-09") == {"users": "success"}
    info = jobs_env.coordinator.output_info("warehouse.users")
    with create_session() as session:
        events = session.scalars(select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                                 .where(AssetModel.name == "warehouse.users")).all()
        extras = [e.extra for e in events]
    assert {"jobs_outputs": ["warehouse.users"], "jobs_job_id": info.writer, "jobs_token": info.token} in [
        {k: x.get(k) for k in ("jobs_outputs", "jobs_job_id", "jobs_token")} for x in extras]
