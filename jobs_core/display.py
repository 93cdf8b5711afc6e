"""Text from Redis as it may be shown on a terminal or in a log line.

Job ids, names and host names come from whoever shares the Redis (a jobs.py
client accepts any text): an escape sequence could rewrite a terminal, a
newline forge a log line, a bidirectional override reorder what is read.
:func:`printable` shows each such character as an escape instead.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

#: C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
#: The same without C0 controls, which ``json.dumps`` already escapes inside strings (outside, they are its layout).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` (any value, shown with ``str``) with every unsafe character as ``\\xNN`` or ``\\uNNNN``.

    A backslash stays as it is: the result is for reading, not for parsing back.
    """
    return _UNSAFE.sub(_escape, text if isinstance(text, str) else str(text))


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_text(document: Any, indent: int | None = 2) -> str:
    """``document`` as JSON that a terminal shows as it is: non-ASCII text stays readable, and
    every unsafe character (see :func:`printable`) is a ``\\uNNNN`` escape, which JSON
    readers turn back into the same character."""
    return safe_json(json.dumps(document, ensure_ascii=False, indent=indent))


def safe_json(text: str) -> str:
    """JSON ``text`` with every unsafe character written as a ``\\uNNNN`` escape.

    Outside strings JSON has only ASCII punctuation, digits, letters and layout
    whitespace, so this changes strings alone and keeps what they mean.
    """
    return _UNSAFE_IN_JSON.sub(_json_escape, text)


class PrintableArgs(logging.Filter):
    """Escapes control and bidirectional characters in a log record's text arguments.

    Job ids, names and hosts reach the library's log lines from Redis, where
    anyone sharing it (a jobs.py client accepts any text) chooses them; a
    handler writing to a terminal or a task log must never get them raw. The
    ``jobs_core`` logger carries one (see the package's ``__init__``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(printable(a) if isinstance(a, str) else a for a in record.args)
        return True
