"""JobsInputSensor: wait until jobs_core inputs exist and nobody is writing them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

from jobs_core.display import printable

from . import arguments
from .hooks import JobsHook
from .operators import NameFields
from .triggers import JobsInputTrigger
from .version_compat import AirflowException, AirflowSensorTimeout, BaseSensorOperator


class JobsInputSensor(NameFields, BaseSensorOperator):
    """Succeeds once every input exists and is not being written.

    In ``poke`` and ``reschedule`` modes each poke is one ``why_blocked``
    check (a time-out names what still blocked at the last one); with
    ``deferrable=True`` the wait moves to the triggerer
    (:class:`jobs_airflow.triggers.JobsInputTrigger`), woken by jobs_core's
    push notifications, and the worker slot is freed. The sensor's
    ``timeout`` is also the trigger's deadline.

    Args:
        inputs: jobs_core names (templated as names: ``"reporting.events.{{ ds }}"``); an item,
            or the whole list, may be an upstream task's ``XComArg``.
        redis_conn_id, redis_url, prefix: where the jobs_core Redis is (see
            :class:`jobs_airflow.hooks.JobsHook`).
        deferrable: wait in the triggerer instead of a worker.
        poll_interval: deferrable mode: longest time (seconds or ``timedelta``) between two
            looks when no wake-up comes (writers that do not publish, expired locks).
        **kwargs: :class:`BaseSensorOperator` arguments (``poke_interval``,
            ``timeout``, ``mode``, ``soft_fail``...).
    """

    template_fields: Sequence[str] = ("inputs",)
    name_fields = ("inputs",)
    ui_color = "#dcecf5"

    def __init__(self, *, inputs: Sequence[str], redis_conn_id: str | None = None, redis_url: str | None = None,
                 prefix: str | None = None, deferrable: bool = False, poll_interval: float | timedelta = 30.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inputs = arguments.names(inputs, "inputs")
        self.redis_conn_id = redis_conn_id
        self.redis_url = redis_url
        self.prefix = prefix
        self.deferrable = deferrable
        self.poll_interval = arguments.seconds(poll_interval, "poll_interval", minimum=0.001)
        #: What blocked the inputs at the last poke (for the time-out's message).
        self._blockers: list[str] = []

    def _names(self) -> list[str]:
        """The inputs, rendered by now (a list of names)."""
        return list(cast(list[str], self.inputs))

    @property
    def hook(self) -> JobsHook:
        return JobsHook(redis_conn_id=self.redis_conn_id, redis_url=self.redis_url, prefix=self.prefix)

    def poke(self, context: Any) -> bool:
        coordinator = self.hook.get_conn()
        try:
            report = coordinator.why_blocked(self._names())
        finally:
            coordinator.close()
        if not report.can_start:
            self._blockers = [printable(b.describe()) for b in report.blockers]
            self.log.info("jobs_core inputs not ready: %s", "; ".join(self._blockers))
        return report.can_start

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            self._blockers = []
            try:
                return super().execute(context)
            except AirflowSensorTimeout as exc:  # say what still blocked, as the deferrable mode does
                if not self._blockers:
                    raise
                raise AirflowSensorTimeout(printable(f"jobs_core inputs {self._names()} not ready within "
                                                     f"{self.timeout}s: ") + "; ".join(self._blockers)) from exc
        if self.poke(context):
            return None
        hook = self.hook
        trigger = JobsInputTrigger(inputs=self._names(), **hook.settings(), poll_interval=self.poll_interval,
                                   deadline=time.time() + self.timeout)
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=self.timeout))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> None:
        """Resumed from the trigger: done, or the deadline passed."""
        status = event.get("status")
        if status == "ready":
            self.log.info("jobs_core inputs ready: %s", printable(event.get("inputs")))
            return
        if status == "timeout":
            raise AirflowSensorTimeout(printable(f"jobs_core inputs {event.get('inputs')} not ready within "
                                                 f"{self.timeout}s: " + "; ".join(event.get("blockers", []))))
        raise AirflowException(printable(f"unexpected event from JobsInputTrigger: {event!r}"))
