"""JobsTarget: a jobs_core output as a Luigi target."""

from __future__ import annotations

from typing import Any

import luigi

from jobs_core import Coordinator
from jobs_core.names import check_name
from jobs_core.urls import hide_password

from .clients import coordinator
from .config import resolve


class JobsTarget(luigi.Target):
    """A jobs_core output: it exists once a job (of any kind) that writes it stopped successfully.

    Only strings are kept, so targets (and the tasks holding them) pickle; the
    Redis client is looked up in the process that asks.

    Args:
        name: the output's name (``"sales.2026-11-27.eu"``).
        redis_url: the namespace's server; None: the ``[jobs]`` section of
            luigi.cfg, then ``$JOBS_REDIS_URL``.
        prefix: the namespace's key prefix; None: ``[jobs]``, then
            ``$JOBS_PREFIX``, else no prefix.
        target: another target holding the data (a ``LocalTarget``, an S3
            object); then the target exists only when both exist, and its other
            attributes (``open``, ``path``...) are the wrapped target's.

    Raises:
        InvalidName: ``name`` cannot be a jobs_core name.
    """

    def __init__(self, name: str, *, redis_url: str | None = None, prefix: str | None = None,
                 target: luigi.Target | None = None) -> None:
        self.name = check_name(name)
        self.redis_url = redis_url
        self.prefix = prefix
        self.target = target

    @property
    def namespace(self) -> tuple[str, str]:
        """``(url, prefix)`` of the namespace, resolved now (see :func:`jobs_luigi.config.resolve`)."""
        return resolve(self.redis_url, self.prefix)

    @property
    def coordinator(self) -> Coordinator:
        """This process's coordinator for the target's namespace."""
        return coordinator(*self.namespace)

    def exists(self) -> bool:
        """Whether the output was written (and has not expired), and the wrapped target exists."""
        if not self.coordinator.written([self.name]):
            return False
        return self.target is None or self.target.exists()

    def __getattr__(self, attr: str) -> Any:
        # only reached for attributes JobsTarget lacks; "target" is missing while unpickling
        target = self.__dict__.get("target")
        if target is None or attr.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")
        return getattr(target, attr)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JobsTarget):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def _identity(self) -> tuple[Any, ...]:
        return self.name, self.redis_url, self.prefix, self.target

    def __repr__(self) -> str:
        url = None if self.redis_url is None else hide_password(self.redis_url)
        extra = "".join(f", {k}={v!r}" for k, v in (("redis_url", url), ("prefix", self.prefix),
                                                     ("target", self.target)) if v is not None)
        return f"JobsTarget({self.name!r}{extra})"

    def __str__(self) -> str:
        return self.name if self.target is None else f"{self.name} ({self.target})"
