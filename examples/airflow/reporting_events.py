"""An Airflow DAG on jobs_core: wait for raw events written by anything, clean them under
locks and a warehouse slot shared with cron jobs, and let another DAG run whenever the daily
report is written (Airflow 3).

Copy it into your DAGs folder and say where the jobs_core namespace is: an Airflow connection
``jobs_core_default`` (type ``jobs_core``; ``redis_default`` works too), or ``JOBS_REDIS_URL`` /
``JOBS_PREFIX`` on the workers, the triggerer and the dag-processor. Set the warehouse limit once
per namespace (``jobs-core limit set warehouse 2``): every task of ``reporting_events`` takes
one of its slots, as do the cron jobs that load the warehouse.

``scripts/test-airflow`` runs it as shipped: ``airflow dags test reporting_events 2026-11-27``
after writing ``raw.events.2026-11-27`` (``jobs-core create raw.events.2026-11-27``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task
from jobs_airflow.assets import jobs_asset
from jobs_airflow.operators import with_jobs_lock
from jobs_airflow.sensors import JobsInputSensor

LockedBash = with_jobs_lock(BashOperator)
report_asset = jobs_asset("reporting.latest", watch=True)

default_args = {
    "jobs_limits": {"warehouse": 1},  # every locked task of this DAG takes a warehouse slot, like the cron loads
    "jobs_deferrable": True,  # busy locks or a full warehouse: wait in the triggerer, not in a worker slot
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
}

with DAG("reporting_events", schedule="@daily", start_date=datetime(2026, 11, 1), catchup=False,
         default_args=default_args):
    # raw.events.<ds> is written by a cron script (jobs-core start/stop) or a Luigi task:
    # wait for it in the triggerer, woken the moment its writer stops
    wait = JobsInputSensor(task_id="wait_raw", inputs=["raw.events.{{ ds }}"], deferrable=True, timeout=6 * 3600)

    # read-lock the input and write-lock the output while the command runs; written only on success
    clean = LockedBash(
        task_id="clean",
        bash_command='echo "cleaning the events of {{ ds }}"',
        jobs_inputs=["raw.events.{{ ds }}"],
        jobs_outputs=["clean.events.{{ ds }}"],
        jobs_wait=600,  # still busy after that: fail, and let Airflow's retries try again
    )

    @task.jobs(inputs=["clean.events.{{ ds }}"], outputs=["report.{{ ds }}", "reporting.latest"],
               outlets=[report_asset], output_ttl=timedelta(days=30))
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
