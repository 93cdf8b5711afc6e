"""DAGs run by tests/test_airflow_services.py with Airflow 3's real scheduler, triggerer and dag-processor.

The Redis, prefix and output folder come from JOBS_REDIS_URL, JOBS_PREFIX and JOBS_TEST_OUT.
"""

from __future__ import annotations

from datetime import datetime

from jobs_airflow.version_compat import AIRFLOW_V_3_0_PLUS

if AIRFLOW_V_3_0_PLUS:  # asset watchers exist from Airflow 3
    from airflow.sdk import DAG, task
    from jobs_airflow.assets import jobs_asset
    from jobs_airflow.operators import with_jobs_lock
    from jobs_airflow.sensors import JobsInputSensor
    from jobs_test_support import DeferOnceOperator, record

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
