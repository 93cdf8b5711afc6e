"""Redis URLs as they may be shown to people: with the password hidden."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def hide_password(url: str) -> str:
    """``url`` with its password replaced by ``***`` (unparseable URLs are not shown at all)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user, _, host = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}"))
    except ValueError:
        return "<the given URL>"
