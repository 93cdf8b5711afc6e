"""The jobs.py (jobspy 0.31) API, for ``import jobs_core as jobs``.

Module settings (``jobs_core.CONN``, ``GLOBAL_PREFIX``, ``GRAPH_HISTORY``,
``OUTPUT_DURATION``, ``DEFAULT_LOGGER``) are read from the package at call
time, as jobs.py reads its own. Everything here delegates to
:class:`jobs_core.Coordinator`; this module is the only one that keeps
module-level state (the jobs running in this process, for the exit hook, and
one coordinator per connection and prefix).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from .coordinator import Coordinator, check_client
from .errors import ConfigurationError, InvalidArgument, InvalidType, LockLost, ResourceUnavailable
from .job import Job, caller_name, new_job_id
from .names import check_job_id, check_names
from .protocol import check_seconds

_GHD: Any = object()
LOCKED: set[ResourceManager] = set()
_COORDINATORS: weakref.WeakKeyDictionary[Any, dict[tuple, Coordinator]] = weakref.WeakKeyDictionary()
_EXIT_HOOK: list[bool] = []
_OLD_SIGNAL: list[Any] = []


def _setting(name: str) -> Any:
    return getattr(sys.modules[__package__], name)


def _log() -> Any:
    return _setting("DEFAULT_LOGGER") or logging.getLogger("jobs_core")


def _conn(conn: Any) -> Any:
    conn = conn or _setting("CONN")
    if conn is None:
        raise ConfigurationError("Cannot start a job without a connection to Redis! Set jobs_core.CONN = "
                                 "redis.Redis(...) or pass conn=...")
    return conn


def _coordinator(conn: Any, history: bool = True, output_ttl: float | None = None) -> Coordinator:
    """The coordinator for ``conn`` and the current ``GLOBAL_PREFIX``, made once."""
    key = (_setting("GLOBAL_PREFIX") or "", bool(history), output_ttl)
    try:
        per_conn = _COORDINATORS.setdefault(conn, {})
    except TypeError:  # not weak-referenceable, so not a client: say so as Coordinator(conn) would
        check_client(conn, want_async=False)
        raise
    if key not in per_conn:
        per_conn[key] = Coordinator(conn, key[0], history=key[1], output_ttl=output_ttl)
    return per_conn[key]


def _stop_all_locked(*_: Any) -> None:
    pid = os.getpid()
    for m in list(LOCKED):
        if m._job is not None and m._job._pid == pid:
            m.stop(failed=True, shutting_down=True)


def _ensure_exit_hook() -> None:
    if not _EXIT_HOOK:
        atexit.register(_stop_all_locked)
        _EXIT_HOOK.append(True)


def handle_auto_shutdown() -> None:
    """Stop this process's jobs as failed at exit and on SIGTERM (jobs.py's opt-in form).

    The previous SIGTERM handler is kept and called afterwards; outside the
    main thread only the exit hook is installed. A SIGTERM the process ignores
    is left alone, as :func:`jobs_core.release_on_signal` does: the process
    goes on running, so its jobs keep their locks.
    """
    _ensure_exit_hook()
    if _OLD_SIGNAL or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        _log().debug("SIGTERM is ignored by this process; not handling it")
        return

    def on_term(signum: int, frame: Any) -> None:
        _stop_all_locked()
        old = _OLD_SIGNAL[0]
        if callable(old):
            old(signum, frame)
        else:
            raise SystemExit(128 + signum)

    _OLD_SIGNAL.append(signal.signal(signal.SIGTERM, on_term))


def resource_manager(inputs: Iterable[Any], outputs: Iterable[Any], duration: float, wait: float | None = None,
                     overwrite: bool = True, conn: Any = None, graph_history: Any = _GHD, suffix: str | None = None,
                     output_duration: int | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: call the function with a :class:`ResourceManager` as first argument.

    The function starts the job itself (``job.start()``); when it returns the
    job is stopped, as failed if it raised.
    """
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        code = fn.__code__
        ident = f"{code.co_filename}:{code.co_name}"

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            manager = ResourceManager(inputs, outputs, duration, wait, overwrite, conn, graph_history, ident,
                                      suffix, output_duration)
            failed = False
            try:
                return fn(manager, *args, **kwargs)
            except BaseException:
                failed = True
                raise
            finally:
                manager.stop(failed=failed)
        return call
    return wrap


def _name_list(values: Any, what: str) -> list[str]:
    if not isinstance(values, (list, tuple, set)):
        raise InvalidType(f"{what} must be a list, tuple or set, not {type(values).__name__}")
    return list(check_names(values, what))


class ResourceManager:
    """A jobs.py job: locks ``inputs`` for reading and ``outputs`` for writing while started."""

    def __init__(self, inputs: Iterable[Any], outputs: Iterable[Any], duration: float, wait: float | None = None,
                 overwrite: bool = True, conn: Any = None, graph_history: Any = _GHD, identifier: str | None = None,
                 suffix: str | None = None, output_duration: int | None = None) -> None:
        self.inputs = _name_list(inputs, "inputs")
        self.outputs = _name_list(outputs, "outputs")
        self.duration = check_seconds(duration, "duration", minimum=0.001)
        self.wait = check_seconds(wait or 0, "wait")
        self.overwrite = overwrite
        self.last_refreshed: float | None = None
        self.conn = conn
        self.graph_history = _setting("GRAPH_HISTORY") if graph_history is _GHD else graph_history
        self.auto_refresh: bool | None = None
        if output_duration is not None and (isinstance(output_duration, bool) or not isinstance(output_duration, int)):
            raise InvalidType("output_duration must be None or integer")
        if output_duration is not None and output_duration <= 0:
            raise InvalidArgument("output_duration must be > 0")
        self.output_duration = output_duration or _setting("OUTPUT_DURATION")
        self.suffix = suffix
        self._job: Job | None = None
        self._lock = threading.RLock()
        self.prefix_identifier(identifier or caller_name(1))

    @property
    def suffix(self) -> str | None:
        """Appended to the job id (``<base>.<random>.<suffix>``); may be set until the job starts."""
        return self._suffix

    @suffix.setter
    def suffix(self, suffix: str | None) -> None:
        if suffix is not None and not isinstance(suffix, str):
            raise InvalidType(f"suffix must be None or a str, not {type(suffix).__name__}")
        self._suffix = suffix

    @property
    def identifier(self) -> str:
        """``<base>.<random>[.<suffix>]``; the suffix may be set until the job starts."""
        s = (self.suffix or "").strip(".")
        return self._identifier + (f".{s}" if s else "")

    def prefix_identifier(self, base_identifier: str) -> None:
        """Use ``<base_identifier>.<48-bit random>`` as the job id."""
        if self.is_running:
            raise RuntimeError("Can't set the identifier after starting")
        self._identifier = new_job_id(check_job_id(str(base_identifier), "job id"))

    @property
    def is_running(self) -> bool:
        return self.last_refreshed is not None

    def add_inputs(self, *inputs: Any) -> None:
        if self.is_running:
            raise RuntimeError("Can't add inputs after starting")
        self.inputs = list(dict.fromkeys(self.inputs + list(check_names(inputs, "inputs"))))

    def add_outputs(self, *outputs: Any) -> None:
        if self.is_running:
            raise RuntimeError("Can't add outputs after starting")
        self.outputs = list(dict.fromkeys(self.outputs + list(check_names(outputs, "outputs"))))

    def _make_job(self, conn: Any, heartbeat: bool) -> Job:
        coordinator = _coordinator(conn, bool(self.graph_history), self.output_duration)
        return coordinator.job(self.inputs, self.outputs, self.duration, self.wait, self.overwrite, heartbeat,
                               job_id=check_job_id(self.identifier, "job id"))

    def can_run(self, conn: Any = None) -> dict[str, Any]:
        """``{'ok': True}`` if the job could start now, else ``{'ok': False, 'err': {reason: [names]}}``."""
        conn = _conn(conn or self.conn)
        if self.is_running:
            raise RuntimeError("Already started!")
        report = _coordinator(conn).why_blocked(self.inputs, self.outputs, self.overwrite)
        return {"ok": True} if report.can_start else {"ok": False, "err": report.reasons}

    def start(self, conn: Any = None, auto_refresh: Any = None, **kwargs: Any) -> ResourceManager | None:
        """Take the locks, waiting up to ``wait`` seconds; ``auto_refresh`` renews them in the background.

        Returns self, or None if already running. Raises ResourceUnavailable.
        """
        with self._lock:
            self.conn = _conn(conn or self.conn)
            if self.is_running:
                return None
            if LOCKED and not kwargs.pop("i_really_know_what_i_am_doing_dont_warn_me", None):
                _log().warning("Trying to start job while another job has already started in the same process "
                               "is a recipe for deadlocks.")
            job = self._make_job(self.conn, bool(auto_refresh))
            _log().info("Trying to start job with inputs: %r and outputs: %r", self.inputs, self.outputs)
            job.start()
            self._job = job
            self.auto_refresh = bool(auto_refresh)
            self.last_refreshed = time.time()
            LOCKED.add(self)
            _ensure_exit_hook()
            return self

    def refresh(self, lost_lock_fail: bool = False, **kwargs: Any) -> dict[str, Any] | None:
        """Renew the leases (at most once a second); returns ``{'ok': ...}`` or None if skipped.

        Lost locks are reported as ``{'ok': False, 'err': {reason: [names]}}``
        (jobs.py would silently take them again); with ``lost_lock_fail`` the
        job is stopped as failed and ResourceUnavailable raised.
        """
        with self._lock:
            job, last = self._job, self.last_refreshed
            if job is None or last is None or time.time() - last <= 1:
                return None
            try:
                job.refresh()
                result: dict[str, Any] = {"ok": True}
            except LockLost as exc:
                result = {"ok": False, "err": exc.lost}
                _log().warning("Lock(s) lost due to timeout: %r", exc.lost)
                if lost_lock_fail:
                    self.stop(failed=True)
                    raise ResourceUnavailable(exc.lost) from exc
            self.last_refreshed = time.time()
            return result

    def stop(self, failed: bool = False, shutting_down: bool = False) -> None:
        """Release the locks; unless ``failed``, write the outputs (only those still held: else LockLost)."""
        with self._lock:
            job = self._job
            if not self.is_running or job is None:
                return
            if job._pid != os.getpid():
                _log().warning("Not stopping job %s: it belongs to process %d, not this forked child",
                               self.identifier, job._pid)
                return
            if shutting_down:
                _log().warning("Stopping job as part of atexit/signal handler exit")
            try:
                job.stop(failed=bool(failed))
            finally:
                if not job.is_running:
                    self.last_refreshed = None
                    self.auto_refresh = None
                    self._job = None
                    LOCKED.discard(self)

    def __enter__(self) -> ResourceManager | None:
        return self.start(self.conn)

    def __exit__(self, typ: Any, value: Any, tb: Any) -> None:
        self.stop(bool(typ or value or tb))


def get_jobs(conn: Any) -> list[dict[str, Any]]:
    """The running jobs: ``[{'id', 'exptime', 'inputs', 'outputs'}, ...]`` (under ``GLOBAL_PREFIX``)."""
    return [{"id": j.job_id, "exptime": j.expires, "inputs": list(j.inputs), "outputs": list(j.outputs)}
            for j in _coordinator(_conn(conn)).running_jobs()]


def get_job_io(identifier: str, conn: Any = None) -> tuple[list[str], list[str]]:
    """``(inputs, outputs)`` of a running job, or two empty lists."""
    for j in _coordinator(_conn(conn)).running_jobs():
        if j.job_id == identifier:
            return list(j.inputs), list(j.outputs)
    return [], []


def edges(conn: Any, before: Any = None, after: Any = None) -> list[list[str]]:
    """``[input edges, output edges]`` of the lineage graph last seen in the time range."""
    ins, outs = _coordinator(_conn(conn)).edges(before=before, after=after)
    return [ins, outs]
