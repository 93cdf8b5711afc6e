"""Redis URLs as they may be shown to people: with every secret hidden.

A URL may carry a password in its user part (``redis://user:pw@host``) and in
query options (``?password=``, ``sentinel_password=``, ``ssl_password=``...).
A password written without percent-encoding may contain ``/``, ``?``, ``#``
or ``@``, which makes the URL unparseable by ``urllib``: it is then masked
from what can be found of its shape, never shown as given.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from .display import printable

#: Query options whose value is a secret (matched anywhere in the option's name).
SECRET_OPTION = re.compile(r"pass|secret|token|credential|auth", re.IGNORECASE)
MASK = "***"
#: Secrets shorter than this are not searched for in error texts (masking "a" everywhere would garble
#: them): the places redis-py names are replaced instead, which is where a password's fragments show.
MIN_SECRET = 3
#: Where redis-py names a host, port or socket path in an error: "connecting to h:p", "reading from h:p".
_PLACES = re.compile(r"\b(to|from|at) (?:unix socket: )?(?=\S*[:/])\S+?(?=[.:,;]?(?:\s|$))")
#: A URL scheme (RFC 3986): anything else before "://" may be a user part written without one.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
#: Where the repr of a redis-py or valkey-py object starts in an error text.
_REPR = re.compile(r"<(?:redis|valkey)\.")
#: A quoted value in an error text.
_QUOTED = re.compile(r"(['\"])(.*?)\1")


def _mask_query(query: str) -> str:
    parts = []
    for item in query.split("&"):
        key, eq, _ = item.partition("=")
        parts.append(f"{key}={MASK}" if eq and SECRET_OPTION.search(key) else item)
    return "&".join(parts)


def hide_password(url: str) -> str:
    """``url`` with its password and every secret query option replaced by ``***``.

    The user part is everything between ``://`` and the last ``@`` (a password
    may hold unencoded ``/``, ``?``, ``#`` or ``@``): only the user name before
    its first ``:`` is kept. A fragment is dropped. Anything that is not a
    ``str`` is not shown at all.
    """
    if not isinstance(url, str):
        return "<a URL that is not text>"
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return "<the given URL>" if "@" in url or "=" in url or ":" in scheme else url
    userinfo, at, rest = rest.rpartition("@")
    user = ""
    if at:
        name, colon, _ = userinfo.partition(":")
        user = f"{name}:{MASK}@" if colon else f"{name}@"  # no colon: a user name alone (RFC 3986)
    rest = rest.partition("#")[0]
    place, q, query = rest.partition("?")
    return f"{scheme}://{user}{place}" + (f"?{_mask_query(query)}" if q else "")


def _secrets(url: Any) -> list[str]:
    """The secret parts of ``url`` as written and percent-decoded: its password and secret option values."""
    if not isinstance(url, str):
        return []
    found = []
    rest = url.partition("://")[2] or url
    userinfo, at, _ = rest.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    for item in rest.partition("?")[2].partition("#")[0].split("&"):
        key, eq, value = item.partition("=")
        if eq and SECRET_OPTION.search(key):
            found.append(value)
    found += [unquote(s) for s in found]
    return sorted({s for s in found if len(s) >= MIN_SECRET}, key=len, reverse=True)


def user_part_problem(url: str) -> str | None:
    """Why the user part of ``url`` cannot be read as meant, or None.

    A ``/``, ``?`` or ``#`` ends the host part of a URL, so a password holding
    one unencoded makes part of the password read as the host, the port or the
    path, and the server be looked for there. An ``@`` after a query option
    (``?client_name=a@b``) is not taken for the end of a user part.
    """
    rest = url.partition("://")[2]
    userinfo, at, _ = rest.rpartition("@")
    if not at or rest.startswith("/") or not any(c in userinfo for c in "/?#"):
        return None
    if re.search(r"\?[^#]*=", userinfo):
        return None
    return ("its user part holds an unencoded '/', '?' or '#', which ends the host part of a URL: "
            "percent-encode them in the user name and password (%2F, %3F, %23, and '@' as %40)")


def parse_error(exc: BaseException, url: Any) -> str:
    """The message of an error parsing ``url`` without any part of the URL that may be secret.

    redis-py quotes what it could not read (a port, a database number), and in
    a URL whose password was not percent-encoded that may be part of the
    password: every quoted value is masked, except the names of the URL's
    query options.
    """
    query = url.partition("?")[2].partition("#")[0] if isinstance(url, str) else ""
    options = {item.partition("=")[0] for item in query.split("&")}

    def mask(match: re.Match[str]) -> str:
        quote, quoted = match.group(1), match.group(2)
        return match.group() if quoted in options and quoted.isidentifier() else f"{quote}{MASK}{quote}"

    return describe_error(exc, url, _QUOTED.sub(mask, str(exc)))


def describe_error(exc: BaseException, url: Any = None, text: str | None = None) -> str:
    """What went wrong talking to Redis, in words that hold no secret and are safe to print.

    A connection error is told by its operating-system cause (``Connection
    refused (errno 111)``); otherwise redis-py's text is kept with every place
    it names (``connecting to host:port``) replaced, since a URL whose password
    was not percent-encoded yields a "host" or "port" made of part of the
    password. What is left of the URL's secrets is masked, and control
    characters escaped.
    """
    cause = _os_error(exc) if text is None else None
    if cause is not None:
        reason = cause.strerror or str(cause) or type(cause).__name__
        text = f"{reason} (errno {cause.errno})" if isinstance(cause.errno, int) and cause.errno > 0 else reason
    else:
        text = _PLACES.sub(r"\1 the server", _without_reprs(str(exc) if text is None else text))
    for secret in _secrets(url):
        text = text.replace(secret, MASK)
    return printable(text or type(exc).__name__)


def _without_reprs(text: str) -> str:
    """``text`` with each client's repr (``<redis.client.Redis(...)>``, which lists its connection
    settings) replaced by ``a client``."""
    out, start = [], 0
    for match in _REPR.finditer(text):
        if match.start() < start:
            continue
        depth, end = 0, len(text)
        for i in range(match.start(), len(text)):
            depth += {"<": 1, ">": -1}.get(text[i], 0)
            if depth == 0:
                end = i + 1
                break
        out += [text[start:match.start()], "a client"]
        start = end
    return "".join(out) + text[start:]


def _os_error(exc: BaseException) -> OSError | None:
    """The operating-system error behind ``exc`` (a refused connection, an unknown host, a timeout)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            return current
        current = current.__cause__ or current.__context__
    return None
