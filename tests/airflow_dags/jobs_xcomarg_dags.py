"""A DAG whose jobs_core names come from upstream tasks (XComArg), run by tests/test_airflow.py with
dag.test(): a whole list of names from one task, and XComArgs as items beside templated names. Its own
file, so that its import is tested apart from the other DAGs."""

from __future__ import annotations

from datetime import datetime

from jobs_airflow.operators import with_jobs_lock
from jobs_airflow.sensors import JobsInputSensor
from jobs_airflow.version_compat import AIRFLOW_V_3_0_PLUS

if AIRFLOW_V_3_0_PLUS:
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG, task
else:
    from airflow import DAG
    from airflow.decorators import task
    from airflow.operators.bash import BashOperator

DAG_ARGS = {"schedule": None, "start_date": datetime(2026, 11, 1), "catchup": False,
            "default_args": {"retries": 0}}

with DAG("jobs_xcomarg", **DAG_ARGS):

    @task
    def output_names(ds=None):
        return [f"xcomarg.out.{ds}", f"xcomarg.out2.{ds}"]

    @task
    def input_names(ds=None):
        return [f"xcomarg.in.{ds}"]

    @task
    def one_name(ds=None):
        return f"xcomarg.one.{ds}"

    outs, ins, one = output_names(), input_names(), one_name()
    # a whole list from an XComArg, and XComArgs as items beside templated names
    wait = JobsInputSensor(task_id="wait", inputs=ins, poke_interval=0.2, timeout=10)
    write = with_jobs_lock(BashOperator)(task_id="write", bash_command="echo written", jobs_inputs=ins,
                                         jobs_outputs=outs)

    @task.jobs(inputs=ins, outputs=[one, "xcomarg.flow.{{ ds }}"])
    def flow():
        pass

    wait >> write
    flow()
