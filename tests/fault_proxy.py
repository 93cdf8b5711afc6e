"""A TCP proxy in front of a Redis server that can withhold one reply (for tests/test_fault_injection.py).

``hold(pattern)`` arms it: the next request containing ``pattern`` (say, a
script's SHA) goes to the server as usual, but the reply is kept back, and
``held`` is set. The test then kills that connection on the server side
(``CLIENT KILL``): the proxy closes the client's side too, so the client
sees its connection drop after the server ran the command, the case a retry
must not turn into a second effect.
"""

from __future__ import annotations

import socket
import threading


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._pattern: bytes | None = None
        self._lock = threading.Lock()
        self.held = threading.Event()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def hold(self, pattern: bytes) -> None:
        """Withhold the reply to the next request that contains ``pattern``."""
        with self._lock:
            self._pattern, self.held = pattern, threading.Event()

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        except OSError:
            pass
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            holding = threading.Event()
            threading.Thread(target=self._pump, args=(client, server, holding, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, holding, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, holding: threading.Event, requests: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if requests:
                    with self._lock:
                        if self._pattern is not None and self._pattern in data:
                            self._pattern = None
                            holding.set()
                            self.held.set()
                    sink.sendall(data)
                elif not holding.is_set():
                    sink.sendall(data)
                # else: a reply held back; dropped when the server side closes
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
