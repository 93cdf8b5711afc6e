"""DAGs of the adapter's edge cases, run by tests/test_airflow.py with dag.test(): operators that
succeed by raising, values Airflow cannot push to XCom, parking for human input, triggers that
end their task, killed tasks, names that look like template files, timedelta durations, outputs
that may not be overwritten. Redis and prefix come from JOBS_REDIS_URL / JOBS_PREFIX; tasks record
what they saw with jobs_test_support.record."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

from jobs_airflow.decorators import jobs_lock
from jobs_airflow.operators import with_jobs_lock
from jobs_airflow.sensors import JobsInputSensor
from jobs_airflow.version_compat import AIRFLOW_V_3_0_PLUS, get_current_context
from jobs_test_support import EndInTriggerOperator, kill_myself, lock_facts, record

if AIRFLOW_V_3_0_PLUS:
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import BranchPythonOperator, ShortCircuitOperator
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.sdk import DAG, task
else:
    from airflow import DAG
    from airflow.decorators import task
    from airflow.operators.bash import BashOperator
    from airflow.operators.empty import EmptyOperator
    from airflow.operators.python import BranchPythonOperator, ShortCircuitOperator
    from airflow.operators.trigger_dagrun import TriggerDagRunOperator

DAG_ARGS = {"schedule": None, "start_date": datetime(2026, 11, 1), "catchup": False,
            "default_args": {"retries": 0}}

# -- operators that succeed by raising (Airflow 3: DownstreamTasksSkipped, DagRunTriggerException) --

with DAG("jobs_short_circuit", **DAG_ARGS):
    gate = with_jobs_lock(ShortCircuitOperator)(task_id="gate", python_callable=lambda: False,
                                                jobs_outputs=["gate.{{ ds }}"])
    gate >> EmptyOperator(task_id="after")

with DAG("jobs_branch", **DAG_ARGS):
    branch = with_jobs_lock(BranchPythonOperator)(task_id="branch", python_callable=lambda: "left",
                                                  jobs_outputs=["branch.{{ ds }}"])
    branch >> [EmptyOperator(task_id="left"), EmptyOperator(task_id="right")]

with DAG("jobs_trigger_target", **DAG_ARGS):
    EmptyOperator(task_id="noop")

with DAG("jobs_trigger", **DAG_ARGS):
    # conf {"run_id": ...} names the triggered run: the same one twice makes the second trigger fail
    with_jobs_lock(TriggerDagRunOperator)(task_id="trigger", trigger_dag_id="jobs_trigger_target",
                                          trigger_run_id="{{ dag_run.conf.get('run_id', 'triggered-' ~ ds) }}",
                                          jobs_outputs=["trigger.{{ ds }}"])

with DAG("jobs_exits", **DAG_ARGS):

    @task.jobs(outputs=["exited.{{ ds }}"])
    def exits():
        sys.exit(0)  # a success on Airflow 2, a failure on Airflow 3

    exits()

# -- return values Airflow cannot push to XCom ---------------------------------------------------

with DAG("jobs_xcom", **DAG_ARGS):

    @task.jobs(outputs=["xcom.unpushable.{{ ds }}"])
    def unpushable():
        return object()

    @task.jobs(outputs=["xcom.not_a_dict.{{ ds }}"], multiple_outputs=True)
    def not_a_dict():
        return ["rows", 3]

    @task.jobs(outputs=["xcom.a_dict.{{ ds }}"], multiple_outputs=True)
    def a_dict():
        return {"rows": 3}

    @task
    @jobs_lock([], ["xcom.plain.{{ ds }}"])
    def plain_unpushable():
        return object()

    unpushable()
    not_a_dict()
    a_dict()
    plain_unpushable()

with DAG("jobs_xcom_mapped", **DAG_ARGS):

    @task.jobs(outputs=["xcom.unmappable.{{ ds }}"])
    def unmappable():
        return "not a list"  # a mapped downstream task needs a list or a dict: Airflow fails this task

    @task
    def each(item):
        return item

    each.expand(item=unmappable())

# -- triggers that end their task (end_from_trigger) ---------------------------------------------

with DAG("jobs_end_in_trigger", **DAG_ARGS):
    with_jobs_lock(EndInTriggerOperator)(task_id="ended", state="{{ dag_run.conf.get('state', 'success') }}",
                                         jobs_outputs=["ended.{{ ds }}"], jobs_duration=5)

# -- killed tasks (on_kill, Airflow's SIGTERM path) ----------------------------------------------

with DAG("jobs_killed", **DAG_ARGS):

    @task.jobs(outputs=["killed.{{ ds }}"])
    def killed(ds=None):
        kill_myself()  # Airflow 2 raises in the handler; Airflow 3 calls on_kill and lets the task go on
        record("killed", lock_facts(f"killed.{ds}"))
        return "finished anyway"

    killed()

with DAG("jobs_killed_plain", **DAG_ARGS):

    @task
    @jobs_lock([], ["killed.plain.{{ ds }}"])
    def killed_plain():
        kill_myself()
        record("killed_plain", lock_facts(f"killed.plain.{get_current_context()['ds']}"))
        return "finished anyway"

    killed_plain()

with DAG("jobs_killed_bash", **DAG_ARGS):
    # a wrapped operator with its own on_kill (BashOperator's ends its command): the shell sends the
    # task's process SIGTERM, as Airflow's supervisor would, then keeps running until it is ended (after
    # a second: a SIGTERM that comes while BashOperator is still starting the shell finds no command
    # to end, Airflow's own race, and the shell would then run its 30 s)
    with_jobs_lock(BashOperator)(task_id="killed_bash", jobs_outputs=["killed.bash.{{ ds }}"],
                                 bash_command="sleep 1; kill -TERM $PPID; sleep 30")

# -- names that look like template files ---------------------------------------------------------

with DAG("jobs_names_not_files", **DAG_ARGS):
    # names_are_not_files.sh exists in this folder: BashOperator's template_ext must not load it
    with_jobs_lock(BashOperator)(task_id="write", bash_command="echo written",
                                 jobs_outputs=["script.{{ ds }}.sh", "names_are_not_files.sh"])

# -- a task that waits for its locks (what its log says) ------------------------------------------

with DAG("jobs_waits_talk", **DAG_ARGS):
    with_jobs_lock(BashOperator)(task_id="waits", bash_command="echo done", jobs_outputs=["talk.{{ ds }}"],
                                 jobs_wait=30, jobs_deferrable=False)

# -- timedelta durations -------------------------------------------------------------------------

with DAG("jobs_timedelta", **DAG_ARGS):
    write = with_jobs_lock(BashOperator)(task_id="write", bash_command="echo written", jobs_outputs=["td.{{ ds }}"],
                                         jobs_wait=timedelta(seconds=1), jobs_duration=timedelta(minutes=1),
                                         jobs_deferral_lease=timedelta(hours=1))

    @task.jobs(outputs=["td.flow.{{ ds }}"], wait=timedelta(seconds=1), duration=timedelta(seconds=30))
    def flow():
        pass

    @task
    @jobs_lock([], ["td.plain.{{ ds }}"], wait=timedelta(seconds=1), duration=timedelta(seconds=30))
    def plain():
        pass

    wait = JobsInputSensor(task_id="wait", inputs=["td.{{ ds }}"], poll_interval=timedelta(seconds=5),
                           poke_interval=0.2, timeout=10)
    write >> wait
    flow()
    plain()

# -- outputs that may not be overwritten ---------------------------------------------------------

with DAG("jobs_no_overwrite", **{**DAG_ARGS, "default_args": {"retries": 2, "retry_delay": timedelta(0)}}):
    with_jobs_lock(BashOperator)(task_id="write", bash_command='echo ran >> "$JOBS_TEST_OUT/ran"',
                                 jobs_outputs=["kept.{{ ds }}"], jobs_overwrite=False, jobs_wait=5)

# -- Human-in-the-loop (Airflow 3.3) -------------------------------------------------------------

try:
    from airflow.providers.standard.operators.hitl import ApprovalOperator
    from airflow.sdk.exceptions import TaskAwaitingInput  # noqa: F401  (3.3: parks without a trigger)
except ImportError:
    ApprovalOperator = None

if ApprovalOperator is not None:
    with DAG("jobs_hitl", **DAG_ARGS):
        ask = with_jobs_lock(ApprovalOperator)(task_id="ask", subject="publish the report?",
                                               jobs_outputs=["approved.{{ ds }}"], jobs_duration=5)
        ask >> EmptyOperator(task_id="publish")
