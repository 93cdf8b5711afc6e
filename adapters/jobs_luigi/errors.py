"""Errors a Luigi task raises from its run() when it cannot take its locks."""

from __future__ import annotations

from jobs_core import ResourceUnavailable
from jobs_core.display import printable


class ResourcesBusy(ResourceUnavailable):
    """A task's inputs or outputs stayed busy (or missing) for its whole wait.

    The task fails, so Luigi's retry policy (``retry_count``, the scheduler's
    ``retry_delay``) runs it again later; ``task_id`` names it, ``reasons``
    and ``blockers`` say what blocked it, as in :class:`jobs_core.ResourceUnavailable`,
    and ``waited`` is the task's whole wait (across its jobs). The message shows
    the holders' job ids and host names (which anyone sharing the Redis may have
    chosen) with every control character escaped.
    """

    def __init__(self, task_id: str, cause: ResourceUnavailable, waited: float | None = None) -> None:
        super().__init__(cause.reasons, cause.blockers, cause.waited if waited is None else waited)
        self.task_id = task_id

    def __str__(self) -> str:
        return printable(f"{self.task_id} did not run, its locks stayed unavailable (Luigi's retry policy decides "
                         f"when it runs again): {super().__str__()}")
