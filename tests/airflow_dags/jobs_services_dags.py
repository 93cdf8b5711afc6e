"""DAGs run by tests/test_airflow_services.py with Airflow 3's real scheduler, triggerer and dag-processor.

The Redis, prefix and output folder come from JOBS_REDIS_URL, JOBS_PREFIX and JOBS_TEST_OUT.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from jobs_airflow.version_compat import AIRFLOW_V_3_0_PLUS

if AIRFLOW_V_3_0_PLUS:  # asset watchers exist from Airflow 3
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
    from airflow.sdk import DAG, task
    from jobs_airflow.assets import jobs_asset
    from jobs_airflow.operators import with_jobs_lock
    from jobs_airflow.sensors import JobsInputSensor
    from jobs_test_support import DeferOnceOperator, EndInTriggerOperator, lock_facts, record

    with DAG("jobs_services_sensor", schedule=None, start_date=datetime(2026, 11, 1), catchup=False):
        wait = JobsInputSensor(task_id="wait", inputs=["svc.input"], deferrable=True, timeout=600, poll_interval=60)
        deferred = with_jobs_lock(DeferOnceOperator)(task_id="deferred", probe="svc.deferred",
                                                     jobs_inputs=["svc.input"], jobs_outputs=["svc.deferred"])
        wait >> deferred

    with DAG("jobs_services_watched", schedule=[jobs_asset("svc.landing", watch=True, poll_interval=60)],
             start_date=datetime(2026, 11, 1), catchup=False):

        @task
        def landed(**context):
            events = [e for events in context["triggering_asset_events"].values() for e in events]
            record("landed", {"run_id": context["run_id"], "extras": [dict(e.extra) for e in events]})

        landed()

    # triggers that end their task in the triggerer: the task never resumes on a worker
    with DAG("jobs_services_ended", schedule=None, start_date=datetime(2026, 11, 1), catchup=False):
        with_jobs_lock(EndInTriggerOperator)(task_id="ended", jobs_outputs=["svc.ended"], jobs_duration=5)
        with_jobs_lock(DateTimeSensorAsync)(task_id="at_time", target_time=datetime(2026, 1, 1, tzinfo=timezone.utc),
                                            end_from_trigger=True, jobs_outputs=["svc.at_time"], jobs_duration=5)

    # a task whose output is busy waits for it in the triggerer, its worker slot freed
    with DAG("jobs_services_lock_wait", schedule=None, start_date=datetime(2026, 11, 1), catchup=False):

        @task.jobs(outputs=["svc.busy"], wait=600, deferrable=True)
        def after_the_wait():
            record("after_the_wait", lock_facts("svc.busy"))

        after_the_wait()

    # TriggerDagRunOperator waiting for the run it triggers, in a worker or deferred: Airflow decides the
    # outcome after the operator raised DagRunTriggerException
    with DAG("jobs_services_target", schedule=None, start_date=datetime(2026, 11, 1), catchup=False):
        # the triggered run takes a while: a deferred task whose trigger fires within the ~5 s its
        # worker's exit takes to reach the scheduler can be failed by Airflow itself (the late
        # "success" of the deferral's exit meets the task queued again: "killed externally"),
        # seen once in a clean-clone CI run with the run done 5.2 s after the deferral
        @task
        def noop() -> None:
            time.sleep(10)

        noop()

    with DAG("jobs_services_trigger", schedule=None, start_date=datetime(2026, 11, 1), catchup=False):
        for deferrable in (False, True):
            with_jobs_lock(TriggerDagRunOperator)(
                task_id=f"trigger_{'deferred' if deferrable else 'waiting'}", trigger_dag_id="jobs_services_target",
                wait_for_completion=True, deferrable=deferrable, poke_interval=1,
                jobs_outputs=[f"svc.triggered.{'deferred' if deferrable else 'waiting'}"], jobs_duration=5)
