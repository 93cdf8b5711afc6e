"""One regression test per defect of jobspy 0.31 that jobs_core must not repeat.

Each test shows that jobs_core does not have the defect and, where that is
cheap, that jobspy (``import jobs``) does, so the difference stays documented.
The tests run on a redis-server of this module alone (flushed before each
test), so the empty prefix, MONITOR and restarts are safe to use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import jobs_core
from jobs_core import Coordinator, InvalidName, InvalidNameType, LockLost, ResourceUnavailable
from jobs_core.scripts import NAMES as SCRIPT_NAMES
from jobs_core.scripts import source as script_source

from .conftest import keyspace
from .servers import RedisServer

# jobspy replaces the SIGTERM handler when imported; keep the test process's own.
_SIGTERM = signal.getsignal(signal.SIGTERM)
import jobs  # noqa: E402  (jobspy 0.31)

signal.signal(signal.SIGTERM, _SIGTERM)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server():
    s = RedisServer().start()
    yield s
    s.cleanup()


@pytest.fixture
def conn(server: RedisServer) -> redis.Redis:
    """A bytes client on the module's server, emptied first (jobspy's kind of client)."""
    c = redis.Redis.from_url(server.url)
    c.flushdb()
    yield c
    c.close()


@pytest.fixture
def coord(server: RedisServer, conn: redis.Redis, prefix: str) -> Coordinator:
    client = redis.Redis.from_url(server.url)
    c = Coordinator(client, prefix)
    yield c
    c.stop_all(failed=True)
    client.close()


@pytest.fixture
def legacy(conn: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """jobspy, configured on the same server and prefix."""
    monkeypatch.setattr(jobs, "CONN", conn)
    monkeypatch.setattr(jobs, "GLOBAL_PREFIX", prefix)
    monkeypatch.setattr(jobs, "DEFAULT_LOGGER", logging.getLogger("jobspy"))
    yield jobs
    drop_jobspy_jobs()


def drop_jobspy_jobs() -> None:
    """Stop jobspy jobs a test left running, so its exit hook finds none at interpreter exit."""
    for manager in list(jobs.LOCKED):
        try:
            manager.stop(failed=True)
        except Exception:  # a deliberately broken setup (wrong key type, server gone) may refuse
            jobs.LOCKED.discard(manager)


@pytest.fixture
def compat(conn: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``import jobs_core as jobs`` configured like jobspy."""
    monkeypatch.setattr(jobs_core, "CONN", conn)
    monkeypatch.setattr(jobs_core, "GLOBAL_PREFIX", prefix)
    yield jobs_core
    for manager in list(jobs_core.compat.LOCKED):
        manager.stop(failed=True)


def commands_processed(conn: redis.Redis) -> int:
    return int(conn.info("stats")["total_commands_processed"])


def info_cost(conn: redis.Redis) -> int:
    """How much one ``commands_processed`` call itself adds to the count."""
    first = commands_processed(conn)
    return commands_processed(conn) - first


def run_python(code: str, *args: str, timeout: float = 30) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object last."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- 1. the key prefix is respected everywhere ------------------------------------------


def test_job_lookup_respects_prefix(coord: Coordinator, conn: redis.Redis, legacy: Any, compat: Any) -> None:
    coord.create_outputs(["io.in"])
    job = coord.job(["io.in"], ["io.out"], duration=5, heartbeat=False).start()
    assert compat.get_job_io(job.id, conn) == (["io.in"], ["io.out"])
    # jobspy reads jobs:running:<id> without the prefix and misses the job
    assert legacy.get_job_io(job.id, conn) == ([], [])
    job.stop()
    assert compat.get_job_io(job.id, conn) == ([], [])


def test_create_outputs_respects_prefix(coord: Coordinator, conn: redis.Redis, prefix: str, legacy: Any) -> None:
    token = coord.create_outputs(["made.a", "made.b"], job_id="repair.job")
    assert conn.mget([prefix + "made.a", prefix + "made.b"]) == [b"repair.job", b"repair.job"]
    assert not conn.exists("made.a", "made.b")
    info = coord.output_info("made.a")
    assert (info.written, info.writer, info.forced, info.token) == (True, "repair.job", True, token)
    # jobspy creates the unprefixed keys instead
    legacy._create_outputs(["made.c"], conn, identifier="legacy.repair")
    assert conn.get("made.c") == b"legacy.repair"
    assert not conn.exists(prefix + "made.c")


def test_force_unlock_respects_prefix(coord: Coordinator, conn: redis.Redis, prefix: str, legacy: Any) -> None:
    coord.create_outputs(["ul.in"])
    holder = coord.job(["ul.in"], ["ul.out"], duration=5, heartbeat=False).start()
    old = legacy.ResourceManager([], ["ul.legacy"], 5).start()
    # jobspy deletes unprefixed lock keys: nothing, and every real lock stays
    assert not legacy._force_unlock(["ul.in"], ["ul.out", "ul.legacy"], conn)
    assert conn.get(prefix + "olock:ul.out") == holder.id.encode()
    assert conn.get(prefix + "olock:ul.legacy") == old.identifier.encode()

    assert coord.unlock(["ul.in"], ["ul.out", "ul.legacy"]) == 3
    assert not conn.exists(prefix + "ilock:ul.in", prefix + "olock:ul.out", prefix + "olock:ul.legacy")
    with pytest.raises(LockLost) as exc:
        holder.stop()
    assert exc.value.lost == {"input_lock_lost": ["ul.in"], "output_lock_lost": ["ul.out"]}
    assert not conn.exists(prefix + "ul.out")
    old.stop(failed=True)


def test_edges_respect_prefix(server: RedisServer, coord: Coordinator, conn: redis.Redis, legacy: Any,
                              compat: Any) -> None:
    bare = Coordinator(conn, "")  # another namespace on the same server: no prefix
    with bare.job([], ["bare.out"], duration=5, heartbeat=False, name="bare.job"):
        pass
    with coord.job([], ["mine.out"], duration=5, heartbeat=False, name="mine.job"):
        pass
    assert coord.edges() == ([], ["mine.job.* -> mine.out"])
    assert compat.edges(conn) == [[], ["mine.job.* -> mine.out"]]
    assert bare.edges() == ([], ["bare.job.* -> bare.out"])
    # jobspy, with GLOBAL_PREFIX set, reads the unprefixed namespace's lineage
    text_client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        assert legacy.edges(text_client) == [[], ["bare.job.* -> bare.out"]]
    finally:
        text_client.close()


# -- 2. every key a script touches lies in its namespace -------------------------------------
#
# jobspy declares names (not keys) and builds each key inside Lua from a prefix it takes from
# ARGV: on a cluster its keys land in any slot. jobs_core's repairs (unlock, create) declare every
# key; its other scripts declare the namespace's jobs:running (and the absent jobs:guard, see
# lua/lib.lua) and derive every key they touch from that declared key's prefix, so every key
# lies in the namespace's one slot. These tests check both kinds, statically and as run.

def _lua_code(text: str) -> str:
    """Lua source without comments (strings kept)."""
    out, i, quote = [], 0, None
    while i < len(text):
        ch = text[i]
        if quote:
            out.append(ch)
            if ch == "\\":
                out.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif text.startswith("--", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _call_args(code: str, start: int) -> list[str]:
    """The comma-separated arguments of the call whose '(' is just before ``start``."""
    args, cur, depth, quote, i = [], [], 1, None, start
    while depth:
        ch = code[i]
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch in "([{":
            depth += 1
            cur.append(ch)
        elif ch in ")]}":
            depth -= 1
            if depth:
                cur.append(ch)
        elif ch == "," and depth == 1:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    args.append("".join(cur).strip())
    return [a for a in args if a]


def _from_keys(expr: str) -> bool:
    return "KEYS[" in expr and ".." not in expr and "'" not in expr and '"' not in expr


def _unpacks_keys(code: str, expr: str) -> bool:
    """``unpack(t)`` of a table filled from KEYS and plain values only (as for MSET)."""
    m = re.fullmatch(r"(?:table\.)?unpack\((\w+)\)", expr)
    if not m:
        return False
    filled = re.findall(rf"(?<![\w.]){m.group(1)}\[[^\]]*\]\s*=\s*([^\n]+)", code)
    return any("KEYS[" in v for v in filled) and all(".." not in v and "'" not in v and '"' not in v
                                                      for v in filled)


def key_name_problems(source: str) -> list[str]:
    """Every redis.call whose key is not taken from KEYS (or built by concatenation)."""
    code = _lua_code(source)
    bound = set(re.findall(r"local\s+(\w+)\s*=\s*(?=KEYS\[)", code))
    for m in re.finditer(r"local\s+function\s+(\w+)\s*\(([^)]*)\)", code):
        params = [p.strip() for p in m.group(2).split(",")]
        sites = [_call_args(code, c.end()) for c in re.finditer(rf"(?<![\w.]){m.group(1)}\s*\(", code)
                 if c.start() != m.start() + m.group(0).index(m.group(1))]
        for n, p in enumerate(params):
            if sites and all(len(s) > n and _from_keys(s[n]) for s in sites):
                bound.add(p)
    problems = []
    for m in re.finditer(r"redis\.p?call\s*\(", code):
        args = _call_args(code, m.end())
        command = args[0]
        if command.strip("'\"").upper() == "TIME":
            continue
        if not command.startswith(("'", '"')):
            # a command chosen by the caller (PUBLISH/SPUBLISH): command and channel from ARGV only
            # (the message is data, not a name: the script may compose it)
            if not all(re.fullmatch(r"ARGV\[\d+\]", a) for a in args[:2]):
                problems.append(f"dynamic command with a non-ARGV command or channel: {args}")
            continue
        key = args[1] if len(args) > 1 else ""
        if not (_from_keys(key) or key in bound or _unpacks_keys(code, key)):
            problems.append(f"{command} key {key!r} is not from KEYS")
    for literal in re.findall(r"'([^']*)'|\"([^\"]*)\"", code):
        text = "".join(literal)
        if re.search(r"(olock|ilock|jobs):", text):
            problems.append(f"key fragment in a string literal: {text!r}")
    return problems


def _jobspy_scripts() -> list[str]:
    scripts = []
    for fn in (jobs._run_if_possible_lua, jobs._finish_job_lua, jobs._get_job_info_lua):
        scripts += [c.cell_contents.decode() for c in fn.__closure__ if isinstance(c.cell_contents, bytes)]
    return scripts


def test_lua_scripts_build_keys_only_from_the_declared_namespace() -> None:
    from jobs_core.scripts import ON_LIB, _read

    for name in SCRIPT_NAMES:
        if name not in ON_LIB:
            assert key_name_problems(script_source(name)) == [], name
            continue
        # the script's own text builds no key: every key comes from lib.lua's k_* / K_* helpers
        problems = [p for p in key_name_problems(_read(name)) if "is not from KEYS" not in p]
        assert problems == [], name
        code = _lua_code(_read(name))
        assert not re.search(r"PREFIX\s*\.\.|KEYS\[[3-9]", code), name
    lib = _lua_code(_read("lib"))
    assert re.search(r"local PREFIX = string\.sub\(KEYS\[1\], 1, -13\)", lib)  # minus "jobs:running"
    builders = re.findall(r"^local (?:function )?(k_\w+|K_\w+)", lib, re.M)
    for m in re.finditer(r"'([^']*)'", lib):  # a key fragment appears only where a helper builds it
        if re.search(r"(olock|ilock|jobs):", m.group(1)):
            line = lib[lib.rfind("\n", 0, m.start()) + 1:lib.find("\n", m.start())]
            assert re.match(r"local (function )?(k_|K_)", line), line
    assert len(builders) >= 14
    # the check does catch the jobspy way of building keys inside Lua
    for text in _jobspy_scripts():
        assert any("is not from KEYS" in p for p in key_name_problems(text))


_MONITOR_RE = re.compile(rb"^(\S+) \[(\d+) ([^\]]*)\] (.*)$", re.S)
_ARG_RE = re.compile(rb'"((?:[^"\\]|\\.)*)"', re.S)
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b", b"\\": b"\\", b'"': b'"'}


def _unrepr(arg: bytes) -> bytes:
    """Undo redis' sdscatrepr quoting of one MONITOR argument."""
    out, i = bytearray(), 0
    while i < len(arg):
        if arg[i:i + 1] == b"\\":
            nxt = arg[i + 1:i + 2]
            if nxt == b"x":
                out.append(int(arg[i + 2:i + 4], 16))
                i += 4
                continue
            out += _ESCAPES[nxt]
            i += 2
            continue
        out.append(arg[i])
        i += 1
    return bytes(out)


class Monitor:
    """MONITOR on the server: the scripts run, with their KEYS and the commands they issued."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self._monitor = self.client.monitor()
        self._monitor.__enter__()
        self._raw = redis.Connection(**{k: v for k, v in self.client.connection_pool.connection_kwargs.items()
                                        if k in ("host", "port", "db")})

    def close(self) -> None:
        self._monitor.__exit__(None, None, None)
        self._raw.disconnect()
        self.client.close()

    def script_runs(self) -> list[dict[str, Any]]:
        marker = f"monitor-end-{secrets.token_hex(4)}".encode()
        self.client.echo(marker)
        runs: list[dict[str, Any]] = []
        current = None
        while True:
            m = _MONITOR_RE.match(self._monitor.connection.read_response())
            who, args = m.group(3), [_unrepr(a) for a in _ARG_RE.findall(m.group(4))]
            if args[0].upper() == b"ECHO" and args[1:] == [marker]:
                break
            if who == b"lua":
                assert current is not None, f"a script command outside a script: {args}"
                current["touched"].append(args)
            elif args[0].upper() in (b"EVAL", b"EVALSHA"):
                n = int(args[2])
                current = {"script": args[1], "keys": args[3:3 + n], "touched": []}
                runs.append(current)
            else:
                current = None
        return [r for r in runs if r["touched"]]

    def keys_of(self, command: list[bytes]) -> list[bytes]:
        """The keys of one command, as the server's COMMAND GETKEYS sees them."""
        self._raw.send_command("COMMAND", "GETKEYS", *command)
        try:
            return list(self._raw.read_response())
        except redis.ResponseError:
            assert command[0].upper() in (b"TIME", b"PUBLISH"), command  # commands without keys
            return []


def test_every_key_a_script_touches_lies_in_its_namespace(server: RedisServer, conn: redis.Redis, prefix: str,
                                                          legacy: Any) -> None:
    from jobs_core.scripts import ON_LIB

    shas = {hashlib.sha1(script_source(n).encode()).hexdigest().encode(): n for n in SCRIPT_NAMES}
    monitor = Monitor(server.url)
    client = redis.Redis.from_url(server.url)
    try:
        c = Coordinator(client, prefix, poll=0.05)
        assert not c.why_blocked(["m.in"], ["m.out"]).can_start  # check mode
        c.create_outputs(["m.in"])
        a = c.job(["m.in"], ["m.out"], duration=5, heartbeat=False).start()
        a.refresh()
        timer = threading.Timer(0.15, a.stop)
        timer.start()
        b = c.job(["m.in"], ["m.out"], duration=5, heartbeat=False, wait=2).start()  # waits, is granted
        timer.join()
        b.stop(failed=True)
        with pytest.raises(ResourceUnavailable):
            c.job(["m.never"], [], duration=5, wait=0.2).start()  # waits, leaves at its deadline
        gives_up = c.job(["m.never"], [], duration=5, wait=5)  # a wait given up (as on an interrupt)
        plan = gives_up._plan_now()
        c.scripts.start(plan.keys, plan.start_args("n1", "wait", 5, ""))
        c.scripts.leave(plan.keys, plan.leave_args("n1"))
        with c.job([], ["m.ttl"], duration=5, heartbeat=False, output_ttl=30):
            pass
        c.create_outputs(["m.ttl2"], ttl=30)
        d = c.job([], ["m.out", "m.other"], duration=5, heartbeat=False).start()
        c.unlock(["m.in"], ["m.out"])
        assert [j.job_id for j in c.running_jobs()] == [d.id]
        with pytest.raises(LockLost):
            d.stop()
        assert c.server_time() > 0
        c.set_limit("m.limit", 1)  # limits: set, held, waited for, granted by a release, removed
        e = c.job([], [], duration=5, heartbeat=False, limits={"m.limit": 1}).start()
        threading.Timer(0.15, e.stop).start()
        c.job([], [], duration=5, heartbeat=False, wait=2, limits={"m.limit": 1}).start().stop()
        c.remove_limit("m.limit")
        with legacy.ResourceManager(["m.in"], ["m.legacy"], 5):
            pass
        runs = monitor.script_runs()
        ours = [r for r in runs if r["script"] in shas]
        theirs = [r for r in runs if r["script"] not in shas]
        assert {shas[r["script"]] for r in ours} == set(SCRIPT_NAMES), "exercise every script above"
        namespace = [prefix.encode() + b"jobs:running", prefix.encode() + b"jobs:guard"]
        for run in ours:
            declared = list(run["keys"])
            touched = {k for command in run["touched"] for k in monitor.keys_of(command)}
            if shas[run["script"]] in ON_LIB:
                assert declared == namespace, shas[run["script"]]
                assert all(k.startswith(prefix.encode()) for k in touched), (shas[run["script"]], touched)
                assert namespace[1] not in touched  # the guard is never read or written
            else:
                assert touched <= set(declared), (shas[run["script"]], touched - set(declared))
        assert not client.exists(prefix + "jobs:guard")
        # jobspy: names (and an empty string) in KEYS, keys built inside Lua
        assert theirs and all(b"" in r["keys"] for r in theirs)
        undeclared = {k for r in theirs for cmd in r["touched"] for k in monitor.keys_of(cmd)} - {
            k for r in theirs for k in r["keys"]}
        assert (prefix + "olock:m.legacy").encode() in undeclared
    finally:
        monitor.close()
        client.close()


# -- 3. leases use the server's clock -----------------------------------------------------


def server_now(conn: redis.Redis) -> float:
    sec, usec = conn.time()
    return sec + usec / 1e6


@pytest.fixture
def skew_clock(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``skew(seconds)`` moves this process's time.time(); ``skew(0)`` puts it back."""
    real = time.time

    def skew(seconds: float) -> None:
        monkeypatch.setattr(time, "time", lambda: real() + seconds)

    return skew


@pytest.mark.parametrize("skew", [3600.0, -3600.0], ids=["ahead", "behind"])
def test_lease_scores_come_from_server_time(coord: Coordinator, conn: redis.Redis, prefix: str, skew_clock: Any,
                                            skew: float) -> None:
    coord.create_outputs(["sk.in"])
    skew_clock(skew)
    assert abs(time.time() - server_now(conn)) > 3000
    job = coord.job(["sk.in"], ["sk.out"], duration=2, heartbeat=False).start()
    now = server_now(conn)
    assert conn.zscore(prefix + "ilock:sk.in", job.id) == pytest.approx(now + 2, abs=0.5)
    assert conn.zscore(prefix + "jobs:running", job.id) == pytest.approx(now + 2, abs=0.5)
    assert 1500 < conn.pttl(prefix + "olock:sk.out") <= 2000
    job.refresh()
    assert conn.zscore(prefix + "ilock:sk.in", job.id) == pytest.approx(server_now(conn) + 2, abs=0.5)
    [listed] = coord.running_jobs()
    assert listed.expires == pytest.approx(now + 2, abs=0.5)
    job.stop()


@pytest.mark.parametrize("skew", [3600.0, -3600.0], ids=["ahead", "behind"])
def test_skewed_client_neither_steals_nor_pins(coord: Coordinator, conn: redis.Redis, skew_clock: Any,
                                               skew: float) -> None:
    coord.create_outputs(["sk.read", "sk.written", "sk.short"])
    reader = coord.job(["sk.read"], [], duration=5, heartbeat=False).start()  # honest clock
    writer = coord.job([], ["sk.written"], duration=5, heartbeat=False).start()

    skew_clock(skew)
    with pytest.raises(ResourceUnavailable) as exc:
        coord.job([], ["sk.read"], duration=5).start()
    assert exc.value.args[0] == {"output_used": ["sk.read"]}
    with pytest.raises(ResourceUnavailable) as exc:
        coord.job([], ["sk.written"], duration=5).start()
    assert exc.value.args[0] == {"output_locked": ["sk.written"]}
    with pytest.raises(ResourceUnavailable) as exc:
        coord.job(["sk.written"], [], duration=5).start()
    assert exc.value.args[0] == {"input_missing": ["sk.written"]}
    short = coord.job(["sk.short"], [], duration=0.4, heartbeat=False).start()  # a skewed reader
    skew_clock(0)

    # its lease holds for its duration, not less...
    with pytest.raises(ResourceUnavailable) as exc:
        coord.job([], ["sk.short"], duration=5).start()
    assert exc.value.args[0] == {"output_used": ["sk.short"]}
    # ... and runs out on time, not an hour later
    after = coord.job([], ["sk.short"], duration=5, heartbeat=False, wait=2).start()
    assert 0.1 < after.waited < 0.9
    after.stop()
    short.stop(failed=True)
    reader.stop()
    writer.stop()


def test_jobspy_clock_ahead_steals_a_read_lease(coord: Coordinator, legacy: Any, skew_clock: Any) -> None:
    coord.create_outputs(["st.x"])
    reader = coord.job(["st.x"], [], duration=5, heartbeat=False).start()
    skew_clock(3600)
    with pytest.raises(ResourceUnavailable):  # jobs_core: still read-leased
        coord.job([], ["st.x"], duration=5).start()
    thief = legacy.ResourceManager([], ["st.x"], 5).start()  # jobspy drops the lease as expired
    assert thief is not None and thief.is_running
    skew_clock(0)
    with pytest.raises(LockLost) as exc:
        reader.refresh()
    assert exc.value.lost == {"input_lock_lost": ["st.x"]}
    thief.stop(failed=True)


# -- 4. a job that lost its locks writes nothing ----------------------------------------


def test_stop_after_redis_restart_writes_nothing(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    server = RedisServer().start()
    conn = redis.Redis.from_url(server.url)
    try:
        monkeypatch.setattr(jobs, "CONN", conn)
        monkeypatch.setattr(jobs, "GLOBAL_PREFIX", prefix)
        monkeypatch.setattr(jobs, "DEFAULT_LOGGER", logging.getLogger("jobspy"))
        c = Coordinator(conn, prefix)
        mine = c.job([], ["rs.out"], duration=30, heartbeat=False).start()
        old = jobs.ResourceManager([], ["rs.legacy"], 30).start()
        server.restart()  # nothing saved: every lock is gone
        other = c.job([], ["rs.out", "rs.legacy"], duration=30, heartbeat=False).start()

        with pytest.raises(LockLost) as exc:
            mine.stop()
        assert exc.value.lost == {"output_lock_lost": ["rs.out"]}
        assert not conn.exists(prefix + "rs.out")
        assert conn.get(prefix + "olock:rs.out") == other.id.encode()

        old.stop()  # jobspy writes its output while another job holds the lock
        assert conn.get(prefix + "rs.legacy") == old.identifier.encode()
        assert conn.get(prefix + "olock:rs.legacy") == other.id.encode()

        other.stop()
        assert conn.mget([prefix + "rs.out", prefix + "rs.legacy"]) == [other.id.encode()] * 2
    finally:
        drop_jobspy_jobs()
        conn.close()
        server.cleanup()


def test_stop_after_lease_expired_writes_nothing(coord: Coordinator, conn: redis.Redis, prefix: str) -> None:
    first = coord.job([], ["exp.out"], duration=0.2, heartbeat=False).start()
    time.sleep(0.3)
    second = coord.job([], ["exp.out"], duration=5, heartbeat=False).start()
    with pytest.raises(LockLost):
        first.check()
    with pytest.raises(LockLost) as exc:
        first.stop()
    assert exc.value.lost == {"output_lock_lost": ["exp.out"]}
    assert not conn.exists(prefix + "exp.out")
    assert conn.get(prefix + "olock:exp.out") == second.id.encode()
    second.stop()
    info = coord.output_info("exp.out")
    assert (info.writer, info.token) == (second.id, second.token)


# -- 5. the lease renewal keeps going --------------------------------------------------------


def test_auto_refresh_keeps_a_compat_job_alive(conn: redis.Redis, prefix: str, compat: Any, legacy: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    died: list[tuple[type, str]] = []
    monkeypatch.setattr(threading, "excepthook", lambda a: died.append((a.exc_type, a.thread.name)))
    old = legacy.ResourceManager([], ["ar.legacy"], 1)
    old.start(auto_refresh=True)
    manager = compat.ResourceManager([], ["ar.out"], 1)
    manager.start(auto_refresh=True)
    time.sleep(3)
    assert conn.get(prefix + "olock:ar.out") == manager.identifier.encode()
    assert manager.refresh() == {"ok": True}
    manager.stop()
    assert conn.get(prefix + "ar.out") == manager.identifier.encode()
    # jobspy's refresh thread died on its first pass, so its 1 s lease ran out
    assert died and "refresh" in died[0][1]
    assert conn.get(prefix + "olock:ar.legacy") is None
    old.stop(failed=True)


def test_heartbeat_survives_a_failed_pass(coord: Coordinator, conn: redis.Redis, prefix: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    real = coord.scripts.refresh
    calls: list[float] = []

    def flaky(keys: Any = None, args: Any = None, client: Any = None) -> Any:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise redis.ConnectionError("injected: the connection dropped once")
        return real(keys=keys, args=args, client=client)

    coord.scripts.refresh = flaky
    caplog.set_level(logging.ERROR, logger="jobs_core")
    job = coord.job([], ["hb.out"], duration=0.6, heartbeat=0.15).start()
    time.sleep(1.3)  # more than two leases
    assert len(calls) >= 4
    assert conn.get(prefix + "olock:hb.out") == job.id.encode()
    job.check()
    assert job.lost is None
    failures = [r for r in caplog.records if r.name == "jobs_core" and r.exc_info]
    assert failures and "injected" in str(failures[0].exc_info[1])
    job.stop()
    assert conn.get(prefix + "hb.out") == job.id.encode()


# -- 6. signals: nothing at import, opt-in handler that chains ---------------------------------

IMPORT_KEEPS_HANDLER = r"""
import json, signal
def mine(signum, frame):
    pass
signal.signal(signal.SIGTERM, mine)
import jobs_core
core = signal.getsignal(signal.SIGTERM) is mine
import jobs
print(json.dumps({"jobs_core": core, "jobspy": signal.getsignal(signal.SIGTERM) is mine}))
"""

IMPORT_IN_THREAD = r"""
import json, sys, threading
import redis
url, prefix = sys.argv[1], sys.argv[2]
result = {}
def attempt(module):
    try:
        mod = __import__(module)
        if module == "jobs_core":
            c = mod.Coordinator(redis.Redis.from_url(url), prefix)
            with c.job([], ["thread.out"], duration=5):
                pass
            try:
                mod.release_on_signal([c])
                result["release_on_signal"] = "installed"
            except mod.ConfigurationError:
                result["release_on_signal"] = "ConfigurationError"
        result[module] = "ok"
    except Exception as exc:
        result[module] = type(exc).__name__
for module in ("jobs_core", "jobs"):
    t = threading.Thread(target=attempt, args=(module,))
    t.start()
    t.join()
print(json.dumps(result))
"""

RELEASE_ON_SIGNAL = r"""
import json, os, signal, sys, time
import redis, jobs_core
url, prefix = sys.argv[1], sys.argv[2]
conn = redis.Redis.from_url(url)
c = jobs_core.Coordinator(conn, prefix)
calls = []
def previous(signum, frame):
    calls.append({"signum": signum, "locked": conn.exists(prefix + "olock:sig.out"),
                  "written": conn.exists(prefix + "sig.out"), "running_here": len(c.running_here()),
                  "job_running": job.is_running})
signal.signal(signal.SIGTERM, previous)
job = c.job([], ["sig.out"], duration=30).start()
restore = jobs_core.release_on_signal([c])
replaced = signal.getsignal(signal.SIGTERM) is not previous
os.kill(os.getpid(), signal.SIGTERM)
deadline = time.monotonic() + 5
while not calls and time.monotonic() < deadline:
    time.sleep(0.01)
restore()
print(json.dumps({"calls": calls, "replaced": replaced,
                  "restored": signal.getsignal(signal.SIGTERM) is previous}))
"""


def test_import_leaves_sigterm_handler_alone() -> None:
    assert run_python(IMPORT_KEEPS_HANDLER) == {"jobs_core": True, "jobspy": False}


def test_import_outside_main_thread(server: RedisServer, conn: redis.Redis, prefix: str) -> None:
    assert run_python(IMPORT_IN_THREAD, server.url, prefix) == {
        "jobs_core": "ok", "release_on_signal": "ConfigurationError", "jobs": "ValueError"}
    assert conn.exists(prefix + "thread.out")


def test_release_on_signal_chains_previous_handler(server: RedisServer, conn: redis.Redis, prefix: str) -> None:
    result = run_python(RELEASE_ON_SIGNAL, server.url, prefix)
    assert result["replaced"] and result["restored"]
    # the previous handler ran once, after the job was stopped as failed
    assert result["calls"] == [{"signum": int(signal.SIGTERM), "locked": 0, "written": 0, "running_here": 0,
                                "job_running": False}]
    assert not conn.exists(prefix + "sig.out", prefix + "olock:sig.out")


# -- 7. names are text, in UTF-8, from any client --------------------------------------------


def test_non_ascii_names_round_trip(coord: Coordinator, conn: redis.Redis, prefix: str, legacy: Any,
                                    compat: Any) -> None:
    source, name = "source.é", "café.日本"
    coord.create_outputs([source])
    with coord.job([source], [name], duration=5, heartbeat=False, name="uni.job") as job:
        assert conn.get((prefix + "olock:" + name).encode("utf-8")) == job.id.encode()
        [running] = coord.running_jobs()
        assert (running.inputs, running.outputs) == ((source,), (name,))
        assert [j["outputs"] for j in compat.get_jobs(conn)] == [[name]]
    assert conn.get((prefix + name).encode("utf-8")) == job.id.encode()
    info = coord.output_info(name)
    assert (info.name, info.writer) == (name, job.id)
    assert coord.edges() == ([f"{source} -> uni.job.*"], [f"uni.job.* -> {name}"])

    missing = "ça.manque"
    with pytest.raises(compat.ResourceUnavailable) as exc:
        compat.ResourceManager([missing], [], 5).start()
    assert exc.value.args[0] == {"input_missing": [missing]}
    # jobspy decodes the script's reply as latin-1
    with pytest.raises(legacy.ResourceUnavailable) as exc:
        legacy.ResourceManager([missing], [], 5).start()
    assert exc.value.args[0] == {"input_missing": [missing.encode().decode("latin-1")]}


def test_bytes_names_refused_before_redis(coord: Coordinator, conn: redis.Redis, prefix: str, legacy: Any,
                                          compat: Any) -> None:
    running = coord.job([], ["bn.busy"], duration=5, heartbeat=False).start()
    before = keyspace(conn, prefix)
    cost = info_cost(conn)
    start = commands_processed(conn)
    manager = compat.ResourceManager([], ["bn.ok"], 5)
    attempts = [
        lambda: coord.job([b"raw"], []), lambda: coord.job([], [b"raw"]), lambda: coord.create_outputs([b"raw"]),
        lambda: coord.unlock([b"raw"]), lambda: coord.output_info(b"raw"), lambda: coord.why_blocked([], [b"raw"]),
        lambda: compat.ResourceManager([], [b"raw"], 5), lambda: manager.add_outputs(b"raw"),
        lambda: manager.add_inputs("ok", b"raw"),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidNameType):
            attempt()
    assert commands_processed(conn) - start == cost  # nothing but the count itself reached Redis
    assert keyspace(conn, prefix) == before
    assert manager.outputs == ["bn.ok"] and manager.inputs == []
    running.stop()
    # jobspy writes the repr of the bytes as the name
    with legacy.ResourceManager([], [b"raw"], 5):
        pass
    assert conn.exists(prefix + "b'raw'") and not conn.exists(prefix + "raw")


def test_decode_responses_client_end_to_end(server: RedisServer, conn: redis.Redis, prefix: str, legacy: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    text = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        c = Coordinator(text, prefix)
        c.create_outputs(["dec.in"])
        with c.job(["dec.in"], ["dec.out", "dec.é"], duration=5, name="dec.job") as job:
            job.refresh()
            assert [r.job_id for r in c.output_info("dec.in").readers] == [job.id]
            assert c.why_blocked([], ["dec.out"]).reasons == {"output_locked": ["dec.out"]}
            assert [r.job_id for r in c.running_jobs()] == [job.id]
        assert text.mget([prefix + "dec.out", prefix + "dec.é"]) == [job.id, job.id]
        assert c.edges()[1] == ["dec.job.* -> dec.out", "dec.job.* -> dec.é"]
        waiter = c.job([], ["dec.out"], duration=5, heartbeat=False, wait=2)
        holder = c.job([], ["dec.out"], duration=5, heartbeat=False).start()
        timer = threading.Timer(0.1, holder.stop)
        timer.start()
        with waiter:
            pass
        timer.join()
        assert text.keys(prefix + "olock:*") == [] and text.keys(prefix + "ilock:*") == []
        assert c.running_jobs() == [] and text.zcard(prefix + "jobs:running") == 0

        monkeypatch.setattr(jobs_core, "CONN", text)
        monkeypatch.setattr(jobs_core, "GLOBAL_PREFIX", prefix)
        with jobs_core.ResourceManager(["dec.in"], ["dec.compat"], 5) as manager:
            pass
        assert text.get(prefix + "dec.compat") == manager.identifier
        assert "dec.job.* -> dec.out" in jobs_core.edges(text)[1]

        # jobspy takes the locks, then fails on the reply and leaves them behind
        old = legacy.ResourceManager([], ["dec.legacy"], 5)
        with pytest.raises(AttributeError):
            old.start(conn=text)
        assert not old.is_running
        assert text.get(prefix + "olock:dec.legacy") == old.identifier
    finally:
        text.close()


# -- 8. names that collide with internal keys ---------------------------------------------------


def test_internal_key_names_refused(coord: Coordinator, conn: redis.Redis, prefix: str, legacy: Any,
                                    compat: Any) -> None:
    coord.create_outputs(["x"])
    running = coord.job(["x"], ["kn.out"], duration=5, heartbeat=False).start()
    before = keyspace(conn, prefix)
    cost = info_cost(conn)
    start = commands_processed(conn)
    attempts = (lambda n: coord.job([n], []), lambda n: coord.job([], [n]), lambda n: coord.create_outputs([n]),
                lambda n: coord.unlock([], [n]), lambda n: coord.output_info(n),
                lambda n: compat.ResourceManager([], [n], 5))
    for bad in ("jobs:running", "ilock:x", "olock:x", "jobs:graph:input"):
        for attempt in attempts:
            with pytest.raises(InvalidName) as exc:
                attempt(bad)
            assert exc.value.name == bad and "internal" in exc.value.reason
    assert commands_processed(conn) - start == cost
    assert keyspace(conn, prefix) == before
    running.stop()
    # jobspy lets an output overwrite its own running-jobs index, and then cannot start anything
    old = legacy.ResourceManager([], ["jobs:running"], 5).start()
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        old.stop()
    assert conn.type(prefix + "jobs:running") == b"string"
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        legacy.ResourceManager([], ["kn.next"], 5).start()


# -- 9. the lineage separator and quotes ---------------------------------------------------------


def test_lineage_arrow_refused_quotes_kept(coord: Coordinator, conn: redis.Redis, prefix: str, legacy: Any,
                                           compat: Any) -> None:
    before = keyspace(conn, prefix)
    for attempt in (lambda: coord.job(["a -> b"], []), lambda: coord.job([], ["a -> b"]),
                    lambda: coord.job([], ["ok"], name="a -> b"), lambda: coord.job([], ["ok"], job_id="a -> b"),
                    lambda: coord.create_outputs(["a -> b"]),
                    lambda: compat.ResourceManager([], ["ok"], 5, suffix="a -> b").start()):
        with pytest.raises(InvalidName, match="lineage"):
            attempt()
    assert keyspace(conn, prefix) == before

    quoted_in, quoted_out = 'say "hi"', 'quoted "out"'
    coord.create_outputs([quoted_in])
    with coord.job([quoted_in], [quoted_out], duration=5, heartbeat=False, name='quote "job"') as job:
        [running] = coord.running_jobs()
        assert (running.inputs, running.outputs) == ((quoted_in,), (quoted_out,))
    assert coord.output_info(quoted_out).writer == job.id
    assert coord.edges() == ([f'{quoted_in} -> quote "job".*'], [f'quote "job".* -> {quoted_out}'])
    assert compat.edges(conn) == [[f'{quoted_in} -> quote "job".*'], [f'quote "job".* -> {quoted_out}']]

    # jobspy takes the arrow, and its lineage edge then has two
    with legacy.ResourceManager([], ["a -> b"], 5):
        pass
    assert any(e.count(" -> ") == 2 for e in compat.edges(conn)[1])


def test_lineage_reads_with_a_bytes_client(conn: redis.Redis, legacy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs_core, "GLOBAL_PREFIX", "")  # jobspy reads lineage only without a prefix
    monkeypatch.setattr(jobs, "GLOBAL_PREFIX", "")
    c = Coordinator(conn, "")
    c.create_outputs(["lb.in"])
    with c.job(["lb.in"], ["lb.out"], duration=5, heartbeat=False, name="lb.job"):
        pass
    expected = [["lb.in -> lb.job.*"], ["lb.job.* -> lb.out"]]
    assert jobs_core.edges(conn) == expected
    with pytest.raises(TypeError):
        legacy.edges(conn)


# -- 10. a forked child does not release its parent's locks ------------------------------------

FORK = r"""
import json, logging, os, sys
import redis, jobs_core, jobs
url, prefix = sys.argv[1], sys.argv[2]
conn = redis.Redis.from_url(url)
c = jobs_core.Coordinator(conn, prefix)
jobs_core.CONN = jobs.CONN = conn
jobs_core.GLOBAL_PREFIX = jobs.GLOBAL_PREFIX = prefix
jobs.DEFAULT_LOGGER = logging.getLogger("jobspy")
def value(key):
    v = conn.get(prefix + key)
    return v.decode() if v is not None else None
manager = jobs_core.ResourceManager([], ["fork.compat"], 30).start()
with c.job([], ["fork.explicit"], duration=30) as job:
    with jobs.ResourceManager([], ["fork.jobspy"], 30) as old:
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # the child leaves both blocks, then runs the atexit hooks
        _, status = os.waitpid(pid, 0)
        held = {"explicit": value("olock:fork.explicit") == job.id,
                "compat": value("olock:fork.compat") == manager.identifier,
                "jobspy": value("olock:fork.jobspy") == old.identifier}
        still_running = job.is_running and manager.is_running
manager.stop()
written = {"explicit": value("fork.explicit") == job.id, "compat": value("fork.compat") == manager.identifier}
print(json.dumps({"child": os.waitstatus_to_exitcode(status), "held": held, "running": still_running,
                  "written": written}))
"""


def test_forked_child_exit_keeps_parent_locks(server: RedisServer, conn: redis.Redis, prefix: str) -> None:
    result = run_python(FORK, server.url, prefix)
    assert result == {"child": 0, "running": True,
                      "held": {"explicit": True, "compat": True, "jobspy": False},  # jobspy: the child released it
                      "written": {"explicit": True, "compat": True}}
    assert not conn.keys(prefix + "olock:*")


# -- 11. reading and writing the same name --------------------------------------------------------


def test_same_name_as_input_and_output(coord: Coordinator, conn: redis.Redis, prefix: str, legacy: Any,
                                       compat: Any) -> None:
    coord.create_outputs(["loop.x"])
    job = coord.job(["loop.x"], ["loop.x"], duration=5, heartbeat=False).start()
    job.refresh()
    job.refresh()
    assert job.lost is None
    job.stop()
    assert conn.get(prefix + "loop.x") == job.id.encode()

    manager = compat.ResourceManager(["loop.x"], ["loop.x"], 5).start()
    manager.last_refreshed -= 2  # refresh() renews at most once a second
    assert manager.refresh() == {"ok": True}
    manager.stop()
    assert conn.get(prefix + "loop.x") == manager.identifier.encode()

    old = legacy.ResourceManager(["loop.x"], ["loop.x"], 5).start()
    old.last_refreshed -= 2
    assert old.refresh()["err"] == {"output_used": ["loop.x"]}  # its own read lock
    old.stop(failed=True)
