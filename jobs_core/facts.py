"""Plain records returned by the coordinators: who holds, waits on or wrote what.

Their text comes from Redis, written by whoever shares it: ``problems`` lists
what could not be read (a malformed record is shown as far as it can be, never
fatal), and :meth:`Blocker.describe` escapes what it quotes.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from .display import printable


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "unknown"
    try:
        return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return f"epoch {epoch}"


@dataclass(frozen=True)
class Holder:
    """A job holding a lock: id, lease expiry (server epoch seconds), and facts if jobs_core."""

    job_id: str
    expires: float | None = None
    token: int | None = None
    host: str | None = None
    pid: int | None = None
    started: float | None = None
    #: What could not be read from its holder record (malformed fields), one message each.
    problems: tuple[str, ...] = ()

    @property
    def publishes(self) -> bool:
        """Whether the holder is a jobs_core client (it wakes waiters on release)."""
        return self.token is not None


@dataclass(frozen=True)
class Blocker:
    """One reason a job cannot start: ``reason`` is a jobs.py reason code."""

    reason: str
    name: str
    holder: Holder | None = None

    def describe(self) -> str:
        """One line for people and logs: reason, name, holder (id, host, pid) and until when.

        Names, ids and hosts come from Redis: control and bidirectional
        characters are shown escaped (:func:`jobs_core.display.printable`).
        """
        text = f"{printable(self.reason)}: {printable(repr(self.name))}"
        if self.holder is None:
            return text
        who = printable(self.holder.job_id)
        if self.holder.host:
            who += f" on {printable(self.holder.host)} pid {self.holder.pid}"
        if self.reason == "output_exists":
            return f"{text} (written by {who})"
        return f"{text} (held by {who} until {_when(self.holder.expires)})"


@dataclass(frozen=True)
class BlockReport:
    """Answer of ``why_blocked``: ``can_start`` and otherwise every blocker."""

    can_start: bool
    now: float
    blockers: tuple[Blocker, ...] = ()

    @property
    def reasons(self) -> dict[str, list[str]]:
        """The jobs.py form: ``{reason: [names]}``."""
        return group_reasons(self.blockers)

    def until(self) -> float | None:
        """When the last known lock among the blockers expires at the latest."""
        ends = [b.holder.expires for b in self.blockers if b.holder and b.holder.expires]
        return max(ends) if ends else None


@dataclass(frozen=True)
class OutputInfo:
    """What Redis knows about one name, as an output and as a lock."""

    name: str
    now: float
    written: bool
    writer: str | None = None
    written_at: float | None = None
    token: int | None = None
    ttl: float | None = None
    forced: bool = False
    write_lock: Holder | None = None
    readers: tuple[Holder, ...] = ()
    waiters: tuple[str, ...] = field(default=())
    #: What could not be read (a key of the wrong type, malformed facts), one message each.
    problems: tuple[str, ...] = ()
    #: Which parts were unreadable, among ``"output"``, ``"facts"``, ``"write_lock"`` and
    #: ``"readers"``: a repair given this record as what it showed (``expected=``) expects
    #: them still unreadable.
    unreadable: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RunningJob:
    """A running job as listed by ``running_jobs()``.

    Jobs of jobs.py clients keep no holder record: their token, host, pid,
    start, lease and output time to live are None.
    """

    job_id: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    expires: float
    token: int | None = None
    host: str | None = None
    pid: int | None = None
    started: float | None = None
    lease: float | None = None
    output_ttl: float | None = None
    #: What could not be read from its records (malformed names list or holder record).
    problems: tuple[str, ...] = ()
    #: The slots it holds: ``((limit, slots), ...)``.
    limits: tuple[tuple[str, int], ...] = ()
    #: Its name in lineage edges as its start recorded it ("" when it records none; None when
    #: unknown: a jobs.py client's job, or a start by an older jobs_core).
    lineage: str | None = None


@dataclass(frozen=True)
class Waiter:
    """A job waiting to start, as listed by ``waiting_jobs()``."""

    job_id: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    deadline: float
    host: str | None = None
    pid: int | None = None
    since: float | None = None
    #: What could not be read from its waiting record.
    problems: tuple[str, ...] = ()
    #: The slots it waits for: ``((limit, slots), ...)``.
    limits: tuple[tuple[str, int], ...] = ()
    #: Its name in lineage edges ("" when it records none; None when its record does not say).
    lineage: str | None = None


@dataclass(frozen=True)
class LimitInfo:
    """A limit as ``limits()`` shows it: its capacity, the slots held and by whom, and its line.

    ``capacity`` is None when the limit is not set (removed while jobs still
    held slots of it). ``holders`` are ``(holder, slots)`` per job holding
    slots, with the facts of its start; ``line`` is ``(waiter, slots asked)``
    per job waiting for slots of it, first in line first.
    """

    name: str
    capacity: int | None
    used: int = 0
    holders: tuple[tuple[Holder, int], ...] = ()
    line: tuple[tuple[Waiter, int], ...] = ()
    #: What could not be read from its records.
    problems: tuple[str, ...] = ()

    @property
    def free(self) -> int:
        """Slots nobody holds (0 when used reaches or passes the capacity); jobs in ``line`` that keep
        their turn reserve some of them, so a newcomer may still have to wait."""
        return max((self.capacity or 0) - self.used, 0)


def group_reasons(blockers: tuple[Blocker, ...] | list[Blocker]) -> dict[str, list[str]]:
    """``{reason: [names]}`` without repeated names, in blocker order."""
    out: dict[str, list[str]] = {}
    for b in blockers:
        names = out.setdefault(b.reason, [])
        if b.name not in names:
            names.append(b.name)
    return out
