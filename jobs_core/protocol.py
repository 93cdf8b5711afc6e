"""Script arguments and replies: everything between a job and Redis except the I/O.

The sync and asyncio coordinators and the CLI share these, so a script's
contract is written down once in Python (and once in its Lua header).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import InvalidArgument, InvalidType
from .facts import Blocker, Holder, OutputInfo, RunningJob
from .keys import Keys
from .names import ARROW, fold

#: How long a stopped job's holder record stays, so a repeated stop() knows the outcome.
STOPPED_RECORD_MS = 60_000
#: Longest duration, wait or time to live accepted: ten years.
MAX_SECONDS = 10 * 365 * 86400
#: States a stop leaves in the holder record.
WRITTEN, FAILED, LOST = "written", "failed", "lost"


def text(value: Any) -> str:
    """A reply element as ``str`` whether the client decodes responses or not."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def check_seconds(value: Any, what: str, *, minimum: float = 0.0, allow_none: bool = False) -> float | None:
    """Validate a duration in seconds: a finite real number ``>= minimum``.

    Raises:
        InvalidType: not a number (``bool`` is refused too).
        InvalidArgument: below ``minimum``, above ten years, infinite or NaN.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidType(f"{what} must be a number of seconds, not {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < minimum or value > MAX_SECONDS:
        bound = f"at least {minimum:g}" if minimum else "zero or more"
        raise InvalidArgument(f"{what} must be a number of seconds, {bound} and at most {MAX_SECONDS} (ten "
                              f"years); got {value!r}")
    return float(value)


def to_ms(seconds: float) -> int:
    """Seconds to whole milliseconds for PX/PEXPIRE, never below 1."""
    return max(1, int(round(seconds * 1000)))


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Plan:
    """Keys and arguments of one job's scripts, computed once when the job is made."""

    __slots__ = (
        "job_id", "pid", "names", "nin", "lease_ms", "start_keys", "refresh_keys", "stop_keys",
        "_start_args", "_stop_args", "wake_names", "_keys",
    )

    def __init__(
        self,
        keys: Keys,
        job_id: str,
        inputs: Sequence[str],
        outputs: Sequence[str],
        *,
        lease: float,
        overwrite: bool,
        history: bool,
        output_ttl: float | None,
        host: str,
        pid: int,
        publish: str = "PUBLISH",
    ) -> None:
        self.job_id = job_id
        self.pid = pid
        self._keys = keys
        self.names = tuple(inputs) + tuple(outputs)
        self.nin = len(inputs)
        self.lease_ms = to_ms(lease)
        self.wake_names = frozenset(self.names)
        per_name: list[str] = []
        for n in inputs:
            per_name += (keys.output(n), keys.olock(n), keys.ilock(n))
        for n in outputs:
            per_name += (keys.output(n), keys.olock(n), keys.ilock(n), keys.queue(n))
        head = [keys.running, keys.job(job_id), keys.holder(job_id)]
        self.start_keys = head + [
            keys.token, keys.graph_input, keys.graph_output, keys.waiting, keys.waiter(job_id), *per_name,
        ]
        self.refresh_keys = head + [keys.ilock(n) for n in inputs] + [keys.olock(n) for n in outputs]
        stop_keys = head + [keys.waiting]
        for n in inputs:
            stop_keys += (keys.ilock(n), keys.queue(n))
        for n in outputs:
            stop_keys += (keys.output(n), keys.olock(n), keys.facts(n), keys.queue(n))
        self.stop_keys = stop_keys
        edges_in: list[str] = []
        edges_out: list[str] = []
        if history:
            folded = fold(job_id)
            edges_in = list(dict.fromkeys(f"{fold(n)}{ARROW}{folded}" for n in inputs))
            edges_out = list(dict.fromkeys(f"{folded}{ARROW}{fold(n)}" for n in outputs))
        io = dumps([*inputs, "", *outputs])
        ttl = 0 if output_ttl is None else to_ms(output_ttl)
        self._start_args = [
            job_id, self.lease_ms, self.nin, "start", int(bool(overwrite)), io, host, pid, 0, "", ttl, 0,
            len(edges_in), *edges_in, *edges_out,
        ]
        self._stop_args = [job_id, 0, self.nin, 1, ttl, publish, keys.channel, "\n".join(self.names),
                           STOPPED_RECORD_MS, 0]

    def with_id(self, job_id: str) -> Plan:
        """The same plan for another job id whose lineage form is the same (``fold``).

        Only the id and the three per-id keys change, so a decorated job or a
        clone pays for its plan once.
        """
        other = object.__new__(Plan)
        for slot in Plan.__slots__:
            setattr(other, slot, getattr(self, slot))
        k = self._keys
        other.job_id = job_id
        other.start_keys = list(self.start_keys)
        other.start_keys[1:3] = (k.job(job_id), k.holder(job_id))
        other.start_keys[7] = k.waiter(job_id)
        other.refresh_keys = list(self.refresh_keys)
        other.refresh_keys[1:3] = other.start_keys[1:3]
        other.stop_keys = list(self.stop_keys)
        other.stop_keys[1:3] = other.start_keys[1:3]
        other._start_args = list(self._start_args)
        other._start_args[0] = job_id
        other._stop_args = list(self._stop_args)
        other._stop_args[0] = job_id
        return other

    def start_args(self, mode: str = "start", wait_left: float = 0.0, nonce: str = "", ticket: float = 0.0
                   ) -> list[Any]:
        """ARGV of start.lua; ``mode`` is ``start``, ``wait`` or ``check``; ``ticket`` is when a
        waiting job began to wait (server time), which orders the waiters of an output."""
        args = list(self._start_args)
        args[3] = mode
        args[8] = to_ms(wait_left) if mode == "wait" else 0
        args[9] = nonce
        args[11] = f"{ticket:.6f}" if ticket else 0
        return args

    def name(self, index: Any) -> str:
        """The name at a 1-based index of a script reply; 0 is the job itself."""
        i = int(index)
        return self.names[i - 1] if i else self.job_id

    def refresh_args(self, token: int, renew: bool = True, strict: bool = False, lease: float | None = None
                     ) -> list[Any]:
        """ARGV of refresh.lua; ``strict`` renews nothing unless every lock is held; ``lease``
        replaces the plan's lease for this renewal."""
        lease_ms = (self.lease_ms if lease is None else to_ms(lease)) if renew else 0
        return [self.job_id, lease_ms, self.nin, token, int(strict)]

    def stop_args(self, token: int | None, commit: bool) -> list[Any]:
        """ARGV of stop.lua; ``token`` None stops a job without a holder record by its id."""
        args = list(self._stop_args)
        args[1] = token or 0
        args[3] = int(commit)
        args[9] = int(token is None)
        return args

    def lost_reasons(self, indices: Iterable[Any]) -> dict[str, list[str]]:
        """``{"input_lock_lost": [...], "output_lock_lost": [...]}`` from 1-based indices."""
        lost: dict[str, list[str]] = {}
        for i in indices:
            i = int(i)
            reason = "input_lock_lost" if i <= self.nin else "output_lock_lost"
            lost.setdefault(reason, []).append(self.names[i - 1])
        return lost


def parse_start(reply: Sequence[Any], plan: Plan) -> tuple[bool, int, float, list[Blocker]]:
    """start.lua's reply as ``(started, token, server now, blockers)``."""
    if int(reply[0]) == 1:
        return True, int(reply[1]), float(text(reply[2])), []
    blockers = []
    for i in range(2, len(reply), 4):
        holder_id = text(reply[i + 2])
        expiry = text(reply[i + 3])
        holder = Holder(holder_id, float(expiry) if expiry else None) if holder_id else None
        blockers.append(Blocker(text(reply[i]), plan.name(reply[i + 1]), holder))
    return False, 0, float(text(reply[1])), blockers


def parse_refresh(reply: Sequence[Any], plan: Plan) -> tuple[float, dict[str, list[str]]]:
    """refresh.lua's reply as ``(server now, lost reasons)``."""
    return float(text(reply[1])), plan.lost_reasons(reply[2:])


def parse_stop(reply: Sequence[Any], plan: Plan) -> tuple[int, str, dict[str, list[str]]]:
    """stop.lua's reply as ``(status, state, lost reasons)``; status 2 = stopped earlier."""
    return int(reply[0]), text(reply[2]), plan.lost_reasons(reply[3:])


def holder_facts(job_id: str, record: Mapping[Any, Any] | None, expires: float | None = None) -> Holder:
    """A :class:`Holder` from a ``jobs:holder:<id>`` hash (empty for jobs.py jobs)."""
    fields = running_fields(record)
    return Holder(
        job_id,
        expires,
        int(fields["token"]) if "token" in fields else None,
        fields.get("host"),
        int(fields["pid"]) if "pid" in fields else None,
        float(fields["started"]) if "started" in fields else None,
    )


def server_time(reply: Sequence[Any]) -> float:
    """The ``TIME`` reply as epoch seconds (redis-py gives a tuple of ints)."""
    return int(reply[0]) + int(reply[1]) / 1_000_000


def output_info(name: str, now: float, value: Any, pttl: int, facts: Any, writer: Any, writer_pttl: int,
                readers: Sequence[tuple[Any, float]], waiters: Sequence[str] = ()) -> OutputInfo:
    """Assemble :class:`OutputInfo` from the raw reads of one name."""
    value = None if value is None else text(value)
    record = json.loads(text(facts)) if facts is not None else {}
    if value is None or record.get("job") != value:
        record = {}  # facts belong to an earlier write, or a writer that keeps none
    lock = None
    if writer is not None:
        lock = Holder(text(writer), now + writer_pttl / 1000 if writer_pttl > 0 else None)
    return OutputInfo(
        name=name,
        now=now,
        written=value is not None,
        writer=value,
        written_at=record.get("time"),
        token=record.get("token"),
        ttl=pttl / 1000 if value is not None and pttl > 0 else None,
        forced=bool(record.get("forced")),
        write_lock=lock,
        readers=tuple(Holder(text(m), float(s)) for m, s in readers if float(s) > now),
        waiters=tuple(waiters),
    )


def split_io(io: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(inputs, outputs)`` from a ``jobs:running:<id>`` JSON array ``[inputs..., "", outputs...]``."""
    names = json.loads(text(io))
    sep = names.index("") if "" in names else len(names)
    return tuple(names[:sep]), tuple(names[sep + 1:])


def running_job(job_id: str, expires: float, io: Any, record: Mapping[Any, Any] | None) -> RunningJob | None:
    """A :class:`RunningJob` from its ``jobs:running:<id>`` JSON and holder hash."""
    if io is None:
        return None
    inputs, outputs = split_io(io)
    h = holder_facts(job_id, record, expires)
    fields = running_fields(record)
    lease = int(fields["lease"]) / 1000 if "lease" in fields else None
    ttl = int(fields["ttl"]) / 1000 if int(fields.get("ttl") or 0) else None
    return RunningJob(job_id, inputs, outputs, expires, h.token, h.host, h.pid, h.started, lease, ttl)


def running_fields(record: Mapping[Any, Any] | None) -> dict[str, str]:
    """A holder hash as text, or ``{}`` unless its start is still running."""
    fields = {text(k): text(v) for k, v in (record or {}).items()}
    return fields if fields.get("state") == "running" else {}
