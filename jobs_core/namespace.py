"""Where a namespace is: its Redis URL and key prefix, resolved one way for every entry point.

The command line, ``Coordinator.from_env``, the Luigi adapter and the Airflow
hook all call :func:`resolve_namespace`. Each value is taken from the first
place that sets it:

1. the value given explicitly (``--url``/``--prefix``, ``redis_url=``,
   ``jobs_redis_url`` on a task, an Airflow connection...);
2. the caller's configuration ``sources``, in order (the ``[jobs]`` section of
   luigi.cfg, ...);
3. the environment: ``JOBS_REDIS_URL`` and ``JOBS_PREFIX``.

For the prefix, ``None`` means *not set here, look further*, and ``""`` means
*no prefix*: a source that sets ``prefix = ""`` stops the search (the empty
prefix is a namespace like any other). No URL anywhere is a
:class:`~jobs_core.errors.ConfigurationError` naming every place looked at.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import ConfigurationError, InvalidType

ENV_URL = "JOBS_REDIS_URL"
ENV_PREFIX = "JOBS_PREFIX"


@dataclass(frozen=True)
class Source:
    """One place that may set the URL and the prefix (None: it does not set that one)."""

    label: str
    url: str | None = None
    prefix: str | None = None


@dataclass(frozen=True)
class Namespace:
    """A resolved namespace: ``url`` and ``prefix``, and the label of the place each came from."""

    url: str
    prefix: str
    url_from: str
    prefix_from: str


def resolve_namespace(url: str | None = None, prefix: str | None = None, *, sources: Iterable[Source] = (),
                      environ: Mapping[str, str] | None = None, given: str = "given") -> Namespace:
    """The namespace's URL and prefix: ``url``/``prefix`` if not None, else the first of ``sources``
    that sets them, else ``$JOBS_REDIS_URL``/``$JOBS_PREFIX``; the prefix defaults to ``""``.

    ``given`` labels the explicit values (``"--url"``, ``"the task's jobs_redis_url"``...); ``""``
    when there is no way to give them (they are then left out of the error's list).

    Raises:
        ConfigurationError: no URL anywhere (the message lists where it was looked for).
        InvalidType: a URL or prefix that is not text.
    """
    env = os.environ if environ is None else environ
    places = [Source(given, url, prefix), *sources, Source(f"${ENV_URL} / ${ENV_PREFIX}", env.get(ENV_URL) or None,
                                                            env.get(ENV_PREFIX))]
    for place in places:
        for value, what in ((place.url, "URL"), (place.prefix, "prefix")):
            if value is not None and not isinstance(value, str):
                raise InvalidType(f"the Redis {what} from {place.label} must be text, not {type(value).__name__}")
    found_url = next((p for p in places if p.url), None)
    if found_url is None:
        looked = ", ".join(p.label for p in places if p.label)
        raise ConfigurationError(f"no Redis URL for jobs_core: set one in any of: {looked} "
                                 f"(e.g. export {ENV_URL}=redis://host:6379/0)")
    found_prefix = next((p for p in places if p.prefix is not None), None)
    assert found_url.url is not None
    if found_prefix is None:
        return Namespace(found_url.url, "", found_url.label, "default (no prefix)")
    assert found_prefix.prefix is not None
    return Namespace(found_url.url, found_prefix.prefix, found_url.label, found_prefix.label)
