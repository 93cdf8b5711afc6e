"""Redis work described as data, so that one flow serves the sync and asyncio clients.

Operations with several round trips (waiting to start, reading facts) are
written once as generators that yield steps and receive their results; the
sync and asyncio coordinators each run them with a small driver (a ``match``
over the step types below).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
#: A flow yields steps, receives their results, and returns ``T``.
Flow = Generator["Step", Any, T]


@dataclass(frozen=True)
class Command:
    """One command of a :class:`Batch`: ``pipe.<name>(*args, **kwargs)``."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def cmd(name: str, *args: Any, **kwargs: Any) -> Command:
    return Command(name, args, kwargs)


@dataclass(frozen=True)
class Call:
    """Run the registered script ``script`` (a name of :data:`jobs_core.scripts.NAMES`); receive its reply."""

    script: str
    keys: Sequence[str]
    args: Sequence[Any]


@dataclass(frozen=True)
class Batch:
    """Run ``commands`` in one pipeline; receive their results."""

    commands: Sequence[Command]
    transaction: bool = False


@dataclass(frozen=True)
class Expect:
    """Register the start call ``nonce`` for its grant messages on the coordinator's channel.

    Receives the channel suffix grants must be published on, or ``""`` if
    there is no subscription (waits then poll). With ``only_if_up``, registers
    only if the subscription is already up (no round trip), else receives
    None. The registration lasts until the flow ends.
    """

    nonce: str
    only_if_up: bool = False


@dataclass(frozen=True)
class Watch:
    """Register for the namespace's wake-ups on ``names`` (released, written); receives nothing.

    The registration is confirmed before this returns and lasts until the flow ends.
    """

    names: frozenset[str]


@dataclass(frozen=True)
class Sleep:
    """Sleep up to ``seconds``; receive the message that cut it short (see :mod:`jobs_core.waiting`), else None."""

    seconds: float


Step = Call | Batch | Expect | Watch | Sleep


def queue(pipe: Any, commands: Sequence[Command]) -> Any:
    """Queue ``commands`` on ``pipe``; returns ``pipe``."""
    for c in commands:
        getattr(pipe, c.name)(*c.args, **c.kwargs)
    return pipe


class Driver(Protocol):
    """What a job needs of its coordinator to run its flows (sync: a value; asyncio: an awaitable)."""

    def run(self, flow: Flow[T]) -> Any: ...
