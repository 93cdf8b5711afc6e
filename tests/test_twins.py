"""The sync and asyncio twins offer the same operations, with the same signatures.

In the spirit of httpcore's ``unasync --check``: a method added to one of
``Coordinator``/``AsyncCoordinator``, ``Job``/``AsyncJob`` or the listeners'
registrations must be added to the other, with the same parameters, and be
documented on both.
"""

from __future__ import annotations

import inspect

import pytest

from jobs_core import AsyncCoordinator, AsyncJob, Coordinator, Job
from jobs_core.listener import AsyncListener, AsyncWakeup, Listener, Wakeup

#: Where the twins differ on purpose: the name each side uses for the same thing.
RENAMED = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}
#: Members only one side has, and why.
ONE_SIDED = {
    "heartbeat", "track", "untrack", "unbeat",  # the sync heartbeat thread; asyncio jobs beat in a task each
    "__call__",  # both decorate, but a coroutine function on one side: compared by hand below
}


def public(cls: type) -> dict[str, object]:
    out = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") and name not in RENAMED and name not in RENAMED.values():
            continue
        if callable(member) or isinstance(member, property):
            out[name] = member
    return out


@pytest.mark.parametrize("sync, asyncio_, renamed", [
    (Coordinator, AsyncCoordinator, RENAMED), (Job, AsyncJob, RENAMED), (Listener, AsyncListener, RENAMED),
    (Wakeup, AsyncWakeup, {"__enter__": "__aenter__", "__exit__": "__aexit__"}),  # close() ends a registration
], ids=["coordinator", "job", "listener", "wakeup"])
def test_twins_have_the_same_operations_and_signatures(sync, asyncio_, renamed):
    a, b = public(sync), public(asyncio_)
    names_a = {renamed.get(n, n) for n in a} - ONE_SIDED
    names_b = set(b) - ONE_SIDED
    assert names_a == names_b, (sorted(names_a - names_b), sorted(names_b - names_a))
    for name in names_b:
        sync_name = next((k for k, v in renamed.items() if v == name), name)
        ma, mb = a[sync_name], b[name]
        if isinstance(ma, property):
            continue
        pa = list(inspect.signature(ma).parameters.values())
        pb = list(inspect.signature(mb).parameters.values())
        assert [(p.name, p.kind, p.default) for p in pa] == [(p.name, p.kind, p.default) for p in pb], name
        if not name.startswith("__"):
            assert inspect.getdoc(ma) and inspect.getdoc(mb), f"{asyncio_.__name__}.{name} is not documented"
        is_async = inspect.iscoroutinefunction(mb)
        assert not inspect.iscoroutinefunction(ma), name
        assert is_async == inspect.iscoroutinefunction(getattr(asyncio_, name)), name
