"""Redis URLs as they may be shown to people: with every secret hidden.

A URL may carry a password in its user part (``redis://user:pw@host``) and in
query options (``?password=``, ``sentinel_password=``, ``ssl_password=``...).
A password written without percent-encoding may contain ``/``, ``?``, ``#``
or ``@``, which makes the URL unparseable by ``urllib``: it is then masked
from what can be found of its shape, never shown as given.
"""

from __future__ import annotations

import re

#: Query options whose value is a secret (matched anywhere in the option's name).
SECRET_OPTION = re.compile(r"pass|secret|token|credential|auth", re.IGNORECASE)
MASK = "***"


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
    if not sep:
        return "<the given URL>" if "@" in url or "=" in url else url
    userinfo, at, rest = rest.rpartition("@")
    user = ""
    if at:
        name, colon, _ = userinfo.partition(":")
        user = f"{name}:{MASK}@" if colon else f"{name}@"  # no colon: a user name alone (RFC 3986)
    rest = rest.partition("#")[0]
    place, q, query = rest.partition("?")
    return f"{scheme}://{user}{place}" + (f"?{_mask_query(query)}" if q else "")
