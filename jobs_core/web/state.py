"""What one web app holds (the namespace, its shared reader, the metrics, the repair token) and the
small helpers its endpoints share."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
from collections.abc import Callable
from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from starlette.requests import Request
from starlette.responses import Response

from ..aio import AsyncCoordinator
from ..display import safe_json
from ..urls import hide_password
from .metrics import Metrics
from .reader import SharedReader


class WebError(Exception):
    """Ends a request with ``status`` and ``{"error": message}``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def json_response(document: Any, status: int = 200) -> Response:
    return Response(safe_json(compact(document)), status_code=status, media_type="application/json")


def compact(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


#: What an app calls (once, on first use) to reach its namespace: the coordinator, and where it is for
#: people (a URL with its password hidden, or the name of a connection).
Connect = Callable[[], tuple[AsyncCoordinator, str]]


def connect_url(url: str, prefix: str) -> Connect:
    """How the app reaches the namespace at ``url``: a page says at once that Redis is down (one quick
    retry, not the client's default backoff of seconds)."""
    return lambda: (AsyncCoordinator.from_url(url, prefix, socket_timeout=5.0, socket_connect_timeout=3.0,
                                              retry=Retry(ConstantBackoff(0.1), 1)), hide_password(url))


class State:
    """What one app holds: the namespace, its shared reader, the metrics, the repair token.

    The coordinator is made on first use (``connect``), so an app built where its
    configuration cannot be read yet (an Airflow plugin at import) reads it on the first request.
    """

    def __init__(self, connect: Connect, url: str | None, allow_repairs: bool, **reader_options: Any) -> None:
        self._connect = connect
        self.where = "the namespace"
        #: Only to mask its secrets in error messages (:func:`jobs_core.urls.describe_error`).
        self.url = url
        self._reader_options = reader_options
        self._coordinator: AsyncCoordinator | None = None
        self._reader: SharedReader | None = None
        self.metrics = Metrics()
        self.allow_repairs = allow_repairs
        #: Sent with every repair (a header a cross-site form or image cannot set).
        self.repair_token = secrets.token_urlsafe(24) if allow_repairs else ""
        self.task: asyncio.Task[None] | None = None
        #: Set (from any thread) when the server stops: the ``/events`` streams end, so that the
        #: server need not wait for them to be closed by the browsers.
        self.closing = threading.Event()

    @property
    def coordinator(self) -> AsyncCoordinator:
        if self._coordinator is None:
            self._coordinator, self.where = self._connect()
        return self._coordinator

    @property
    def reader(self) -> SharedReader:
        if self._reader is None:
            coordinator = self.coordinator
            self._reader = SharedReader(coordinator, self.where, url=self.url, **self._reader_options)
        return self._reader

    def started(self) -> SharedReader:
        """The shared reader, its task started if it is not running (an app mounted in another one,
        as in Airflow's api-server, gets no lifespan events of its own)."""
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.reader.run(), name="jobs-core-web-reader")
        return self.reader

    async def stop(self) -> None:
        """Stop the reader and close the connections."""
        self.closing.set()
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._coordinator is not None:
            await self._coordinator.aclose()


def state_of(request: Request) -> State:
    state: State = request.app.state.web
    return state
