"""The arguments the adapter takes from DAG files: durations and jobs_core names.

Checked when the DAG is parsed, so that a bad value is an import error of the
DAG file rather than a failure of every run:

* durations are seconds or :class:`datetime.timedelta`;
* names are a list whose items are strings (templated), ``NG`` names or
  ``XComArg`` s (one name each, from an upstream task), or one ``XComArg``
  giving the whole list.

Names are rendered as names only: a string template, never a template file
(a name ending in ``.sh`` on a ``BashOperator`` is a name, not a script).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal, overload

import jobs_core
from jobs_core.limits import check_limits
from jobs_core.protocol import check_seconds

from .version_compat import ResolveMixin, render_name

#: What a names argument holds between parsing and rendering.
Names = list[Any] | ResolveMixin


@overload
def seconds(value: Any, what: str, *, minimum: float = ..., allow_none: Literal[False] = ...) -> float: ...


@overload
def seconds(value: Any, what: str, *, minimum: float = ..., allow_none: bool) -> float | None: ...


def seconds(value: Any, what: str, *, minimum: float = 0.0, allow_none: bool = False) -> float | None:
    """``value`` (a number of seconds or a ``timedelta``) as seconds.

    Raises:
        jobs_core.InvalidType: neither a number nor a ``timedelta`` (a ``TypeError``).
        jobs_core.InvalidArgument: below ``minimum``, infinite, or beyond ten years (a ``ValueError``).
    """
    if isinstance(value, timedelta):
        value = value.total_seconds()
    return check_seconds(value, what, minimum=minimum, allow_none=allow_none)


def limits(value: Any, what: str) -> dict[str, int]:
    """A ``limits`` argument (``{limit: slots}``) checked as jobs_core checks a job's.

    Raises:
        jobs_core.InvalidType, jobs_core.InvalidArgument: not a mapping of limit names to slots (ints from 1).
    """
    try:
        return dict(check_limits(value))
    except (jobs_core.InvalidType, jobs_core.InvalidArgument) as exc:
        raise type(exc)(f"{what}: {exc}") from None


def names(value: Any, what: str) -> Names:
    """Check a names argument as given in a DAG file (before rendering).

    Raises:
        TypeError: one string (not a list of names), not iterable, or an item
            that is not a string, ``NG`` name or ``XComArg``.
    """
    if isinstance(value, ResolveMixin):
        return value
    if isinstance(value, str):
        raise jobs_core.InvalidType(f"{what} must be a list of names, not one str ({value!r}): "
                                    f"write [{value!r}]")
    try:
        items = list(value)
    except TypeError:
        raise jobs_core.InvalidType(f"{what} must be a list of names, not {type(value).__name__}") from None
    checked = []
    for item in items:
        if isinstance(item, jobs_core.TYPE_NG):
            item = str(item)
        if not isinstance(item, (str, ResolveMixin)):
            raise jobs_core.InvalidType(f"{what}: a name is a str (or an upstream task's XComArg), not "
                                        f"{type(item).__name__} {item!r}")
        checked.append(item)
    return checked


def render_names(task: Any, value: Names, context: Any, jinja_env: Any, what: str) -> list[str]:
    """The names of ``value`` for one task instance: templates rendered, ``XComArg`` s resolved.

    Raises:
        TypeError: an ``XComArg`` gave something else than a list of names (or a name).
    """
    if isinstance(value, ResolveMixin):
        resolved = task.render_template(value, context, jinja_env)
        if isinstance(resolved, (str, bytes)) or not hasattr(resolved, "__iter__"):
            raise jobs_core.InvalidType(f"{what} comes from an XComArg that gave {type(resolved).__name__} "
                                        f"{resolved!r}, not a list of names")
        rendered = [_name(n, what) for n in resolved]
    else:
        rendered = []
        for item in value:
            if isinstance(item, str):
                rendered.append(_name(render_name(task, item, context, jinja_env), what))
            else:
                rendered.append(_name(task.render_template(item, context, jinja_env), what))
    return rendered


def _name(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # a native rendering of "{{ 5 }}"
        return str(value)
    raise jobs_core.InvalidType(f"{what}: a name rendered as {type(value).__name__} {value!r}, not a str")
