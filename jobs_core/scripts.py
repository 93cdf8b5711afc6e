"""The Lua scripts in ``jobs_core/lua``, registered on a client through redis-py."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

NAMES = ("start", "refresh", "stop", "unlock", "create", "time", "read")


@cache
def source(name: str) -> str:
    """The text of ``lua/<name>.lua``."""
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")


class Scripts:
    """One registered ``Script`` per operation, bound to a client (sync or asyncio)."""

    __slots__ = NAMES

    def __init__(self, client: Any) -> None:
        for name in NAMES:
            setattr(self, name, client.register_script(source(name)))
