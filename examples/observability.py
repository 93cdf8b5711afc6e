"""Metrics and lineage of jobs_core jobs in a plain script, as a cron entry would run it.

    pip install 'jobs-core[openlineage,embedded]' opentelemetry-sdk
    python examples/observability.py

It uses ``$JOBS_REDIS_URL`` (and ``$JOBS_PREFIX``) when set, else an embedded
Valkey server. Five jobs run: one writes, one reads it, one fails, one waits
for a busy output, one loses its lock to a repair. Then it shows

* the OpenTelemetry metrics jobs_core recorded, exported by the SDK's console
  exporter when the script ends (``OTLPMetricExporter`` from
  ``opentelemetry-exporter-otlp`` in its place sends them to a collector);
* the OpenLineage events the jobs emitted. The client is configured by its own
  means (``OPENLINEAGE_URL=http://marquez:5000`` in the cron entry, or an
  ``openlineage.yml``); when nothing configures it, this script writes the
  events to a file of its own and prints them.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricsData, PeriodicExportingMetricReader

import jobs_core
from jobs_core import openlineage
from jobs_core.embedded import server_url


def metric_lines(data: MetricsData) -> str:
    """One line per instrument and attribute set: ``name {attributes} value`` (count and sum for durations)."""
    lines = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    labels = ", ".join(f"{k}={v}" for k, v in sorted(point.attributes.items()))
                    value = (f"count={point.count} sum={point.sum:.3f}{metric.unit}" if hasattr(point, "count")
                             else f"{point.value}")
                    lines.append(f"  {metric.name} {{{labels}}} {value}\n")
    return "".join(sorted(lines))


def set_up_metrics() -> MeterProvider:
    """What an application does once, first thing: an SDK provider with an exporter. jobs_core's
    instruments record on it from then on."""
    exporter = ConsoleMetricExporter(out=sys.stdout, formatter=metric_lines)
    provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=60_000)])
    metrics.set_meter_provider(provider)
    return provider


def lineage_file() -> Path | None:
    """Unless the OpenLineage client is configured already: its file transport, set up for this run."""
    if openlineage.configured():
        return None
    path = Path(tempfile.mkdtemp(prefix="jobs-core-lineage-")) / "events.jsonl"
    os.environ.update({"OPENLINEAGE__TRANSPORT__TYPE": "file", "OPENLINEAGE__TRANSPORT__APPEND": "true",
                       "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH": str(path)})
    return path


def run_jobs(c: jobs_core.Coordinator) -> None:
    with c.job([], ["raw.events.2026-11-29"], duration=60, lineage_name="extract_events"):
        pass  # ... write the data ...
    with c.job(["raw.events.2026-11-29"], ["report.daily.2026-11-29"], duration=60, lineage_name="daily_report"):
        pass
    try:
        with c.job(["raw.events.2026-11-29"], ["report.broken"], duration=60, lineage_name="broken_report"):
            raise ValueError("bad input data")
    except ValueError:
        pass
    # a job that waits for an output another job is writing; its progress shows on the jobs_core logger
    holder = c.job([], ["warehouse.users"], duration=60, lineage_name="load_users").start()
    threading.Timer(0.5, holder.stop).start()
    with c.job([], ["warehouse.users"], duration=60, wait=30, lineage_name="refresh_users"):
        pass
    # a repair: a lock released by force (jobs-core unlock); its job finds it lost and writes nothing
    stuck = c.job([], ["exports.partner"], duration=60, heartbeat=False, lineage_name="partner_export").start()
    c.unlock(outputs=["exports.partner"])
    try:
        stuck.stop()
    except jobs_core.LockLost:
        pass


def show_lineage(c: jobs_core.Coordinator, path: Path) -> None:
    for observer in c.observers:
        if isinstance(observer, openlineage.OpenLineageObserver):
            observer.flush()
    print(f"OpenLineage events (file transport: {path}):")
    for line in path.read_text().splitlines():
        event: dict[str, Any] = json.loads(line)
        ins = ", ".join(d["name"] for d in event["inputs"]) or "-"
        outs = ", ".join(d["name"] for d in event["outputs"]) or "-"
        facet = event["run"]["facets"]["jobs_core"]
        print(f"  {event['eventType']:<8} {event['job']['namespace']}/{event['job']['name']}: {ins} -> {outs} "
              f"(token {facet['token']}, {facet['host']} pid {facet['pid']})")


def main() -> int:
    provider = set_up_metrics()
    path = lineage_file()
    with server_url() as (url, _), jobs_core.Coordinator.from_url(url, os.environ.get("JOBS_PREFIX", "")) as c:
        run_jobs(c)
        if path is not None:
            show_lineage(c, path)
    print("OpenTelemetry metrics (exported when the script ends):")
    provider.shutdown()  # the last export: a cron script's process ends here
    return 0


if __name__ == "__main__":
    sys.exit(main())
