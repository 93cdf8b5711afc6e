"""Script arguments and replies: everything between a job and Redis except the I/O.

The sync and asyncio coordinators and the CLI share these, so a script's
contract is written down once in Python (and once in its Lua header).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import InvalidArgument, InvalidType
from .facts import Holder, OutputInfo, RunningJob

#: How long a stopped job's holder record stays, so a repeated stop() knows the outcome.
STOPPED_RECORD_MS = 60_000
#: A waiting job counts as alive (keeps its place in line) this long after each try; it tries
#: again at least every ``jobs_core.waiting.MAX_QUIET_SLEEP`` seconds, well within it.
ALIVE_MS = 30_000
#: jobs.py clients find ``jobs:running:<id>`` through the zset using their own clock: the record
#: stays this long past the lease so a client whose clock is behind still finds it.
RECORD_SLACK_MS = 60_000
#: Entries of one line a script looks at per name and call (bounds every script's work).
SCAN_MAX = 32
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
