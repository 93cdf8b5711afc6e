"""The exceptions jobs_core raises; every one derives from :class:`JobsError`."""

from __future__ import annotations

from typing import Any


class JobsError(Exception):
    """Base class of every error raised by jobs_core."""


class ConfigurationError(JobsError, RuntimeError):
    """The coordinator cannot be used as configured (no connection, wrong client)."""


class InvalidArgument(JobsError, ValueError):
    """An argument has a bad value (a negative duration, an unknown option)."""


class InvalidType(InvalidArgument, TypeError):
    """An argument has the wrong type."""


class InvalidName(InvalidArgument):
    """An input, output or job name cannot be used; ``name`` and ``reason`` say why."""

    def __init__(self, name: Any, reason: str) -> None:
        super().__init__(f"invalid name {name!r}: {reason}")
        self.name = name
        self.reason = reason


class InvalidNameType(InvalidName, InvalidType):
    """A name is not a string."""


class NotRunning(JobsError, RuntimeError):
    """The operation needs a started job (or a job owned by this process)."""


class ResourceUnavailable(JobsError):
    """A job could not start: ``args[0]`` is ``{reason: [names]}`` as in jobs.py.

    ``blockers`` holds one :class:`jobs_core.facts.Blocker` per missing or busy
    resource, with the holder and its lease expiry where known.
    """

    def __init__(self, reasons: dict[str, list[str]], blockers: tuple = (), waited: float = 0.0) -> None:
        super().__init__(reasons)
        self.reasons = reasons
        self.blockers = tuple(blockers)
        self.waited = waited

    def __str__(self) -> str:
        if not self.blockers:
            return f"resources unavailable: {self.reasons!r}"
        parts = "; ".join(b.describe() for b in self.blockers)
        waited = f" after waiting {self.waited:.3f}s" if self.waited else ""
        return f"resources unavailable{waited}: {parts}"


class LockLost(JobsError):
    """The job no longer holds some of its locks; ``lost`` is ``{reason: [names]}``."""

    def __init__(self, job_id: str, lost: dict[str, list[str]], message: str = "") -> None:
        names = ", ".join(f"{r}: {n}" for r, ns in lost.items() for n in ns)
        super().__init__(message or f"job {job_id!r} lost its locks ({names})")
        self.job_id = job_id
        self.lost = lost


class CoordinatorClosed(JobsError, RuntimeError):
    """The coordinator was closed while a job waited to start."""


class StateChanged(JobsError, RuntimeError):
    """A repair given the state it showed (``expected=``) found that state changed and did nothing.

    ``names`` are those whose locks (or, for ``create_outputs``, writer) are no
    longer as shown: another job took, released or renewed them meanwhile.
    """

    def __init__(self, names: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.names = names


class UnknownLimit(ConfigurationError, LookupError):
    """A job asks for slots of a limit whose capacity is not set in its namespace (or was removed
    while it waited); ``limit`` names it. Nothing was taken."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class LimitTooSmall(InvalidArgument):
    """A job asks for more slots of a limit than its whole capacity (it could never start);
    ``limit``, ``slots`` and ``capacity`` say which. Nothing was taken."""

    def __init__(self, limit: str, slots: int, capacity: int | None, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.slots = slots
        self.capacity = capacity
