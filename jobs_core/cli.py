"""The ``jobs-core`` command (also ``python -m jobs_core``): see, explain and repair the locks.

A thin layer over :class:`jobs_core.Coordinator`'s public methods; the text and
JSON it prints come from :mod:`jobs_core.cli_format` and :mod:`jobs_core.lineage`.
Run ``jobs-core --help`` for the commands and exit codes.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shlex
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from . import cli_format as fmt
from . import lineage
from .coordinator import Coordinator
from .display import json_text, printable, safe_json
from .errors import (
    ConfigurationError,
    InvalidArgument,
    JobsError,
    LockLost,
    NotRunning,
    ResourceUnavailable,
    StateChanged,
)
from .events import WaitProgress
from .facts import OutputInfo, RunningJob
from .names import check_io, check_job_id, check_names
from .namespace import ENV_PREFIX, ENV_URL, resolve_namespace
from .protocol import check_seconds
from .urls import describe_error, hide_password

#: Exit codes: what a script calling jobs-core can rely on.
OK, NO, USAGE, LOST, REDIS, CHANGED, INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

EXIT_CODES = f"""\
exit codes:
  {OK}    done (why-blocked: the job could start; show: the name is written)
  {NO}    not possible now, or not found: why-blocked found blockers, start could not
       start, show: the name is not written, refresh/stop: the job is not running,
       lineage: the name is not in the graph, a confirmation was declined
  {USAGE}    usage error: bad arguments or names, no Redis URL, or a confirmation
       needed while stdin is not a terminal and --yes was not given
  {LOST}    lock lost: refresh or stop found the job no longer holds all its locks
       (stop then wrote nothing)
  {REDIS}    Redis error: cannot connect, timed out, or refused a command
  {CHANGED}    unlock/create: the locks or outputs changed between being shown and the
       confirmation (another job took, released or wrote them); nothing changed:
       run the command again to see the new state
  {INTERRUPTED}  interrupted (Ctrl-C), except watch and serve, which end with 0
"""


class CliError(Exception):
    """Ends the command with ``message`` on stderr and exit ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# -- argument types ------------------------------------------------------------------------------


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def _seconds(text: str) -> float:
    value = _number(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0")
    return value


def _wait_seconds(text: str) -> float:
    value = _number(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds, 0 or more")
    return value


def secs(value: float) -> str:
    """Seconds as given: ``600``, ``0.5``."""
    return str(int(value)) if value == int(value) else repr(value)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1 or more")
    return value


def _limit_slots(text: str) -> tuple[str, int]:
    """``warehouse=2``, or ``warehouse`` for one slot."""
    name, sep, slots = text.rpartition("=")
    if not sep:
        return text, 1
    if not name:
        raise argparse.ArgumentTypeError(f"expected LIMIT=SLOTS, e.g. warehouse=1, not {text!r}")
    return name, _count(slots)


def _when(text: str) -> float:
    try:
        return lineage.parse_when(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- the parser ----------------------------------------------------------------------------------


def _common(suppress: bool) -> argparse.ArgumentParser:
    """``--url``, ``--prefix``, ``-v``: accepted before and after the command name."""
    p = argparse.ArgumentParser(add_help=False)
    default: Callable[[Any], Any] = (lambda _: argparse.SUPPRESS) if suppress else (lambda v: v)
    p.add_argument("--url", default=default(None), metavar="URL",
                   help=f"Redis URL: redis://[user:password@]host:6379/0, rediss://... (TLS), unix:///path "
                        f"(default: ${ENV_URL})")
    p.add_argument("--prefix", default=default(None), metavar="PREFIX",
                   help=f"key prefix of the namespace, e.g. 'pfx:' (default: ${ENV_PREFIX}, else none)")
    p.add_argument("-v", "--verbose", action="store_true", default=default(False),
                   help="log what the library does (the jobs_core logger at INFO) on stderr")
    return p


def _names(p: argparse.ArgumentParser, what: str = "job") -> None:
    p.add_argument("-i", "--input", dest="inputs", action="extend", nargs="+", default=[], metavar="NAME",
                   help=f"an input the {what} reads (repeat, or give several)")
    p.add_argument("-o", "--output", dest="outputs", action="extend", nargs="+", default=[], metavar="NAME",
                   help=f"an output the {what} writes (repeat, or give several)")


def build_parser() -> argparse.ArgumentParser:
    """The ``jobs-core`` argument parser."""
    common = _common(suppress=True)
    parser = argparse.ArgumentParser(
        prog="jobs-core", parents=[_common(suppress=False)], formatter_class=argparse.RawDescriptionHelpFormatter,
        description="See, explain and repair what the jobs_core (and jobs.py) locks in Redis are doing.",
        epilog=f"Run 'jobs-core COMMAND --help' for a command's options.\n\n{EXIT_CODES}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str, description: str = "", under: Any = sub) -> argparse.ArgumentParser:
        text = "\n\n".join(textwrap.fill(part, 79) for part in (description or summary).split("\n\n"))
        return under.add_parser(name, parents=[common], help=summary, description=text,
                                epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)

    p = command("status", "running and waiting jobs: names, holder host and pid, token, lease left",
                "List the running jobs (jobs_core and jobs.py clients alike) with what they read and write, "
                "their holder facts and how long their lease lasts, then the jobs waiting to start.")
    p.add_argument("--json", action="store_true", help="print the stable JSON document (README: status --json)")

    p = command("show", "one name: written or not, by which job, when, token, TTL; its locks and waiters")
    p.add_argument("name", metavar="NAME", help="an input or output name")
    p.add_argument("--json", action="store_true", help="print the stable JSON document (README: show --json)")

    p = command("why-blocked", "would a job with these inputs and outputs start now? if not, what blocks it",
                "Ask Redis whether a job with these inputs and outputs would start now (changing nothing) "
                "and, if not, exactly what blocks it, who holds it and until when. Exit 0: it would start; "
                "1: it is blocked.")
    _names(p)
    p.add_argument("--no-overwrite", action="store_true", help="count existing outputs as blockers")
    p.add_argument("--limit", dest="limits", action="append", type=_limit_slots, default=[], metavar="LIMIT=SLOTS",
                   help="slots of a limit the job would take (repeat for several)")
    p.add_argument("--json", action="store_true", help="print the stable JSON document (README: why-blocked --json)")

    p = command("start", "start a job from a shell script; its locks stay held after this command exits",
                "Take the job's locks (waiting up to --wait seconds) and exit, leaving them held for --duration "
                "seconds: renew them with 'jobs-core refresh', release them with 'jobs-core stop' (outputs "
                "written) or 'jobs-core stop --failed'. Prints shell assignments on stdout, for "
                "eval \"$(jobs-core start ...)\": job_id=..., token=... (the fencing token), lease=...")
    p.add_argument("job_id", metavar="JOB_ID", help="the job's id; refresh and stop name it again")
    _names(p)
    p.add_argument("--duration", type=_seconds, required=True, metavar="SECONDS",
                   help="the lease: how long the locks stay held without a refresh")
    p.add_argument("--wait", type=_wait_seconds, default=0.0, metavar="SECONDS",
                   help="wait up to this long for busy or missing resources (default: 0, fail at once); "
                        "what blocks it and who holds it is shown on stderr while it waits")
    p.add_argument("--progress", type=_seconds, metavar="SECONDS",
                   help="seconds between reports of a wait (default: 1 on a terminal, where one line is kept "
                        "up to date, else 30, a line each)")
    p.add_argument("--no-overwrite", action="store_true", help="refuse to start if an output already exists")
    p.add_argument("--no-history", action="store_true", help="do not record lineage edges for this start")
    p.add_argument("--output-ttl", type=_seconds, metavar="SECONDS",
                   help="outputs written by 'stop' expire after this long (default: never)")
    p.add_argument("--limit", dest="limits", action="append", type=_limit_slots, default=[], metavar="LIMIT=SLOTS",
                   help="take SLOTS slots of the limit LIMIT with the locks (repeat for several; see 'limit')")

    token_help = ("the fencing token printed by start (default: read from the job's jobs:holder:<JOB_ID> "
                  "record in Redis)")
    p = command("refresh", "renew the leases of a job started with 'start'",
                "Renew every lock of a running jobs_core job for --duration seconds from now (default: the "
                "lease it started with). Exit 3 if it lost some of them (then nothing is renewed). Jobs of "
                "jobs.py clients must refresh themselves.")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--duration", type=_seconds, metavar="SECONDS",
                   help="the new lease (default: the lease given to start)")
    p.add_argument("--token", type=_count, metavar="N", help=token_help)

    p = command("stop", "stop a running job: write its outputs, or with --failed release without writing",
                "Stop a running job through the library's stop script (Coordinator.stop_job). By default its "
                "outputs are marked written, and only if it still holds every one of its locks; otherwise "
                "nothing is written and the exit status is 3. Either way the locks it still holds are "
                "released. With --failed nothing is written.\n\n"
                "A job of a jobs.py client has no holder record; it is stopped by its id alone, acting only "
                "on the locks that still carry that id (other readers of its inputs keep theirs).")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--failed", action="store_true", help="release the locks without writing the outputs")
    p.add_argument("--token", type=_count, metavar="N", help=token_help)
    p.add_argument("--output-ttl", type=_seconds, metavar="SECONDS",
                   help="outputs written expire after this long (default: what start was given, else never)")

    p = command("unlock", "force-release read locks (--input) and write locks (--output): a repair",
                "Force-release locks through the library's unlock script: every reader's lock on each --input "
                "and the write lock on each --output. Their holders are fenced out (a jobs_core job finds its "
                "locks lost and writes nothing) and waiting jobs are woken. Asks for confirmation unless --yes.")
    _names(p, what="locks are on")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    p = command("create", "mark outputs written without running a job: a repair",
                "Mark outputs written through the library's create script, as if a job had written them: "
                "a current writer of any of them is fenced out, waiting jobs are woken. Asks for "
                "confirmation unless --yes.")
    p.add_argument("outputs", nargs="+", metavar="OUTPUT")
    p.add_argument("--writer", metavar="JOB_ID",
                   help="the job id recorded as writer (default: jobs-core:create.<random>)")
    p.add_argument("--output-ttl", type=_seconds, metavar="SECONDS", help="the outputs expire after this long")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    p = command("limit", "shared capacities: set, list or remove a limit that jobs take slots of",
                "A limit is a named capacity shared by every job of the namespace, whatever runs it (cron, "
                "Luigi, Airflow): a job asks for slots of it (start --limit warehouse=1, limits= in Python) "
                "and takes them in the same atomic start as its locks, waiting in the limit's line when it "
                "is full.")
    limit = p.add_subparsers(dest="limit_command", metavar="ACTION", required=True)
    q = command("set", "set (or change) a limit's capacity",
                "Set the capacity of LIMIT: how many slots jobs may hold at once. A change takes effect at "
                "once: more room starts waiting jobs; less never ends a holder (new starts wait until use is "
                "under it).", under=limit)
    q.add_argument("name", metavar="LIMIT")
    q.add_argument("capacity", type=_count, metavar="CAPACITY", help="slots held at once, from 1 up")
    q = command("list", "limits with their use, holders and line",
                "Every limit of the namespace (or those named): capacity, slots used, the jobs holding slots "
                "(token, host, pid, lease) and the jobs in line for it, first first.", under=limit)
    q.add_argument("names", nargs="*", metavar="LIMIT", help="only these limits (default: every one set)")
    q.add_argument("--json", action="store_true", help="print the stable JSON document (README: limit list --json)")
    q = command("remove", "remove a limit (its holders keep their slots)",
                "Remove LIMIT. Jobs holding slots of it keep them until they stop; jobs waiting for it, and "
                "jobs asking for it later, fail (unknown limit). Asks for confirmation unless --yes.",
                under=limit)
    q.add_argument("name", metavar="LIMIT")
    q.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    p = command("lineage", "upstream/downstream of a job, input or output: text, dot, mermaid or json",
                "Walk the lineage recorded when jobs start (digit runs fold to *: raw.events.2026-11-27 is "
                "looked up as raw.events.*). With NAME: what lies upstream and downstream of it (a job id, an "
                "input or an output); without: the whole graph. --depth 1 keeps direct neighbours only; from "
                "an output, --depth 2 reaches the jobs writing it and their inputs.")
    p.add_argument("name", nargs="?", metavar="NAME", help="a job id, input or output (default: the whole graph)")
    way = p.add_mutually_exclusive_group()
    way.add_argument("--upstream", dest="direction", action="store_const", const=lineage.UPSTREAM,
                     help="only what leads to NAME")
    way.add_argument("--downstream", dest="direction", action="store_const", const=lineage.DOWNSTREAM,
                     help="only what NAME leads to")
    p.add_argument("--depth", type=_count, metavar="N", help="at most N edges from NAME (default: no limit)")
    when_help = ("only edges last seen {} this time: a timestamp (1764201600.5), a date (2026-11-27), a "
                 "datetime (2026-11-27 10:00[:00[.000]], 2026-11-27T10:00:00+01:00; UTC unless a zone is given) "
                 "or a time ago (90s, 30m, 1h, 7d, 2w)")
    p.add_argument("--after", type=_when, metavar="TIME", help=when_help.format("after"))
    p.add_argument("--before", type=_when, metavar="TIME", help=when_help.format("before"))
    p.add_argument("-f", "--format", choices=lineage.FORMATS, default="text",
                   help="text (default), dot (Graphviz: pipe to 'dot -Tsvg'), mermaid (renders in GitHub "
                        "markdown) or json (README: lineage --format json)")

    p = command("watch", "live view of running and waiting jobs, refreshed until interrupted (Ctrl-C)")
    p.add_argument("--interval", type=_seconds, default=2.0, metavar="SECONDS",
                   help="seconds between refreshes (default: 2)")
    p.add_argument("--iterations", type=_count, metavar="N", help="stop after N views (default: until Ctrl-C)")

    p = command("serve", "a live web view of the namespace, with a JSON API and Prometheus /metrics",
                "Serve a page showing running and waiting jobs, names and lineage, updated live, plus the JSON "
                "documents of status, show, why-blocked and lineage under /api/ and Prometheus metrics at "
                "/metrics. Read-only unless --allow-repairs; loopback only unless --allow-remote. Needs the "
                "web extra: pip install 'jobs-core[web]'.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8765, help="port to listen on (default: 8765)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow an address other than loopback (anyone reaching it can read the namespace)")
    p.add_argument("--allow-repairs", action="store_true",
                   help="offer unlock and create on the page (confirmed, logged with the asking address)")
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: a port is 0 to 65535")
    return value


# -- helpers -------------------------------------------------------------------------------------


def coordinator(args: argparse.Namespace) -> Coordinator:
    """The namespace's coordinator; ``args.url``/``args.prefix`` become the resolved values
    (:func:`jobs_core.namespace.resolve_namespace`: the options, else the environment)."""
    try:
        where = resolve_namespace(args.url, args.prefix, given="--url")
    except ConfigurationError as exc:
        raise CliError(str(exc), USAGE) from None
    args.url, args.prefix = where.url, where.prefix
    return Coordinator.from_url(where.url, where.prefix)


def running_job(c: Coordinator, job_id: str) -> RunningJob:
    for job in c.running_jobs():
        if job.job_id == job_id:
            return job
    raise CliError(f"job {job_id!r} is not running (never started, already stopped, or its lease ran out); "
                   "nothing changed", NO)


def out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


def dump(document: Any) -> None:
    out(json_text(document) + "\n")


def confirm(args: argparse.Namespace, plan: str, question: str) -> None:
    """Show ``plan``; go on with ``--yes`` or a "y" typed on a terminal; else end the command."""
    err(plan)
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise CliError("refusing without confirmation: stdin is not a terminal; pass --yes to confirm. "
                       "Nothing changed.", USAGE)
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise CliError("not confirmed; nothing changed", NO)


def _names_list(names: Sequence[str]) -> str:
    return ", ".join(printable(n) for n in names)


def _changed(exc: StateChanged, what: str) -> CliError:
    return CliError(f"nothing changed: {what} on {_names_list(exc.names)} changed after they were shown (another "
                    "job took, released or wrote them); run the command again to see the current state", CHANGED)


def _unreadable(info: OutputInfo, part: str) -> str:
    problems = "; ".join(info.problems)
    return f"unreadable ({problems})" if part in info.unreadable else ""


# -- commands ------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, c: Coordinator) -> int:
    now = c.server_time()
    running, waiting, limits = c.running_jobs(), c.waiting_jobs(), c.limits()
    if args.json:
        dump(fmt.status_json(c.prefix, now, running, waiting, limits))
    else:
        out(fmt.status_text(c.prefix, now, running, waiting, limits))
    return OK


def cmd_show(args: argparse.Namespace, c: Coordinator) -> int:
    info = c.output_info(args.name)
    if args.json:
        dump(fmt.info_json(info))
    else:
        out(fmt.info_text(info))
    return OK if info.written else NO


def cmd_why_blocked(args: argparse.Namespace, c: Coordinator) -> int:
    if not args.inputs and not args.outputs and not args.limits:
        raise CliError("give the job's names: --input NAME and/or --output NAME (and/or --limit LIMIT=SLOTS)",
                       USAGE)
    report = c.why_blocked(args.inputs, args.outputs, overwrite=not args.no_overwrite, limits=args.limits)
    if args.json:
        dump(fmt.report_json(report))
    else:
        out(fmt.report_text(report))
    return OK if report.can_start else NO


class WaitLine:
    """Shows a waiting job's progress on stderr: on a terminal one line rewritten in place (and
    cleared when the wait ends), else a line per report. With ``-v`` the jobs_core logger writes
    each report already, so nothing more is shown."""

    def __init__(self, verbose: bool) -> None:
        self.live = sys.stderr.isatty() and not verbose
        self.verbose = verbose
        self.shown = False

    def __call__(self, job: Any, progress: WaitProgress) -> None:
        line = printable(f"jobs-core: waiting: {progress.describe()}")
        if self.live:
            try:
                width = os.get_terminal_size(sys.stderr.fileno()).columns or 80
            except (OSError, ValueError):
                width = 80
            sys.stderr.write(f"\r\x1b[K{line[:max(width - 1, 20)]}")
            sys.stderr.flush()
            self.shown = True
        elif not self.verbose:
            err(line)

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False


def cmd_start(args: argparse.Namespace, c: Coordinator) -> int:
    shown = WaitLine(args.verbose)
    progress = args.progress or (1.0 if shown.live else 30.0)
    job = c.job(args.inputs, args.outputs, duration=args.duration, wait=args.wait,
                overwrite=not args.no_overwrite, heartbeat=False, job_id=args.job_id, history=not args.no_history,
                output_ttl=args.output_ttl, limits=args.limits, progress=progress, on_progress=shown)
    try:
        job.start()
    finally:
        shown.clear()
    out(f"job_id={shlex.quote(job.id)}\ntoken={job.token}\nlease={secs(args.duration)}\n")
    quoted = shlex.quote(job.id)
    err(f"started {job.id!r} with token {job.token}; its locks stay held for {secs(args.duration)}s. Renew them "
        f"with 'jobs-core refresh {quoted}', finish with 'jobs-core stop {quoted}' (or 'stop --failed').")
    return OK


def cmd_refresh(args: argparse.Namespace, c: Coordinator) -> int:
    running = running_job(c, args.job_id)
    token = args.token or running.token
    if token is None:
        raise CliError(f"job {args.job_id!r} has no jobs_core holder record (a jobs.py client's job?): it can "
                       "only be refreshed by the process that started it; nothing changed", NO)
    duration = args.duration or running.lease
    if duration is None:
        raise CliError("this start recorded no lease: give --duration", USAGE)
    job = c.job(running.inputs, running.outputs, duration=duration, heartbeat=False, job_id=args.job_id)
    try:
        job.resume(token)
    except LockLost as exc:
        raise CliError(f"{_lost(args.job_id, token, exc)}; " + (
            "nothing was renewed" if token == running.token else _stale(token, running)), LOST) from None
    out(f"refreshed {printable(args.job_id)} (token {token}): its locks are held for "
        f"{secs(duration)}s more\n")
    return OK


def cmd_stop(args: argparse.Namespace, c: Coordinator) -> int:
    try:
        running = running_job(c, args.job_id)
    except CliError:
        if args.token is None:
            raise
        # the start of that token is not running: if another call ended it, this stop wrote
        # nothing and says so (exit 3), as a job's own stop() does
        c.stop_job(args.job_id, failed=args.failed, token=args.token)
        raise
    if args.token is not None and args.token != running.token:
        raise CliError(_stale(args.token, running), LOST)
    kind = "" if running.token is not None else "jobs.py job "
    try:
        c.stop_job(args.job_id, failed=args.failed, token=args.token, output_ttl=args.output_ttl)
    except LockLost as exc:
        raise CliError(f"{_lost(args.job_id, running.token, exc)}; nothing was written, and the locks it still "
                       "held are released", LOST) from None
    if args.failed:
        out(f"stopped {kind}{printable(args.job_id)} as failed: its locks are released, nothing "
            "written\n")
    else:
        written = f"outputs written: {_names_list(running.outputs)}" if running.outputs else "no outputs"
        token = f" (token {running.token})" if running.token is not None else ""
        out(f"stopped {kind}{printable(args.job_id)}{token}: {written}; its locks are released\n")
    return OK


def _lost(job_id: str, token: int | None, exc: LockLost) -> str:
    what = "; ".join(f"{reason}: {_names_list(names)}" for reason, names in exc.lost.items())
    with_token = f" with token {token}" if token is not None else ""
    return f"job {printable(job_id)}{with_token} does not hold all its locks ({what})"


def _stale(token: int, running: RunningJob) -> str:
    current = "none recorded" if running.token is None else str(running.token)
    return f"token {token} is not its current start's (that is {current}), so nothing changed"


def cmd_unlock(args: argparse.Namespace, c: Coordinator) -> int:
    if not args.inputs and not args.outputs:
        raise CliError("give the names to unlock: --input NAME (read locks) and/or --output NAME (write lock)",
                       USAGE)
    ins, outs = check_io(args.inputs, args.outputs)  # every name checked before anything is read
    shown = {name: c.output_info(name) for name in dict.fromkeys(ins + outs)}
    plan = []
    for name in ins:
        info = shown[name]
        readers = _unreadable(info, "readers") or ", ".join(fmt.who(r) for r in info.readers)
        if readers:
            plan.append(f"  read locks on {printable(name)}: {readers}")
    for name in outs:
        info = shown[name]
        lock = _unreadable(info, "write_lock") or (fmt.who(info.write_lock) if info.write_lock else "")
        if lock:
            plan.append(f"  write lock on {printable(name)}: {lock}")
    if not plan:
        out("no locks held on these names; nothing changed\n")
        return OK
    confirm(args, "about to force-release (the holders are fenced out and write nothing):\n" + "\n".join(plan),
            "Release these locks?")
    try:
        count = c.unlock(ins, outs, expected=shown.values())
    except StateChanged as exc:
        raise _changed(exc, "the locks") from None
    out(f"released {count} lock key{'s' if count != 1 else ''}; waiting jobs were woken\n")
    return OK


def cmd_create(args: argparse.Namespace, c: Coordinator) -> int:
    writer = check_job_id(args.writer, "job id") if args.writer else f"jobs-core:create.{secrets.randbits(48)}"
    outputs = check_names(args.outputs, "outputs")  # every name checked before anything is read
    if args.output_ttl is not None:
        check_seconds(args.output_ttl, "output TTL", minimum=0.001)
    shown = {name: c.output_info(name) for name in outputs}
    plan = []
    for name, info in shown.items():
        if "output" in info.unreadable:
            state = f"its key is {_unreadable(info, 'output')}"
        else:
            state = f"written by {printable(info.writer or '')}" if info.written else "not written"
        lock = _unreadable(info, "write_lock") or (fmt.who(info.write_lock) if info.write_lock else "")
        if lock:
            state += f"; its writer {lock} will be fenced out"
        if info.readers:
            state += "; being read by " + ", ".join(fmt.who(r) for r in info.readers)
        plan.append(f"  {printable(name)} ({state})")
    confirm(args, f"about to mark written, as job {printable(writer)}:\n" + "\n".join(plan),
            "Mark these outputs written?")
    try:
        token = c.create_outputs(outputs, job_id=writer, ttl=args.output_ttl, expected=shown.values())
    except StateChanged as exc:
        raise _changed(exc, "the writers or write locks") from None
    out(f"marked written by {printable(writer)} with token {token}: {_names_list(outputs)}\n")
    return OK


def cmd_lineage(args: argparse.Namespace, c: Coordinator) -> int:
    if args.name is None and (args.direction or args.depth):
        raise CliError("--upstream, --downstream and --depth need a NAME to start from", USAGE)
    inputs, outputs = c.edges(before=args.before, after=args.after)
    graph = lineage.query(inputs, outputs, args.name, args.direction, args.depth, after=args.after,
                          before=args.before)
    if args.name is not None:
        if not graph.roots:
            bounds = " in that time range" if args.after is not None or args.before is not None else ""
            folded = f" (looked up as {printable(graph.start or '')})" if graph.start != args.name else ""
            err(f"jobs-core: no lineage recorded for {printable(args.name)}{folded}{bounds}")
            return NO
    rendered = lineage.render(graph, args.format)
    out(safe_json(rendered) if args.format == "json" else rendered)
    return OK


def cmd_watch(args: argparse.Namespace, c: Coordinator) -> int:
    tty = sys.stdout.isatty()
    where = f"{printable(hide_password(args.url))}, prefix {c.prefix!r}"
    shown = 0
    try:
        while True:
            try:
                now = c.server_time()
                body = fmt.status_text(c.prefix, now, c.running_jobs(), c.waiting_jobs(), c.limits())
            except redis.RedisError as exc:
                body = f"Redis error: {describe_error(exc, args.url)}; trying again in {secs(args.interval)}s\n"
            head = f"jobs-core watch: {where}; every {secs(args.interval)}s, Ctrl-C to quit\n"
            out(("\x1b[H\x1b[2J" if tty else ("\n" if shown else "")) + head + body)
            shown += 1
            if args.iterations is not None and shown >= args.iterations:
                return OK
            time.sleep(args.interval)
    except KeyboardInterrupt:
        out("\n")
        return OK


def cmd_serve(args: argparse.Namespace, c: Coordinator) -> int:
    try:
        from .web.security import check_bind
        from .web.serve import serve
    except ImportError as exc:
        raise CliError(f"the web view needs the web extra ({exc.name} is missing): pip install 'jobs-core[web]'",
                       USAGE) from None
    refused = check_bind(args.host, args.allow_remote)
    if refused:
        raise CliError(refused, USAGE)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    err(f"jobs-core: serving prefix {c.prefix!r} of {printable(hide_password(args.url))} on "
        f"http://{shown}:{args.port}/ ({'repairs allowed' if args.allow_repairs else 'read-only'}); Ctrl-C to stop")
    try:
        serve(args.url, c.prefix, args.host, args.port, allow_remote=args.allow_remote,
              allow_repairs=args.allow_repairs)
    except KeyboardInterrupt:  # uvicorn stops on Ctrl-C, then raises it again: the usual way to end
        pass
    return OK


def cmd_limit(args: argparse.Namespace, c: Coordinator) -> int:
    if args.limit_command == "set":
        before = c.set_limit(args.name, args.capacity)
        was = "was not set" if before is None else f"was {before}"
        out(f"limit {printable(args.name)}: capacity {args.capacity} ({was})\n")
        return OK
    if args.limit_command == "remove":
        (info,) = c.limits([args.name])
        if info.capacity is None:
            raise CliError(f"limit {printable(args.name)} is not set; nothing changed", NO)
        confirm(args, f"limit {printable(args.name)}: {info.used} slots held by {len(info.holders)} jobs (they "
                      f"keep them until they stop), {len(info.line)} jobs in line (they will fail)",
                f"remove limit {printable(args.name)}?")
        before = c.remove_limit(args.name)
        out(f"removed limit {printable(args.name)} (capacity was {before})\n")
        return OK
    limits = c.limits(args.names or None)
    now = c.server_time()
    if args.json:
        dump(fmt.limits_json(now, limits))
    else:
        out(fmt.limits_text(now, limits))
    return OK if all(i.capacity is not None for i in limits) else NO


COMMANDS: dict[str, Callable[[argparse.Namespace, Coordinator], int]] = {
    "status": cmd_status, "show": cmd_show, "why-blocked": cmd_why_blocked, "start": cmd_start,
    "refresh": cmd_refresh, "stop": cmd_stop, "unlock": cmd_unlock, "create": cmd_create,
    "lineage": cmd_lineage, "watch": cmd_watch, "limit": cmd_limit, "serve": cmd_serve,
}


# -- entry point ---------------------------------------------------------------------------------


def _fail(message: str, code: int) -> int:
    err(f"jobs-core: {printable(message)}")
    return code


class _PrintableFormatter(logging.Formatter):
    """Log lines with control characters escaped: a message may quote job ids or hosts from Redis."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return printable(super().formatMessage(record))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jobs-core``; returns the exit code."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    machine = getattr(args, "json", False) or getattr(args, "format", "text") != "text"
    if machine and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")  # JSON, DOT and Mermaid are always UTF-8
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("jobs-core: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    try:
        return COMMANDS[args.command](args, coordinator(args))
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except ResourceUnavailable as exc:
        return _fail(f"cannot start: {exc}", NO)
    except LockLost as exc:
        return _fail(str(exc), LOST)
    except NotRunning as exc:
        return _fail(str(exc), NO)
    except (InvalidArgument, ConfigurationError) as exc:
        return _fail(f"{exc}; nothing changed", USAGE)
    except JobsError as exc:
        return _fail(str(exc), NO)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return _fail(f"cannot reach Redis at {hide_password(args.url)}: {describe_error(exc, args.url)}", REDIS)
    except redis.RedisError as exc:
        return _fail(f"Redis at {hide_password(args.url)} refused: {describe_error(exc, args.url)}", REDIS)
    except KeyboardInterrupt:
        return _fail("interrupted", INTERRUPTED)
    except BrokenPipeError:
        # the reader went away (| head): silence the flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return NO
