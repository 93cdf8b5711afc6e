"""What the ``jobs-core`` command prints: the records of :mod:`jobs_core.facts` as text or JSON.

Pure functions (no I/O). The JSON documents are the command's stable,
documented interface (README, "The jobs-core command"): every document has
``"version": 1``, times are epoch seconds of the Redis server's clock, and a
field's meaning changes only with a new version.

Every text from Redis (names, job ids, hosts, problems) goes through
:func:`jobs_core.display.printable` in the text forms; the JSON forms keep it
exact (the command writes them with unsafe characters as ``\\u`` escapes).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

from .display import printable
from .facts import Blocker, BlockReport, Holder, LimitInfo, OutputInfo, RunningJob, Waiter
from .names import fold

#: Version of every JSON document the command prints.
JSON_VERSION = 1


def when(epoch: float | None) -> str:
    """``2026-11-27T10:00:00Z`` (UTC, whole seconds), or ``unknown``."""
    if epoch is None:
        return "unknown"
    try:
        return _dt.datetime.fromtimestamp(round(epoch), _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"epoch {epoch}"


def span(seconds: float) -> str:
    """A duration for people: ``0.4s``, ``42s``, ``12m03s``, ``5h07m``, ``3d04h``."""
    if seconds < 10:
        return f"{max(seconds, 0):.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def until(epoch: float | None, now: float) -> str:
    """``2026-11-27T10:00:00Z (in 42s)``, or ``an unknown time``."""
    if epoch is None:
        return "an unknown time"
    left = epoch - now
    return f"{when(epoch)} ({'in ' + span(left) if left >= 0 else span(-left) + ' ago'})"


def who(holder: Holder) -> str:
    """A holder's id with its token, host and pid when known (jobs.py clients record none)."""
    facts = []
    if holder.token is not None:
        facts.append(f"token {holder.token}")
    if holder.host:
        facts.append(f"host {printable(holder.host)} pid {holder.pid}")
    if holder.problems:
        facts.append("unreadable: " + "; ".join(printable(p) for p in holder.problems))
    return printable(holder.job_id) + (f" ({', '.join(facts)})" if facts else "")


def _io_lines(inputs: Sequence[str], outputs: Sequence[str]) -> list[str]:
    return [f"  reads  {printable(n)}" for n in inputs] + [f"  writes {printable(n)}" for n in outputs]


def _problem_lines(problems: Sequence[str]) -> list[str]:
    return [f"  ! {printable(p)}" for p in problems]


def _slots_lines(limits: Sequence[tuple[str, int]], verb: str) -> list[str]:
    return [f"  {verb} {slots} slot{'s' if slots != 1 else ''} of limit {printable(name)}" for name, slots in limits]


def _capacity(info: LimitInfo) -> str:
    if info.capacity is None:
        return f"not set ({info.used} slots still held)" if info.used else "not set"
    return f"{info.used}/{info.capacity} slots used, {info.free} free"


# -- text --------------------------------------------------------------------------------------


def status_text(prefix: str, now: float, running: Sequence[RunningJob], waiting: Sequence[Waiter],
                limits: Sequence[LimitInfo] = ()) -> str:
    """Running jobs (what they read and write, holder, token, lease left), then waiting ones, then limits."""
    head = f"{len(running)} running, {len(waiting)} waiting (prefix {prefix!r}, server time {when(now)})"
    lines = [head]
    for job in sorted(running, key=lambda j: j.job_id):
        lines += ["", f"running  {printable(job.job_id)}"]
        if job.token is None and not job.problems:
            lines.append("  a jobs.py client's job (no token, host or pid recorded)")
        else:
            lines.append(f"  token {job.token}, host {printable(job.host)} pid {job.pid}, started {when(job.started)}")
        lines.append(f"  lease ends {until(job.expires, now)}")
        lines += _io_lines(job.inputs, job.outputs) + _slots_lines(job.limits, "holds") + _problem_lines(job.problems)
    for w in sorted(waiting, key=lambda w: w.job_id):
        lines += ["", f"waiting  {printable(w.job_id)}"]
        lines.append(f"  host {printable(w.host)} pid {w.pid}, waiting since {when(w.since)}, gives up "
                     f"{until(w.deadline, now)}")
        lines += _io_lines(w.inputs, w.outputs) + _slots_lines(w.limits, "asks") + _problem_lines(w.problems)
    for info in limits:
        lines += ["", f"limit    {printable(info.name)}: {_capacity(info)}, {len(info.line)} in line"]
    return "\n".join(lines) + "\n"


def limits_text(now: float, limits: Sequence[LimitInfo]) -> str:
    """Each limit: capacity and use, its holders (slots, facts, lease), then its line in order."""
    if not limits:
        return "no limits set (jobs-core limit set NAME CAPACITY)\n"
    lines: list[str] = []
    for info in limits:
        if lines:
            lines.append("")
        lines.append(f"limit {printable(info.name)}: {_capacity(info)}")
        for holder, slots in info.holders:
            lines.append(f"  held    {slots} by {who(holder)}, lease ends {until(holder.expires, now)}")
        for place, (waiter, slots) in enumerate(info.line, 1):
            lines.append(f"  {place:>3}.   {slots} asked by {printable(waiter.job_id)} (host {printable(waiter.host)} "
                         f"pid {waiter.pid}), waiting since {when(waiter.since)}")
        lines += _problem_lines(info.problems)
    return "\n".join(lines) + "\n"


def info_text(info: OutputInfo) -> str:
    """One name: written or not (by whom, when, token, TTL), its locks and its waiters."""
    now = info.now
    lines = [printable(info.name)]
    if info.written:
        how = f"by {printable(info.writer or '')}"
        if info.token is not None:
            how += f" with token {info.token}"
        if info.written_at is not None:
            how += f" at {when(info.written_at)}"
        if info.forced:
            how += " (marked written by a repair)"
        lines.append(f"  written     yes, {how}")
        ttl = "none (kept until deleted)" if info.ttl is None else f"expires {until(now + info.ttl, now)}"
        lines.append(f"  ttl         {ttl}")
    else:
        lines.append("  written     no")
    if info.write_lock:
        lines.append(f"  write lock  {who(info.write_lock)} until {until(info.write_lock.expires, now)}")
    else:
        lines.append("  write lock  none")
    if not info.readers:
        lines.append("  read locks  none")
    for i, r in enumerate(info.readers):
        lines.append(f"  {'read locks' if i == 0 else '':<10}  {who(r)} until {until(r.expires, now)}")
    if info.waiters:
        lines.append(f"  waiting     {', '.join(printable(w) for w in info.waiters)}")
    for i, problem in enumerate(info.problems):
        lines.append(f"  {'unreadable' if i == 0 else '':<10}  {printable(problem)}")
    return "\n".join(lines) + "\n"


def blocker_text(b: Blocker, now: float) -> str:
    """One reason a job cannot start, with its holder."""
    name = printable(b.name)
    h = b.holder
    if b.reason == "input_missing":
        detail = "not written" if h is None else f"being written by {who(h)} until {until(h.expires, now)}"
    elif b.reason == "output_exists":
        detail = "written" + (f" by {printable(h.job_id)}" if h else "") + ", and overwriting is off"
    elif b.reason == "output_locked":
        detail = f"being written by {who(h)} until {until(h.expires, now)}" if h else "being written"
    elif b.reason == "output_used":
        detail = f"being read by {who(h)} until {until(h.expires, now)}" if h else "being read"
    else:
        detail = f"held by {who(h)} until {until(h.expires, now)}" if h else ""
    return f"  {printable(b.reason):<14} {name}" + (f": {detail}" if detail else "")


def report_text(report: BlockReport) -> str:
    """``why-blocked``: can start now, or every blocker and when the last known lock ends."""
    if report.can_start:
        return "can start now: every input is written and free, no output is locked or read\n"
    lines = [f"cannot start now ({len(report.blockers)} blocker{'s' if len(report.blockers) != 1 else ''}):"]
    lines += [blocker_text(b, report.now) for b in report.blockers]
    end = report.until()
    if end is not None:
        lines.append(f"the locks above end by {until(end, report.now)} unless their holders renew them")
    return "\n".join(lines) + "\n"


# -- JSON --------------------------------------------------------------------------------------


def holder_json(h: Holder | None, now: float) -> dict[str, Any] | None:
    """``{"job_id", "expires", "left", "token", "host", "pid", "started"}``; null fields where unknown."""
    if h is None:
        return None
    return {"job_id": h.job_id, "expires": h.expires, "left": None if h.expires is None else h.expires - now,
            "token": h.token, "host": h.host, "pid": h.pid, "started": h.started, "problems": list(h.problems)}


def lineage_name(job: RunningJob) -> str | None:
    """A running job's name in lineage edges: as its start recorded it, its id folded for a jobs.py
    client's job (as jobs.py records it), None when it records none or the record does not say."""
    if job.lineage is None and job.token is None:
        return fold(job.job_id)
    return job.lineage or None


def _slots_json(limits: Sequence[tuple[str, int]]) -> dict[str, int]:
    return dict(limits)


def limit_json(info: LimitInfo, now: float) -> dict[str, Any]:
    """One limit: ``{"name", "capacity", "used", "free", "holders": [...], "line": [...], "problems"}``."""
    return {
        "name": info.name, "capacity": info.capacity, "used": info.used, "free": info.free,
        "holders": [{**(holder_json(h, now) or {}), "slots": slots} for h, slots in info.holders],
        "line": [{"job_id": w.job_id, "slots": slots, "host": w.host, "pid": w.pid, "since": w.since,
                  "deadline": w.deadline} for w, slots in info.line],
        "problems": list(info.problems),
    }


def limits_json(now: float, limits: Sequence[LimitInfo]) -> dict[str, Any]:
    """The ``limit list --json`` document (see the README for the schema)."""
    return {"version": JSON_VERSION, "server_time": now, "limits": [limit_json(i, now) for i in limits]}


def status_json(prefix: str, now: float, running: Sequence[RunningJob], waiting: Sequence[Waiter],
                limits: Sequence[LimitInfo] = ()) -> dict[str, Any]:
    """The ``status --json`` document (see the README for the schema)."""
    return {
        "version": JSON_VERSION,
        "prefix": prefix,
        "server_time": now,
        "running": [
            {"job_id": j.job_id, "inputs": list(j.inputs), "outputs": list(j.outputs), "expires": j.expires,
             "left": j.expires - now, "token": j.token, "host": j.host, "pid": j.pid, "started": j.started,
             "client": "jobspy" if j.token is None else "jobs_core", "limits": _slots_json(j.limits),
             "lineage": lineage_name(j),
             "problems": list(j.problems)}
            for j in sorted(running, key=lambda j: j.job_id)
        ],
        "waiting": [
            {"job_id": w.job_id, "inputs": list(w.inputs), "outputs": list(w.outputs), "deadline": w.deadline,
             "left": w.deadline - now, "host": w.host, "pid": w.pid, "since": w.since,
             "limits": _slots_json(w.limits), "lineage": w.lineage or None, "problems": list(w.problems)}
            for w in sorted(waiting, key=lambda w: w.job_id)
        ],
        "limits": [limit_json(i, now) for i in limits],
    }


def info_json(info: OutputInfo) -> dict[str, Any]:
    """The ``show --json`` document (see the README for the schema)."""
    return {
        "version": JSON_VERSION,
        "name": info.name,
        "server_time": info.now,
        "written": info.written,
        "writer": info.writer,
        "written_at": info.written_at,
        "token": info.token,
        "ttl": info.ttl,
        "forced": info.forced,
        "write_lock": holder_json(info.write_lock, info.now),
        "readers": [holder_json(r, info.now) for r in info.readers],
        "waiters": list(info.waiters),
        "problems": list(info.problems),
    }


def report_json(report: BlockReport) -> dict[str, Any]:
    """The ``why-blocked --json`` document (see the README for the schema)."""
    return {
        "version": JSON_VERSION,
        "can_start": report.can_start,
        "server_time": report.now,
        "until": report.until(),
        "reasons": report.reasons,
        "blockers": [{"reason": b.reason, "name": b.name, "holder": holder_json(b.holder, report.now)}
                     for b in report.blockers],
    }
