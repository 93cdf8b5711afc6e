"""Text from Redis as it may be shown on a terminal or in a log line.

Job ids, names and host names come from whoever shares the Redis (a jobs.py
client accepts any text): an escape sequence could rewrite a terminal, a
newline forge a log line, a bidirectional override reorder what is read.
:func:`printable` shows each such character as an escape instead.
"""

from __future__ import annotations

import re

#: C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` (any value, shown with ``str``) with every unsafe character as ``\\xNN`` or ``\\uNNNN``.

    A backslash stays as it is: the result is for reading, not for parsing back.
    """
    return _UNSAFE.sub(_escape, text if isinstance(text, str) else str(text))
