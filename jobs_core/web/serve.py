"""Run the web view with uvicorn: what ``jobs-core serve`` does once its options are checked."""

from __future__ import annotations

import threading
from types import FrameType

import uvicorn

from .app import create_app
from .security import is_loopback


def serve(url: str, prefix: str, host: str, port: int, *, allow_remote: bool = False, allow_repairs: bool = False,
          access_log: bool = False) -> None:
    """Serve the namespace at ``url``/``prefix`` on ``host``:``port`` until interrupted.

    The caller has checked the bind address (:func:`jobs_core.web.security.check_bind`).
    """
    loopback = is_loopback(host)
    app = create_app(url, prefix, allow_repairs=allow_repairs,
                     allowed_hosts=("localhost", "127.0.0.1", "[::1]") if loopback and not allow_remote else None)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=access_log,
                            timeout_graceful_shutdown=5, lifespan="on")
    _Server(config, app.state.web.closing).run()


class _Server(uvicorn.Server):
    """uvicorn's server, ending the ``/events`` streams when told to stop (Ctrl-C, SIGTERM)."""

    def __init__(self, config: uvicorn.Config, closing: threading.Event) -> None:
        super().__init__(config)
        self.closing = closing

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.closing.set()
        super().handle_exit(sig, frame)
