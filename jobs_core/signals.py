"""Opt-in signal handling: release this process's locks as failed on SIGTERM.

Nothing is installed at import. :func:`release_on_signal` installs a handler
that stops the running jobs of the given coordinators as failed, then hands
the signal to whatever handler was there before.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .errors import ConfigurationError

log = logging.getLogger("jobs_core")


def release_on_signal(coordinators: Iterable[Any], signals: Iterable[int] = (signal.SIGTERM,)) -> Callable[[], None]:
    """On each of ``signals``, stop every job the coordinators run in this process, as failed.

    Afterwards the previous handler runs: a Python handler is called with the
    same arguments; the default action becomes ``SystemExit(128 + signum)`` so
    ``finally`` blocks and ``atexit`` still run. A signal the process ignores
    is left alone: the process goes on running, so its jobs keep their locks.

    Returns a function that restores the previous handlers.

    Raises:
        ConfigurationError: called outside the main thread (Python only lets the
            main thread install signal handlers).
    """
    coordinators = list(coordinators)
    if threading.current_thread() is not threading.main_thread():
        raise ConfigurationError("signal handlers can only be installed from the main thread")
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        log.warning("signal %d: stopping this process's running jobs as failed", signum)
        for c in coordinators:
            c.stop_all(failed=True)
        before = previous.get(signum)
        if callable(before):
            before(signum, frame)
        else:
            raise SystemExit(128 + signum)

    for sig in signals:
        if signal.getsignal(sig) == signal.SIG_IGN:
            log.debug("signal %d is ignored by this process; not handling it", sig)
            continue
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, before in previous.items():
            signal.signal(sig, before if before is not None else signal.SIG_DFL)

    return restore
