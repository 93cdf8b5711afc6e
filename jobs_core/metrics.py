"""OpenTelemetry metrics of jobs: how long they wait and hold, how their starts end, lost and forced locks.

Recorded through ``opentelemetry-api`` alone, which does nothing until the
application configures an SDK (``opentelemetry.metrics.set_meter_provider``,
``opentelemetry-instrument``, or Airflow with ``[metrics] otel_on``); from then
on every coordinator's measurements reach that SDK's exporters.

Instruments (meter ``jobs_core``):

* ``jobs_core.job.wait.duration`` (histogram, s; ``outcome``: started, timed_out, cancelled)
* ``jobs_core.job.hold.duration`` (histogram, s; ``outcome``: written, failed, lost)
* ``jobs_core.job.starts`` (counter; ``outcome`` as for waits)
* ``jobs_core.lock.lost`` (counter: jobs that found locks lost, once per start)
* ``jobs_core.lock.forced`` (counter; ``kind``: unlock, create, stop)

Every measurement carries ``jobs_core.prefix`` (the namespace), never a name or
a job id, so the number of series stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics as otel

from .events import Observer

SCOPE = "jobs_core"
PREFIX = "jobs_core.prefix"
OUTCOME = "outcome"
KIND = "kind"
#: Bucket bounds, in seconds, advised for the two durations: waits and holds run from
#: milliseconds to hours (the SDK's default bounds are meant for milliseconds).
SECONDS_BUCKETS = (0.0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                   600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)


@dataclass(frozen=True)
class Instruments:
    """The five instruments, from one meter."""

    wait: Any
    hold: Any
    starts: Any
    lost: Any
    forced: Any


def instruments(meter_provider: Any = None) -> Instruments:
    """The instruments of ``meter_provider`` (None: the global one, as set by the application)."""
    meter = otel.get_meter(SCOPE, meter_provider=meter_provider)
    return Instruments(
        wait=meter.create_histogram(
            "jobs_core.job.wait.duration", unit="s", explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
            description="How long a job's start waited for its inputs, outputs and limits, by outcome"),
        hold=meter.create_histogram(
            "jobs_core.job.hold.duration", unit="s", explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
            description="How long a job held its locks, by how its start ended"),
        starts=meter.create_counter(
            "jobs_core.job.starts", unit="{start}",
            description="Attempts to start a job, by outcome (started, timed_out, cancelled)"),
        lost=meter.create_counter(
            "jobs_core.lock.lost", unit="{job}", description="Running jobs that found some of their locks lost"),
        forced=meter.create_counter(
            "jobs_core.lock.forced", unit="{repair}",
            description="Repairs that forced locks or outputs (unlock, create, stop from outside)"),
    )


#: The instruments of the global meter provider, made once as OpenTelemetry advises (a meter per
#: library, at import). Until the application sets a provider they are the API's proxies, which
#: record nothing and switch to the real instruments when one is set. Made per coordinator
#: instead, each would stay in the API's list of proxies for the life of the process.
GLOBAL = instruments()
#: The provider :data:`GLOBAL` came from (the API's proxy, unless a provider was set first).
GLOBAL_PROVIDER = otel.get_meter_provider()

try:  # what get_meter_provider() returns while the application has set no provider
    from opentelemetry.metrics import _internal as _otel_internal
    from opentelemetry.metrics._internal import _ProxyMeterProvider as _Unset
except ImportError:  # pragma: no cover - another opentelemetry-api layout: record always
    _Unset = ()  # type: ignore[assignment,misc]
    _otel_internal = None  # type: ignore[assignment]


def _none_set() -> bool:
    """Whether no provider was set yet (then get_meter_provider() answers its placeholder): one
    attribute read, where get_meter_provider() also reads the environment on every call."""
    return _otel_internal is not None and getattr(_otel_internal, "_METER_PROVIDER", True) is None


def _silent(provider: Any) -> bool:
    """Whether recording on ``provider`` reaches nobody: the API's no-op provider, or its
    placeholder while no SDK is set (its instruments forward only once one is)."""
    return isinstance(provider, (otel.NoOpMeterProvider, _Unset))


class MetricsObserver(Observer):
    """Records every job of the coordinators it observes on the OpenTelemetry instruments.

    Every coordinator has one unless made with ``metrics=False``. Args:
        prefix: the namespace its repairs are counted under (jobs are counted
            under their own coordinator's prefix).
        meter_provider: an SDK ``MeterProvider`` to record on (default: the
            global one, which the application configures).
    """

    def __init__(self, prefix: str = "", meter_provider: Any = None) -> None:
        self.prefix = prefix
        self._fixed = meter_provider is not None
        self._provider = meter_provider if self._fixed else GLOBAL_PROVIDER
        self.instruments = instruments(meter_provider) if self._fixed else GLOBAL
        self._silent = not self._fixed and _silent(self._provider)
        # one attributes dict per (prefix, key, value), made once: recording must stay cheap
        self._attributes: dict[tuple[str, str, str], dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"<MetricsObserver prefix={self.prefix!r}>"

    def _current(self) -> Instruments | None:
        """The instruments of the global provider as it is now (None while no SDK is set: nothing
        to record): a process may set one after jobs_core made its own (Airflow does so in each
        forked task process). Looked up (about 1 µs) when a start or a repair is recorded; what
        follows a start uses the same."""
        if not self._fixed:
            if self._silent and _none_set():
                return None
            provider = otel.get_meter_provider()
            if provider is not self._provider:
                self._provider = provider
                self._silent = _silent(provider)
                self.instruments = GLOBAL if provider is GLOBAL_PROVIDER else instruments(provider)
        return None if self._silent else self.instruments

    def _with(self, prefix: str, key: str, value: str) -> dict[str, str]:
        found = self._attributes.get((prefix, key, value))
        if found is None:
            found = self._attributes[(prefix, key, value)] = {PREFIX: prefix, key: value} if key else {PREFIX: prefix}
        return found

    def wait_ended(self, job: Any, outcome: str, waited: float) -> None:
        found = self._current()
        if found is None:
            return
        attributes = self._with(job.coordinator.prefix, OUTCOME, outcome)
        found.wait.record(waited, attributes)
        found.starts.add(1, attributes)

    def job_stopped(self, job: Any, state: str, held: float) -> None:
        if self._silent:
            return
        self.instruments.hold.record(held, self._with(job.coordinator.prefix, OUTCOME, state))

    def locks_lost(self, job: Any, lost: dict[str, list[str]]) -> None:
        if self._silent:
            return
        self.instruments.lost.add(1, self._with(job.coordinator.prefix, "", ""))

    def repaired(self, kind: str, names: tuple[str, ...]) -> None:
        found = self._current()
        if found is not None:
            found.forced.add(1, self._with(self.prefix, KIND, kind))
