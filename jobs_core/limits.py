"""Limits: shared capacity that a job takes in the same atomic start as its locks.

A limit is a count of slots in a namespace: ``jobs:limits`` maps its name to
its capacity. A job asking ``limits={"warehouse": 2}`` starts only when, with
everything else it needs, two slots of ``warehouse`` are free; it holds them
under its lease (renewed, released and lost with its locks) as members
``<job id>#1``, ``<job id>#2`` of ``jobs:limit:warehouse``, scored by its
lease expiry. Jobs blocked by a full limit wait in its line
(``jobs:limitq:warehouse``) in the order they began to wait; a job ahead keeps
the slots it asks for, so one asking for many is not passed for ever by jobs
asking for few (see lua/lib.lua, ``line``).

This module holds the checks and the parsing; no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InvalidArgument, InvalidType
from .facts import Holder, LimitInfo, Waiter
from .names import NG, check_text

#: Most slots one job may take, of all its limits together (each slot is a member the scripts
#: add, renew and remove while the server waits, as for :data:`jobs_core.names.MAX_NAMES`).
MAX_SLOTS = 1000
#: Largest capacity a limit may have.
MAX_CAPACITY = 1_000_000_000


def wake_mark(name: str) -> str:
    """How the namespace's broadcast (``<prefix>jobs:wake``) names limit ``name`` when its slots or
    capacity changed (lua/lib.lua, flush): no jobs_core name starts with ``jobs:``."""
    return "jobs:limit:" + name


def check_limit(value: Any) -> str:
    """Validate a limit's name (the rules of a job id: text, no control characters)."""
    return check_text(value, "limit name")


def check_limit_names(values: Any) -> tuple[str, ...]:
    """Validate a list of limit names (a single ``str`` is refused), dropping repeats."""
    if isinstance(values, (str, bytes, NG)) or not isinstance(values, Iterable):
        raise InvalidType(f"limit names must be a list, tuple or set, not {type(values).__name__}")
    return tuple(dict.fromkeys(check_limit(v) for v in values))


def _count(value: Any, what: str, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidType(f"{what} must be an int, not {type(value).__name__} {value!r}")
    if not 1 <= value <= most:
        raise InvalidArgument(f"{what} must be from 1 to {most}, not {value}")
    return value


def check_capacity(value: Any, limit: str = "") -> int:
    """Validate a limit's capacity: an int from 1 to :data:`MAX_CAPACITY` (remove a limit to
    make it unusable; a capacity of 0 is refused)."""
    return _count(value, f"the capacity of limit {limit!r}" if limit else "a capacity", MAX_CAPACITY)


def check_limits(value: Any) -> tuple[tuple[str, int], ...]:
    """A job's ``limits=``: ``{limit: slots}`` or ``[(limit, slots), ...]`` (None or empty: none).

    Raises:
        InvalidType: not a mapping or list of pairs, a name not text, slots not an int.
        InvalidArgument: slots below 1, more than :data:`MAX_SLOTS` in all, a limit named twice.
    """
    if value is None:
        return ()
    if isinstance(value, Mapping):
        pairs: Iterable[Any] = value.items()
    elif isinstance(value, (str, bytes, NG)) or not isinstance(value, Iterable):
        raise InvalidType(f"limits must be a dict {{limit: slots}} or a list of (limit, slots) pairs, "
                          f"not {type(value).__name__}")
    else:
        pairs = value
    out: dict[str, int] = {}
    for pair in pairs:
        if isinstance(pair, (str, bytes)) or not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InvalidType(f"each limit is a (limit, slots) pair, not {pair!r}")
        name = check_limit(pair[0])
        if name in out:
            raise InvalidArgument(f"limit {name!r} is named twice")
        out[name] = _count(pair[1], f"the slots taken of limit {name!r}", MAX_SLOTS)
    if sum(out.values()) > MAX_SLOTS:
        raise InvalidArgument(f"a job may take at most {MAX_SLOTS} slots of all its limits together, "
                              f"not {sum(out.values())}")
    return tuple(out.items())


def read_limits(raw: Any) -> tuple[tuple[str, int], ...]:
    """The ``limits`` a script recorded (holder record field, waiting record key): JSON
    ``[[limit, slots], ...]`` (Lua writes an empty list as ``{}``); what cannot be read is left out."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return ()
    if not isinstance(raw, list):
        return ()
    out = []
    for pair in raw:
        if (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and isinstance(pair[1], int)
                and not isinstance(pair[1], bool) and pair[1] > 0):
            out.append((pair[0], pair[1]))
    return tuple(out)


def slot_holders(members: Iterable[tuple[str, float]], now: float) -> dict[str, tuple[int, float]]:
    """``{job id: (slots, expiry)}`` of a limit's live slots (members ``<job id>#<n>``)."""
    out: dict[str, tuple[int, float]] = {}
    for member, expiry in members:
        if expiry <= now:
            continue
        job_id, sep, n = member.rpartition("#")
        if not sep or not n.isdigit():
            job_id = member
        slots, latest = out.get(job_id, (0, expiry))
        out[job_id] = (slots + 1, max(latest, expiry))
    return out


def limit_info(name: str, capacity: Any, holders: Iterable[tuple[Holder, int]],
               line: Iterable[Waiter], problems: Iterable[str] = ()) -> LimitInfo:
    """A :class:`LimitInfo` from what was read (``capacity`` as the hash held it)."""
    held = tuple(holders)
    cap = int(capacity) if isinstance(capacity, str) and capacity.isdigit() else None
    queued = tuple((w, dict(w.limits).get(name, 0)) for w in line)
    return LimitInfo(name, cap, sum(n for _, n in held), held, queued, tuple(problems))
