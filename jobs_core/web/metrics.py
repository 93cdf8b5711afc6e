"""``/metrics``: the namespace's state in the Prometheus text format (``prometheus-client``).

Gauges of the shared reader's latest snapshot, labelled by ``prefix`` only
(job ids and names would make a series per run); the limit gauges add the
limit's name, which an operator sets (a handful per namespace, not one per run). A registry of the app's
own, not the library's global one, so two apps in one process (tests, an
Airflow api-server) do not collide.

Written outputs are not counted: an output is a plain key ``<prefix><name>``
(jobs.py's layout), told from other keys only by scanning the whole keyspace,
which is no cheap read to repeat every scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


def gauges(document: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
    """The gauges of one snapshot document (:mod:`jobs_core.web.snapshot`)."""
    status = document["status"]
    prefix = status["prefix"]
    up = GaugeMetricFamily("jobs_core_redis_up", "1 if the last read of the namespace succeeded, else 0",
                           labels=["prefix"])
    up.add_metric([prefix], 1.0 if document["ok"] else 0.0)
    yield up
    if not document["ok"]:
        return  # no stale figures: an absent series alerts better than an old one
    now = status["server_time"]
    running, waiting = status["running"], status["waiting"]
    values = [
        ("jobs_core_running_jobs", "running jobs (jobs_core and jobs.py clients)", float(len(running))),
        ("jobs_core_waiting_jobs", "jobs waiting to start", float(len(waiting))),
        ("jobs_core_oldest_wait_seconds", "seconds the longest-waiting job has waited (0: none waits)",
         max((now - w["since"] for w in waiting if w["since"] is not None), default=0.0)),
    ]
    for name, help_text, value in values:
        gauge = GaugeMetricFamily(name, help_text, labels=["prefix"])
        gauge.add_metric([prefix], value)
        yield gauge
    if running:
        lease = GaugeMetricFamily("jobs_core_lease_left_seconds",
                                  "least lease left among running jobs, in seconds (absent when none runs)",
                                  labels=["prefix"])
        lease.add_metric([prefix], min(j["left"] for j in running))
        yield lease
    limits = status.get("limits", [])
    if limits:
        families = [
            GaugeMetricFamily("jobs_core_limit_capacity", "slots a limit allows at once (absent once removed)",
                              labels=["prefix", "limit"]),
            GaugeMetricFamily("jobs_core_limit_used", "slots of a limit held by running jobs",
                              labels=["prefix", "limit"]),
            GaugeMetricFamily("jobs_core_limit_waiting", "jobs in a limit's line", labels=["prefix", "limit"]),
        ]
        for info in limits:
            if info["capacity"] is not None:
                families[0].add_metric([prefix, info["name"]], float(info["capacity"]))
            families[1].add_metric([prefix, info["name"]], float(info["used"]))
            families[2].add_metric([prefix, info["name"]], float(len(info["line"])))
        yield from families


class _SnapshotCollector(Collector):
    def __init__(self) -> None:
        self.document: dict[str, Any] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.document is not None:
            yield from gauges(self.document)


class Metrics:
    """A registry with the snapshot gauges; :meth:`render` the text of one document."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._collector = _SnapshotCollector()
        self.registry.register(self._collector)

    def render(self, document: dict[str, Any]) -> bytes:
        """The exposition text of ``document``."""
        self._collector.document = document
        return generate_latest(self.registry)
