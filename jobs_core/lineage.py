"""Lineage: the ``jobs:graph:*`` edges jobs record at start, and time bounds for reading them."""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

from .errors import InvalidArgument, InvalidType
from .names import ARROW, fold

_TS_RE = re.compile(r"^\d{9,}(?:\.\d*)?$")
_DT_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?$")


def parse_when(value: Any) -> float:
    """Epoch seconds from a number, a ``datetime``/``date`` (naive means UTC), or text.

    Text may be a timestamp (``1473825618.18``) or ``YYYY-MM-DD[ HH:MM[:SS[.ffffff]]]``.

    Raises:
        InvalidArgument: text in none of those forms, or an impossible date.
        InvalidType: any other type.
    """
    if isinstance(value, bool):
        raise InvalidType(f"a time bound must be a timestamp, datetime, date or text, not {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.timestamp()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp()
    if not isinstance(value, str):
        raise InvalidType(f"a time bound must be a timestamp, datetime, date or text, not {type(value).__name__}")
    text = value.strip()
    if _TS_RE.match(text):
        return float(text)
    m = _DT_RE.match(text)
    if m:
        y, mo, d, h, mi, s, frac = m.groups()
        micro = int((frac or "0")[:6].ljust(6, "0"))
        try:
            when = _dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), micro,
                                tzinfo=_dt.timezone.utc)
        except ValueError as exc:
            raise InvalidArgument(f"bad date {value!r}: {exc}") from None
        return when.timestamp()
    raise InvalidArgument(f"{value!r} is not a timestamp (e.g. 1473825618.5), a date (2016-09-12) "
                          f"or a datetime (2016-09-12 12:14:32)")


def score_range(before: Any = None, after: Any = None) -> tuple[str | float, str | float]:
    """``(min, max)`` zset score bounds for edges last seen after/before the given times."""
    return ("-inf" if after is None else parse_when(after), "+inf" if before is None else parse_when(before))


def split_edge(edge: str) -> tuple[str, str]:
    """``"a -> b"`` as ``("a", "b")``."""
    left, _, right = edge.partition(ARROW)
    return left, right


def clean_edges(members: Any) -> list[str]:
    """Sorted, de-duplicated, folded edges from a zset read (bytes or str)."""
    out = set()
    for m in members:
        out.add(fold(m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m)))
    return sorted(out)
