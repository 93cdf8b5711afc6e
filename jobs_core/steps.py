"""Redis work described as data, so one flow serves the sync and asyncio clients.

Operations with several round trips (waiting to start, reading facts) are
written once as generators that yield steps and receive their results; the
sync and asyncio coordinators each run them with a small driver.

Steps are tuples:

* ``(CALL, script, keys, args)``: run a registered script, receive its reply;
* ``(BATCH, [(command, args, kwargs)...], transaction)``: a pipeline, receive its results;
* ``(SUBSCRIBE, names, job_id, only_if_listening, queued)``: register for wake-ups on
  ``names`` (confirmed before returning); with ``only_if_listening``, only if the
  coordinator's subscription is already up, receiving whether it registered;
* ``(SLEEP, seconds, queued)``: sleep, receive True if a wake-up for those names came
  first (``queued``: the outputs the job is queued for, woken only when first in line).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

CALL, BATCH, SUBSCRIBE, SLEEP = "call", "batch", "subscribe", "sleep"

Flow = Generator[tuple, Any, Any]


def cmd(name: str, *args: Any, **kwargs: Any) -> tuple[str, tuple, dict]:
    """One pipeline command of a ``BATCH`` step."""
    return name, args, kwargs


def queue(pipe: Any, commands: list[tuple[str, tuple, dict]]) -> Any:
    """Queue ``commands`` on ``pipe``; returns ``pipe``."""
    for name, args, kwargs in commands:
        getattr(pipe, name)(*args, **kwargs)
    return pipe
