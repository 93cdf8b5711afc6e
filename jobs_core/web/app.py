"""The ASGI app of the web view (Starlette): the page, its JSON API, ``/events`` and ``/metrics``.

Read-only unless built with ``allow_repairs``. Everything the API returns is
the ``jobs-core`` command's JSON documents (:mod:`jobs_core.cli_format`,
:func:`jobs_core.lineage.to_json`), so a script can use either.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import cli_format as fmt
from .. import lineage
from ..display import printable
from ..errors import ConfigurationError, InvalidArgument, JobsError, StateChanged
from ..urls import describe_error
from .repairs import create, unlock
from .security import REPAIR_HEADER, SecurityHeaders
from .state import Connect, State, WebError, connect_url, json_response, state_of

log = logging.getLogger("jobs_core.web")

#: Seconds between two keep-alive comments on an idle ``/events`` stream.
KEEPALIVE = 15.0
#: Seconds between two looks of an idle ``/events`` stream at whether the server is stopping.
CLOSING_CHECK = 0.5
_STATIC = "static"


def _handle(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Bad input → 400, Redis errors → 503, each as ``{"error": ...}`` with nothing secret in it."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except WebError as exc:
            return json_response({"error": str(exc)}, exc.status)
        except StateChanged as exc:
            return json_response({"error": f"nothing changed: {exc}"}, 409)
        except (InvalidArgument, ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
        except ConfigurationError as exc:
            return json_response({"error": f"the namespace is not configured: {exc}"}, 503)
        except JobsError as exc:
            return json_response({"error": str(exc)}, 409)
        except (redis.RedisError, OSError) as exc:
            state = state_of(request)
            error = f"cannot read Redis at {state.where}: {describe_error(exc, state.url)}"
            return json_response({"error": error}, 503)

    return run


# -- pages and reads ---------------------------------------------------------------------------


async def index(request: Request) -> Response:
    return FileResponse(_static_file("index.html"), media_type="text/html; charset=utf-8")


def _static_file(name: str) -> str:
    return str(files("jobs_core.web").joinpath(_STATIC).joinpath(name))


async def config(request: Request) -> Response:
    state = state_of(request)
    prefix = state.coordinator.prefix  # first: connecting tells where the namespace is
    return json_response({"where": state.where, "prefix": prefix, "allow_repairs": state.allow_repairs,
                  "repair_header": REPAIR_HEADER, "repair_token": state.repair_token})


async def status(request: Request) -> Response:
    snap = await state_of(request).started().fresh()
    if not snap.document["ok"]:
        raise WebError(snap.document["error"], 503)
    return json_response(snap.document["status"])


async def show(request: Request) -> Response:
    # /api/show/NAME, or /api/show?name=NAME (the page's form: a path cannot carry every character)
    name = request.path_params.get("name", request.query_params.get("name"))
    if name is None:
        raise WebError("give the name: /api/show/NAME or /api/show?name=NAME", 400)
    info = await state_of(request).coordinator.output_info(name)
    return json_response(fmt.info_json(info))


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
    report = await state_of(request).coordinator.why_blocked(inputs, outputs,
                                                           overwrite=_flag(request, "overwrite", True))
    return json_response(fmt.report_json(report))


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
    inputs, outputs = await state_of(request).coordinator.edges(before=before, after=after)
    graph = lineage.query(inputs, outputs, name, q.get("direction") or None, _int(request, "depth"),
                          after=after, before=before)
    if name is not None and not graph.roots:
        raise WebError(f"no lineage recorded for {printable(name)} (looked up as {printable(graph.start)})", 404)
    return json_response(lineage.to_json(graph))


async def metrics(request: Request) -> Response:
    state = state_of(request)
    snap = await state.started().fresh()
    return Response(state.metrics.render(snap.document), media_type="text/plain; version=0.0.4; charset=utf-8")


async def events(request: Request) -> Response:
    state = state_of(request)
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

