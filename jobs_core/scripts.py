"""The Lua scripts in ``jobs_core/lua``, their arguments as records, registered through redis-py.

Each script's arguments are one ``NamedTuple`` whose fields follow the
script's header (``-- ARGV[n] - <field>: ...``; ``tests/test_scripts.py``
compares them), followed by the job's names. Every script but ``unlock`` and
``create`` starts with ``lua/lib.lua`` and the constants below it needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

from . import protocol

NAMES = ("start", "stop", "leave", "refresh", "scan", "time", "limit", "unlock", "create", "read")
#: Scripts that run on top of lib.lua (every key derived from KEYS[1], the namespace's jobs:running).
ON_LIB = frozenset({"start", "stop", "leave", "refresh", "scan", "time", "limit"})


class StartArgs(NamedTuple):
    job_id: str
    nonce: str
    mode: str
    lease_ms: int
    renews: int
    overwrite: int
    output_ttl_ms: int
    host: str
    pid: int
    wait_left_ms: int
    channel: str
    lineage: str
    publish: str
    inputs: int
    limits: int


class StopArgs(NamedTuple):
    job_id: str
    token: int
    commit: int
    output_ttl_ms: int
    nonce: str
    record_ms: int
    publish: str
    forced: int
    lineage: str
    inputs: int
    limits: int


class LeaveArgs(NamedTuple):
    job_id: str
    nonce: str
    record_ms: int
    publish: str
    inputs: int
    limits: int


class RefreshArgs(NamedTuple):
    job_id: str
    lease_ms: int
    token: int
    strict: int
    inputs: int
    limits: int


class ScanArgs(NamedTuple):
    publish: str


class LimitArgs(NamedTuple):
    publish: str
    limit: str
    capacity: int


#: The record of each script on lib.lua; its ARGV is the record's fields, then the names.
ARGS: dict[str, type[tuple]] = {"start": StartArgs, "stop": StopArgs, "leave": LeaveArgs, "refresh": RefreshArgs,
                                "scan": ScanArgs, "limit": LimitArgs}


def argv(record: tuple, names: Sequence[Any] = ()) -> list[Any]:
    """A script's ARGV: ``record``'s fields in header order, then ``names`` (for the scripts of a
    job, its limits' ``name, slots`` pairs first)."""
    return [*record, *names]


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")


@cache
def source(name: str) -> str:
    """The text run for ``name``: ``lua/<name>.lua``, after the constants and lib.lua where it uses them."""
    if name not in ON_LIB:
        return _read(name)
    constants = (f"local ALIVE_MS = {protocol.ALIVE_MS}\n"
                 f"local RECORD_SLACK_MS = {protocol.RECORD_SLACK_MS}\n"
                 f"local SCAN_MAX = {protocol.SCAN_MAX}\n"
                 f"local LINE_MAX = {protocol.LINE_MAX}\n"
                 f"local WORK_MAX = {protocol.WORK_MAX}\n")
    return constants + _read("lib") + _read(name)


class Scripts:
    """One registered ``Script`` per operation, bound to a client (sync or asyncio)."""

    __slots__ = NAMES

    def __init__(self, client: Any) -> None:
        for name in NAMES:
            setattr(self, name, client.register_script(source(name)))
