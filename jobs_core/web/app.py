"""The ASGI app of the web view (Starlette): the page, its JSON API, ``/events`` and ``/metrics``.

Read-only unless built with ``allow_repairs``. Everything the API returns is
the ``jobs-core`` command's JSON documents (:mod:`jobs_core.cli_format`,
:func:`jobs_core.lineage.to_json`), so a script can use either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files
from typing import Any

import redis
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import cli_format as fmt
from .. import lineage
from ..aio import AsyncCoordinator
from ..display import printable, safe_json
from ..errors import ConfigurationError, InvalidArgument, JobsError, StateChanged
from ..facts import OutputInfo
from ..names import check_io, check_names
from ..urls import describe_error, hide_password
from .metrics import Metrics
from .reader import SharedReader
from .security import REPAIR_HEADER, SecurityHeaders, check_repair_request

log = logging.getLogger("jobs_core.web")

#: Seconds between two keep-alive comments on an idle ``/events`` stream.
KEEPALIVE = 15.0
#: Seconds between two looks of an idle ``/events`` stream at whether the server is stopping.
CLOSING_CHECK = 0.5
_STATIC = "static"


class WebError(Exception):
    """Ends a request with ``status`` and ``{"error": message}``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _json(document: Any, status: int = 200) -> Response:
    return Response(safe_json(_compact(document)), status_code=status, media_type="application/json")


def _compact(document: Any) -> str:
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


def _state(request: Request) -> State:
    state: State = request.app.state.web
    return state


def _handle(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Bad input → 400, Redis errors → 503, each as ``{"error": ...}`` with nothing secret in it."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except WebError as exc:
            return _json({"error": str(exc)}, exc.status)
        except StateChanged as exc:
            return _json({"error": f"nothing changed: {exc}"}, 409)
        except (InvalidArgument, ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
        except ConfigurationError as exc:
            return _json({"error": f"the namespace is not configured: {exc}"}, 503)
        except JobsError as exc:
            return _json({"error": str(exc)}, 409)
        except (redis.RedisError, OSError) as exc:
            state = _state(request)
            return _json({"error": f"cannot read Redis at {state.where}: {describe_error(exc, state.url)}"}, 503)

    return run


# -- pages and reads ---------------------------------------------------------------------------


async def index(request: Request) -> Response:
    return FileResponse(_static_file("index.html"), media_type="text/html; charset=utf-8")


def _static_file(name: str) -> str:
    return str(files("jobs_core.web").joinpath(_STATIC).joinpath(name))


async def config(request: Request) -> Response:
    state = _state(request)
    prefix = state.coordinator.prefix  # first: connecting tells where the namespace is
    return _json({"where": state.where, "prefix": prefix, "allow_repairs": state.allow_repairs,
                  "repair_header": REPAIR_HEADER, "repair_token": state.repair_token})


async def status(request: Request) -> Response:
    snap = await _state(request).started().fresh()
    if not snap.document["ok"]:
        raise WebError(snap.document["error"], 503)
    return _json(snap.document["status"])


async def show(request: Request) -> Response:
    # /api/show/NAME, or /api/show?name=NAME (the page's form: a path cannot carry every character)
    name = request.path_params.get("name", request.query_params.get("name"))
    if name is None:
        raise WebError("give the name: /api/show/NAME or /api/show?name=NAME", 400)
    info = await _state(request).coordinator.output_info(name)
    return _json(fmt.info_json(info))


def _names(request: Request, key: str) -> list[str]:
    return request.query_params.getlist(key)


def _flag(request: Request, key: str, default: bool) -> bool:
    value = request.query_params.get(key)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise WebError(f"{key} is 1 or 0, not {printable(value)!r}", 400)


async def why_blocked(request: Request) -> Response:
    inputs, outputs = _names(request, "input"), _names(request, "output")
    if not inputs and not outputs:
        raise WebError("give the job's names: ?input=NAME and/or &output=NAME (repeat for several)", 400)
    report = await _state(request).coordinator.why_blocked(inputs, outputs,
                                                           overwrite=_flag(request, "overwrite", True))
    return _json(fmt.report_json(report))


def _int(request: Request, key: str) -> int | None:
    value = request.query_params.get(key)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise WebError(f"{key} is a whole number, not {printable(value)!r}", 400) from None


async def lineage_view(request: Request) -> Response:
    q = request.query_params
    name = q.get("name") or None
    after = lineage.parse_when(q["after"]) if q.get("after") else None
    before = lineage.parse_when(q["before"]) if q.get("before") else None
    inputs, outputs = await _state(request).coordinator.edges(before=before, after=after)
    graph = lineage.query(inputs, outputs, name, q.get("direction") or None, _int(request, "depth"),
                          after=after, before=before)
    if name is not None and not graph.roots:
        raise WebError(f"no lineage recorded for {printable(name)} (looked up as {printable(graph.start)})", 404)
    return _json(lineage.to_json(graph))


async def metrics(request: Request) -> Response:
    state = _state(request)
    snap = await state.started().fresh()
    return Response(state.metrics.render(snap.document), media_type="text/plain; version=0.0.4; charset=utf-8")


async def events(request: Request) -> Response:
    state = _state(request)
    reader = state.started()

    async def stream() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        version = 0
        quiet = 0.0
        while not state.closing.is_set():
            snap = await reader.next(version, CLOSING_CHECK)
            if snap is None:
                quiet += CLOSING_CHECK
                if quiet >= KEEPALIVE:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                continue
            quiet = 0.0
            version = snap.version
            yield f"id: {version}\nevent: snapshot\ndata: {snap.text}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# -- repairs -----------------------------------------------------------------------------------


async def _repair_body(request: Request) -> dict[str, Any]:
    state = _state(request)
    if not state.allow_repairs:
        raise WebError("repairs are off: start the server with --allow-repairs to unlock or create from the page",
                       403)
    problem = check_repair_request(request.headers, request.url, state.repair_token)
    if problem:
        raise WebError(problem, 403)
    try:
        body = await request.json()
    except ValueError:
        raise WebError("the body is not JSON", 400) from None
    if not isinstance(body, dict):
        raise WebError("the body is a JSON object", 400)
    return body


def _shown_matches(info: OutputInfo, shown: Any, parts: tuple[str, ...]) -> bool:
    """Whether the holders the page showed (``{"write_lock": id|null, "readers": [ids], "writer": id|null}``)
    are still those of ``info``."""
    if not isinstance(shown, dict):
        return False
    current = {"write_lock": info.write_lock.job_id if info.write_lock else None,
               "readers": sorted(r.job_id for r in info.readers), "writer": info.writer if info.written else None}
    wanted = {k: sorted(v) if k == "readers" and isinstance(v, list) else v for k, v in shown.items()}
    return all(wanted.get(part) == current[part] for part in parts)


def _who(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "an unknown address"


async def unlock(request: Request) -> Response:
    body = await _repair_body(request)
    state = _state(request)
    ins, outs = check_io(body.get("inputs") or [], body.get("outputs") or [])
    if not ins and not outs:
        raise WebError("give the names to unlock: inputs (read locks) and/or outputs (write lock)", 400)
    shown = body.get("shown") or {}
    c = state.coordinator
    infos = {name: await c.output_info(name) for name in dict.fromkeys(ins + outs)}
    parts: dict[str, tuple[str, ...]] = {n: ("readers",) for n in ins}
    for n in outs:
        parts[n] = parts.get(n, ()) + ("write_lock",)
    changed = [n for n, info in infos.items() if not _shown_matches(info, shown.get(n), parts[n])]
    if changed:
        raise WebError("nothing changed: the locks on " + ", ".join(printable(n) for n in changed)
                       + " changed since the page showed them; look again", 409)
    log.warning("unlock asked from the web view by %s: read locks on %s, write locks on %s", _who(request),
                [printable(n) for n in ins], [printable(n) for n in outs])
    count = await c.unlock(ins, outs, expected=infos.values())
    return _json({"released": count})


async def create(request: Request) -> Response:
    body = await _repair_body(request)
    state = _state(request)
    outs = check_names(body.get("outputs") or [], "outputs")
    if not outs:
        raise WebError("give the outputs to mark written", 400)
    shown = body.get("shown") or {}
    c = state.coordinator
    infos = {name: await c.output_info(name) for name in outs}
    changed = [n for n, info in infos.items() if not _shown_matches(info, shown.get(n), ("writer", "write_lock"))]
    if changed:
        raise WebError("nothing changed: " + ", ".join(printable(n) for n in changed)
                       + " changed since the page showed it; look again", 409)
    writer = f"jobs-core:web-create.{secrets.randbits(48)}"
    log.warning("create asked from the web view by %s: %s, as %s", _who(request), [printable(n) for n in outs],
                writer)
    token = await c.create_outputs(outs, job_id=writer, expected=infos.values())
    return _json({"writer": writer, "token": token})


# -- the app -----------------------------------------------------------------------------------


def create_app(url: str, prefix: str = "", *, allow_repairs: bool = False, allowed_hosts: tuple[str, ...] | None = (
        "localhost", "127.0.0.1", "[::1]"), **reader_options: Any) -> Starlette:
    """The web view of the namespace at ``url``/``prefix`` as an ASGI app.

    Args:
        url: the Redis URL (its password never reaches the page, the API or the logs).
        prefix: the namespace's key prefix.
        allow_repairs: serve ``POST /api/unlock`` and ``/api/create`` (CSRF-protected).
        allowed_hosts: the ``Host`` header values (any port) a request may carry, against DNS
            rebinding; None accepts any (a server bound for remote use, or mounted in another app).
        reader_options: passed to :class:`jobs_core.web.reader.SharedReader` (``min_interval``,
            ``probe``, ``poll``).
    """
    return build_app(connect_url(url, prefix), url, allow_repairs=allow_repairs, allowed_hosts=allowed_hosts,
                     **reader_options)


def build_app(connect: Connect, url: str | None = None, *, allow_repairs: bool = False,
              allowed_hosts: tuple[str, ...] | None = None, **reader_options: Any) -> Starlette:
    """The web view of the namespace ``connect()`` returns (called on first use); see :func:`create_app`
    for the rest. ``url``, if any, is only used to mask its secrets in error messages."""
    state = State(connect, url, allow_repairs, **reader_options)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.started()
        try:
            yield
        finally:
            await state.stop()

    routes = [
        Route("/", index),
        Route("/api/config", _handle(config)),
        Route("/api/status", _handle(status)),
        Route("/api/show", _handle(show)),
        Route("/api/show/{name:path}", _handle(show)),
        Route("/api/why-blocked", _handle(why_blocked)),
        Route("/api/lineage", _handle(lineage_view)),
        Route("/api/unlock", _handle(unlock), methods=["POST"]),
        Route("/api/create", _handle(create), methods=["POST"]),
        Route("/events", _handle(events)),
        Route("/metrics", _handle(metrics)),
        Mount("/static", StaticFiles(packages=[("jobs_core.web", _STATIC)]), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.web = state
    app.add_middleware(SecurityHeaders, allowed_hosts=allowed_hosts)
    return app

