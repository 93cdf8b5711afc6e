"""What keeps the web view safe to leave open: loopback unless asked, headers, and repair requests
that only the page itself can make.

* :func:`check_bind`: a server bound to anything but loopback needs ``--allow-remote``.
* :class:`SecurityHeaders`: a ``Host`` header other than the allowed ones is refused (a DNS
  rebinding page cannot reach a loopback server through a name of its own), and every reply
  carries a Content-Security-Policy that loads nothing from elsewhere and runs no inline script.
* :func:`check_repair_request`: a repair is a ``POST`` with a JSON body, the process's repair
  token in a header (which a cross-site form or image cannot send, and a cross-site script
  cannot read), and, when the browser says where it comes from, the server's own origin.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping

from starlette.datastructures import URL, Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The header a repair request carries the process's repair token in.
REPAIR_HEADER = "X-Jobs-Core-Repair"

_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                                 b"frame-ancestors 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, allow_remote: bool) -> str | None:
    """Why binding to ``host`` is refused (None: it is not)."""
    if allow_remote or is_loopback(host):
        return None
    return (f"refusing to listen on {host!r}: it is not a loopback address, so anyone who can reach this machine "
            "could read the namespace (names, hosts, job ids) and, with --allow-repairs, change it. Bind to "
            "127.0.0.1 and reach it through an SSH tunnel or an authenticating reverse proxy, or pass "
            "--allow-remote to serve other machines")


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[: host_header.find("]") + 1].lower()
    return host_header.rsplit(":", 1)[0].lower()


class SecurityHeaders:
    """ASGI middleware: refuse unexpected ``Host`` headers, add the security headers to every reply."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...] | None) -> None:
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.allowed is not None:
            host = Headers(scope=scope).get("host", "")
            if _host_name(host) not in self.allowed:
                response = PlainTextResponse("this server answers on its loopback names only (Host header refused)",
                                             status_code=421)
                await response(scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def check_repair_request(headers: Mapping[str, str], url: URL, token: str) -> str | None:
    """Why a repair request is refused (None: it may go on)."""
    if not token or not hmac.compare_digest(headers.get(REPAIR_HEADER.lower(), "").encode(), token.encode()):
        return "a repair needs the page's repair token: use the page's buttons (a request from elsewhere is refused)"
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return "a repair request is JSON (Content-Type: application/json)"
    origin = headers.get("origin")
    if origin is not None and origin != f"{url.scheme}://{url.netloc}":
        return "a repair must come from this server's own page (the Origin header names another site)"
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return "a repair must come from this server's own page (Sec-Fetch-Site says another site)"
    return None

