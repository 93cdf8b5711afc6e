"""DAGs run by tests/test_airflow.py with dag.test(). The Redis and prefix come from
JOBS_REDIS_URL / JOBS_PREFIX, set by each test; tasks record what they saw with
jobs_test_support.record."""

from __future__ import annotations

import sys
from datetime import datetime

from jobs_airflow.decorators import jobs_lock
from jobs_airflow.operators import with_jobs_lock
from jobs_airflow.sensors import JobsInputSensor
from jobs_airflow.version_compat import AIRFLOW_V_3_0_PLUS, get_current_context
from jobs_test_support import DeferOnceOperator, lock_facts, record

if AIRFLOW_V_3_0_PLUS:
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG, task
else:
    from airflow import DAG
    from airflow.decorators import task
    from airflow.operators.bash import BashOperator

DAG_ARGS = {"schedule": None, "start_date": datetime(2026, 11, 1), "catchup": False,
            "default_args": {"retries": 0}}

for mode in ("poke", "reschedule", "deferrable"):
    with DAG(f"jobs_sensor_{mode}", **DAG_ARGS):
        JobsInputSensor(task_id="wait", inputs=["raw.events.{{ ds }}", "raw.users"], poke_interval=0.2, timeout=30,
                        mode="poke" if mode == "deferrable" else mode, deferrable=mode == "deferrable")

with DAG("jobs_bash", **DAG_ARGS):
    # the command records the output's lock holder as seen from inside the task, then exits with conf["exit"]
    with_jobs_lock(BashOperator)(
        task_id="write",
        bash_command=f'"{sys.executable}" -m jobs_core show "clean.events.{{{{ ds }}}}" --json '
                     '> "$JOBS_TEST_OUT/bash.json"; exit {{ dag_run.conf.get("exit", 0) }}',
        jobs_inputs=["raw.events.{{ ds }}"], jobs_outputs=["clean.events.{{ ds }}"], jobs_wait=1)

with DAG("jobs_taskflow", **DAG_ARGS):

    @task.jobs(inputs=["raw.events.{{ ds }}"], outputs=["report.{{ ds }}"], wait=1)
    def report(**context):
        record("report", lock_facts(f"report.{context['ds']}"))
        if context["dag_run"].conf.get("fail"):
            raise RuntimeError("asked to fail")
        return "reported"

    @task
    @jobs_lock(["raw.events.{{ ds }}"], ["summary.{{ ds }}"], wait=1)
    def summary():
        context = get_current_context()
        record("summary", lock_facts(f"summary.{context['ds']}"))
        if context["dag_run"].conf.get("fail"):
            raise RuntimeError("asked to fail")

    report()
    summary()

with DAG("jobs_deferred", **DAG_ARGS):
    with_jobs_lock(DeferOnceOperator)(task_id="deferred", probe="deferred.{{ ds }}",
                                      jobs_outputs=["deferred.{{ ds }}"], jobs_duration=5)

if AIRFLOW_V_3_0_PLUS:
    from jobs_airflow.assets import jobs_asset

    with DAG("jobs_outlet", **DAG_ARGS):

        @task.jobs(outputs=["warehouse.users"], outlets=[jobs_asset("warehouse.users", prefix="")])
        def users():
            pass

        users()
