"""DAGs of limits and deferred lock waits, run by tests/test_airflow.py with dag.test().

Redis and prefix come from JOBS_REDIS_URL / JOBS_PREFIX; tasks record what they saw with
jobs_test_support.record.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from jobs_airflow.operators import job_id_for, with_jobs_lock
from jobs_airflow.version_compat import AIRFLOW_V_3_0_PLUS, get_current_context
from jobs_test_support import limit_holders, lock_facts, record

if AIRFLOW_V_3_0_PLUS:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, task
else:
    from airflow import DAG
    from airflow.decorators import task
    from airflow.operators.python import PythonOperator

START = datetime(2026, 11, 1)


def load(what: str) -> None:
    """Hold the task's limit slot a moment; record when, and who held the limit meanwhile."""
    began = time.time()
    holders = limit_holders("warehouse")
    time.sleep(0.5)
    record(what, {"began": began, "ended": time.time(), "holders": holders,
                  "job_id": job_id_for(get_current_context())})


# every task of this DAG takes a slot of the namespace's "warehouse" limit, shared with cron jobs
with DAG("jobs_limits_shared", schedule=None, start_date=START, catchup=False,
         default_args={"retries": 0, "jobs_limits": {"warehouse": 1}, "jobs_wait": 30}):
    # (their outputs also get a time to live)
    with_jobs_lock(PythonOperator)(task_id="load_a", python_callable=load, op_args=["load_a"],
                                   jobs_outputs=["wh.a.{{ ds }}"], jobs_output_ttl=timedelta(hours=1))

    @task.jobs(outputs=["wh.b.{{ ds }}"], output_ttl=600)
    def load_b():
        load("load_b")

    load_b()

with DAG("jobs_limits_missing", schedule=None, start_date=START, catchup=False, default_args={"retries": 2}):

    @task.jobs(outputs=["never.{{ ds }}"], limits={"no-such-limit": 1})
    def never():
        record("never", {"ran": True})

    never()


def wrote_after_wait(what: str) -> None:
    context = get_current_context()
    record(what, {"began": time.time(), **lock_facts(f"busy.{what}.{context['ds']}")})


# both tasks find their output busy: they wait in the triggerer (dag.test runs the trigger inline)
with DAG("jobs_lock_wait", schedule=None, start_date=START, catchup=False,
         default_args={"retries": 0, "jobs_deferrable": True}):
    with_jobs_lock(PythonOperator)(task_id="wrapped", python_callable=wrote_after_wait, op_args=["wrapped"],
                                   jobs_outputs=["busy.wrapped.{{ ds }}"], jobs_wait=20)

    @task.jobs(outputs=["busy.decorated.{{ ds }}"], wait=20, deferrable=True)
    def decorated():
        wrote_after_wait("decorated")

    decorated()

with DAG("jobs_lock_wait_timeout", schedule=None, start_date=START, catchup=False, default_args={"retries": 0}):

    @task.jobs(outputs=["busy.timeout.{{ ds }}"], wait=1, deferrable=True)
    def gives_up():
        record("gives_up", {"ran": True})

    gives_up()

