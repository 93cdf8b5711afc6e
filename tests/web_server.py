"""The web view served for real in the tests: uvicorn on a free port, in a thread of the test process."""

from __future__ import annotations

import gc
import json
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import uvicorn

import jobs_core
from jobs_core.web import create_app

from .servers import free_port


class WebServer:
    """``create_app(url, prefix, **options)`` served by uvicorn at :attr:`base` until :meth:`stop`."""

    def __init__(self, url: str, prefix: str, wrap: Callable[[Any], Any] | None = None, **options: Any) -> None:
        options.setdefault("min_interval", 0.2)  # short, so tests do not wait; the default is 1s
        self.app = create_app(url, prefix, **options)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        served = self.app if wrap is None else wrap(self.app)
        config = uvicorn.Config(served, host="127.0.0.1", port=self.port, log_level="warning", ws="none",
                                lifespan="on", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="web-view", daemon=True)

    @property
    def reader(self) -> Any:
        return self.app.state.web.reader

    def start(self) -> WebServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the web view did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.app.state.web.closing.set()  # as jobs-core serve does on Ctrl-C: the /events streams end
        self.server.should_exit = True
        self.thread.join(10)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=10)


def snapshots(client: httpx.Client) -> Iterator[dict[str, Any]]:
    """The snapshot documents ``/events`` sends, as they come."""
    with client.stream("GET", "/events", timeout=httpx.Timeout(10, read=20)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "snapshot":
                yield json.loads(line[6:])


def first(stream: Iterator[dict[str, Any]], test: Callable[[dict[str, Any]], bool], timeout: float) -> float:
    """Seconds until a snapshot of ``stream`` passes ``test``; fails after ``timeout``."""
    began = time.monotonic()
    for doc in stream:
        if test(doc):
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            break
    raise AssertionError(f"no snapshot passed the test within {timeout}s")


def running_ids(doc: dict[str, Any]) -> set[str]:
    return {j["job_id"] for j in doc["status"]["running"]}


class Waiters:
    """Jobs that wait, each started in a thread of its own, one after the other (so their order in
    line is known); :meth:`close` ends them."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self.threads: list[threading.Thread] = []
        self.coordinators: list[jobs_core.Coordinator] = []

    def start(self, ids: list[str], outputs: list[str], inputs: tuple[str, ...] = (), wait: float = 20,
              limits: dict[str, int] | None = None) -> None:
        for job_id in ids:
            coordinator = jobs_core.Coordinator.from_url(self.url, self.prefix)
            self.coordinators.append(coordinator)
            job = coordinator.job(inputs, outputs, duration=30, wait=wait, job_id=job_id, limits=limits)

            def run(job: Any = job) -> None:
                try:
                    job.start()
                    job.stop()
                except Exception:  # noqa: BLE001 (ended by close(), perhaps between its start and stop)
                    pass

            t = threading.Thread(target=run, daemon=True)
            t.start()
            self.threads.append(t)
            deadline = time.monotonic() + 5
            while job_id not in {w.job_id for w in coordinator.waiting_jobs()}:
                assert time.monotonic() < deadline, f"{job_id} did not begin to wait"
                time.sleep(0.02)

    def close(self) -> None:
        for coordinator in self.coordinators:
            coordinator.close()  # ends their waits
        for t in self.threads:
            t.join(25)


def collect_dropped_connections() -> None:
    """Collect, now and quietly, what redis-py left of connections that Redis dropped (stopped) while
    the web server's reader used them: they are closed when collected, with a ResourceWarning that
    would otherwise surface in whatever test runs when the collector gets to them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
