"""jobs_airflow: jobs_core locks and outputs in Airflow 3.3 and 2.11.

One small module per role (imported on demand, so that Airflow's provider
discovery, which loads :mod:`jobs_airflow.provider`, stays light):

* :mod:`jobs_airflow.hooks`: ``JobsHook``, the Redis connection (``redis_conn_id``,
  ``redis_url`` or ``JOBS_REDIS_URL``) and prefix, as sync and asyncio coordinators;
* :mod:`jobs_airflow.sensors`: ``JobsInputSensor`` (poke, reschedule, deferrable);
* :mod:`jobs_airflow.triggers`: ``JobsInputTrigger``, ``JobsOutputTrigger`` for asset watchers (Airflow 3),
  and ``JobsLockedTrigger``, around the trigger of a deferred locked task;
* :mod:`jobs_airflow.operators`: ``with_jobs_lock(OperatorClass)``;
* :mod:`jobs_airflow.locks`: how a task instance holds its locks, from before ``execute`` to Airflow's verdict;
* :mod:`jobs_airflow.arguments`: names and durations from DAG files, checked when the DAG is parsed;
* :mod:`jobs_airflow.decorators`: ``@task.jobs`` and ``@jobs_lock`` for TaskFlow;
* :mod:`jobs_airflow.assets`: ``jobs_asset(name)`` (Airflow 3);
* :mod:`jobs_airflow.version_compat`: every Airflow 2/3 import switch;
* :mod:`jobs_airflow.provider`: ``get_provider_info()`` for the ``apache_airflow_provider`` entry point.
"""
