"""The Airflow adapter (jobs_airflow) in real dag.test() runs, on a real redis-server.

Runs under scripts/test-airflow, in the Airflow 3 and Airflow 2.11 virtualenvs; the main
venv has no Airflow and skips this module. Assets tests need Airflow 3 (version check).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from contextlib import contextmanager
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
    yield SimpleNamespace(coordinator=coordinator, out=tmp_path, url=redis_server.url, prefix=prefix,
                          port=redis_server.port)
    coordinator.close()


def recorded(env, what):
    return json.loads((env.out / f"{what}.json").read_text())


_dagbag = None


def dagbag():
    """The DAGs of tests/airflow_dags, parsed once."""
    global _dagbag
    if _dagbag is None:
        if AIRFLOW_V_3_0_PLUS:
            from airflow.dag_processing.dagbag import DagBag
        else:
            from airflow.models.dagbag import DagBag
        _dagbag = DagBag(dag_folder=str(jobs_test_env.DAGS))
    return _dagbag


def run_dag_tis(dag_id, day, conf=None):
    """dag.test() one run of ``dag_id`` for ``day``; its task instances by task id (dag.test does not raise)."""
    dag = dagbag().get_dag(dag_id)
    assert dag is not None, dagbag().import_errors
    when = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    if AIRFLOW_V_3_0_PLUS:
        run = dag.test(logical_date=when, run_conf=conf)
    else:
        run = dag.test(execution_date=when, run_conf=conf)
    return {ti.task_id: ti for ti in run.get_task_instances()}


def state(ti):
    return str(getattr(ti.state, "value", ti.state))


def run_dag(dag_id, day, conf=None):
    """dag.test() one run of ``dag_id`` for ``day``; returns ``{task_id: state}``."""
    return {task_id: state(ti) for task_id, ti in run_dag_tis(dag_id, day, conf).items()}


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
    """resolve_namespace's order: the values given, then the connection, then the environment."""
    monkeypatch.setenv("JOBS_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("JOBS_PREFIX", prefix)
    target = JobsHook(redis_url=redis_server.url).target()
    assert (target.url, target.prefix, target.source) == (redis_server.url, prefix, "redis_url (the task's "
                                                                                   "jobs_redis_url)")
    target = JobsHook(prefix="other:").target()
    assert (target.url, target.prefix) == ("redis://127.0.0.1:1/0", "other:")
    monkeypatch.setenv("AIRFLOW_CONN_NO_PREFIX", json.dumps({"conn_type": "jobs_core", "host": "h", "port": 7}))
    target = JobsHook(redis_conn_id="no_prefix").target()  # the connection's URL; the prefix from the environment
    assert (target.url, target.prefix, target.prefix_source) == ("redis://h:7/0", prefix, "$JOBS_REDIS_URL / "
                                                                                          "$JOBS_PREFIX")
    monkeypatch.setenv("AIRFLOW_CONN_EMPTY_PREFIX", json.dumps({"conn_type": "jobs_core", "host": "h",
                                                                "extra": {"prefix": ""}}))
    assert JobsHook(redis_conn_id="empty_prefix").target().prefix == ""  # an empty prefix is a prefix
    monkeypatch.delenv("JOBS_REDIS_URL")
    monkeypatch.delenv("AIRFLOW_CONN_REDIS_DEFAULT", raising=False)
    with pytest.raises(jobs_core.ConfigurationError, match="jobs_core_default.*redis_default"):
        JobsHook().target()
    monkeypatch.setenv("AIRFLOW_CONN_REDIS_DEFAULT", json.dumps({"conn_type": "redis", "host": "r"}))
    assert JobsHook().target().url == "redis://r:6379/0"  # the Redis provider's default, if no jobs_core_default
    monkeypatch.setenv("AIRFLOW_CONN_JOBS_CORE_DEFAULT", json.dumps({"conn_type": "jobs_core", "host": "j"}))
    assert JobsHook().target().url == "redis://j:6379/0"
    with pytest.raises(jobs_core.ConfigurationError, match="'nope'"):
        JobsHook(redis_conn_id="nope").target()


@pytest.mark.parametrize(("conn", "url", "options"), [
    ({"conn_type": "jobs_core", "host": "h", "port": 6380, "schema": "3", "login": "u", "password": "p/w@x"},
     "redis://u:p%2Fw%40x@h:6380/3", {}),
    ({"conn_type": "jobs_core", "host": "h", "extra": {"tls": True, "ssl_ca_certs": "/ca.pem"}},
     "rediss://h:6379/0", {"ssl_ca_certs": "/ca.pem"}),
    ({"conn_type": "jobs_core", "host": "/run/redis.sock", "password": "p"}, "unix://:p@/run/redis.sock", {}),
    ({"conn_type": "jobs_core", "host": "ignored", "extra": {"url": "redis+sentinel://s1:26379,s2/main/2"}},
     "redis+sentinel://s1:26379,s2/main/2", {}),
    ({"conn_type": "redis", "host": "h", "extra": {"db": 2, "ssl": "true", "ssl_cert_reqs": "none"}},
     "rediss://h:6379/2", {"ssl_cert_reqs": "none"}),
    ({"conn_type": "redis", "host": "h", "port": 7000, "extra": {"cluster": True}}, "redis+cluster://h:7000", {}),
])
def test_connection_fields_make_a_core_url(monkeypatch, conn, url, options):
    monkeypatch.setenv("AIRFLOW_CONN_JOBS_FORM", json.dumps(conn))
    target = JobsHook(redis_conn_id="jobs_form", prefix="{p}:").target()
    assert (target.url, target.options, target.source) == (url, options, "connection 'jobs_form'")


def test_hook_clients_take_every_core_url_form_and_retry(jobs_env, monkeypatch):
    """Clients come from jobs_core.connect: Sentinel and Cluster URLs are taken, with the core's retry policy."""
    monkeypatch.setenv("AIRFLOW_CONN_JOBS_CLUSTER", json.dumps(
        {"conn_type": "jobs_core", "extra": {"url": "redis+cluster://127.0.0.1:1", "prefix": "{jobs}:"}}))

    async def cluster_client_type():  # the asyncio cluster client connects on first use only
        coordinator = await JobsHook(redis_conn_id="jobs_cluster").aget_conn()
        await coordinator.aclose()
        return type(coordinator.client)

    assert asyncio.run(cluster_client_type()).__name__ == "RedisCluster"
    with pytest.raises(jobs_core.ConfigurationError, match="connection 'jobs_cluster'.*hash tag"):
        JobsHook(redis_conn_id="jobs_cluster", prefix="nohashtag:").get_conn()
    coordinator = JobsHook(redis_url="redis+sentinel://127.0.0.1:1/main").get_conn()
    assert type(coordinator.client).__name__ == "Redis"
    coordinator.close()
    monkeypatch.setenv("AIRFLOW_CONN_JOBS_PLAIN", json.dumps(
        {"conn_type": "jobs_core", "host": "127.0.0.1", "port": jobs_env.port, "extra": {"prefix": jobs_env.prefix}}))
    coordinator = JobsHook(redis_conn_id="jobs_plain").get_conn()
    try:
        assert coordinator.client.get_retry() is not None  # Redis.from_url alone would not retry
        coordinator.create_outputs(["via.jobs_core.conn"])
        assert jobs_env.coordinator.output_info("via.jobs_core.conn").written
    finally:
        coordinator.close()


# Airflow 2 builds the form with flask_appbuilder, whose imports warn (Flask and SQLAlchemy deprecations)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_connection_type_is_registered_with_its_form():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

        hook = ProvidersManagerTaskRuntime().hooks["jobs_core"]
    else:
        hook = manager.hooks["jobs_core"]
    assert hook is not None and hook.hook_name == "jobs-core"
    assert hook.hook_class_name == "jobs_airflow.hooks.JobsHook"
    fields = {name for name in manager.connection_form_widgets if name.startswith("extra__jobs_core__")}
    assert {"extra__jobs_core__prefix", "extra__jobs_core__tls", "extra__jobs_core__url"} <= fields
    assert manager.field_behaviours["jobs_core"]["relabeling"]["schema"] == "Database"


# -- triggers --------------------------------------------------------------------------------


def test_input_trigger_serializes_to_plain_json(redis_server, prefix):
    trigger = JobsInputTrigger(inputs=["a.1", "b"], redis_url=redis_server.url, prefix=prefix, deadline=12.5)
    classpath, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, _, name = classpath.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (classpath, kwargs)


async def first_event(trigger, timeout=20.0, payload=True):
    async def first():
        async for event in trigger.run():
            return event.payload if payload else event

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
    (ours,) = [p for p in json.loads(listing) if p["package_name"] == "jobs-core"]
    assert "jobs-core" in ours["description"] and "jobscore" not in ours["description"]  # Airflow strips "_"
    if AIRFLOW_V_3_0_PLUS:
        from airflow.providers_manager import ProvidersManager

        assert ProvidersManager().providers["jobs-core"].data["documentation-url"].startswith("https://")
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


# -- success is what Airflow counts as success ---------------------------------------------------


def written_by_task(coordinator, name, dag_id, task_id):
    info = coordinator.output_info(name)
    return info.written and info.writer.startswith(run_id_prefix(dag_id, task_id))


def test_operators_that_succeed_by_raising_write_their_outputs(jobs_env):
    """Airflow 3's ShortCircuitOperator and BranchPythonOperator succeed by raising DownstreamTasksSkipped."""
    c, day = jobs_env.coordinator, "2026-12-01"
    assert run_dag("jobs_short_circuit", day) == {"gate": "success", "after": "skipped"}
    assert written_by_task(c, f"gate.{day}", "jobs_short_circuit", "gate") and no_locks(c, f"gate.{day}")
    assert run_dag("jobs_branch", day) == {"branch": "success", "left": "success", "right": "skipped"}
    assert written_by_task(c, f"branch.{day}", "jobs_branch", "branch") and no_locks(c, f"branch.{day}")


def test_sys_exit_zero_writes_only_where_airflow_counts_it_a_success(jobs_env):
    """Airflow 2.11 counts SystemExit(0) from a task as a success; Airflow 3 as a failure."""
    c, day = jobs_env.coordinator, "2026-12-01"
    expected = "failed" if AIRFLOW_V_3_0_PLUS else "success"
    assert run_dag("jobs_exits", day) == {"exits": expected}
    assert c.output_info(f"exited.{day}").written == (expected == "success") and no_locks(c, f"exited.{day}")


def test_trigger_dag_run_writes_only_when_airflow_counts_it_a_success(jobs_env):
    """Airflow 3's TriggerDagRunOperator raises DagRunTriggerException; Airflow then triggers the run, or
    fails the task if that run exists already."""
    c = jobs_env.coordinator
    if not AIRFLOW_V_3_0_PLUS:  # Airflow 2.11 triggers from the operator, reading the target from the database
        from airflow.models.dag import DAG
        from airflow.models.serialized_dag import SerializedDagModel

        target = dagbag().get_dag("jobs_trigger_target")
        DAG.bulk_write_to_db([target])
        SerializedDagModel.write_dag(target)
    run_id = f"triggered-{jobs_env.prefix.strip(':')}"
    assert run_dag("jobs_trigger", "2026-12-02", conf={"run_id": run_id}) == {"trigger": "success"}
    assert written_by_task(c, "trigger.2026-12-02", "jobs_trigger", "trigger")
    assert no_locks(c, "trigger.2026-12-02")
    assert run_dag("jobs_trigger", "2026-12-03", conf={"run_id": run_id}) == {"trigger": "failed"}  # run exists
    assert not c.output_info("trigger.2026-12-03").written and no_locks(c, "trigger.2026-12-03")


def test_outputs_are_written_only_after_the_return_value_is_stored(jobs_env):
    """A return value XCom cannot store, or a non-dict with multiple_outputs, fails the task: not written."""
    c, day = jobs_env.coordinator, "2026-12-04"
    states = run_dag("jobs_xcom", day)
    assert states == {"unpushable": "failed", "not_a_dict": "failed", "a_dict": "success",
                      "plain_unpushable": "failed"}
    for name in (f"xcom.unpushable.{day}", f"xcom.not_a_dict.{day}", f"xcom.plain.{day}"):
        assert not c.output_info(name).written and no_locks(c, name)
    assert written_by_task(c, f"xcom.a_dict.{day}", "jobs_xcom", "a_dict") and no_locks(c, f"xcom.a_dict.{day}")


def test_outputs_are_not_written_when_a_mapped_downstream_cannot_use_the_return_value(jobs_env):
    """Airflow's check for mapped downstream tasks (a list or a dict) runs before the outputs are written."""
    c, day = jobs_env.coordinator, "2026-12-04"
    states = run_dag("jobs_xcom_mapped", day)
    assert states["unmappable"] == "failed", states
    assert not c.output_info(f"xcom.unmappable.{day}").written and no_locks(c, f"xcom.unmappable.{day}")


# -- parking for human input (Airflow 3.3) -------------------------------------------------------

try:
    from airflow.sdk.exceptions import TaskAwaitingInput  # noqa: F401
    HAS_HITL_PARKING = True
except ImportError:
    HAS_HITL_PARKING = False
needs_hitl = pytest.mark.skipif(not HAS_HITL_PARKING, reason="tasks await human input without a trigger from 3.3")


@needs_hitl
def test_a_task_awaiting_human_input_keeps_its_locks_until_the_answer(jobs_env):
    c, day = jobs_env.coordinator, "2026-12-05"
    name = f"approved.{day}"
    # the human answers from another process, as through the api-server: once the task parked,
    # and more than jobs_duration=5 s later, when only the parking lease can keep the lock
    human = subprocess.Popen([sys.executable, "-c", "import jobs_test_support as s; "
                              f"s.answer_when_parked('jobs_hitl', 'ask', 'Reject', {name!r}, wait=6)"],
                             env={**os.environ, "PYTHONPATH": str(jobs_test_env.DAGS)})
    try:
        states = run_dag("jobs_hitl", day)  # dag.test() waits for the answer
    finally:
        assert human.wait(60) == 0
    assert states == {"ask": "success", "publish": "skipped"}  # Reject: the operator skips what follows
    seen = recorded(jobs_env, "answered")
    lock = seen["parked"]["write_lock"]
    assert lock["job_id"].startswith(run_id_prefix("jobs_hitl", "ask")) and not seen["parked"]["written"]
    assert lock["expires"] - seen["parked"]["now"] > 60  # the parking lease, far beyond jobs_duration
    later = seen["later"]["write_lock"]
    assert (later["job_id"], later["token"]) == (lock["job_id"], lock["token"])
    assert abs(later["expires"] - lock["expires"]) < 1  # not renewed, not lapsed
    info = c.output_info(name)
    assert info.written and info.writer == lock["job_id"] and info.token == lock["token"]  # resumed, same start
    assert no_locks(c, name)


# -- triggers that end their task (end_from_trigger) ---------------------------------------------


@pytest.mark.parametrize("end", ["success", "failed", "skipped", "lost"])
def test_a_trigger_that_ends_its_task_settles_its_locks(jobs_env, end):
    """The wrapper the locked operator defers with writes (success) or releases (other ends) at once."""
    from jobs_airflow.triggers import JobsLockedTrigger
    from jobs_test_support import EndingTrigger

    c = jobs_env.coordinator
    name = f"ended.direct.{end}"
    job = c.job([], [name], duration=5, job_id=f"airflow/d/t/{end}/-1/1").start()
    token = job.detach(lease=600)
    if end == "lost":
        c.unlock(outputs=[name])  # forced unlock while the task is deferred
    wrapped = JobsLockedTrigger.around(EndingTrigger("success" if end == "lost" else end), job.id, token,
                                       redis_url=jobs_env.url, prefix=jobs_env.prefix)
    classpath, kwargs = wrapped.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs and classpath == "jobs_airflow.triggers.JobsLockedTrigger"
    trigger = JobsLockedTrigger(**kwargs)  # as the triggerer makes it
    event = asyncio.run(first_event(trigger, payload=False))
    expected = "failed" if end == "lost" else end
    assert str(getattr(event.task_instance_state, "value", event.task_instance_state)) == expected
    info = c.output_info(name)
    assert info.written == (end == "success") and no_locks(c, name)
    if end == "success":
        assert info.writer == job.id and info.token == token


def test_dag_test_of_a_task_its_trigger_ends(jobs_env):
    """dag.test() resumes a task its trigger ended (the triggerer would not): nothing is left to run."""
    c = jobs_env.coordinator
    assert run_dag("jobs_end_in_trigger", "2026-12-06") == {"ended": "success"}
    assert written_by_task(c, "ended.2026-12-06", "jobs_end_in_trigger", "ended")
    assert no_locks(c, "ended.2026-12-06")
    assert not (jobs_env.out / "ended.json").exists()  # its trigger ended it: execute_complete never ran
    assert run_dag("jobs_end_in_trigger", "2026-12-07", conf={"state": "failed"}) == {"ended": "failed"}
    assert not c.output_info("ended.2026-12-07").written and no_locks(c, "ended.2026-12-07")


# -- killed tasks --------------------------------------------------------------------------------


@pytest.mark.parametrize(("dag_id", "task_id", "name"), [
    ("jobs_killed", "killed", "killed.2026-12-08"),
    ("jobs_killed_plain", "killed_plain", "killed.plain.2026-12-08"),
    pytest.param("jobs_killed_bash", "killed_bash", "killed.bash.2026-12-08", marks=pytest.mark.skipif(
        not AIRFLOW_V_3_0_PLUS, reason="Airflow 2.11's SIGTERM handler raises past BashOperator and leaves its "
        "shell unreaped (Airflow's own behaviour); the Python variants run on 2.11")),
])
def test_a_killed_task_writes_nothing_and_releases_at_once(jobs_env, dag_id, task_id, name):
    """Airflow's SIGTERM path calls on_kill; Airflow 3 then lets a Python task's code go on and return."""
    from jobs_airflow.version_compat import AirflowTaskTerminated

    c = jobs_env.coordinator
    previous = signal.getsignal(signal.SIGTERM)
    began = time.monotonic()
    try:
        if AIRFLOW_V_3_0_PLUS:
            assert run_dag(dag_id, "2026-12-08") == {task_id: "failed"}
        else:  # Airflow 2.11 raises in its SIGTERM handler, and its dag.test() lets that through
            with pytest.raises(AirflowTaskTerminated):
                run_dag(dag_id, "2026-12-08")
    finally:
        signal.signal(signal.SIGTERM, previous)  # Airflow's handler stays installed after dag.test()
    assert not c.output_info(name).written and no_locks(c, name)
    assert time.monotonic() - began < 20  # ended by on_kill, not after the bash command's 30-s sleep
    if AIRFLOW_V_3_0_PLUS and task_id != "killed_bash":  # the code went on after on_kill: the lock was gone
        seen = recorded(jobs_env, task_id)
        assert seen["holder"] is None and not seen["written"]


# -- names -------------------------------------------------------------------------------------


def test_names_are_templated_as_names_never_as_template_files(jobs_env):
    """BashOperator loads templates ending in .sh as files, at parse time and at run time; names are names."""
    c, day = jobs_env.coordinator, "2026-12-09"
    assert (jobs_test_env.DAGS / "names_are_not_files.sh").exists()
    task = dagbag().get_dag("jobs_names_not_files").get_task("write")
    assert task.jobs_outputs == ["script.{{ ds }}.sh", "names_are_not_files.sh"]  # not replaced by the file
    assert run_dag("jobs_names_not_files", day) == {"write": "success"}
    for name in (f"script.{day}.sh", "names_are_not_files.sh"):
        assert written_by_task(c, name, "jobs_names_not_files", "write") and no_locks(c, name)


def test_the_task_log_says_what_a_waiting_task_waits_for(jobs_env, caplog):
    """A task waiting for its locks logs what blocks it and who holds it (INFO on jobs_core, which
    Airflow's task logging takes in), then how long it waited once it starts."""
    c, day = jobs_env.coordinator, "2026-12-21"
    name = f"talk.{day}"
    holder = c.job([], [name], duration=30, job_id="cron:holder \u202e").start()

    def release_once_it_waits() -> None:
        deadline = time.monotonic() + 30
        while not c.waiting_jobs() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        holder.stop(failed=True)

    release = threading.Thread(target=release_once_it_waits)
    release.start()
    caplog.set_level(logging.INFO, logger="jobs_core")
    try:
        assert run_dag("jobs_waits_talk", day) == {"waits": "success"}
    finally:
        release.join()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("jobs_core")]
    waiting = [m for m in lines if "waited 0s" in m]
    assert waiting, lines
    assert f"output_locked: '{name}'" in waiting[0] and "cron:holder \\u202e" in waiting[0]
    assert "\u202e" not in "".join(lines)  # the holder's bidi override is shown escaped
    assert any("after waiting" in m for m in lines), lines
    assert written_by_task(c, name, "jobs_waits_talk", "waits") and no_locks(c, name)


def test_names_from_upstream_tasks(jobs_env):
    """XComArgs as the whole names list or as items: the DAG imports, upstream tasks run first."""
    c, day = jobs_env.coordinator, "2026-12-10"
    errors = {path: error for path, error in dagbag().import_errors.items() if "jobs_xcomarg_dags" in path}
    assert not errors, '\n'.join(errors.values())
    dag = dagbag().get_dag("jobs_xcomarg")
    assert "input_names" in dag.get_task("wait").upstream_task_ids
    assert {"input_names", "output_names"} <= dag.get_task("write").upstream_task_ids
    assert {"input_names", "one_name"} <= dag.get_task("flow").upstream_task_ids
    c.create_outputs([f"xcomarg.in.{day}"])
    states = run_dag("jobs_xcomarg", day)
    assert set(states.values()) == {"success"}, states
    for task_id, names in (("write", [f"xcomarg.out.{day}", f"xcomarg.out2.{day}"]),
                           ("flow", [f"xcomarg.one.{day}", f"xcomarg.flow.{day}"])):
        for name in names:
            assert written_by_task(c, name, "jobs_xcomarg", task_id) and no_locks(c, name)
    assert no_locks(c, f"xcomarg.in.{day}")


def test_timedelta_durations_are_accepted(jobs_env):
    c, day = jobs_env.coordinator, "2026-12-11"
    task = dagbag().get_dag("jobs_timedelta").get_task("write")
    assert (task.jobs_settings["wait"], task.jobs_settings["duration"]) == (1.0, 60.0)
    assert task.jobs_settings["deferral_lease"] == 3600.0
    assert run_dag("jobs_timedelta", day) == {"write": "success", "flow": "success", "plain": "success",
                                              "wait": "success"}
    for task_id, name in (("write", f"td.{day}"), ("flow", f"td.flow.{day}"), ("plain", f"td.plain.{day}")):
        assert written_by_task(c, name, "jobs_timedelta", task_id) and no_locks(c, name)


def test_bad_arguments_are_refused_when_the_dag_is_parsed():
    from datetime import timedelta

    from jobs_airflow.decorators import jobs_lock, jobs_task
    from jobs_airflow.sensors import JobsInputSensor
    from jobs_test_support import DeferOnceOperator

    locked = with_jobs_lock(DeferOnceOperator)
    with pytest.raises(TypeError, match="jobs_duration"):
        locked(task_id="x", probe="p", jobs_duration="300")
    with pytest.raises(ValueError, match="jobs_wait"):
        locked(task_id="x", probe="p", jobs_wait=-1)
    with pytest.raises(ValueError, match="jobs_deferral_lease"):
        locked(task_id="x", probe="p", jobs_deferral_lease=timedelta(0))
    with pytest.raises(TypeError, match="jobs_outputs"):
        locked(task_id="x", probe="p", jobs_outputs=[3])
    with pytest.raises(TypeError, match="duration"):
        jobs_lock([], ["x"], duration="60")
    with pytest.raises(TypeError, match="wait"):
        jobs_task(outputs=["x"], wait=[1])
    with pytest.raises(TypeError, match="poll_interval"):
        JobsInputSensor(task_id="x", inputs=["x"], poll_interval="5")
    with pytest.raises(TypeError, match="list of names"):
        JobsInputSensor(task_id="x", inputs="x")


def test_jobs_lock_refuses_names_from_upstream_tasks():
    """@jobs_lock is no operator: it could not make the upstream task a dependency."""
    from jobs_airflow.decorators import jobs_lock

    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk import DAG, task
    else:
        from airflow import DAG
        from airflow.decorators import task

    with DAG("jobs_lock_xcomarg", schedule=None, start_date=datetime(2026, 11, 1)):

        @task
        def names():
            return ["a"]

        with pytest.raises(TypeError, match="@task.jobs"):
            jobs_lock([], names())


# -- outputs that may not be overwritten ----------------------------------------------------------


def test_existing_output_without_overwrite_fails_at_once_without_retries(jobs_env):
    c, day = jobs_env.coordinator, "2026-12-12"
    c.create_outputs([f"kept.{day}"], job_id="earlier-writer")
    began = time.monotonic()
    tis = run_dag_tis("jobs_no_overwrite", day)  # retries=2, jobs_wait=5
    assert state(tis["write"]) == "failed" and tis["write"].try_number == 1
    assert time.monotonic() - began < 5  # no waiting for what no wait can change
    assert not (jobs_env.out / "ran").exists()
    assert c.output_info(f"kept.{day}").writer == "earlier-writer" and no_locks(c, f"kept.{day}")


def test_output_exists_error_says_why_and_forbids_retries(jobs_env):
    from jobs_airflow.operators import JobsOutputExists
    from jobs_airflow.version_compat import AirflowFailException

    jobs_env.coordinator.create_outputs(["exists.already"], job_id="earlier-writer")
    context = {"ti": SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)}
    lock = JobsLock([], ["exists.already"], overwrite=False, wait=5, redis_url=jobs_env.url, prefix=jobs_env.prefix)
    with pytest.raises(JobsOutputExists) as err:
        lock.start(context)
    assert isinstance(err.value, AirflowFailException)
    message = str(err.value)
    assert "jobs_overwrite=False" in message and "earlier-writer" in message and "exists.already" in message
    assert "waiting" not in message and "retries apply" not in message


# -- limits --------------------------------------------------------------------------------------


def test_a_dags_tasks_share_a_limit_with_cron_jobs(jobs_env):
    """default_args={"jobs_limits": {"warehouse": 1}}: each task holds the one slot alone, and a cron
    job asking for it meanwhile runs only between them."""
    c, day = jobs_env.coordinator, "2026-11-20"
    c.set_limit("warehouse", 1)
    cron_runs = []

    def cron():
        for i in range(4):
            with c.job([], [], limits={"warehouse": 1}, wait=30, job_id=f"cron-{i}"):
                began = time.time()
                time.sleep(0.3)
                cron_runs.append((began, time.time()))
            time.sleep(0.2)

    thread = threading.Thread(target=cron)
    thread.start()
    try:
        assert run_dag("jobs_limits_shared", day) == {"load_a": "success", "load_b": "success"}
    finally:
        thread.join()
    runs = list(cron_runs)
    for task_id in ("load_a", "load_b"):
        seen = recorded(jobs_env, task_id)
        assert seen["holders"] == [seen["job_id"]]  # its own slot, nobody else's
        runs.append((seen["began"], seen["ended"]))
    runs.sort()
    assert len(runs) == 6 and all(a[1] <= b[0] for a, b in zip(runs, runs[1:])), runs  # never two at once
    assert c.limits(["warehouse"])[0].used == 0
    # jobs_output_ttl (a timedelta on the wrapped operator) and output_ttl (seconds on @task.jobs)
    assert 3500 < c.output_info(f"wh.a.{day}").ttl <= 3600 and 500 < c.output_info(f"wh.b.{day}").ttl <= 600


def test_a_limit_not_set_fails_the_task_at_once_with_a_clear_error(jobs_env):
    from jobs_airflow.operators import JobsLimitError
    from jobs_airflow.version_compat import AirflowFailException

    tis = run_dag_tis("jobs_limits_missing", "2026-11-21")
    assert state(tis["never"]) == "failed" and tis["never"].try_number == 1  # retries=2 are not used
    assert not (jobs_env.out / "never.json").exists()
    context = {"ti": SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)}
    lock = JobsLock([], ["never"], limits={"no-such-limit": 1}, redis_url=jobs_env.url, prefix=jobs_env.prefix)
    with pytest.raises(JobsLimitError) as err:
        lock.start(context)
    assert isinstance(err.value, AirflowFailException)
    assert "'no-such-limit'" in str(err.value) and "jobs-core limit set" in str(err.value)
    assert no_locks(jobs_env.coordinator, "never")


def test_limits_are_checked_when_the_dag_is_parsed():
    from jobs_airflow.decorators import jobs_task

    for bad in ({"warehouse": 0}, {"warehouse": "1"}, "warehouse", {"": 1}):
        with pytest.raises((TypeError, ValueError)):
            with_jobs_lock(BaseOperator)(task_id="t", jobs_limits=bad)
        with pytest.raises((TypeError, ValueError)):
            jobs_task(limits=bad)


# -- waiting for locks in the triggerer ------------------------------------------------------------


@contextmanager
def locks_log():
    """The messages of the jobs_airflow.locks logger in the block."""
    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger = logging.getLogger("jobs_airflow.locks")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_deferrable_tasks_wait_for_busy_locks_in_the_triggerer(jobs_env):
    """Each task finds its output held by a cron job, defers (dag.test runs the trigger in line),
    and runs once the cron job lets go, which it does a moment after the task deferred."""
    c, day = jobs_env.coordinator, "2026-11-22"
    tasks = {"wrapped": f"busy.wrapped.{day}", "decorated": f"busy.decorated.{day}"}
    holders = {t: c.job([], [name], duration=30, job_id=f"cron-holding-{t}").start() for t, name in tasks.items()}
    released = {}

    def release_after_each_deferral(lines):
        deadline = time.monotonic() + 60
        while len(released) < len(tasks) and time.monotonic() < deadline:
            for task_id in set(tasks) - set(released):
                if any(f"/{task_id}/" in line and "waits in the triggerer" in line for line in list(lines)):
                    time.sleep(1.0)
                    released[task_id] = time.time()
                    holders[task_id].stop()
            time.sleep(0.1)

    with locks_log() as lines:
        thread = threading.Thread(target=release_after_each_deferral, args=(lines,))
        thread.start()
        try:
            states = run_dag("jobs_lock_wait", day)
        finally:
            thread.join()
    assert states == {"wrapped": "success", "decorated": "success"}
    assert set(released) == set(tasks)  # each deferred while its output was busy
    for task_id, name in tasks.items():
        seen = recorded(jobs_env, task_id)
        assert seen["began"] >= released[task_id]  # it ran only once the cron job let go
        assert seen["holder"].startswith(run_id_prefix("jobs_lock_wait", task_id))  # and then held the lock
        assert written_by_task(c, name, "jobs_lock_wait", task_id)


def test_jobs_deferrable_defaults_to_airflows_default_deferrable(monkeypatch):

    locked = with_jobs_lock(BaseOperator)
    assert locked(task_id="a").jobs_settings["deferrable"] is False
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert locked(task_id="b").jobs_settings["deferrable"] is True
    assert locked(task_id="c", jobs_deferrable=False).jobs_settings["deferrable"] is False


def test_a_deferred_lock_wait_fails_at_jobs_wait_naming_the_blockers(jobs_env):
    from jobs_airflow.triggers import JobsLockWaitTrigger

    c, day = jobs_env.coordinator, "2026-11-23"
    holder = c.job([], [f"busy.timeout.{day}"], duration=30, job_id="cron-holding-on").start()
    try:
        with locks_log() as lines:
            assert run_dag("jobs_lock_wait_timeout", day) == {"gives_up": "failed"}
        assert any("waits in the triggerer" in line for line in lines)
        assert not (jobs_env.out / "gives_up.json").exists()
        trigger = JobsLockWaitTrigger(inputs=[], outputs=[f"busy.timeout.{day}"], deadline=time.time() + 0.5,
                                      redis_url=jobs_env.url, prefix=jobs_env.prefix)
        outcome = asyncio.run(first_event(trigger))["jobs_core_lock_wait"]
    finally:
        holder.stop()
    assert outcome["status"] == "timeout" and "cron-holding-on" in " ".join(outcome["blockers"])
    context = {"ti": SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)}
    with pytest.raises(JobsLockUnavailable, match="jobs_wait=.*cron-holding-on"):
        JobsLock([], ["x"], deferrable=True).after_wait(None, context, outcome)


def test_a_lock_wait_failed_by_airflow_fails_with_airflows_error(jobs_env):
    """Airflow resumes a deferred task with __fail__ when its trigger failed or timed out: a lock wait
    holds no locks, so the task fails with Airflow's error, not with a claim of lost locks."""
    from jobs_airflow.operators import JobsLockLost

    task = with_jobs_lock(BaseOperator)(task_id="t", jobs_outputs=["x"], jobs_redis_url=jobs_env.url,
                                        jobs_prefix=jobs_env.prefix)
    context = {"ti": SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)}
    with pytest.raises(Exception, match="the trigger broke") as err:
        task.resume_execution("__fail__", {"error": "the trigger broke"}, context)
    assert not isinstance(err.value, JobsLockLost) and type(err.value).__name__ == "TaskDeferralError"
    assert no_locks(jobs_env.coordinator, "x")


def test_the_triggerer_loads_and_makes_jobs_triggers_without_jobs_core_or_redis():
    """The triggerer imports a trigger's module and makes the trigger on its event loop: neither loads
    jobs_core or redis-py (a tenth of a second), which load in a worker thread once the trigger runs."""
    code = """if True:
        import sys, time
        import airflow.jobs.triggerer_job_runner  # what a triggerer has loaded
        began = time.perf_counter()
        from jobs_airflow import triggers
        triggers.JobsInputTrigger(inputs=["a"], redis_url="redis://h/0", poll_interval=5, deadline=1e10)
        triggers.JobsLockWaitTrigger(inputs=[], outputs=["b"], deadline=1e10, limits={"w": 1})
        triggers.JobsLockedTrigger("jobs_test_support.LockProbeTrigger", {"name": "c"}, "job", 1)
        took = time.perf_counter() - began
        assert "jobs_core" not in sys.modules and "redis" not in sys.modules, "loaded"
        print(took)
    """
    env = {**os.environ, "PYTHONPATH": str(jobs_test_env.DAGS), "PYTHONWARNINGS": "ignore"}
    took = float(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True,
                                timeout=120).stdout.split()[-1])
    assert took < 0.2  # the triggerer's blocked-loop warning threshold


# -- the extra link to the web view -----------------------------------------------------------------


def extra_link(dag_id, ti, name):
    """The link ``name`` of ``ti`` as Airflow's UI gets it: through the serialized DAG."""
    if AIRFLOW_V_3_0_PLUS:
        from airflow.serialization.serialized_objects import DagSerialization as Serialization
    else:
        from airflow.serialization.serialized_objects import SerializedDAG as Serialization
    dag = Serialization.from_dict(Serialization.to_dict(dagbag().get_dag(dag_id)))
    return dag.get_task(ti.task_id).get_extra_links(ti, name)


def test_locked_tasks_link_to_their_job_in_the_web_view(jobs_env, monkeypatch):
    c, day = jobs_env.coordinator, "2026-11-24"
    c.create_outputs([f"raw.events.{day}"])
    tis = run_dag_tis("jobs_taskflow", day)  # no web view configured: no link
    assert state(tis["report"]) == "success" and not extra_link("jobs_taskflow", tis["report"], "jobs-core")
    monkeypatch.setenv("AIRFLOW__JOBS_CORE__WEB_URL", "http://jobs.example:8377/")
    c.create_outputs(["raw.events.2026-11-25"])
    tis = run_dag_tis("jobs_taskflow", "2026-11-25")
    job_id = c.output_info("report.2026-11-25").writer
    assert job_id.startswith(run_id_prefix("jobs_taskflow", "report"))
    assert extra_link("jobs_taskflow", tis["report"], "jobs-core") == (
        f"http://jobs.example:8377/?job={urllib.parse.quote(job_id, safe='')}")
    # a connection's web_url extra wins over the configuration
    monkeypatch.setenv("AIRFLOW_CONN_JOBS_WEB", json.dumps({"conn_type": "jobs_core", "host": "127.0.0.1",
        "port": jobs_env.port, "extra": {"prefix": jobs_env.prefix, "web_url": "https://jobs.internal/web"}}))
    context = {"ti": SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1,
                                     xcom_push=lambda key, value: pushed.update({key: value})),
               "task": dagbag().get_dag("jobs_taskflow").get_task("report")}
    pushed = {}
    JobsLock([], ["linked"], redis_conn_id="jobs_web").start(context).stop()
    assert pushed == {"jobs_core_web_link": "https://jobs.internal/web/?job=airflow%2Fd%2Ft%2Fr%2F-1%2F1"}


# -- OpenLineage -------------------------------------------------------------------------------------


def test_openlineage_events_carry_the_jobs_inputs_and_outputs(jobs_env, tmp_path):
    """Airflow's OpenLineage provider, with its file transport, in `airflow dags test`: a @task.jobs
    task's START and COMPLETE events list its jobs_core input and output datasets."""
    pytest.importorskip("airflow.providers.openlineage")
    day = "2026-11-26"
    jobs_env.coordinator.create_outputs([f"raw.events.{day}"])
    events_file = tmp_path / "openlineage.jsonl"
    env = {**os.environ, "PYTHONPATH": str(jobs_test_env.DAGS), "JOBS_OPENLINEAGE_NAMESPACE": "",
           "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
               {"type": "file", "log_file_path": str(events_file), "append": True}),
           "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "jobs_taskflow", day], env=env, check=True,
                   capture_output=True, text=True, timeout=300)
    namespace = "redis://" + jobs_env.url.split("://", 1)[1].split("?")[0]
    events = []
    deadline = time.monotonic() + 30  # the provider may emit from a process or thread of its own
    while time.monotonic() < deadline:
        lines = events_file.read_text().splitlines() if events_file.exists() else []
        events = [json.loads(line) for line in lines if line.strip()]
        kinds = {e["eventType"] for e in events if e["job"]["name"].endswith(".report")}
        if {"START", "COMPLETE"} <= kinds:
            break
        time.sleep(0.5)
    report = {e["eventType"]: e for e in events if e["job"]["name"].endswith(".report")}
    assert {"START", "COMPLETE"} <= set(report), [(e["eventType"], e["job"]["name"]) for e in events]
    for kind in ("START", "COMPLETE"):
        assert [(d["namespace"], d["name"]) for d in report[kind]["inputs"]] == [
            (namespace, f"{jobs_env.prefix}raw.events.{day}")]
        assert [(d["namespace"], d["name"]) for d in report[kind]["outputs"]] == [
            (namespace, f"{jobs_env.prefix}report.{day}")]


# -- secrets and hostile text --------------------------------------------------------------------

PASSWORD = "Sup3r/S3cret"  # an unencoded / makes the URL unparseable by urllib


def no_secret(text):
    return all(part not in text for part in ("Sup3r", "S3cret", "h1dden"))


@pytest.mark.parametrize("url", [
    "redis://jobs:h1dden@127.0.0.1:1/0",
    "redis://127.0.0.1:1/0?password=h1dden",
    "redis+sentinel://127.0.0.1:26379/mymaster?sentinel_password=h1dden",
    f"redis://jobs:{PASSWORD}@127.0.0.1:1/0",
])
def test_no_repr_or_error_shows_a_password(url):
    from jobs_airflow.triggers import JobsLockedTrigger
    from jobs_test_support import LockProbeTrigger

    target = JobsHook(redis_url=url).target()
    assert no_secret(repr(target)) and "***" in repr(target)
    shown = [repr(JobsInputTrigger(inputs=["a"], redis_url=url)),
             repr(JobsLockedTrigger.around(LockProbeTrigger("a"), "job", 1, redis_url=url))]
    if AIRFLOW_V_3_0_PLUS:
        from jobs_airflow.triggers import JobsOutputTrigger

        shown.append(repr(JobsOutputTrigger(name="a", redis_url=url)))
    for text in shown:
        assert no_secret(text) and "***" in text, text
    try:
        JobsHook(redis_url=url).get_conn().close()  # clients connect lazily: only a bad URL fails here
    except jobs_core.ConfigurationError as exc:
        assert no_secret(str(exc)) and no_secret(repr(exc)) and exc.__cause__ is None
        assert "***" in str(exc)
    else:
        assert PASSWORD not in url  # the unparseable form must be refused


def test_connection_password_is_hidden_in_the_target(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_JOBS_SECRET", json.dumps(
        {"conn_type": "redis", "host": "127.0.0.1", "port": 1, "login": "jobs", "password": PASSWORD}))
    target = JobsHook(redis_conn_id="jobs_secret").target()
    assert urllib.parse.unquote(target.url.split("@")[0].split(":")[-1]) == PASSWORD
    assert no_secret(repr(target)) and "***" in repr(target)


HOSTILE = "evil\x1b[2J\nFORGED: all good\u202e"


def test_a_sensor_timing_out_in_a_worker_names_the_blockers(jobs_env):
    """Poke mode: Airflow's time-out would say only that time ran out; the sensor's says what blocked."""
    from jobs_airflow.sensors import JobsInputSensor
    from jobs_airflow.version_compat import AirflowSensorTimeout

    holder = jobs_env.coordinator.job([], ["sensed.busy"], duration=30, job_id="cron-writing-it").start()
    try:
        sensor = JobsInputSensor(task_id="wait", inputs=["sensed.busy", "sensed.missing"], redis_url=jobs_env.url,
                                 prefix=jobs_env.prefix, timeout=0.3, poke_interval=0.1, mode="poke")
        with pytest.raises(AirflowSensorTimeout) as err:
            sensor.execute({})
    finally:
        holder.stop()
    message = str(err.value)
    assert "not ready within 0.3s" in message and "cron-writing-it" in message, message
    assert "input_missing: 'sensed.missing'" in message, message


def escaped(text):
    return not any(ch in text for ch in "\x1b\n\u202e") and "\\x1b" in text


def test_hostile_job_ids_and_hosts_are_escaped_in_task_messages(jobs_env):
    """A jobs.py client may hold a lock under any job id; a holder record may name any host."""
    from jobs_airflow.sensors import JobsInputSensor

    c = jobs_env.coordinator
    c.client.set(jobs_env.prefix + "olock:hostile.id", "jobspy" + HOSTILE, ex=60)  # a jobs.py client's lock
    holder = c.job([], ["hostile.host"], duration=60, job_id="jobs-core-writer").start()
    c.client.hset(jobs_env.prefix + "jobs:holder:" + holder.id, "host", "host" + HOSTILE)
    try:
        context = {"ti": SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)}
        lock = JobsLock([], ["hostile.id"], wait=0.2, redis_url=jobs_env.url, prefix=jobs_env.prefix)
        with pytest.raises(JobsLockUnavailable) as err:  # the task's error, in its log
            lock.start(context)
        assert escaped(str(err.value)), str(err.value)

        sensor = JobsInputSensor(task_id="wait", inputs=["hostile.id", "hostile.host"], redis_url=jobs_env.url,
                                 prefix=jobs_env.prefix, timeout=1)
        with task_log(sensor) as lines:  # a poke's log line says what blocks the inputs
            assert not sensor.poke({})
        blocked = [line for line in lines if "not ready" in line]
        assert blocked and escaped(blocked[0]) and "on hostevil\\x1b" in blocked[0], lines

        trigger = JobsInputTrigger(inputs=["hostile.id", "hostile.host"], redis_url=jobs_env.url,
                                   prefix=jobs_env.prefix, deadline=time.time() + 0.3)
        event = asyncio.run(first_event(trigger))
        assert event["status"] == "timeout" and all(escaped(b) for b in event["blockers"]), event
        with pytest.raises(Exception) as err:  # AirflowSensorTimeout, from an event with raw text
            sensor.execute_complete({}, {"status": "timeout", "inputs": ["x"],
                                         "blockers": [f"output_locked: 'x' (held by {HOSTILE})"]})
        assert escaped(str(err.value))
    finally:
        holder.stop(failed=True)


@contextmanager
def task_log(task):
    """The lines ``task`` logs in the block (Airflow 3 logs through structlog, Airflow 2 through logging)."""
    lines = []
    if AIRFLOW_V_3_0_PLUS:
        import structlog

        with structlog.testing.capture_logs() as captured:
            yield lines
        for entry in captured:
            args = entry.get("positional_args") or ()
            lines.append(entry["event"] % tuple(args) if args else entry["event"])
        return

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = Collect()
    task.log.addHandler(handler)
    try:
        yield lines
    finally:
        task.log.removeHandler(handler)


@needs_assets
def test_asset_watcher_uses_its_connections_namespace(jobs_env, monkeypatch):
    """jobs_asset(redis_conn_id=...) names and watches the output in the connection's namespace."""
    from jobs_airflow.assets import jobs_asset
    from jobs_airflow.triggers import JobsOutputTrigger

    conn_prefix, env_prefix = jobs_env.prefix + "conn:", jobs_env.prefix + "env:"
    monkeypatch.setenv("AIRFLOW_CONN_JOBS_NAMESPACE", json.dumps(
        {"conn_type": "redis", "host": "127.0.0.1", "port": jobs_env.port, "extra": {"jobs_prefix": conn_prefix}}))
    monkeypatch.setenv("JOBS_PREFIX", env_prefix)
    monkeypatch.delenv("JOBS_REDIS_URL")
    asset = jobs_asset("landing", redis_conn_id="jobs_namespace", watch=True, poll_interval=0.5)
    assert asset.uri == f"x-jobs:{conn_prefix}landing" and asset.name == f"{conn_prefix}landing"
    classpath, kwargs = asset.watchers[0].trigger.serialize()
    trigger = JobsOutputTrigger(**kwargs)  # as the triggerer makes it
    in_env = jobs_core.Coordinator.from_url(jobs_env.url, env_prefix)
    in_conn = jobs_core.Coordinator.from_url(jobs_env.url, conn_prefix)

    def writes():
        time.sleep(0.7)
        with in_env.job([], ["landing"], job_id="in-the-environment-namespace"):
            pass
        time.sleep(0.7)
        with in_conn.job([], ["landing"], job_id="in-the-connection-namespace"):
            pass

    thread = threading.Thread(target=writes)
    thread.start()
    try:
        event = asyncio.run(first_event(trigger))
    finally:
        thread.join()
        in_env.close()
        in_conn.close()
    assert event["writer"] == "in-the-connection-namespace"


def test_a_user_ending_a_deferred_task_releases_its_locks(jobs_env):
    """The triggerer calls on_kill when a user marks a deferred task failed or succeeded, or clears it."""
    from jobs_airflow.triggers import JobsLockedTrigger
    from jobs_test_support import LockProbeTrigger

    c = jobs_env.coordinator
    job = c.job([], ["deferred.killed"], duration=5, job_id="airflow/d/t/killed/-1/1").start()
    token = job.detach(lease=600)
    trigger = JobsLockedTrigger.around(LockProbeTrigger("deferred.killed"), job.id, token, redis_url=jobs_env.url,
                                       prefix=jobs_env.prefix)
    assert c.output_info("deferred.killed").write_lock.job_id == job.id
    asyncio.run(trigger.on_kill())
    assert not c.output_info("deferred.killed").written and no_locks(c, "deferred.killed")
