"""``POST /api/unlock`` and ``/api/create``: the repairs, served only with ``allow_repairs``.

Each checks the request (:func:`jobs_core.web.security.check_repair_request`),
compares the holders the page showed with the current ones (changing nothing
if they differ), logs who asked, then hands what it read to the library as
``expected``, as ``jobs-core unlock`` and ``create`` do.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..display import printable
from ..facts import OutputInfo
from ..names import check_io, check_names
from .security import check_repair_request
from .state import WebError, json_response, state_of

log = logging.getLogger("jobs_core.web")


async def _repair_body(request: Request) -> dict[str, Any]:
    state = state_of(request)
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
    state = state_of(request)
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
    return json_response({"released": count})


async def create(request: Request) -> Response:
    body = await _repair_body(request)
    state = state_of(request)
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
    return json_response({"writer": writer, "token": token})
