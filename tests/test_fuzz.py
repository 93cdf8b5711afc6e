"""Fuzzing (hypothesis) of name handling and of script replies.

* Names: :func:`jobs_core.names.check_name` / ``check_job_id`` against an
  independent oracle of the README's rules, over arbitrary Unicode (lone
  surrogates included) mixed with the fragments that matter (`` -> ``,
  ``jobs:``, control characters, digit runs, 1024-byte edges); the lineage
  fold; the key layout built from accepted names (every key distinct, none in
  the internal key space); lineage edges split back into the names they
  were made of; and accepted names through real scripts on a real server.
* Replies: ``parse_start``/``parse_refresh``/``parse_stop`` against replies
  built from their Lua headers' contract, in both reply modes (bytes, or
  ``decode_responses``), ``split_io`` on jobs.py's records, and the wake-up
  messages the scripts publish (grants by nonce, names as JSON).

CI runs each property with a bounded number of examples; ``-m long`` runs
them again with many more.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jobs_core
from jobs_core import InvalidName, InvalidNameType, ResourceUnavailable, lineage
from jobs_core.keys import Keys
from jobs_core.listener import _Registration, _Routes
from jobs_core.names import ARROW, MAX_NAME_BYTES, check_job_id, check_name, check_names, fold
from jobs_core.plan import Plan, StartReply, StopReply, parse_refresh, parse_start, parse_stop
from jobs_core.protocol import split_io
from jobs_core.waiting import Grant, Retry

from .reliability import report

#: hypothesis warns when the global ``random`` state changes while it draws an example; a thread
#: another test left behind (redis-py's retry backoff draws its jitter there) can do that, and
#: has nothing to do with the examples drawn here
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")

EXAMPLES: dict[str, int] = {}

FRAGMENTS = [" -> ", "->", " ->", "-> ", "jobs:", "ilock:", "olock:", "jobs", ":", "\n", "\t", "\r", "\x00", "\x1b",
             "\x7f", "\x85", "\x9b", "\u2028", "é", "日本", "🙂", "e\u0301", "\ud800", "\udfff", "0", "2026-11-27",
             "-", ">", " ", "*", '"', "'", "\\", "%", "{jobs}"]
#: Any text: every code point (lone surrogates too), with the fragments that matter mixed in.
anything = st.lists(st.one_of(st.text(st.characters(exclude_categories=()), max_size=4), st.sampled_from(FRAGMENTS)),
                    max_size=8).map("".join)
#: Around the length limit, in ASCII and in two- and four-byte characters.
long_text = st.tuples(st.integers(250, 1100), st.sampled_from(["x", "é", "🙂"]), st.sampled_from(["", "é", "x"])
                      ).map(lambda t: t[1] * (t[0] if t[1] == "x" else t[0] // (2 if t[1] == "é" else 4)) + t[2])
texts = st.one_of(anything, long_text, st.sampled_from(FRAGMENTS))
non_text = st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=8), st.lists(st.text(), max_size=2))


def oracle(value: Any, reserved: bool, job: bool = False) -> str | None:
    """The README's rules, written independently: None if accepted, else the words of the refusal."""
    if not isinstance(value, (str, jobs_core.TYPE_NG)):
        return "must be a str"
    value = str(value)
    if value == "":
        return "cannot be empty"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "lone surrogate"
    if size > MAX_NAME_BYTES:
        return f"limited to {MAX_NAME_BYTES} UTF-8 bytes"
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in value):  # C0, DEL and C1
        return "control characters"
    if ARROW in value:
        return "lineage edge separator"
    if job and (value.startswith("-> ") or value.endswith(" ->")):
        return "lineage edges would be ambiguous"
    if reserved and value.startswith(("jobs:", "ilock:", "olock:")):
        return "collide with internal keys"
    return None


def agrees(check: Callable[[Any], str], value: Any, reserved: bool, job: bool = False) -> None:
    want = oracle(value, reserved, job)
    try:
        got = check(value)
    except InvalidName as exc:
        assert isinstance(exc, InvalidNameType) == (want == "must be a str"), (value, exc)
        assert want is not None and want in str(exc), (value, str(exc), want)
        return
    assert want is None, (value, want)
    assert got == str(value) and type(got) is str


# -- the properties -----------------------------------------------------------------------------------


def name_rules(value: Any) -> None:
    agrees(check_name, value, reserved=True)
    agrees(lambda v: check_job_id(v, "job id"), value, reserved=False, job=True)


def acceptable(value: Any) -> bool:
    return oracle(value, True) is None


def name_lists(values: list[Any]) -> None:
    """A list is accepted iff every member is, keeping the first of repeats, in order."""
    try:
        got = check_names(values, "outputs")
    except InvalidName as exc:
        assert not all(acceptable(v) for v in values), (values, exc)
        return
    assert all(acceptable(v) for v in values), values
    assert list(got) == list(dict.fromkeys(str(v) for v in values))


def expected_fold(value: str) -> str:
    """Every run of an ASCII digit followed by ASCII digits and dashes becomes one ``*``."""
    out, i = [], 0
    while i < len(value):
        if "0" <= value[i] <= "9":
            while i < len(value) and ("0" <= value[i] <= "9" or value[i] == "-"):
                i += 1
            out.append("*")
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def folding(value: str) -> None:
    folded = fold(value)
    assert folded == expected_fold(value)
    assert fold(folded) == folded and len(folded) <= len(value)
    assert (ARROW in folded) <= (ARROW in value)  # folding never makes an arrow


def accepted(strategy: st.SearchStrategy, reserved: bool = True, job: bool = False) -> st.SearchStrategy:
    return strategy.filter(lambda v: oracle(v, reserved, job) is None)


def key_layout(prefix: str, names: list[str], job_id: str) -> None:
    """Keys built from accepted names: all distinct, and none in the internal ``jobs:`` space
    except the ones meant to be (the per-name line and facts)."""
    k = Keys(prefix)
    per_name = {n: [k.output(n), k.olock(n), k.ilock(n), k.queue(n), k.facts(n)] for n in names}
    fixed = [k.running, k.token, k.graph_input, k.graph_output, k.waiting, k.job(job_id), k.holder(job_id),
             k.waiter("00ff00ff00ff00ff"), k.idqueue(job_id), k.op("00ff")]
    every = [key for keys in per_name.values() for key in keys] + fixed
    assert len(set(every)) == len(every)
    assert all(key.startswith(prefix) for key in every)
    for n in names:
        assert not k.output(n).startswith(prefix + "jobs:")
    plan = Plan(k, job_id, names[:1], names[1:], lease=1, renews=True, overwrite=True, history=True,
                output_ttl=None, host="h", pid=1)
    assert plan.keys == (k.running, k.guard)  # the scripts derive every other key (lib.lua)
    assert plan.start_args("n")[-len(names):] == names == plan.stop_args(1, True, "n")[-len(names):]
    assert [plan.name(i) for i in range(len(names) + 1)] == [job_id, *names]


def edges_split_back(inputs: list[str], outputs: list[str], job_id: str) -> None:
    """The lineage graph gives back the (folded) names the edges were made of (as start.lua makes them)."""
    j = fold(job_id)
    graph = lineage.build([f"{fold(n)} -> {j}" for n in inputs], [f"{j} -> {fold(n)}" for n in outputs])
    want = {(fold(n), "data", j, "job") for n in inputs} | {(j, "job", fold(n), "data") for n in outputs}
    got = {(e.source.name, e.source.kind, e.target.name, e.target.kind) for e in graph.edges}
    assert got == want


def replies(decode: bool, inputs: list[str], outputs: list[str], job_id: str, blockers: list[tuple],
            now: float, lost: list[int], status: int, state: str) -> None:
    """parse_* against replies shaped as each script's header says, in either reply mode."""
    def s(v: str) -> Any:
        return v if decode else v.encode("utf-8", "surrogatepass")

    plan = Plan(Keys("p:"), job_id, inputs, outputs, lease=1, renews=True, overwrite=True, history=False,
                output_ttl=None, host="h", pid=1)
    nows = f"{now:.6f}"
    n = len(inputs) + len(outputs)
    blockers = [(reason, min(i, n), holder, until, wakes) for reason, i, holder, until, wakes in blockers]
    final = any(b[0] == "output_exists" for b in blockers)
    reply = [0, s(nows), int(final), 41]
    for reason, i, holder, until, wakes in blockers:
        reply += [s(reason), i, s(holder), s("" if until is None else f"{until:.6f}"), wakes]
    got = parse_start(reply, plan)
    assert (got.started, got.token, got.now, got.final) == (False, 41, float(nows), final)
    assert got.polls == any(not wakes for *_, wakes in blockers)
    for b, (reason, i, holder, until, _) in zip(got.blockers, blockers, strict=True):
        assert (b.reason, b.name) == (reason, plan.name(i))
        if holder:
            assert b.holder.job_id == holder
            assert b.holder.expires == (None if until is None else float(f"{until:.6f}"))
        else:
            assert b.holder is None
    assert parse_start([1, 17, s(nows), 2500], plan) == StartReply(True, 17, float(nows), 2.5)
    indices = sorted({min(i, n) for i in lost if n})
    indices = [i for i in indices if i >= 1]
    got_now, reasons = parse_refresh([0 if indices else 1, s(nows), *indices], plan)
    names = [*inputs, *outputs]
    want = {}
    for i in indices:
        want.setdefault("input_lock_lost" if i <= len(inputs) else "output_lock_lost", []).append(names[i - 1])
    assert got_now == float(nows) and reasons == want
    if status == 3:
        assert parse_stop([3, s(nows), s(state), 1], plan) == StopReply(3, state, {}, True)
    else:
        assert parse_stop([status, s(nows), s(state), *indices], plan) == StopReply(status, state, want)


def io_records(inputs: list[str], outputs: list[str], as_bytes: bool) -> None:
    """``jobs:running:<id>`` as jobs.py writes it (any names a jobs.py client may use, not empty)."""
    raw = json.dumps([*inputs, "", *outputs])
    assert split_io(raw.encode() if as_bytes else raw) == (tuple(inputs), tuple(outputs))


def wake_messages(names: list[str], watched: list[str], grants: list[tuple[str, int, int]]) -> None:
    """What the scripts publish, read back: names as a JSON array on the namespace's channel (any
    name, newlines included), grants and nudges by nonce on a coordinator's own channel."""
    by_name = _Routes(by_nonce=False)
    reg = _Registration(frozenset(watched))
    by_name.add(reg)
    got = list(by_name.route(json.dumps(names)))
    assert got == ([(reg, Retry())] if set(names) & set(watched) else [])
    assert list(by_name.route("not json [")) == []
    by_nonce = _Routes(by_nonce=True)
    regs = {nonce: _Registration(nonce) for nonce, _, _ in grants}
    for r in regs.values():
        by_nonce.add(r)
    lines = [f"{nonce}\t{token}\t{lease}" if token else nonce for nonce, token, lease in grants]
    routed = list(by_nonce.route("\n".join(lines + ["unknown-nonce\t1\t2"])))
    want = [(regs[nonce], Grant(token, lease) if token else Retry()) for nonce, token, lease in grants]
    assert routed == want


# accepted names, for the properties that need them
good_names = accepted(texts)
good_ids = accepted(texts, reserved=False, job=True)
plain_texts = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20)

PROPERTIES: dict[str, tuple[Callable[..., None], dict[str, st.SearchStrategy]]] = {
    "name rules": (name_rules, {"value": st.one_of(texts, non_text)}),
    "name lists": (name_lists, {"values": st.lists(st.one_of(texts, texts, non_text), max_size=5)}),
    "folding": (folding, {"value": texts}),
    "key layout": (key_layout, {"prefix": st.sampled_from(["", "p:", "{jobs}:", "jobs:"]),
                                "names": st.lists(good_names, min_size=1, max_size=6, unique=True),
                                "job_id": good_ids}),
    "lineage edges": (edges_split_back, {"inputs": st.lists(good_names, max_size=4, unique=True),
                                         "outputs": st.lists(good_names, max_size=4, unique=True),
                                         "job_id": good_ids}),
    "script replies": (replies, {
        "decode": st.booleans(),
        "inputs": st.lists(good_names, max_size=3, unique=True),
        "outputs": st.lists(good_names, min_size=1, max_size=3, unique=True),
        "job_id": good_ids,
        "blockers": st.lists(st.tuples(
            st.sampled_from(["input_missing", "output_exists", "output_locked", "output_used", "output_queued",
                             "input_queued", "job_running"]),
            st.integers(0, 6), st.one_of(st.just(""), good_ids),
            st.one_of(st.none(), st.floats(0, 4e9, allow_nan=False)), st.sampled_from([0, 1])), max_size=5),
        "now": st.floats(1e9, 4e9, allow_nan=False),
        "lost": st.lists(st.integers(0, 6), max_size=6),
        "status": st.sampled_from([0, 1, 2, 3]),
        "state": st.sampled_from(["written", "failed", "lost"])}),
    "running records": (io_records, {"inputs": st.lists(plain_texts, max_size=4),
                                     "outputs": st.lists(plain_texts, max_size=4), "as_bytes": st.booleans()}),
    "wake-up messages": (wake_messages, {
        "names": st.lists(st.one_of(good_names, plain_texts, st.just("a\nb")), min_size=1, max_size=5),
        "watched": st.lists(st.one_of(good_names, st.just("a\nb")), max_size=3),
        "grants": st.lists(st.tuples(st.text("0123456789abcdef", min_size=16, max_size=16),
                                     st.integers(0, 2**40), st.integers(1, 10**6)),
                           max_size=4, unique_by=lambda g: g[0])}),
}


def fuzz(name: str, examples: int) -> None:
    prop, strategies = PROPERTIES[name]
    ran = [0]

    def counted(**kwargs: Any) -> None:
        ran[0] += 1
        prop(**kwargs)

    counted.__name__ = prop.__name__  # the example database keys by the test's name
    test = settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.filter_too_much,
                                                                                  HealthCheck.too_slow])(
        given(**strategies)(counted))
    test()
    EXAMPLES[name] = EXAMPLES.get(name, 0) + ran[0]


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield
    report("fuzz", {"examples_total": sum(EXAMPLES.values()), **EXAMPLES})


@pytest.mark.parametrize("name", list(PROPERTIES))
def test_fuzz(name):
    fuzz(name, examples=300)


@pytest.mark.long
@pytest.mark.timeout(3600)  # the project's 300 s limit is for the CI-sized runs
def test_fuzz_long():
    for name in PROPERTIES:
        fuzz(name, examples=20_000)


@pytest.mark.parametrize("job_id", ["-> sneaky", "tail ->", "-> ", " ->"])
def test_job_ids_that_would_make_lineage_ambiguous_are_refused(job_id):
    """``raw -> -> sneaky`` and ``tail -> -> out`` could be split at either arrow."""
    with pytest.raises(InvalidName, match="ambiguous"):
        check_job_id(job_id)
    with pytest.raises(InvalidName, match="ambiguous"):
        jobs_core.Coordinator(redis.Redis(port=1)).job([], ["out"], duration=1, job_id=job_id)


@pytest.mark.parametrize("job_id", ["->", "->sneaky", "tail->", "a ->b", "a-> b", "- > x"])
def test_job_ids_near_the_arrow_split_back(job_id):
    edges_split_back(["raw", "x ->", "-> y"], ["out", "o ->", "-> p"], job_id)


# -- through real scripts ---------------------------------------------------------------------------


@pytest.mark.parametrize("decode", [False, True], ids=["bytes", "decode"])
def test_accepted_names_through_real_scripts(redis_server, decode):
    """Accepted names and ids (non-ASCII, quotes, near-reserved, 1024 bytes) as real jobs: the blockers,
    running records, output facts and lineage that come back name them exactly."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=decode)
    ran = [0]

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much,
                                                                    HealthCheck.too_slow])
    @given(names=st.lists(good_names, min_size=2, max_size=5, unique=True), job_id=good_ids)
    def through_redis(names: list[str], job_id: str) -> None:
        ran[0] += 1
        prefix = f"fz{secrets.token_hex(4)}:"
        c = jobs_core.Coordinator(client, prefix)
        inputs, outputs = names[:1], names[1:]
        try:
            c.create_outputs(inputs)
            job = c.job(inputs, outputs, duration=30, heartbeat=False, job_id=job_id).start()
            with pytest.raises(ResourceUnavailable) as exc:
                c.job(outputs, [], duration=5).start()
            assert {(b.reason, b.name, b.holder.job_id) for b in exc.value.blockers} == {
                ("input_missing", n, job_id) for n in outputs}
            (running,) = c.running_jobs()
            assert (running.job_id, running.inputs, running.outputs) == (job_id, tuple(inputs), tuple(outputs))
            assert c.holder(job_id).token == job.token
            job.refresh()
            job.stop()
            assert c.written(names) == {**{n: job_id for n in outputs}, **c.written(inputs)}
            info = c.output_info(outputs[-1])
            assert (info.name, info.writer, info.token) == (outputs[-1], job_id, job.token)
            ins, outs = c.edges()
            assert {f"{fold(n)} -> {fold(job_id)}" for n in inputs} <= set(ins)
            assert {f"{fold(job_id)} -> {fold(n)}" for n in outputs} == set(outs)
        finally:
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)

    through_redis()
    EXAMPLES["real scripts"] = EXAMPLES.get("real scripts", 0) + ran[0]
    client.close()
