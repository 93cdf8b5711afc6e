"""Bad input to every public entry point: a specific, clear error, and Redis untouched.

Table-driven: each bad value is tried at each entry point that takes it (the
sync :class:`Coordinator`, :class:`AsyncCoordinator`, :class:`Job` and
:class:`AsyncJob` methods, the jobs.py compatibility API, and the
``jobs-core`` command). Every case must raise the error class it names, with
a message that says what to change; the server (one of this module's own)
must process no command because of it (its ``total_commands_processed`` grows
by the ``INFO`` reading it, nothing more), and the whole keyspace must be the
same afterwards. tests/test_validation.py has the first, smaller table; this
one is the exhaustive one.
"""

from __future__ import annotations

import asyncio
import decimal
import inspect
import json
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis import asyncio as aredis

import jobs_core
from jobs_core import (
    NG,
    ConfigurationError,
    InvalidArgument,
    InvalidName,
    InvalidNameType,
    InvalidType,
    JobsError,
    NotRunning,
)

from .conftest import keyspace
from .reliability import report
from .servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "bad:"
TRIED: dict[str, int] = {}


@dataclass
class Ctx:
    client: redis.Redis
    c: jobs_core.Coordinator
    ac: jobs_core.AsyncCoordinator
    running: jobs_core.Job  # started, no heartbeat
    url: str


@pytest.fixture(scope="module")
def ctx():
    server = RedisServer().start()
    try:
        client = redis.Redis(port=server.port)
        c = jobs_core.Coordinator(client, PREFIX)
        c.create_outputs(["ok", "in"])
        running = c.job(["in"], ["held"], duration=600, heartbeat=False, job_id="running").start()
        ac = jobs_core.AsyncCoordinator(aredis.Redis(port=server.port), PREFIX)
        yield Ctx(client, c, ac, running, server.url)
        running.stop(failed=True)
        client.close()
    finally:
        server.cleanup()
    report("bad_input", {"bad_inputs_tried": sum(TRIED.values()), **TRIED})


@pytest.fixture(autouse=True)
def compat_settings(monkeypatch):
    monkeypatch.setattr(jobs_core, "CONN", None)
    monkeypatch.setattr(jobs_core, "GLOBAL_PREFIX", PREFIX)


def commands(client: redis.Redis) -> int:
    return client.info("stats")["total_commands_processed"]


def outcome(call: Callable[[], Any]) -> BaseException | None:
    """Run ``call`` (awaiting it if it returns a coroutine); the exception it raised, or None."""
    try:
        result = call()
        if inspect.iscoroutine(result):
            asyncio.run(result)
    except BaseException as exc:  # the cases assert on it
        return exc
    return None


def expect(x: Ctx, group: str, where: str, call: Callable[[], Any], error: type[BaseException], words: str) -> None:
    """``call`` raises ``error`` (a JobsError) saying ``words``, before anything reaches Redis."""
    TRIED[group] = TRIED.get(group, 0) + 1
    before = commands(x.client)
    exc = outcome(call)
    after = commands(x.client)
    assert exc is not None, f"{where}: accepted"
    assert isinstance(exc, error), f"{where}: {type(exc).__name__}: {exc}"
    assert isinstance(exc, JobsError), f"{where}: {type(exc).__name__} is not a JobsError"
    assert words.lower() in str(exc).lower(), f"{where}: {exc}"
    assert after == before + 1, f"{where}: {after - before - 1} commands reached Redis"


@pytest.fixture
def unchanged(ctx):
    """The whole keyspace is the same after the test."""
    before = keyspace(ctx.client, "")
    yield
    assert keyspace(ctx.client, "") == before


# -- names ----------------------------------------------------------------------------------------------

#: (id, value, error, words): refused everywhere a name or a job id goes
BAD_TEXT = [
    ("empty", "", InvalidName, "cannot be empty"),
    ("empty NG", NG, InvalidName, "cannot be empty"),  # the compat name generator, with no name yet
    ("int", 5, InvalidNameType, "must be a str, not int"),
    ("float", 1.5, InvalidNameType, "must be a str, not float"),
    ("None", None, InvalidNameType, "must be a str, not NoneType"),
    ("bytes", b"raw.events", InvalidNameType, "not bytes"),
    ("list", ["raw"], InvalidNameType, "not list"),
    ("huge ascii", "x" * 1025, InvalidName, "limited to 1024 UTF-8 bytes, this has 1025"),
    ("huge utf-8", "é" * 513, InvalidName, "this has 1026"),
    ("lone surrogate", "a\udcffb", InvalidName, "lone surrogate"),
    ("arrow", "a -> b", InvalidName, "lineage edge separator"),
    ("bare arrow", " -> ", InvalidName, "lineage edge separator"),
    ("newline", "a\nb", InvalidName, "control characters"),
    ("carriage return", "a\rb", InvalidName, "control characters"),
    ("tab", "a\tb", InvalidName, "control characters"),
    ("NUL", "a\x00b", InvalidName, "control characters"),
    ("DEL", "a\x7fb", InvalidName, "control characters"),
    ("terminal escape", "\x1b[2J", InvalidName, "control characters"),
]
#: refused as input and output names (job ids may use them)
RESERVED = [
    ("jobs:", "jobs:token", InvalidName, "collide with internal keys"),
    ("jobs: bare", "jobs:", InvalidName, "collide with internal keys"),
    ("ilock:", "ilock:x", InvalidName, "collide with internal keys"),
    ("olock:", "olock:x", InvalidName, "collide with internal keys"),
    ("jobs: via NG", NG["jobs:running"], InvalidName, "collide with internal keys"),
]
BAD_NAMES = BAD_TEXT + RESERVED


def name_entry_points(x: Ctx, bad: Any) -> dict[str, Callable[[], Any]]:
    """Every public entry point that takes an input or output name, called with ``bad``."""
    c, ac = x.c, x.ac
    return {
        "Coordinator.job(inputs)": lambda: c.job([bad], ["ok"], duration=5),
        "Coordinator.job(outputs)": lambda: c.job(["ok"], ["fine", bad], duration=5),
        "Coordinator.why_blocked(inputs)": lambda: c.why_blocked([bad], []),
        "Coordinator.why_blocked(outputs)": lambda: c.why_blocked([], [bad]),
        "Coordinator.wait_ready": lambda: c.wait_ready([bad], [], timeout=1),
        "Coordinator.output_info": lambda: c.output_info(bad),
        "Coordinator.written": lambda: c.written(["ok", bad]),
        "Coordinator.unlock(inputs)": lambda: c.unlock(inputs=[bad]),
        "Coordinator.unlock(outputs)": lambda: c.unlock(outputs=["held", bad]),
        "Coordinator.create_outputs": lambda: c.create_outputs(["new", bad]),
        "AsyncCoordinator.job(inputs)": lambda: ac.job([bad], [], duration=5),
        "AsyncCoordinator.job(outputs)": lambda: ac.job([], [bad], duration=5),
        "AsyncCoordinator.why_blocked": lambda: ac.why_blocked([], [bad]),
        "AsyncCoordinator.wait_ready": lambda: ac.wait_ready([], [bad], timeout=1),
        "AsyncCoordinator.output_info": lambda: ac.output_info(bad),
        "AsyncCoordinator.written": lambda: ac.written([bad]),
        "AsyncCoordinator.unlock": lambda: ac.unlock([bad], []),
        "AsyncCoordinator.create_outputs": lambda: ac.create_outputs([bad]),
        "ResourceManager(inputs)": lambda: jobs_core.ResourceManager([bad], [], 30, conn=x.client),
        "ResourceManager(outputs)": lambda: jobs_core.ResourceManager([], [bad], 30, conn=x.client),
        "ResourceManager.add_inputs": lambda: jobs_core.ResourceManager([], [], 30).add_inputs("ok", bad),
        "ResourceManager.add_outputs": lambda: jobs_core.ResourceManager([], [], 30).add_outputs(bad),
        "resource_manager()": lambda: jobs_core.resource_manager([], [bad], 30, conn=x.client)(lambda job: 1)(),
    }


def id_entry_points(x: Ctx, bad: Any) -> dict[str, Callable[[], Any]]:
    """Every public entry point that takes a job id (or the base of one), called with ``bad``.

    Where a job id is optional, None means the default id; so does an empty ``name`` (the base of
    a generated id, like jobs.py's), where an empty ``job_id`` is refused.
    """
    c, ac = x.c, x.ac
    if bad is None or bad == "":
        optional = {
            "Coordinator.job(job_id=)": lambda: c.job([], ["ok"], duration=5, job_id=bad),
            "AsyncCoordinator.job(job_id=)": lambda: ac.job([], ["ok"], duration=5, job_id=bad),
            "Coordinator.create_outputs(job_id=)": lambda: c.create_outputs(["ok"], job_id=bad),
            "AsyncCoordinator.create_outputs(job_id=)": lambda: ac.create_outputs(["ok"], job_id=bad),
        }
        return {
            "Coordinator.holder": lambda: c.holder(bad),
            "Coordinator.stop_job": lambda: c.stop_job(bad),
            "AsyncCoordinator.holder": lambda: ac.holder(bad),
            "AsyncCoordinator.stop_job": lambda: ac.stop_job(bad),
            **(optional if bad == "" else {}),
        }
    return {
        "Coordinator.job(job_id=)": lambda: c.job([], ["ok"], duration=5, job_id=bad),
        "Coordinator.job(name=)": lambda: c.job([], ["ok"], duration=5, name=bad),
        "Coordinator.holder": lambda: c.holder(bad),
        "Coordinator.stop_job": lambda: c.stop_job(bad),
        "Coordinator.create_outputs(job_id=)": lambda: c.create_outputs(["ok"], job_id=bad),
        "AsyncCoordinator.job(job_id=)": lambda: ac.job([], ["ok"], duration=5, job_id=bad),
        "AsyncCoordinator.job(name=)": lambda: ac.job([], ["ok"], duration=5, name=bad),
        "AsyncCoordinator.holder": lambda: ac.holder(bad),
        "AsyncCoordinator.stop_job": lambda: ac.stop_job(bad),
        "AsyncCoordinator.create_outputs(job_id=)": lambda: ac.create_outputs(["ok"], job_id=bad),
    }


@pytest.mark.parametrize("case", BAD_NAMES, ids=[r[0] for r in BAD_NAMES])
def test_bad_names_everywhere(ctx, unchanged, case):
    _, bad, error, words = case
    for where, call in name_entry_points(ctx, bad).items():
        expect(ctx, "names", where, call, error, words)
    if case in BAD_TEXT and not isinstance(bad, list):
        for where, call in id_entry_points(ctx, bad).items():
            expect(ctx, "job ids", where, call, error, words)


@pytest.mark.parametrize("where,call", [
    ("job: a str, not a list", lambda c: c.job("raw.events", [], duration=5)),
    ("job: bytes, not a list", lambda c: c.job([], b"raw", duration=5)),
    ("job: None", lambda c: c.job(None, [], duration=5)),
    ("job: an int", lambda c: c.job([], 5, duration=5)),
    ("why_blocked: a str", lambda c: c.why_blocked("raw.events")),
    ("unlock: a str", lambda c: c.unlock(outputs="held")),
    ("written: a str", lambda c: c.written("ok")),
    ("create_outputs: a str", lambda c: c.create_outputs("ok")),
    ("wait_ready: an NG", lambda c: c.wait_ready(NG.a.b, timeout=1)),
    ("ResourceManager: a str", lambda c: jobs_core.ResourceManager("raw.events", [], 30)),
    ("ResourceManager: a generator", lambda c: jobs_core.ResourceManager([], (n for n in ["x"]), 30)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_name_lists_that_are_not_lists(ctx, unchanged, where, call):
    expect(ctx, "name lists", where, lambda: call(ctx.c), InvalidType, "must be a list")


def test_unusual_but_valid_names_are_kept_exactly(ctx):
    """Not bad input: quotes, backslashes, non-ASCII, arrows without spaces, near-reserved prefixes,
    exactly 1024 bytes. Each is accepted and comes back exactly (in a namespace of its own)."""
    names = ['quoted "double"', "quoted 'single'", "back\\slash", "café.日本.🙂", "עברית", "e\u0301",
             "a->b", "->", "a ->b", "-> a", "jobs", "JOBS:x", " jobs:x", "x.jobs:y", "olock", "é" * 512, "x" * 1024,
             "% *?[]{}"]
    prefix = "valid:"
    c = jobs_core.Coordinator(ctx.client, prefix)
    with c.job([], names, duration=5) as job:
        assert set(c.running_jobs()[0].outputs) == set(names)
    with c.job(names, ["sink"], duration=5):
        assert c.output_info(names[3]).readers[0].job_id != job.id
    assert c.written(names) == {n: job.id for n in names}
    assert {c.output_info(n).name for n in names} == set(names)
    TRIED["valid names"] = len(names)
    ctx.client.delete(*ctx.client.keys(prefix + "*"))


# -- durations and waits -----------------------------------------------------------------------------

NOT_SECONDS = [
    ("str", "10", InvalidType, "not str"),
    ("None", None, InvalidType, "not NoneType"),
    ("bool", True, InvalidType, "not bool"),
    ("complex", 1j, InvalidType, "not complex"),
    ("Decimal", decimal.Decimal("5"), InvalidType, "not Decimal"),
    ("list", [5], InvalidType, "not list"),
    ("NaN", math.nan, InvalidArgument, "got nan"),
    ("inf", math.inf, InvalidArgument, "got inf"),
    ("-inf", -math.inf, InvalidArgument, "got -inf"),
    ("negative", -1, InvalidArgument, "got -1"),
    ("over ten years", 1e12, InvalidArgument, "ten years"),
]
NOT_POSITIVE = [("zero", 0, InvalidArgument, "at least 0.001"), ("tiny", 0.0001, InvalidArgument, "at least")]


def seconds_entry_points(x: Ctx, bad: Any, positive: bool) -> dict[str, Callable[[], Any]]:
    """Entry points taking a number of seconds: ``positive`` ones refuse 0, the others (waits) allow it."""
    c, ac, running = x.c, x.ac, x.running
    url = x.url
    if positive and bad is None:  # None is "no limit" or "the default" for these, refused by the others
        return {
            "Coordinator.job(duration=)": lambda: c.job([], ["ok"], duration=bad),
            "Coordinator(poll=)": lambda: jobs_core.Coordinator(x.client, PREFIX, poll=bad),
            "AsyncCoordinator.job(duration=)": lambda: ac.job([], ["ok"], duration=bad),
            "ResourceManager(duration)": lambda: jobs_core.ResourceManager([], ["ok"], bad),
        }
    if positive:
        return {
            "Coordinator.job(duration=)": lambda: c.job([], ["ok"], duration=bad),
            "Coordinator.job(max_hold=)": lambda: c.job([], ["ok"], duration=5, max_hold=bad),
            "Coordinator.job(output_ttl=)": lambda: c.job([], ["ok"], duration=5, output_ttl=bad),
            "Coordinator(output_ttl=)": lambda: jobs_core.Coordinator(x.client, PREFIX, output_ttl=bad),
            "Coordinator(poll=)": lambda: jobs_core.Coordinator(x.client, PREFIX, poll=bad),
            "Coordinator.from_url(poll=)": lambda: jobs_core.Coordinator.from_url(url, PREFIX, poll=bad),
            "Coordinator.create_outputs(ttl=)": lambda: c.create_outputs(["ok"], ttl=bad),
            "Job.detach(lease=)": lambda: running.detach(lease=bad),
            "AsyncCoordinator.job(duration=)": lambda: ac.job([], ["ok"], duration=bad),
            "AsyncCoordinator(output_ttl=)": lambda: jobs_core.AsyncCoordinator(ac.client, PREFIX, output_ttl=bad),
            "AsyncCoordinator.create_outputs(ttl=)": lambda: ac.create_outputs(["ok"], ttl=bad),
            "ResourceManager(duration)": lambda: jobs_core.ResourceManager([], ["ok"], bad),
            "resource_manager(duration)": lambda: jobs_core.resource_manager([], ["ok"], bad, conn=x.client)(
                lambda job: 1)(),
        }
    return {
        "Coordinator.job(wait=)": lambda: c.job([], ["ok"], duration=5, wait=bad),
        "Coordinator.wait_ready(timeout=)": lambda: c.wait_ready([], ["ok"], timeout=bad),
        "AsyncCoordinator.job(wait=)": lambda: ac.job([], ["ok"], duration=5, wait=bad),
        "AsyncCoordinator.wait_ready(timeout=)": lambda: ac.wait_ready([], ["ok"], timeout=bad),
        "ResourceManager(wait)": lambda: jobs_core.ResourceManager([], ["ok"], 30, wait=bad),
    }


@pytest.mark.parametrize("case", NOT_SECONDS + NOT_POSITIVE, ids=[r[0] for r in NOT_SECONDS + NOT_POSITIVE])
def test_bad_durations_and_waits(ctx, unchanged, case):
    label, bad, error, words = case
    for where, call in seconds_entry_points(ctx, bad, positive=True).items():
        expect(ctx, "durations", where, call, error, words)
    if case in NOT_SECONDS and label not in ("None",):  # a wait of None means 0, as in jobs.py
        if label == "bool":
            bad = True  # False means 0 too
        for where, call in seconds_entry_points(ctx, bad, positive=False).items():
            expect(ctx, "waits", where, call, error, words)


@pytest.mark.parametrize("options,error,words", [
    ({"heartbeat": 0}, InvalidArgument, "heartbeat must be"),
    ({"heartbeat": -1}, InvalidArgument, "heartbeat must be"),
    ({"heartbeat": "often"}, InvalidType, "heartbeat must be"),
    ({"heartbeat": 5}, InvalidArgument, "shorter than the lease"),
    ({"heartbeat": 9}, InvalidArgument, "shorter than the lease"),
    ({"on_lost": "print"}, InvalidType, "on_lost must be callable"),
    ({"on_lost": 5}, InvalidType, "on_lost must be callable"),
], ids=str)
def test_bad_job_options(ctx, unchanged, options, error, words):
    for where, make in (("Coordinator.job", ctx.c.job), ("AsyncCoordinator.job", ctx.ac.job)):
        expect(ctx, "job options", where, lambda make=make: make([], ["ok"], duration=5, **options), error, words)


@pytest.mark.parametrize("call,error,words", [
    (lambda x: jobs_core.ResourceManager([], ["ok"], 30, output_duration=0), InvalidArgument, "> 0"),
    (lambda x: jobs_core.ResourceManager([], ["ok"], 30, output_duration=1.5), InvalidType, "integer"),
    (lambda x: jobs_core.ResourceManager([], ["ok"], 30, output_duration="60"), InvalidType, "integer"),
    (lambda x: x.c.edges(after="yesterday"), InvalidArgument, "yesterday"),
    (lambda x: x.c.edges(before="2026-13-01"), InvalidArgument, "2026-13-01"),
    (lambda x: x.c.edges(before=object()), InvalidType, "time bound"),
    (lambda x: x.ac.edges(after=[1]), InvalidType, "time bound"),
    (lambda x: x.c.stop_job("running", token=0), InvalidType, "positive int"),
    (lambda x: x.c.stop_job("running", token="1"), InvalidType, "positive int"),
    (lambda x: x.c.stop_job("running", token=True), InvalidType, "positive int"),
    (lambda x: x.ac.stop_job("running", token=-3), InvalidType, "positive int"),
], ids=lambda v: "" if callable(v) else str(v))
def test_other_bad_arguments(ctx, unchanged, call, error, words):
    expect(ctx, "other arguments", str(call), lambda: call(ctx), error, words)


# -- repairs: the state they were shown (expected=), and the names limit -------------------------------

#: ``expected`` values that are not the OutputInfo records of every name (filled in by the test).
BAD_EXPECTED = ["not records", "one record", "a str", "records of other names", "mixed"]


@pytest.mark.parametrize("case", BAD_EXPECTED)
def test_bad_expected_states(ctx, unchanged, case):
    c, ac = ctx.c, ctx.ac
    info = jobs_core.OutputInfo("other", 0.0, False)
    bad, error, words = {
        "not records": (42, InvalidType, "list of OutputInfo"),
        "one record": (info, InvalidType, "list of OutputInfo"),
        "a str": ("held", InvalidType, "list of OutputInfo"),
        "records of other names": ([info], InvalidArgument, "no OutputInfo for 'held'"),
        "mixed": ([info, {"name": "held"}], InvalidType, "OutputInfo records, not dict"),
    }[case]
    for where, call in {
        "Coordinator.unlock": lambda: c.unlock(outputs=["held"], expected=bad),
        "Coordinator.create_outputs": lambda: c.create_outputs(["held"], expected=bad),
        "AsyncCoordinator.unlock": lambda: ac.unlock(["held"], expected=bad),
        "AsyncCoordinator.create_outputs": lambda: ac.create_outputs(["held"], expected=bad),
    }.items():
        expect(ctx, "expected states", where, call, error, words)


def test_too_many_names(ctx, unchanged):
    c, ac = ctx.c, ctx.ac
    names = [f"n.{i}" for i in range(jobs_core.MAX_NAMES + 1)]
    half = names[: jobs_core.MAX_NAMES // 2 + 1]
    other = [f"m.{i}" for i in range(jobs_core.MAX_NAMES // 2)]
    for where, call in {
        "Coordinator.job": lambda: c.job(half, other),
        "AsyncCoordinator.job": lambda: ac.job(names, []),
        "Coordinator.unlock": lambda: c.unlock(half, other),
        "Coordinator.create_outputs": lambda: c.create_outputs(names),
        "AsyncCoordinator.why_blocked": lambda: ac.why_blocked([], names),
    }.items():
        expect(ctx, "too many names", where, call, InvalidArgument, f"at most {jobs_core.MAX_NAMES}")


# -- jobs: tokens, leases, state -----------------------------------------------------------------------

BAD_TOKENS = [0, -1, True, "1", 1.5, None, 2**70 * 1.0]


@pytest.mark.parametrize("token", BAD_TOKENS, ids=repr)
def test_bad_tokens(ctx, unchanged, token):
    expect(ctx, "tokens", "Job.resume", lambda: ctx.c.job([], ["ok"], duration=5, job_id="r").resume(token),
           InvalidType, "positive int")
    expect(ctx, "tokens", "AsyncJob.resume", lambda: ctx.ac.job([], ["ok"], duration=5, job_id="r").resume(token),
           InvalidType, "positive int")


def test_calls_on_a_job_that_is_not_running(ctx, unchanged):
    c, ac = ctx.c, ctx.ac
    job = c.job([], ["ok"], duration=5)
    for where, call in {"refresh": job.refresh, "check": job.check, "detach": job.detach}.items():
        expect(ctx, "job state", f"Job.{where}", call, NotRunning, "is not running")
    ajob = ac.job([], ["ok"], duration=5)
    for where, call in {"refresh": ajob.refresh, "check": ajob.check, "detach": ajob.detach}.items():
        expect(ctx, "job state", f"AsyncJob.{where}", call, NotRunning, "is not running")
    expect(ctx, "job state", "Job.resume while running", lambda: ctx.running.resume(1), NotRunning, "already running")
    # harmless repeats: no error, and nothing sent
    before = commands(ctx.client)
    job.stop()
    ctx.running.start()
    asyncio.run(ajob.stop())
    assert commands(ctx.client) == before + 1


# -- connections and clients ------------------------------------------------------------------------------


class FakeCluster:
    """Has what a cluster client has for jobs_core's checks (the real one connects when made)."""

    nodes_manager = object()

    def register_script(self, script: str) -> None: ...

    def pipeline(self) -> None: ...

    def pubsub(self) -> None: ...

    def execute_command(self, *args: Any) -> None: ...


def client_cases(x: Ctx) -> dict[str, tuple[Callable[[], Any], str]]:
    async_client = aredis.Redis(port=x.client.connection_pool.connection_kwargs["port"])
    return {
        "Coordinator(None)": (lambda: jobs_core.Coordinator(None), "no Redis connection"),
        "AsyncCoordinator(None)": (lambda: jobs_core.AsyncCoordinator(None), "no Redis connection"),
        "Coordinator(object())": (lambda: jobs_core.Coordinator(object()), "expected a redis-py or valkey-py client"),
        "Coordinator(url string)": (lambda: jobs_core.Coordinator(x.url), "expected a redis-py or valkey-py client"),
        "Coordinator(ConnectionPool)": (lambda: jobs_core.Coordinator(x.client.connection_pool), "got ConnectionPool"),
        "Coordinator(PubSub)": (lambda: jobs_core.Coordinator(x.client.pubsub()), "got PubSub"),
        "Coordinator(asyncio client)": (lambda: jobs_core.Coordinator(async_client), "use jobs_core.AsyncCoordinator"),
        "AsyncCoordinator(sync client)": (lambda: jobs_core.AsyncCoordinator(x.client), "this is a sync client"),
        "Coordinator(cluster, no hash tag)": (lambda: jobs_core.Coordinator(FakeCluster(), "jobs:"), "hash tag"),
        "AsyncCoordinator(cluster)": (lambda: jobs_core.AsyncCoordinator(FakeCluster(), "{jobs}"), "sync client"),
        "Coordinator.from_url(None)": (lambda: jobs_core.Coordinator.from_url(None), "a URL such as"),
        "Coordinator.from_url('')": (lambda: jobs_core.Coordinator.from_url(""), "a URL such as"),
        "Coordinator.from_url(5)": (lambda: jobs_core.Coordinator.from_url(5), "a URL such as"),
        "Coordinator.from_url(http)": (lambda: jobs_core.Coordinator.from_url("http://localhost/"), "bad Redis URL"),
        "Coordinator.from_url(bad port)": (lambda: jobs_core.Coordinator.from_url("redis://h:port/0"), "bad Redis URL"),
        "AsyncCoordinator.from_url(ftp)": (lambda: jobs_core.AsyncCoordinator.from_url("ftp://h"), "bad Redis URL"),
        "ResourceManager.start()": (lambda: jobs_core.ResourceManager([], ["ok"], 30).start(), "connection to Redis"),
        "ResourceManager.can_run()": (lambda: jobs_core.ResourceManager([], ["ok"], 30).can_run(), "connection"),
        "with ResourceManager": (lambda: jobs_core.ResourceManager([], ["ok"], 30).__enter__(), "connection"),
        "resource_manager() call": (lambda: jobs_core.resource_manager([], ["ok"], 30)(lambda job: job.start())(),
                                    "connection to Redis"),
        "get_jobs(None)": (lambda: jobs_core.get_jobs(None), "connection to Redis"),
        "get_job_io(id)": (lambda: jobs_core.get_job_io("running"), "connection to Redis"),
        "edges(None)": (lambda: jobs_core.edges(None), "connection to Redis"),
    }


def test_missing_connections_and_wrong_clients(ctx, unchanged, monkeypatch):
    monkeypatch.delenv("JOBS_REDIS_URL", raising=False)
    cases = client_cases(ctx)
    cases["Coordinator.from_env()"] = (jobs_core.Coordinator.from_env, "no Redis URL for jobs_core: set one in any "
                                                                        "of: $JOBS_REDIS_URL")
    cases["AsyncCoordinator.from_env()"] = (jobs_core.AsyncCoordinator.from_env, "no Redis URL for jobs_core: set "
                                                                                  "one in any of: $JOBS_REDIS_URL")
    for where, (call, words) in cases.items():
        expect(ctx, "connections", where, call, ConfigurationError, words)
        assert isinstance(outcome(call), RuntimeError), where  # what a caller would catch


def test_bad_prefixes(ctx, unchanged):
    for bad, error, words in [(5, InvalidType, "prefix must be a str"), (b"p:", InvalidType, "not bytes"),
                              ("a\nb", InvalidName, "control"), ("a -> b", InvalidName, "lineage"),
                              ("\udcff", InvalidName, "surrogate"), ("p" * 2000, InvalidName, "1024")]:
        for make in (jobs_core.Coordinator, jobs_core.AsyncCoordinator):
            client = ctx.client if make is jobs_core.Coordinator else ctx.ac.client
            expect(ctx, "prefixes", f"{make.__name__}(prefix={bad!r:.20})",
                   lambda make=make, client=client, bad=bad: make(client, bad), error, words)


# -- the command line ------------------------------------------------------------------------------------

CLI_DRIVER = r"""
import contextlib, io, json, sys
from jobs_core.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    results.append({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


def test_cli_refuses_bad_names_without_touching_redis(ctx, unchanged):
    """The ``jobs-core`` command in a subprocess, each bad name where the command takes one (bytes and
    non-strings cannot come from a command line). tests/test_cli.py covers bad options."""
    bad_names = [(v, w) for _, v, _, w in BAD_NAMES if isinstance(v, str)]
    argvs, expected = [], []
    for name, words in bad_names:
        for argv in (["start", "j", "-o", name, "--duration", "5"], ["start", "j", "-i", name, "-o", "x",
                     "--duration", "5"], ["show", name], ["why-blocked", "-i", "ok", name],
                     ["why-blocked", "-o", name], ["unlock", "--yes", "-o", name], ["unlock", "--yes", "-i", name],
                     ["create", "--yes", name]):
            argvs.append(["--url", ctx.url, "--prefix", PREFIX, *argv])
            expected.append(words)
    for name, words in [(v, w) for _, v, _, w in BAD_TEXT if isinstance(v, str)]:
        argvs.append(["--url", ctx.url, "--prefix", PREFIX, "start", name, "-o", "x", "--duration", "5"])
        expected.append(words)
    before = commands(ctx.client)
    results = cli(argvs)
    after = commands(ctx.client)
    for result, words in zip(results, expected):
        where = " ".join(result["argv"][4:])
        assert result["code"] == 2, (where, result)
        assert words.lower() in result["err"].lower() and "nothing changed" in result["err"], (where, result["err"])
        assert result["out"] == "" and "Traceback" not in result["err"], (where, result)
    TRIED["cli"] = len(argvs)
    assert after == before + 1  # no command reached Redis


def cli(argvs: list[list[str]]) -> list[dict[str, Any]]:
    """Run ``jobs-core`` once per argv, all in one subprocess (one interpreter start)."""
    r = subprocess.run([sys.executable, "-c", CLI_DRIVER, json.dumps(argvs)], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# -- found while writing this table, and fixed ---------------------------------------------------------


@pytest.mark.parametrize("conn", ["redis://localhost:6379/0", object()], ids=["url string", "object"])
def test_compat_with_a_wrong_connection(ctx, unchanged, monkeypatch, conn):
    monkeypatch.setattr(jobs_core, "CONN", conn)
    expect(ctx, "compat", "ResourceManager.start()", lambda: jobs_core.ResourceManager([], ["ok"], 30).start(),
           ConfigurationError, "redis-py or valkey-py client")


def test_compat_suffix_must_be_text(ctx, unchanged):
    expect(ctx, "compat", "ResourceManager(suffix=5)",
           lambda: jobs_core.ResourceManager([], ["ok"], 30, suffix=5).identifier, InvalidType, "suffix")


def test_a_pipeline_is_not_a_client(ctx, unchanged):
    expect(ctx, "clients", "Coordinator(pipeline)", lambda: jobs_core.Coordinator(ctx.client.pipeline()),
           ConfigurationError, "client")


def test_stop_job_validates_before_reading(ctx, unchanged):
    expect(ctx, "stop_job", "Coordinator.stop_job(output_ttl=-1)", lambda: ctx.c.stop_job("running", output_ttl=-1),
           InvalidArgument, "output_ttl")


def test_edges_refuse_nan(ctx, unchanged):
    expect(ctx, "edges", "Coordinator.edges(before=nan)", lambda: ctx.c.edges(before=math.nan), InvalidArgument,
           "nan")


@pytest.mark.parametrize("argv", [["create", "--yes", "ok", "a\nb"], ["create", "--yes", "ok", "--writer", "a -> b"],
                                  ["unlock", "--yes", "-o", "held", "-o", "jobs:token"]], ids=["create", "writer",
                                                                                                "unlock"])
def test_cli_validates_every_name_before_reading(ctx, unchanged, argv):
    before = commands(ctx.client)
    (result,) = cli([["--url", ctx.url, "--prefix", PREFIX, *argv]])
    assert result["code"] == 2 and "nothing changed" in result["err"], result
    assert commands(ctx.client) == before + 1


@pytest.mark.parametrize("bad", ["a\x85b", "\x9b2J"], ids=["NEL", "CSI"])
def test_c1_control_characters_are_refused(ctx, unchanged, bad):
    expect(ctx, "names", "Coordinator.job(outputs)", lambda: ctx.c.job([], [bad], duration=5), InvalidName,
           "control characters")
