"""What every browser of ``jobs-core serve`` is sent: the namespace's state as one JSON document.

Pure functions (no I/O): :mod:`jobs_core.web.reader` reads the records and
hands them here. The document wraps the ``status --json`` document of the
command (unchanged, so the page and ``/api/status`` show the same thing) and
adds, per waiting job, what blocks it and its place in each name's line,
worked out from the records already read rather than asked of Redis job by
job (one read for a thousand waiters, not a thousand).

Places in line follow when each waiting job began to wait, which is the
ticket its lines are ordered by; a jobs.py client never waits in line and is
not shown in one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..cli_format import JSON_VERSION, status_json
from ..facts import LimitInfo, RunningJob, Waiter

#: Version of the snapshot document (``/events``); its ``status`` is the command's document.
SNAPSHOT_VERSION = 1


def _holder(job: RunningJob, now: float) -> dict[str, Any]:
    return {"job_id": job.job_id, "expires": job.expires, "left": job.expires - now, "token": job.token,
            "host": job.host, "pid": job.pid}


def _lines(waiting: Sequence[Waiter]) -> dict[str, list[Waiter]]:
    """Each name's waiting jobs, first in line first (by when they began to wait)."""
    lines: dict[str, list[Waiter]] = {}
    for w in waiting:
        for name in dict.fromkeys(w.inputs + w.outputs):
            lines.setdefault(name, []).append(w)
    for line in lines.values():
        line.sort(key=lambda w: (w.since if w.since is not None else float("inf"), w.job_id))
    return lines


def waiting_detail(now: float, running: Sequence[RunningJob], waiting: Sequence[Waiter], written: Mapping[str, str],
                   limits: Sequence[LimitInfo]) -> list[dict[str, Any]]:
    """Per waiting job (in the order of the status document: by job id), ``{"blockers", "lines"}``.

    ``blockers`` are ``{"reason", "name", "holder"}`` with the reasons of
    ``why-blocked`` (``input_missing`` with a holder: being written) and
    ``input_queued``/``output_queued`` (free, but another job is ahead in its
    line: ``ahead`` names the first) and ``limit_full``; ``lines`` maps each
    name to ``{"place", "of", "first", "writes"}``.
    """
    writers: dict[str, RunningJob] = {}
    readers: dict[str, list[RunningJob]] = {}
    for job in running:
        for name in job.outputs:
            writers[name] = job
        for name in job.inputs:
            readers.setdefault(name, []).append(job)
    lines = _lines(waiting)
    free = {info.name: info.free for info in limits}
    out = []
    for w in sorted(waiting, key=lambda w: w.job_id):
        blockers: list[dict[str, Any]] = []
        places: dict[str, dict[str, Any]] = {}
        for name in dict.fromkeys(w.inputs + w.outputs):
            line = lines[name]
            place = next(i for i, other in enumerate(line) if other is w)
            places[name] = {"place": place + 1, "of": len(line), "first": line[0].job_id,
                            "writes": name in w.outputs}
        for name in w.inputs:
            writer = writers.get(name)
            if writer is not None or name not in written:
                blockers.append({"reason": "input_missing", "name": name,
                                 "holder": None if writer is None else _holder(writer, now)})
        for name in w.outputs:
            writer = writers.get(name)
            if writer is not None:
                blockers.append({"reason": "output_locked", "name": name, "holder": _holder(writer, now)})
            for reader in readers.get(name, ()):
                blockers.append({"reason": "output_used", "name": name, "holder": _holder(reader, now)})
        for limit, slots in w.limits:
            if free.get(limit, 0) < slots:
                blockers.append({"reason": "limit_full", "name": limit, "holder": None})
        if not blockers:
            for name, where in places.items():
                if where["place"] > 1:
                    reason = "output_queued" if where["writes"] else "input_queued"
                    blockers.append({"reason": reason, "name": name, "holder": None, "ahead": where["first"]})
        out.append({"blockers": blockers, "lines": places})
    return out


def snapshot(prefix: str, where: str, now: float, running: Sequence[RunningJob], waiting: Sequence[Waiter],
             written: Mapping[str, str], limits: Sequence[LimitInfo], read_seconds: float) -> dict[str, Any]:
    """The document of a successful read (``ok`` true); see :func:`outage` for a failed one."""
    return {
        "version": SNAPSHOT_VERSION,
        "ok": True,
        "error": None,
        "where": where,
        "read_at": now,
        "read_seconds": read_seconds,
        "status": status_json(prefix, now, running, waiting, limits),
        "waiting_detail": waiting_detail(now, running, waiting, written, limits),
    }


def outage(last: Mapping[str, Any] | None, prefix: str, where: str, error: str, since: float) -> dict[str, Any]:
    """The document while Redis cannot be read: the last state read (if any), marked stale."""
    base = dict(last) if last else {
        "version": SNAPSHOT_VERSION, "where": where, "read_at": None, "read_seconds": None,
        "status": {"version": JSON_VERSION, "prefix": prefix, "server_time": None, "running": [], "waiting": [],
                   "limits": []},
        "waiting_detail": []}
    base.update(ok=False, error=error, down_since=since)
    return base
