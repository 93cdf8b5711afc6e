"""What the limits tests share: a start in a thread, polling, and a limit's line."""

from __future__ import annotations

import threading
import time
from typing import Any


def started_in(job: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``job`` in a thread; returns (thread, result): result gets 'started' or the error, and
    ``after``, the seconds the start took."""
    result: dict[str, Any] = {}

    def run() -> None:
        t0 = time.monotonic()
        try:
            job.start()
            result["state"] = "started"
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            result["state"] = exc
        result["after"] = time.monotonic() - t0

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def until(check: Any, timeout: float = 5.0) -> bool:
    """Whether ``check()`` became true within ``timeout`` seconds (polled every 10 ms)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.01)
    return False


def in_line(c: Any, limit: str) -> list[str]:
    """The job ids in ``limit``'s line, first first."""
    (info,) = c.limits([limit])
    return [w.job_id for w, _ in info.line]
