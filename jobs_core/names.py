"""Name rules: what an input, output or job id may be, and how lineage folds them.

No I/O here: every public entry point calls these before anything reaches Redis.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .errors import InvalidArgument, InvalidName, InvalidNameType

#: The separator of lineage edges (``"<input> -> <job>"``); no name may contain it.
ARROW = " -> "
#: Key spaces jobs.py and jobs_core keep beside the outputs, under the same prefix.
RESERVED_PREFIXES = ("jobs:", "ilock:", "olock:")
#: Longest name accepted, in UTF-8 bytes.
MAX_NAME_BYTES = 1024
#: Most names one job may have (inputs and outputs together), and one ``unlock`` or
#: ``create_outputs`` may name: a script touches a few keys per name while the whole
#: server waits for it, so this bounds the pause (about 10 ms on a 2020s machine).
MAX_NAMES = 1000
#: Digits runs folded by lineage so day-partitioned runs share one graph node.
EDGE_RE = re.compile("[0-9][0-9-]*")
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")


class NG:
    """Name generator: ``str(NG.reporting.events[day]) == 'reporting.events.<day>'``."""

    __slots__ = ("_name",)

    def __init__(self, start: str = "") -> None:
        self._name = start.strip(".")

    def __getitem__(self, item: object) -> NG:
        return NG(f"{self._name}.{item}")

    def __getattr__(self, item: str) -> NG:
        if item.startswith("__"):
            raise AttributeError(item)
        return self[item]

    def __call__(self, item: object) -> NG:
        return self[item]

    def __str__(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return repr(self._name)

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(self._name)


def check_text(value: Any, what: str = "name") -> str:
    """Return ``value`` as a usable string for a key component or job id.

    Raises:
        InvalidNameType: not a ``str`` (or :class:`NG`).
        InvalidName: empty, too long, not encodable, with control characters or
            the lineage arrow.
    """
    if isinstance(value, NG):
        value = str(value)
    elif not isinstance(value, str):
        raise InvalidNameType(value, f"a {what} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidName(value, f"a {what} cannot be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidName(value, f"a {what} must be valid Unicode text (it has a lone surrogate)") from None
    if size > MAX_NAME_BYTES:
        raise InvalidName(value[:40] + "...", f"a {what} is limited to {MAX_NAME_BYTES} UTF-8 bytes, this has {size}")
    if _CONTROL_RE.search(value):
        raise InvalidName(value, f"a {what} cannot contain control characters (newline, tab, NUL...)")
    if ARROW in value:
        raise InvalidName(value, f"a {what} cannot contain {ARROW!r}, the lineage edge separator")
    return value


def check_job_id(value: Any, what: str = "job id") -> str:
    """Validate a job id or job name: text as :func:`check_text`, and no arrow at its ends.

    Lineage edges are ``input -> job`` and ``job -> output``: an id starting
    with ``"-> "`` or ending with ``" ->"`` would make them ambiguous.
    """
    job_id = check_text(value, what)
    if job_id.startswith(ARROW.lstrip()) or job_id.endswith(ARROW.rstrip()):
        raise InvalidName(job_id, f"a {what} cannot start with {ARROW.lstrip()!r} or end with {ARROW.rstrip()!r}: "
                                  "its lineage edges would be ambiguous")
    return job_id


def check_name(value: Any) -> str:
    """Validate one input or output name (also refusing the internal key spaces)."""
    name = check_text(value)
    if name.startswith(RESERVED_PREFIXES):
        raise InvalidName(name, f"names starting with {', '.join(RESERVED_PREFIXES)} collide with internal keys")
    return name


def check_names(values: Any, what: str, *, limit: int | None = MAX_NAMES) -> tuple[str, ...]:
    """Validate a list of names, dropping repeats but keeping the first order.

    ``limit`` (:data:`MAX_NAMES` unless None, for reads that send no script)
    is checked as the names are read, so an endless iterable is refused too.

    Raises:
        InvalidNameType: not a list, tuple or set (a single ``str`` is refused), or a name not a ``str``.
        InvalidName: a bad name (see :func:`check_name`).
        InvalidArgument: more than ``limit`` names.
    """
    if isinstance(values, (str, bytes, NG)) or not isinstance(values, Iterable):
        raise InvalidNameType(values, f"{what} must be a list, tuple or set of names, not {type(values).__name__}")
    names: dict[str, None] = {}
    for value in values:
        names[check_name(value)] = None
        if limit is not None and len(names) > limit:
            raise InvalidArgument(_too_many(what, f"more than {limit}"))
    return tuple(names)


def check_io(inputs: Any, outputs: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Validate a job's inputs and outputs (:func:`check_names`), at most :data:`MAX_NAMES` together.

    Raises:
        InvalidArgument: more names than that, or a bad list or name.
    """
    ins, outs = check_names(inputs, "inputs"), check_names(outputs, "outputs")
    if len(ins) + len(outs) > MAX_NAMES:
        raise InvalidArgument(_too_many("inputs and outputs", f"{len(ins) + len(outs)} ({len(ins)} + {len(outs)})"))
    return ins, outs


def _too_many(what: str, count: str) -> str:
    return (f"{what}: {count} names, but one call may name at most {MAX_NAMES} (inputs and outputs together), "
            "so that no script holds up the Redis server for long; split the work into several jobs")


def fold(text: str) -> str:
    """Lineage form of a name or job id: every digit run becomes ``*``."""
    return EDGE_RE.sub("*", text)
