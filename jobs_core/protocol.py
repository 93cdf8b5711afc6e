"""Script arguments and replies: everything between a job and Redis except the I/O.

The sync and asyncio coordinators and the CLI share these, so a script's
contract is written down once in Python (and once in its Lua header).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, overload

from .errors import InvalidArgument, InvalidType
from .facts import Holder, OutputInfo, RunningJob, Waiter
from .keys import Keys
from .limits import read_limits

#: How long a stopped job's holder record stays, so a repeated stop() knows the outcome.
STOPPED_RECORD_MS = 60_000
#: A waiting job counts as alive (keeps its place in line) this long after each try; it tries
#: again at least every ``jobs_core.waiting.MAX_QUIET_SLEEP`` seconds, well within it.
ALIVE_MS = 30_000
#: jobs.py clients find ``jobs:running:<id>`` through the zset using their own clock: the record
#: stays this long past the lease so a client whose clock is behind still finds it.
RECORD_SLACK_MS = 60_000
#: Waiters a release judges per line (and a page of a line): past them, the next looks for itself.
SCAN_MAX = 32
#: Waiters of one line a start judges to find its place (a longer line keeps it behind).
LINE_MAX = 256
#: Line entries one script call judges in all; past it the rest keep their turn (bounds its work).
WORK_MAX = 1000
#: Longest duration, wait or time to live accepted: ten years.
MAX_SECONDS = 10 * 365 * 86400
#: States a stop leaves in the holder record.
WRITTEN, FAILED, LOST = "written", "failed", "lost"


def text(value: Any) -> str:
    """A reply element as ``str`` whether the client decodes responses or not."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@overload
def check_seconds(value: Any, what: str, *, minimum: float = ..., allow_none: Literal[False] = ...) -> float: ...


@overload
def check_seconds(value: Any, what: str, *, minimum: float = ..., allow_none: bool) -> float | None: ...


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


def holder_facts(job_id: str, record: Any, expires: float | None = None) -> Holder:
    """A :class:`Holder` from a ``jobs:holder:<id>`` hash (empty for jobs.py jobs).

    ``record`` is the hash as a mapping, None, or :class:`Malformed`; a field
    that cannot be read is left None and named in ``problems``.
    """
    fields = running_fields(record)
    problems: list[str] = [] if not isinstance(record, Malformed) else [f"holder record: {record.message}"]
    token = _field(fields, "token", whole, problems)
    pid = _field(fields, "pid", integer, problems)
    started = _field(fields, "started", finite, problems)
    return Holder(job_id, expires, token, fields.get("host"), pid, started, tuple(problems))


def server_time(reply: Sequence[Any]) -> float:
    """The ``TIME`` reply as epoch seconds (redis-py gives a tuple of ints)."""
    return int(reply[0]) + int(reply[1]) / 1_000_000


def output_info(name: str, now: float, output: Read, facts: Read, lock: Read, readers: Read,
                waiters: Sequence[str] = ()) -> OutputInfo:
    """Assemble :class:`OutputInfo` from the reads (:func:`parse_read`) of one name's keys.

    A key of the wrong type, or facts that are not the JSON object stop.lua
    writes, is named in ``problems`` and ``unreadable``; the rest is shown.
    """
    problems: list[str] = []
    unreadable: set[str] = set()

    def readable(part: str, read: Read, what: str) -> Any:
        if isinstance(read.value, Malformed):
            unreadable.add(part)
            problems.append(f"{what}: {read.value.message}")
            return None
        return read.value

    value = readable("output", output, "output key")
    written = value is not None or "output" in unreadable
    value = None if value is None else text(value)
    record = _facts(readable("facts", facts, "output facts"), problems)
    if value is None or record.get("job") != value:
        record = {}  # facts belong to an earlier write, or a writer that keeps none
    writer = readable("write_lock", lock, "write lock")
    members = readable("readers", readers, "read locks") or []
    return OutputInfo(
        name=name,
        now=now,
        written=written,
        writer=value,
        written_at=_field(record, "time", finite, problems, "output facts"),
        token=_field(record, "token", whole, problems, "output facts"),
        ttl=output.pttl / 1000 if written and output.pttl > 0 else None,
        forced=record.get("forced") is True,
        write_lock=None if writer is None else Holder(text(writer), now + lock.pttl / 1000 if lock.pttl > 0 else None),
        readers=tuple(Holder(m, s) for m, s in members if s > now),
        waiters=tuple(waiters),
        problems=tuple(problems),
        unreadable=frozenset(unreadable),
    )


def split_io(io: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(inputs, outputs)`` from a ``jobs:running:<id>`` JSON array ``[inputs..., "", outputs...]``."""
    names = json.loads(text(io))
    sep = names.index("") if "" in names else len(names)
    return tuple(names[:sep]), tuple(names[sep + 1:])


def running_job(job_id: str, expires: float, io: Any, record: Any) -> RunningJob | None:
    """A :class:`RunningJob` from its ``jobs:running:<id>`` JSON and holder hash (None once the
    JSON is gone: the job ended). What cannot be read is left out and named in ``problems``."""
    if io is None:
        return None
    inputs, outputs, problems = read_io(io, "names record")
    h = holder_facts(job_id, record, expires)
    fields = running_fields(record)
    problems += h.problems
    lease = _field(fields, "lease", whole, problems)
    ttl = _field(fields, "ttl", whole, problems)
    return RunningJob(job_id, inputs, outputs, expires, h.token, h.host, h.pid, h.started,
                      None if lease is None else lease / 1000, ttl / 1000 if ttl else None, tuple(problems),
                      read_limits(fields.get("limits")), fields.get("lineage"))


def running_fields(record: Any) -> dict[str, str]:
    """A holder hash as text, or ``{}`` unless its start is still running (or it is :class:`Malformed`)."""
    if not isinstance(record, Mapping):
        return {}
    fields = {text(k): text(v) for k, v in record.items()}
    return fields if fields.get("state") == "running" else {}


# -- reading records whatever they hold (read.lua), and the repairs' compare (unlock.lua, create.lua) -------

#: Keys read per read.lua call: each call holds the server for a bounded time.
READ_BATCH = 200


class Malformed:
    """A record that cannot be read as what it should be; ``message`` says why, for people."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"Malformed({self.message!r})"


class Read(NamedTuple):
    """One key as read.lua read it: ``value`` None (no such key), :class:`Malformed` (another
    type than asked for), or the value (text for a string, a dict for a hash, ``[(member,
    score)]`` for a zset); ``pttl`` in milliseconds as ``PTTL`` gives it."""

    value: Any
    pttl: int = -2


def parse_read(reply: Sequence[Any], kind: str) -> Read:
    """One element of read.lua's reply for a key read as ``kind`` (``string``, ``hash`` or ``zset``)."""
    status = int(reply[0])
    if status == 0:
        return Read(None)
    if status == 2:
        error = text(reply[1])
        why = f"the key is not a {kind}" if error.startswith("WRONGTYPE") else f"cannot be read ({error})"
        return Read(Malformed(why))
    value, pttl = reply[1], int(reply[2])
    if kind == "hash":
        return Read({text(k): text(v) for k, v in zip(value[::2], value[1::2])}, pttl)
    if kind == "zset":
        return Read([(text(m), float(text(s))) for m, s in zip(value[::2], value[1::2])], pttl)
    return Read(value, pttl)


def whole(value: Any) -> int | None:
    """A fencing token, lease or time to live: a whole number >= 0 (in text, ASCII digits only,
    the rule unlock.lua and create.lua apply too), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def integer(value: Any) -> int | None:
    """A process id: an integer (``-?[0-9]+`` in text), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.removeprefix("-").isdigit():
        return int(value)
    return None


def finite(value: Any) -> float | None:
    """A time in epoch seconds: a finite number, else None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, (int, float, str)) else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) else None


_KINDS = {whole: "a whole number", integer: "an integer", finite: "a number"}


def _shown(value: Any) -> str:
    """A value read from Redis, quoted and cut short, for a problem message."""
    shown = repr(value)
    return shown if len(shown) <= 42 else shown[:40] + "..."


def _field(record: Mapping[str, Any], name: str, parse: Any, problems: list[str],
           where: str = "holder record") -> Any:
    """``parse(record[name])``, None if absent; a value ``parse`` refuses is reported in ``problems``."""
    if name not in record or record[name] is None:
        return None
    value = parse(record[name])
    if value is None:
        problems.append(f"{where}: {name} {_shown(record[name])} is not {_KINDS[parse]}")
    return value


def _facts(raw: Any, problems: list[str]) -> dict[str, Any]:
    """Output facts as stop.lua and create.lua write them: a JSON object (``{}`` if absent or unreadable)."""
    if raw is None:
        return {}
    try:
        record = json.loads(text(raw))
    except ValueError:
        problems.append(f"output facts: {_shown(text(raw))} is not JSON")
        return {}
    if not isinstance(record, dict):
        problems.append(f"output facts: {_shown(record)} is not a JSON object")
        return {}
    return record


def _names_of(value: Any, where: str, problems: list[str], nin: int | None = None
              ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(inputs, outputs)`` from a decoded list of names: ``[inputs..., "", outputs...]`` (a running
    job's record), or ``nin`` inputs then outputs (a waiting one's); anything else is reported."""
    if not isinstance(value, list):
        problems.append(f"{where}: {_shown(value)} is not a list of names")
        return (), ()
    names = [n for n in value if isinstance(n, str)]
    if len(names) < len(value):
        problems.append(f"{where}: {len(value) - len(names)} entries are not names (text)")
    if nin is not None:
        return tuple(names[:nin]), tuple(names[nin:])
    sep = names.index("") if "" in names else len(names)
    return tuple(names[:sep]), tuple(names[sep + 1:])


def read_io(io: Any, where: str) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """:func:`split_io` that never fails: ``(inputs, outputs, problems)``, with what could not be read left out."""
    problems: list[str] = []
    if isinstance(io, Malformed):
        return (), (), [f"{where}: {io.message}"]
    try:
        value = json.loads(text(io))
    except ValueError:
        return (), (), [f"{where}: {_shown(text(io))} is not JSON"]
    inputs, outputs = _names_of(value, where, problems)
    return inputs, outputs, problems


def waiter(member: str, alive: float, raw: Any) -> Waiter | None:
    """A :class:`Waiter` from a ``jobs:waiting:<nonce>`` record (the start request start.lua keeps; None
    once it is gone); ``alive``, the end of its place in ``jobs:waiting``, stands for a deadline that
    cannot be read, and the record's key (``member``) for a job id that cannot."""
    if raw is None:
        return None
    where = "waiting record"
    if isinstance(raw, Malformed):
        return Waiter(member, (), (), alive, problems=(f"{where}: {raw.message}",))
    problems: list[str] = []
    try:
        record = json.loads(text(raw))
    except ValueError:
        record = None
        problems.append(f"{where}: {_shown(text(raw))} is not JSON")
    if not isinstance(record, dict):
        if record is not None:
            problems.append(f"{where}: {_shown(record)} is not a JSON object")
        return Waiter(member, (), (), alive, problems=tuple(problems))
    job_id = record.get("id")
    if not isinstance(job_id, str) or not job_id:
        problems.append(f"{where}: job id {_shown(job_id)} is not text")
        job_id = member
    names = record.get("names", [])
    if names == {}:
        names = []  # Lua's cjson writes an empty list as {}
    nin = _field(record, "nin", whole, problems, where) or 0
    inputs, outputs = _names_of(names, where, problems, nin)
    host = record.get("host")
    if host is not None and not isinstance(host, str):
        problems.append(f"{where}: host {_shown(host)} is not text")
        host = None
    deadline = _field(record, "deadline", finite, problems, where)
    return Waiter(job_id, inputs, outputs, alive if deadline is None else deadline, host,
                  _field(record, "pid", integer, problems, where), _field(record, "since", finite, problems, where),
                  tuple(problems), read_limits(record.get("lims")),
                  lineage if isinstance(lineage := record.get("lin"), str) else None)


def _shown_holders(info: OutputInfo, part: str) -> list[Holder] | None:
    """The holders ``info`` showed for its read locks or write lock (None: shown unreadable)."""
    if part in info.unreadable:
        return None
    if part == "readers":
        return list(info.readers)
    return [info.write_lock] if info.write_lock else []


def _expect_holders(keys: Keys, holders: list[Holder] | None, holder_keys: list[str], args: list[Any]) -> None:
    if holders is None:
        args.append(-1)
        return
    args.append(len(holders))
    for h in holders:
        holder_keys.append(keys.holder(h.job_id))
        args += [h.job_id, h.token or 0]


def unlock_expectation(keys: Keys, inputs: Sequence[str], outputs: Sequence[str],
                       shown: Mapping[str, OutputInfo]) -> tuple[list[str], list[Any]]:
    """unlock.lua's holder keys and compare arguments: the read locks of each input and the write
    lock of each output as ``shown`` (see the script's header)."""
    holder_keys: list[str] = []
    args: list[Any] = []
    for part, names in (("readers", inputs), ("write_lock", outputs)):
        for n in names:
            _expect_holders(keys, _shown_holders(shown[n], part), holder_keys, args)
    return holder_keys, args


def create_expectation(keys: Keys, outputs: Sequence[str], shown: Mapping[str, OutputInfo]
                       ) -> tuple[list[str], list[Any]]:
    """create.lua's holder keys and compare arguments: each output's writer and write lock as ``shown``."""
    holder_keys: list[str] = []
    args: list[Any] = []
    for n in outputs:
        info = shown[n]
        if "output" in info.unreadable:
            args += [-1, ""]
        else:
            args += [int(info.written), info.writer or ""]
        _expect_holders(keys, _shown_holders(info, "write_lock"), holder_keys, args)
    return holder_keys, args


def parse_repair(reply: Any) -> tuple[bool, list[int]]:
    """unlock.lua's or create.lua's reply: ``(True, [values...])`` when done, ``(False, [indices of
    the names whose state is no longer the one shown])`` when nothing was done (``{-1, ...}``)."""
    values = [int(v) for v in reply] if isinstance(reply, (list, tuple)) else [int(reply)]
    return (False, values[1:]) if values[0] == -1 else (True, values)


def shown_state(expected: Any, names: Iterable[str], what: str) -> dict[str, OutputInfo] | None:
    """``expected`` (the :class:`OutputInfo` records a repair showed) by name, checked to cover ``names``.

    Raises:
        InvalidType: not an iterable of :class:`OutputInfo`.
        InvalidArgument: no record for one of ``names``.
    """
    if expected is None:
        return None
    if isinstance(expected, (str, bytes, OutputInfo)) or not isinstance(expected, Iterable):
        raise InvalidType(f"expected must be a list of OutputInfo records (output_info(name) of each name), not "
                          f"{type(expected).__name__}")
    shown: dict[str, OutputInfo] = {}
    for info in expected:
        if not isinstance(info, OutputInfo):
            raise InvalidType(f"expected must hold OutputInfo records, not {type(info).__name__}")
        shown[info.name] = info
    missing = [n for n in names if n not in shown]
    if missing:
        raise InvalidArgument(f"expected has no OutputInfo for {missing[0]!r} (of the {what}): pass what "
                              "output_info() showed for every name")
    return shown
