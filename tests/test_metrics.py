"""OpenTelemetry metrics (jobs_core.metrics), read back through the SDK's in-memory reader, on real servers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import jobs_core
from jobs_core import LockLost, ResourceUnavailable
from jobs_core.metrics import GLOBAL, MetricsObserver

from .test_cli import clean_env

ATTRIBUTE_KEYS = {"jobs_core.prefix", "outcome", "kind"}
VOCABULARY = {"started", "timed_out", "cancelled", "written", "failed", "lost", "unlock", "create", "stop"}


class Metrics:
    """An SDK meter provider with an in-memory reader, and what it recorded."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def observer(self, prefix: str) -> MetricsObserver:
        return MetricsObserver(prefix, meter_provider=self.provider)

    def points(self) -> dict[tuple[str, tuple[tuple[str, Any], ...]], Any]:
        """``{(instrument, sorted attributes): data point}``."""
        found = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        found[(metric.name, tuple(sorted(point.attributes.items())))] = point
        return found

    def value(self, name: str, **attributes: str) -> float:
        """A counter's value, or a histogram's count (0: nothing recorded)."""
        key = (name, tuple(sorted({k.replace("__", "."): v for k, v in attributes.items()}.items())))
        point = self.points().get(key)
        if point is None:
            return 0
        return point.count if hasattr(point, "count") else point.value

    def total(self, name: str, **attributes: str) -> float:
        """A histogram's sum."""
        key = (name, tuple(sorted({k.replace("__", "."): v for k, v in attributes.items()}.items())))
        return self.points()[key].sum


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics()
    yield m
    m.provider.shutdown()


def no_names_or_ids(metrics: Metrics, prefix: str) -> None:
    """Every point carries the prefix and only the allowed keys, each with a value from a closed set:
    no name or job id anywhere."""
    points = metrics.points()
    assert points
    for (_, attributes), _point in points.items():
        assert {k for k, _ in attributes} <= ATTRIBUTE_KEYS and ("jobs_core.prefix", prefix) in attributes
        assert {v for _, v in attributes} <= VOCABULARY | {prefix}


def test_waits_starts_and_holds_by_outcome(real_backend, prefix, metrics):
    c = jobs_core.Coordinator(real_backend.client(), prefix, poll=30, metrics=False,
                              observers=[metrics.observer(prefix)])
    with c.job([], ["a"], duration=30, job_id="first.job"):
        pass
    holder = c.job([], ["b"], duration=30, job_id="the.holder").start()
    threading.Timer(0.3, holder.stop).start()
    with c.job([], ["b"], duration=30, wait=10, job_id="the.waiter"):
        pass
    with pytest.raises(ResourceUnavailable):
        c.job(["missing"], [], duration=30, wait=0.2, job_id="too.late").start()
    with pytest.raises(ValueError), c.job([], ["c"], duration=30, job_id="failing.job"):
        raise ValueError
    lost = c.job([], ["d"], duration=30, heartbeat=False, job_id="losing.job").start()
    c.unlock(outputs=["d"])
    with pytest.raises(LockLost):
        lost.stop()

    pre = {"jobs_core__prefix": prefix}
    assert metrics.value("jobs_core.job.starts", outcome="started", **pre) == 5
    assert metrics.value("jobs_core.job.starts", outcome="timed_out", **pre) == 1
    assert metrics.value("jobs_core.job.wait.duration", outcome="started", **pre) == 5
    assert 0.25 < metrics.total("jobs_core.job.wait.duration", outcome="started", **pre) < 5
    assert 0.15 < metrics.total("jobs_core.job.wait.duration", outcome="timed_out", **pre) < 2
    assert metrics.value("jobs_core.job.hold.duration", outcome="written", **pre) == 3
    assert 0.25 < metrics.total("jobs_core.job.hold.duration", outcome="written", **pre) < 5  # the holder's 0.3 s
    assert metrics.value("jobs_core.job.hold.duration", outcome="failed", **pre) == 1
    assert metrics.value("jobs_core.job.hold.duration", outcome="lost", **pre) == 1
    assert metrics.value("jobs_core.lock.lost", **pre) == 1
    assert metrics.value("jobs_core.lock.forced", kind="unlock", **pre) == 1
    no_names_or_ids(metrics, prefix)
    c.close()


def test_repairs_and_lost_locks_are_counted(redis7, prefix, metrics):
    """unlock, create and a stop from outside count as forced (by the repairing coordinator); the
    job that finds its lock gone counts a lost lock, once."""
    observer = metrics.observer(prefix)
    runner = jobs_core.Coordinator(redis7.client(), prefix, metrics=False, observers=[observer])
    repairer = jobs_core.Coordinator(redis7.client(), prefix, metrics=False, observers=[observer])
    job = runner.job(["in"], ["out"], duration=30, heartbeat=False)
    repairer.create_outputs(["in"])
    job.start()
    repairer.stop_job(job.id, failed=True)
    with pytest.raises(LockLost):
        job.refresh()
    with pytest.raises(LockLost):
        job.refresh()  # a second find is not a second loss
    job.stop(failed=True)
    other = runner.job([], ["x"], duration=30, heartbeat=False).start()
    repairer.unlock(outputs=["x"])
    other.stop(failed=True)
    with pytest.raises(jobs_core.NotRunning):
        repairer.stop_job("no.such.job")
    started = runner.job([], ["y"], duration=30, heartbeat=False).start()
    repairer.stop_job(started.id, token=started.token)  # with its token: the job itself, not a repair
    pre = {"jobs_core__prefix": prefix}
    assert metrics.value("jobs_core.lock.forced", kind="create", **pre) == 1
    assert metrics.value("jobs_core.lock.forced", kind="stop", **pre) == 1
    assert metrics.value("jobs_core.lock.forced", kind="unlock", **pre) == 1
    assert metrics.value("jobs_core.lock.lost", **pre) == 1
    no_names_or_ids(metrics, prefix)


def test_async_coordinator_records_the_same(real_backend, prefix, metrics):
    async def main() -> None:
        c = jobs_core.AsyncCoordinator(real_backend.async_client(), prefix, poll=30, metrics=False,
                                       observers=[metrics.observer(prefix)])
        async with c.job([], ["a"], duration=30):
            pass
        holder = await c.job([], ["a"], duration=30).start()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(c.job([], ["a"], duration=30, wait=10).start(), 0.2)
        with pytest.raises(ResourceUnavailable):
            await c.job([], ["a"], duration=30, wait=0.1).start()
        await holder.stop(failed=True)
        lost = await c.job([], ["b"], duration=30, heartbeat=False).start()
        await c.unlock(outputs=["b"])
        with pytest.raises(LockLost):
            await lost.refresh()
        with pytest.raises(LockLost):
            await lost.stop()
        await c.aclose()

    asyncio.run(main())
    pre = {"jobs_core__prefix": prefix}
    assert metrics.value("jobs_core.job.starts", outcome="started", **pre) == 3
    assert metrics.value("jobs_core.job.starts", outcome="cancelled", **pre) == 1
    assert metrics.value("jobs_core.job.starts", outcome="timed_out", **pre) == 1
    assert 0.15 < metrics.total("jobs_core.job.wait.duration", outcome="cancelled", **pre) < 2
    assert metrics.value("jobs_core.job.hold.duration", outcome="written", **pre) == 1
    assert metrics.value("jobs_core.job.hold.duration", outcome="failed", **pre) == 1
    assert metrics.value("jobs_core.job.hold.duration", outcome="lost", **pre) == 1
    assert metrics.value("jobs_core.lock.lost", **pre) == 1
    assert metrics.value("jobs_core.lock.forced", kind="unlock", **pre) == 1
    no_names_or_ids(metrics, prefix)


def test_every_coordinator_records_on_the_global_provider_unless_told_not_to(redis7, prefix):
    made = jobs_core.Coordinator(redis7.client(), prefix)
    (observer,) = [o for o in made.observers if isinstance(o, MetricsObserver)]
    assert observer.instruments is GLOBAL and observer.prefix == prefix
    assert not any(isinstance(o, MetricsObserver) for o in jobs_core.Coordinator(redis7.client(), prefix,
                                                                                  metrics=False).observers)
    assert not any(isinstance(o, MetricsObserver) for o in jobs_core.Coordinator.from_url(
        redis7.url, prefix, metrics=False).observers)


# A process that configures the SDK (as an application does), then runs the jobs-core command in it:
# the command's repairs reach the global provider through the coordinator's default observer.
CLI_IN_AN_SDK_PROCESS = textwrap.dedent("""
    import json, sys
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    import jobs_core.metrics  # instruments made before the provider is set still reach it
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    from jobs_core.cli import main
    codes = [main(args) for args in json.loads(sys.argv[1])]
    found = []
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                found += [[m.name, dict(p.attributes), getattr(p, "value", None)] for p in m.data.data_points]
    print(json.dumps({"codes": codes, "points": found}))
""")


def test_the_commands_repairs_are_counted_where_an_sdk_is_configured(redis7, prefix):
    holder = jobs_core.Coordinator(redis7.client(), prefix, metrics=False)
    job = holder.job([], ["held"], duration=30, heartbeat=False).start()
    other = holder.job([], ["held2"], duration=30, heartbeat=False).start()
    commands = [["unlock", "--output", "held", "--yes"], ["create", "made", "--yes"], ["stop", other.id]]
    env = clean_env(redis7.url, prefix)
    proc = subprocess.run([sys.executable, "-c", CLI_IN_AN_SDK_PROCESS, json.dumps(commands)], env=env,
                          capture_output=True, timeout=60, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["codes"] == [0, 0, 0], proc.stderr
    forced = {p[1]["kind"]: p[2] for p in result["points"] if p[0] == "jobs_core.lock.forced"}
    assert forced == {"unlock": 1, "create": 1, "stop": 1}
    assert all(p[1]["jobs_core.prefix"] == prefix for p in result["points"])
    with pytest.raises(LockLost):
        job.stop()


# A provider set, then replaced as Airflow replaces it in each forked task process (it resets the API's
# set-once guard): the coordinators made before record on the new one.
PROVIDER_REPLACED = textwrap.dedent("""
    import json, os, sys
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    first, second = InMemoryMetricReader(), InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[first]))
    import jobs_core
    c = jobs_core.Coordinator.from_url(os.environ["JOBS_REDIS_URL"], os.environ["JOBS_PREFIX"])
    with c.job([], ["one"], duration=30):
        pass
    import opentelemetry.metrics._internal as internal
    internal._METER_PROVIDER_SET_ONCE._done = False
    internal._METER_PROVIDER = None
    metrics.set_meter_provider(MeterProvider(metric_readers=[second]))
    with c.job([], ["two"], duration=30):
        pass

    def starts(reader):
        return sum(p.value for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
                   for m in sm.metrics if m.name == "jobs_core.job.starts" for p in m.data.data_points)

    print(json.dumps([starts(first), starts(second)]))
""")


def test_a_provider_replaced_later_gets_the_measurements(redis7, prefix):
    proc = subprocess.run([sys.executable, "-c", PROVIDER_REPLACED], env=clean_env(redis7.url, prefix),
                          capture_output=True, timeout=60, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == [1, 1]
