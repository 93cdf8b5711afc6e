"""A job's script calls, prepared once when the job is made, and their replies.

A job's names, lease and settings do not change between its starts, so the
arguments of its scripts are records built once (:class:`Plan`, shared by the
jobs made afresh for each run of the same work); a call copies one and sets the
few items that change (the job id, the nonce, the mode, the token), and only
those are encoded again when it is sent (:class:`jobs_core.wire.Argv`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .facts import Blocker, Holder
from .keys import Keys
from .names import fold
from .protocol import STOPPED_RECORD_MS, text, to_ms
from .scripts import LeaveArgs, RefreshArgs, StartArgs, StopArgs, argv
from .wire import Argv

#: Start modes (start.lua): one try; a try that keeps a place in line; a dry run.
START, WAIT, CHECK = "start", "wait", "check"

def _at(record: type[tuple], field: str) -> int:
    """The ARGV position (0-based) of ``field`` in a script's record."""
    return record._fields.index(field)  # type: ignore[attr-defined]


# the positions a call changes in a plan's prebuilt ARGV (a copy of the list, a few items set)
_START_NONCE, _START_MODE = _at(StartArgs, "nonce"), _at(StartArgs, "mode")
_START_LEFT, _START_CHANNEL = _at(StartArgs, "wait_left_ms"), _at(StartArgs, "channel")
_STOP_TOKEN, _STOP_COMMIT = _at(StopArgs, "token"), _at(StopArgs, "commit")
_STOP_NONCE, _STOP_FORCED = _at(StopArgs, "nonce"), _at(StopArgs, "forced")
_REFRESH_LEASE, _REFRESH_TOKEN, _REFRESH_STRICT = (_at(RefreshArgs, f) for f in ("lease_ms", "token", "strict"))
_LEAVE_NONCE = _at(LeaveArgs, "nonce")
_JOB_ID = 0  # every record's first field
assert all(r._fields[_JOB_ID] == "job_id" for r in (StartArgs, StopArgs, RefreshArgs, LeaveArgs))


class Plan:
    """The script arguments of one job: its names, lease and settings, for one job id.

    Each script's ARGV is built once from its record (:mod:`jobs_core.scripts`)
    and the names; a call copies it and sets the few fields that change, by
    their position in the record.
    """

    __slots__ = ("job_id", "pid", "names", "nin", "limits", "lease_ms", "keys", "lineage", "_start", "_stop",
                 "_refresh", "_leave")

    def __init__(
        self,
        keys: Keys,
        job_id: str,
        inputs: Sequence[str],
        outputs: Sequence[str],
        *,
        lease: float,
        renews: bool,
        overwrite: bool,
        history: bool,
        output_ttl: float | None,
        host: str,
        pid: int,
        publish: str = "PUBLISH",
        lineage: str | None = None,
        limits: Iterable[tuple[str, int]] = (),
    ) -> None:
        self.job_id = job_id
        self.pid = pid
        self.names = tuple(inputs) + tuple(outputs)
        self.nin = len(inputs)
        self.lease_ms = to_ms(lease)
        #: KEYS of every call (the scripts derive the rest: see lua/lib.lua).
        self.keys = keys.scripts
        ttl = 0 if output_ttl is None else to_ms(output_ttl)
        #: The limits it takes slots of: ``((limit, slots), ...)``.
        self.limits = tuple((str(name), int(n)) for name, n in limits)
        tail: list[Any] = [x for pair in self.limits for x in pair] + list(self.names)
        lims = len(self.limits)
        #: The job's name in lineage edges ("" for none): given, else its id folded (as jobs.py does).
        self.lineage = (lineage or fold(job_id)) if history else ""
        self._start = Argv(argv(StartArgs(job_id, "", START, self.lease_ms, int(renews), int(bool(overwrite)), ttl,
                                          host, pid, 0, "", self.lineage, publish, self.nin, lims), tail))
        self._stop = Argv(argv(StopArgs(job_id, 0, 1, ttl, "", STOPPED_RECORD_MS, publish, 0, self.lineage, self.nin,
                                        lims), tail))
        self._refresh = Argv(argv(RefreshArgs(job_id, self.lease_ms, 0, 0, self.nin, lims), tail))
        self._leave = Argv(argv(LeaveArgs(job_id, "", STOPPED_RECORD_MS, publish, self.nin, lims), tail))

    def with_id(self, job_id: str) -> Plan:
        """The same plan for another job id with the same lineage name.

        A decorated job or a clone pays for its plan once.
        """
        other = object.__new__(Plan)
        other.pid, other.names, other.nin, other.limits, other.lease_ms, other.keys, other.lineage = (
            self.pid, self.names, self.nin, self.limits, self.lease_ms, self.keys, self.lineage)
        other.job_id = job_id
        # the ARGV templates are shared: every call sets the job id (see start_args...)
        other._start, other._stop, other._refresh, other._leave = self._start, self._stop, self._refresh, self._leave
        return other

    def start_args(self, nonce: str, mode: str = START, wait_left: float = 0.0, channel: str = "") -> list[Any]:
        """ARGV of start.lua; ``wait_left`` (seconds, mode ``wait``) of 0 is the last try."""
        return self._start.changed({_JOB_ID: self.job_id, _START_NONCE: nonce, _START_MODE: mode,
                                    _START_LEFT: 0 if wait_left <= 0 else to_ms(wait_left), _START_CHANNEL: channel})

    def stop_args(self, token: int | None, commit: bool, nonce: str, forced: bool = False) -> list[Any]:
        """ARGV of stop.lua; ``token`` None stops a job without a holder record by its id; ``forced``
        marks a stop from outside the job."""
        return self._stop.changed({_JOB_ID: self.job_id, _STOP_TOKEN: token or 0, _STOP_COMMIT: int(commit),
                                   _STOP_NONCE: nonce, _STOP_FORCED: int(forced)})

    def refresh_args(self, token: int, renew: bool = True, strict: bool = False, lease: float | None = None
                     ) -> list[Any]:
        """ARGV of refresh.lua; ``strict`` renews nothing unless every lock is held; ``lease``
        replaces the plan's lease for this renewal; without ``renew`` it only checks."""
        lease_ms = (self.lease_ms if lease is None else to_ms(lease)) if renew else 0
        return self._refresh.changed({_JOB_ID: self.job_id, _REFRESH_LEASE: lease_ms, _REFRESH_TOKEN: token,
                                      _REFRESH_STRICT: int(strict)})

    def leave_args(self, nonce: str) -> list[Any]:
        """ARGV of leave.lua for the start() call ``nonce``."""
        return self._leave.changed({_JOB_ID: self.job_id, _LEAVE_NONCE: nonce})

    def name(self, index: Any) -> str:
        """The name (or limit) at a 1-based index of a script reply: its names, then its limits; 0 is
        the job itself."""
        i = int(index)
        if i > len(self.names):
            return self.limits[i - len(self.names) - 1][0]
        return self.names[i - 1] if i else self.job_id

    def lost_reasons(self, indices: Iterable[Any]) -> dict[str, list[str]]:
        """``{"input_lock_lost": [...], "output_lock_lost": [...], "limit_lost": [...]}`` from 1-based indices."""
        lost: dict[str, list[str]] = {}
        for i in indices:
            i = int(i)
            reason = "input_lock_lost" if i <= self.nin else "output_lock_lost" if i <= len(self.names) else \
                "limit_lost"
            lost.setdefault(reason, []).append(self.name(i))
        return lost

    def all_lost(self) -> dict[str, list[str]]:
        """Every lock (and slot) of the job, as lost reasons."""
        return self.lost_reasons(range(1, len(self.names) + len(self.limits) + 1))


@dataclass(frozen=True)
class StartReply:
    """start.lua's reply.

    ``token`` is the start's fencing token, or for a blocked try the
    namespace's last one (a grant with a token not above it is stale);
    ``lease`` is the lease left (seconds) of a start; ``final`` says waiting
    cannot help; ``polls`` says some blocker may end without a wake-up (a
    jobs.py holder, a missing input), so a waiting job must look again by itself.
    """

    started: bool
    token: int
    now: float
    lease: float = 0.0
    blockers: tuple[Blocker, ...] = ()
    final: bool = False
    polls: bool = False
    #: ``{limit: capacity}`` of the limits it asks more slots of than they have (``limit_too_small``).
    capacities: Mapping[str, int] = field(default_factory=dict)


def parse_start(reply: Sequence[Any], plan: Plan) -> StartReply:
    if int(reply[0]) == 1:
        return StartReply(True, int(reply[1]), float(text(reply[2])), max(int(reply[3]), 0) / 1000)
    blockers = []
    polls = False
    capacities = {}
    for i in range(4, len(reply), 5):
        reason, name = text(reply[i]), plan.name(reply[i + 1])
        holder_id, expiry = text(reply[i + 2]), text(reply[i + 3])
        holder = Holder(holder_id, float(expiry) if expiry else None) if holder_id else None
        if reason == "limit_too_small":
            capacities[name] = int(float(expiry))
        blockers.append(Blocker(reason, name, holder))
        polls = polls or int(reply[i + 4]) == 0
    return StartReply(False, int(reply[3]), float(text(reply[1])), 0.0, tuple(blockers), int(reply[2]) == 1, polls,
                      capacities)


def parse_refresh(reply: Sequence[Any], plan: Plan) -> tuple[float, dict[str, list[str]]]:
    """refresh.lua's reply as ``(server now, lost reasons)``."""
    return float(text(reply[1])), plan.lost_reasons(reply[2:])


@dataclass(frozen=True)
class StopReply:
    """stop.lua's reply: ``status`` 1 stopped now, 2 by an earlier try of this call, 3 by another call
    first (``forced``: from outside, else by a process that resumed the start), 0 locks lost (nothing
    written); ``state`` what the start ended as; ``lost`` the locks it no longer held."""

    status: int
    state: str
    lost: dict[str, list[str]]
    forced: bool = False


def parse_stop(reply: Sequence[Any], plan: Plan) -> StopReply:
    status = int(reply[0])
    if status == 3:
        return StopReply(status, text(reply[2]), {}, int(reply[3]) == 1)
    return StopReply(status, text(reply[2]), plan.lost_reasons(reply[3:]))
