"""An Airflow DAG on jobs_core: wait for raw events written by anything, clean them under
locks, and let another DAG run whenever the daily report is written (Airflow 3).

Copy it into your DAGs folder; configure Redis with the Airflow connection
``redis_default`` (the Redis provider's), or ``JOBS_REDIS_URL`` / ``JOBS_PREFIX``
on the workers, the triggerer and the dag-processor.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task
from jobs_airflow.assets import jobs_asset
from jobs_airflow.operators import with_jobs_lock
from jobs_airflow.sensors import JobsInputSensor

LockedBash = with_jobs_lock(BashOperator)
report_asset = jobs_asset("reporting.latest", watch=True)

with DAG("reporting_events", schedule="@daily", start_date=datetime(2026, 11, 1), catchup=False):
    # raw.events.<ds> is written by a cron script (jobs-core start/stop) or a Luigi task:
    # wait for it in the triggerer, woken the moment its writer stops
    wait = JobsInputSensor(task_id="wait_raw", inputs=["raw.events.{{ ds }}"], deferrable=True, timeout=6 * 3600)

    # read-lock the input and write-lock the output while the command runs; written only on success
    clean = LockedBash(
        task_id="clean",
        bash_command="clean-events --day {{ ds }}",
        jobs_inputs=["raw.events.{{ ds }}"],
        jobs_outputs=["clean.events.{{ ds }}"],
        jobs_wait=600,  # busy for longer than that: fail, and let Airflow's retries try again
        retries=3,
    )

    @task.jobs(inputs=["clean.events.{{ ds }}"], outputs=["report.{{ ds }}", "reporting.latest"],
               outlets=[report_asset])
    def report(ds=None):
        print(f"building the report of {ds}")

    wait >> clean >> report()

# runs whenever reporting.latest is written: by the DAG above, or by anything else
with DAG("publish_report", schedule=[report_asset], start_date=datetime(2026, 11, 1), catchup=False):

    @task
    def publish(triggering_asset_events=None):
        for event in triggering_asset_events[report_asset]:
            print("report written:", event.extra)

    publish()
