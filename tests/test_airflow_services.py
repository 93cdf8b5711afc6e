"""Airflow 3's real components — api-server, scheduler, triggerer, dag-processor — with jobs_airflow.

Shows a deferrable JobsInputSensor waiting in the triggerer (woken by a plain jobs_core job), a
deferrable @task.jobs waiting there for its busy output (its worker slot freed), a wrapped deferrable
operator resuming with its next_kwargs, a DAG run scheduled by an AssetWatcher on a jobs_core output
written outside Airflow, wrapped operators whose triggers end the task in the triggerer
(end_from_trigger) writing their outputs there, and a wrapped TriggerDagRunOperator waiting for the
run it triggers (in a worker, deferred); no step of a trigger holds the triggerer's event loop as
long as its "async thread was blocked" threshold. Takes a minute or two: marked ``airflow_services``
so a quick local run can deselect it (``-m "not airflow_services"``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "airflow_dags"))
import jobs_test_env  # noqa: E402  (configures Airflow before it is imported)

pytest.importorskip("airflow")

from jobs_airflow.version_compat import AIRFLOW_V_3_0_PLUS  # noqa: E402

import jobs_core  # noqa: E402

from .servers import free_port  # noqa: E402

pytestmark = [
    pytest.mark.airflow_services,
    pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="asset watchers and the dag-processor exist from Airflow 3"),
]

COMPONENTS = (["api-server", "--workers", "1"], ["scheduler"], ["triggerer"], ["dag-processor"])


class Airflow:
    """Airflow's services on a home of their own, driven through the CLI and read through SQLite."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env, self.procs = home, env, []
        self.db = home / "airflow.db"

    def cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, check=True, text=True,
                              capture_output=True, timeout=300).stdout

    def start(self) -> None:
        for args in COMPONENTS:
            log = open(self.home / f"{args[0]}.log", "w")
            # asyncio's debug mode in the triggerer logs every step of a coroutine (a trigger's) that
            # holds the event loop over 0.1 s, naming the trigger: how the test tells whose it was
            env = {**self.env, "PYTHONASYNCIODEBUG": "1"} if args[0] == "triggerer" else self.env
            self.procs.append((args[0], subprocess.Popen([sys.executable, "-m", "airflow", *args], env=env,
                                                         stdout=log, stderr=subprocess.STDOUT)))
            log.close()

    def stop(self) -> None:
        for _, proc in self.procs:
            proc.terminate()
        for _, proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def query(self, sql: str, *args: object) -> list[tuple]:
        with sqlite3.connect(self.db, timeout=30) as conn:
            return conn.execute(sql, args).fetchall()

    def wait_for(self, what: str, check, timeout: float = 180.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs:
                assert proc.poll() is None, f"airflow {name} exited:\n{self.logs()}"
            try:
                found = check()
            except sqlite3.OperationalError:  # a table not made yet, or the database busy
                found = None
            if found:
                return found
            time.sleep(1.0)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (last lines)\n" + "\n".join(p.read_text(errors="replace").splitlines()[-40:])
                         for p in sorted(self.home.glob("*.log")))


@pytest.fixture
def airflow(tmp_path, redis_server, prefix):
    home = tmp_path / "home"
    out = tmp_path / "out"
    home.mkdir()
    out.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(jobs_test_env.DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "PYTHONPATH": str(jobs_test_env.DAGS),
        "JOBS_REDIS_URL": redis_server.url,
        "JOBS_PREFIX": prefix,
        "JOBS_TEST_OUT": str(out),
    })
    af = Airflow(home, env)
    af.cli("db", "migrate")
    af.start()
    af.out = out
    af.coordinator = jobs_core.Coordinator.from_url(redis_server.url, prefix)
    yield af
    af.stop()
    af.coordinator.close()


@pytest.mark.timeout(900)
def test_triggerer_waits_and_an_asset_watcher_schedules_a_run(airflow):
    c = airflow.coordinator
    airflow.wait_for("the DAGs to be parsed", lambda: len(airflow.query(
        "select dag_id from serialized_dag where dag_id in ('jobs_services_sensor', 'jobs_services_watched', "
        "'jobs_services_ended', 'jobs_services_target', 'jobs_services_trigger', 'jobs_services_lock_wait')"
    )) == 6,
        timeout=240)

    # 1. the deferrable sensor waits in the triggerer, not in a worker; so does a task whose output is busy
    busy = c.job([], ["svc.busy"], duration=600, job_id="cron-holding-busy").start()
    airflow.cli("dags", "trigger", "jobs_services_lock_wait")
    airflow.cli("dags", "trigger", "jobs_services_sensor")
    trigger = airflow.wait_for("the sensor deferred to a running triggerer", lambda: airflow.query(
        "select t.classpath, t.kwargs from task_instance ti join trigger t on ti.trigger_id = t.id "
        "where ti.dag_id = 'jobs_services_sensor' and ti.task_id = 'wait' and ti.state = 'deferred' "
        "and t.triggerer_id is not null"))
    assert trigger[0][0] == "jobs_airflow.triggers.JobsInputTrigger"
    time.sleep(2)  # a moment for the trigger to subscribe; a write before that is seen by its first look anyway
    with c.job([], ["svc.input"], job_id="cron-extract"):
        pass
    airflow.wait_for("the sensor and the wrapped deferrable operator to succeed", lambda: sorted(airflow.query(
        "select task_id, state from task_instance where dag_id = 'jobs_services_sensor'")) == [
        ("deferred", "success"), ("wait", "success")])
    seen = json.loads((airflow.out / "deferred.json").read_text())
    assert seen["mine"] == "kept"  # the operator's own next_kwargs came back beside the lock state
    assert seen["holder"] == seen["after"]["holder"] and seen["holder"].startswith("airflow/jobs_services_sensor/")
    assert c.output_info("svc.deferred").writer == seen["holder"]
    trigger = airflow.wait_for("the busy task to wait in the triggerer", lambda: airflow.query(
        "select t.classpath from task_instance ti join trigger t on ti.trigger_id = t.id "
        "where ti.dag_id = 'jobs_services_lock_wait' and ti.state = 'deferred' and t.triggerer_id is not null"))
    assert trigger[0][0] == "jobs_airflow.triggers.JobsLockWaitTrigger"
    time.sleep(2)  # a moment for the trigger to subscribe (a release before that is seen by its first look)
    busy.stop()
    airflow.wait_for("the busy task to take its lock and succeed", lambda: airflow.query(
        "select 1 from task_instance where dag_id = 'jobs_services_lock_wait' and state = 'success'"))
    seen = json.loads((airflow.out / "after_the_wait.json").read_text())
    assert seen["holder"].startswith("airflow/jobs_services_lock_wait/after_the_wait/")
    assert c.output_info("svc.busy").writer == seen["holder"]

    # 2. an AssetWatcher on a jobs_core output schedules a run when something outside Airflow writes it
    airflow.wait_for("the asset watcher's trigger to run in the triggerer", lambda: airflow.query(
        "select 1 from trigger where classpath = 'jobs_airflow.triggers.JobsOutputTrigger' "
        "and triggerer_id is not null"))
    time.sleep(3)  # its first look records the output's current state; the write must come after it
    with c.job([], ["svc.landing"], job_id="luigi-landing"):
        pass
    airflow.wait_for("a run of the watched DAG to succeed", lambda: airflow.query(
        "select 1 from task_instance where dag_id = 'jobs_services_watched' and task_id = 'landed' "
        "and state = 'success'"))
    runs = airflow.query("select run_type from dag_run where dag_id = 'jobs_services_watched'")
    assert runs == [("asset_triggered",)]
    landed = json.loads((airflow.out / "landed.json").read_text())
    assert [e["payload"]["writer"] for e in landed["extras"]] == ["luigi-landing"]  # the trigger event, as extra

    # 3. triggers that end their task in the triggerer (end_from_trigger): the outputs are written there
    airflow.cli("dags", "trigger", "jobs_services_ended")
    airflow.wait_for("the tasks ended by their triggers to succeed", lambda: sorted(airflow.query(
        "select task_id, state from task_instance where dag_id = 'jobs_services_ended'")) == [
        ("at_time", "success"), ("ended", "success")])
    for task_id, name in (("ended", "svc.ended"), ("at_time", "svc.at_time")):
        info = c.output_info(name)
        assert info.written and info.writer.startswith(f"airflow/jobs_services_ended/{task_id}/"), info
        assert info.write_lock is None and not info.readers
    assert not (airflow.out / "ended.json").exists()  # never resumed on a worker

    # 4. TriggerDagRunOperator waiting for its run, in the worker or deferred: written once it succeeded
    airflow.cli("dags", "unpause", "jobs_services_target")
    airflow.cli("dags", "trigger", "jobs_services_trigger")
    airflow.wait_for("the triggering tasks to succeed", lambda: sorted(airflow.query(
        "select task_id, state from task_instance where dag_id = 'jobs_services_trigger'")) == [
        ("trigger_deferred", "success"), ("trigger_waiting", "success")])
    assert airflow.query("select count(*) from dag_run where dag_id = 'jobs_services_target' and state = 'success'"
                         ) == [(2,)]
    for kind in ("waiting", "deferred"):
        info = c.output_info(f"svc.triggered.{kind}")
        assert info.written and info.writer.startswith(f"airflow/jobs_services_trigger/trigger_{kind}/"), info
        assert info.write_lock is None and not info.readers

    # no trigger held the triggerer's event loop as long as its "async thread was blocked" warning
    # threshold (0.2 s). asyncio's debug mode names each step over 0.1 s and the trigger running it (task
    # name "ID <n>" or "<dag>/<run>/<task>/... (ID <n>)"); the watchdog's own warning names nobody, and on
    # a loaded 2-core machine it also fires for Airflow's steps (making a task trigger's context, its
    # in-process API thread). The one long step of ours is the first import of redis-py in a triggerer
    # (~0.13 s, in a worker thread but holding the GIL); jobs_core and the client load off the loop.
    triggerer_log = (airflow.home / "triggerer.log").read_text(errors="replace")
    steps = [(name, float(took)) for name, took in re.findall(
        r"Executing <Task [^\n]*?name='([^']*)'[^\n]*? took ([0-9.]+) seconds", triggerer_log)]
    triggers = [(name, took) for name, took in steps if re.search(r"\bID \d+\)?$", name)]
    assert all(took < 0.2 for _, took in triggers), (triggers, steps)
    assert "trigger ID 1 starting" in triggerer_log  # the log is the triggerer's, with triggers in it
