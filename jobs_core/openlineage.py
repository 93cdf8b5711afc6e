"""OpenLineage run events for every job, when the OpenLineage client is configured.

With the ``openlineage`` extra installed (``openlineage-python``) and the
client configured by its own means (``OPENLINEAGE_URL``, ``OPENLINEAGE__TRANSPORT__*``
variables, an ``openlineage.yml`` in the working directory, in
``~/.openlineage/`` or named by ``OPENLINEAGE_CONFIG``), every coordinator gets
an :class:`OpenLineageObserver`: a job emits ``START`` (with its input and output
datasets) when it starts, ``COMPLETE`` when its outputs are written, ``FAIL``
when it stops failed, ``ABORT`` when it lost a lock (or was stopped from
outside). ``OPENLINEAGE_DISABLED=true`` turns it off.

* job: namespace ``$JOBS_OPENLINEAGE_JOB_NAMESPACE``, else ``$OPENLINEAGE_NAMESPACE``,
  else ``jobs_core``; name: the job's lineage name.
* datasets: namespace ``$JOBS_OPENLINEAGE_NAMESPACE``, else where Redis is
  (``redis://host:port/db``, no credentials); name ``<prefix><name>``, the output's key.
* run: the id is derived from the job id and its fencing token, so a start
  resumed in another process (a deferred Airflow task) ends the same run; the
  ``jobs_core`` run facet holds the job id, token, holder host and pid (and, on
  ``ABORT``, the locks lost). A start made from a shell (``jobs-core start``) ends its run
  when ``jobs-core stop --token`` (or ``stop_job(id, token=...)``) stops it.

Emitting never fails a job nor makes it wait for the transport: the job only
queues what happened; a thread of the observer builds the events and hands
them to the client's transport, and logs what goes wrong.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from .events import Observer
from .names import fold

log = logging.getLogger("jobs_core.openlineage")

ENV_NAMESPACE = "JOBS_OPENLINEAGE_NAMESPACE"
ENV_JOB_NAMESPACE = "JOBS_OPENLINEAGE_JOB_NAMESPACE"
DEFAULT_JOB_NAMESPACE = "jobs_core"
PRODUCER = "https://pypi.org/project/jobs-core/"
#: The run facet's key in ``run.facets``.
FACET = "jobs_core"
#: Events a coordinator may have queued before new ones are dropped (a transport far too slow).
QUEUE_SIZE = 10_000
#: Seconds the sending thread stays idle before it ends (a new event starts it again).
IDLE = 0.5
START, COMPLETE, FAIL, ABORT = "START", "COMPLETE", "FAIL", "ABORT"


def configured() -> bool:
    """Whether the OpenLineage client would find a configuration of its own (and is not disabled).

    Cheap: environment variables and two file checks, without importing the client.
    """
    env = os.environ
    if env.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OPENLINEAGE_URL") or env.get("OPENLINEAGE_CONFIG"):
        return True
    if any(key.startswith("OPENLINEAGE__TRANSPORT") for key in env):
        return True
    home = os.path.expanduser("~/.openlineage")
    return any(os.path.isfile(os.path.join(where, "openlineage.yml")) for where in (os.getcwd(), home))


def redis_namespace(client: Any) -> str:
    """Where ``client``'s Redis is, as a URL without credentials: ``redis://host:port/db``,
    ``unix:///path?db=N``, ``redis+sentinel://service/db`` or ``redis+cluster://host:port``."""
    nodes = getattr(getattr(client, "nodes_manager", None), "startup_nodes", None)
    if nodes:
        return f"redis+cluster://{sorted(nodes)[0]}"
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", {}) or {}
    db = kwargs.get("db", 0)
    service = getattr(pool, "service_name", None)
    if service:
        return f"redis+sentinel://{service}/{db}"
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={db}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"


def lineage_observer(coordinator: Any) -> OpenLineageObserver | None:
    """An :class:`OpenLineageObserver` for ``coordinator`` if the extra is installed and the
    client configured, else None (what every coordinator calls once)."""
    if not configured():
        return None
    try:
        from openlineage.client import OpenLineageClient
    except ImportError:
        log.debug("OpenLineage is configured but openlineage-python is not installed: no lineage events "
                  "(pip install 'jobs-core[openlineage]')")
        return None
    try:
        client = OpenLineageClient()
        transport = client.config.transport or {}
        if client.transport.kind == "noop" or not (os.environ.get("OPENLINEAGE_URL") or transport.get("type")):
            return None
        return OpenLineageObserver(client, coordinator.prefix, redis_namespace(coordinator.client))
    except Exception:
        log.warning("could not set up the OpenLineage client: no lineage events", exc_info=True)
        return None


def _facet_class() -> Any:
    """The ``jobs_core`` run facet: an OpenLineage custom facet (made here, where the client is known
    to be installed)."""
    import attr
    from openlineage.client.facet_v2 import RunFacet

    @attr.define
    class JobsCoreRunFacet(RunFacet):
        """The jobs_core start behind a run: job id, fencing token, where its holder runs."""

        jobId: str  # noqa: N815 (OpenLineage's camelCase)
        token: int | None
        host: str
        pid: int
        prefix: str
        lost: dict[str, list[str]] | None = attr.field(default=None)

    return JobsCoreRunFacet


class OpenLineageObserver(Observer):
    """Sends a job's run events through an OpenLineage client (see the module's docstring).

    Args:
        client: an ``openlineage.client.OpenLineageClient``.
        prefix: the coordinator's key prefix (dataset names are ``<prefix><name>``).
        redis_namespace: the dataset namespace when ``$JOBS_OPENLINEAGE_NAMESPACE`` is unset.
    """

    def __init__(self, client: Any, prefix: str, redis_namespace: str) -> None:
        from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import job_type_job

        self.client = client
        self.prefix = prefix
        self.dataset_namespace = os.environ.get(ENV_NAMESPACE) or redis_namespace
        self.job_namespace = (os.environ.get(ENV_JOB_NAMESPACE) or os.environ.get("OPENLINEAGE_NAMESPACE")
                              or DEFAULT_JOB_NAMESPACE)
        self._types = (InputDataset, Job, OutputDataset, Run, RunEvent, RunState, _facet_class())
        self._job_type = job_type_job.JobTypeJobFacet(processingType="BATCH", integration="JOBS_CORE",
                                                      jobType="JOB", producer=PRODUCER)
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._sender: threading.Thread | None = None
        self._pid = os.getpid()
        self._dropped = 0

    def __repr__(self) -> str:
        return f"<OpenLineageObserver {self.client.transport.kind} prefix={self.prefix!r}>"

    # -- what jobs tell (on the job's thread: only queue) ----------------------------------------

    def job_started(self, job: Any) -> None:
        self._put(START, job, None)

    def job_stopped(self, job: Any, state: str, held: float) -> None:
        if job.lost is not None:
            return  # ABORT was sent when the loss was found
        self._put(COMPLETE if state == "written" else FAIL if state == "failed" else ABORT, job, None)

    def locks_lost(self, job: Any, lost: dict[str, list[str]]) -> None:
        if job.is_running:  # found by a refresh: the run ends here (a stop that finds it says so itself)
            self._put(ABORT, job, {k: list(v) for k, v in lost.items()})

    def stopped_by_id(self, coordinator: Any, holder: Any, state: str, inputs: tuple[str, ...],
                      outputs: tuple[str, ...]) -> None:
        # a start made from a shell (jobs-core start, whose job is named after its id) ended by its stop
        self._queue_item((COMPLETE if state == "written" else FAIL, time.time(), holder.job_id, holder.token,
                          fold(holder.job_id), inputs, outputs, holder.host or "", holder.pid or 0, None))

    def _put(self, kind: str, job: Any, lost: dict[str, list[str]] | None) -> None:
        lost = lost or (job.lost if kind == ABORT else None)
        self._queue_item((kind, time.time(), job.id, job.token, job.lineage_name or fold(job.id), job.inputs,
                          job.outputs, job.coordinator.host, os.getpid(), lost))

    def _queue_item(self, item: tuple[Any, ...]) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._pid, self._sender, self._queue = os.getpid(), None, queue.Queue(QUEUE_SIZE)
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 1000 == 0:
                    log.warning("OpenLineage events are queued faster than the transport sends them: "
                                "%d dropped", self._dropped)
                return
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_all, name="jobs_core-openlineage")
                self._sender.start()

    # -- the sending thread -------------------------------------------------------------------------

    def _send_all(self) -> None:
        q = self._queue
        while True:
            try:
                item = q.get(timeout=IDLE)
            except queue.Empty:
                with self._lock:
                    if q.empty():
                        self._sender = None
                        return
                continue
            try:
                self.client.emit(self.event(*item))
            except Exception:
                log.warning("could not send the OpenLineage %s event of job %s", item[0], item[2], exc_info=True)
            finally:
                q.task_done()

    def event(self, kind: str, when: float, job_id: str, token: int | None, name: str, inputs: tuple[str, ...],
              outputs: tuple[str, ...], host: str, pid: int, lost: dict[str, list[str]] | None) -> Any:
        """The OpenLineage ``RunEvent`` of one thing that happened to a job."""
        input_type, job_type, output_type, run_type, event_type, state, facet_type = self._types
        run_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.dataset_namespace}/{self.prefix}/{job_id}#{token}")
        facet = facet_type(jobId=job_id, token=token, host=host, pid=pid, prefix=self.prefix, lost=lost,
                           producer=PRODUCER)
        ns = self.dataset_namespace
        return event_type(
            eventType=getattr(state, kind),
            eventTime=datetime.fromtimestamp(when, timezone.utc).isoformat(),
            run=run_type(runId=str(run_id), facets={FACET: facet}),
            job=job_type(namespace=self.job_namespace, name=name, facets={"jobType": self._job_type}),
            inputs=[input_type(ns, self.prefix + n) for n in inputs],
            outputs=[output_type(ns, self.prefix + n) for n in outputs],
            producer=PRODUCER,
        )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event was handed to the transport (at most ``timeout`` seconds);
        True if none is left."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True
