"""What reaches a person is safe (issue 13, items 16, 17 and the embedded server of 22).

* No secret of a Redis URL (password in the user part, ``password=``,
  ``sentinel_password=``, ``ssl_password=``; passwords holding ``@``, ``/``,
  ``?``, ``#``) appears in any message, repr, log line, traceback or output of
  the command and the demo, whatever the URL form, and redis-py's own texts
  (which may quote part of a badly written URL as a host or "port") are reworded.
* Text others wrote into Redis (job ids, host names, names; by a jobspy 0.31
  client or directly) is shown with control, C1 and bidirectional characters
  escaped in every view of the command, in ``-v`` logs, in ``Blocker.describe()``
  and the errors built on it; JSON stays exact but prints them as ``\\u`` escapes.
* The embedded demo server listens on a private unix socket only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import jobs_core
from jobs_core import ConfigurationError, Coordinator, ResourceUnavailable
from jobs_core.embedded import embedded_server
from jobs_core.names import fold

from .conftest import Backend
from .servers import RedisServer, free_port
from .test_cli import Cli, Result, clean_env

#: What must never reach a terminal or log raw: C0 controls but the newline ending a line, DEL, C1, and
#: the Unicode format characters that reorder or hide text.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")

EVIL_ID = "evil\x1b[2J\x1b]0;pwned\x07\nFORGED id\u202edi-ltr\x9b31m"
EVIL_READER = "reader\rFORGED reader\x1b[8m"
EVIL_WAITER = "waiter\nFORGED waiter\u2066"
EVIL_HOST = "host\x1b[31m\r\nFORGED host\u2067"
EVIL_NAME = "out\x1b[1mname\nFORGED name\u200f"


def assert_safe(text: str, where: str = "") -> None:
    """No unsafe character, and no line forged by a newline inside a value."""
    found = UNSAFE.search(text)
    assert found is None, f"{where}: raw {found.group()!r} in {text!r}"
    assert not re.search(r"^\s*FORGED", text, re.MULTILINE), f"{where}: a forged line in {text!r}"


# -- 16: secrets ---------------------------------------------------------------------------------

#: The default user's password holds an unencoded-safe "@"; the ACL user "ops" has one that must be encoded.
DEFAULT_PW = "Zq7@defaultpw"
OPS_PW = "Wk9/opspw?#x"


@pytest.fixture(scope="module")
def locked_server() -> Iterator[RedisServer]:
    """A redis-server whose default user has a password, plus an ACL user "ops" with another."""
    server = RedisServer("--requirepass", DEFAULT_PW)
    server.proc = subprocess.Popen(
        [server.binary, "--port", str(server.port), "--bind", "127.0.0.1", "--dir", str(server.dir), "--save", "",
         "--appendonly", "no", "--logfile", str(server.dir / "server.log"), *server.extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = redis.Redis(port=server.port, password=DEFAULT_PW, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "the password-protected redis-server did not start"
            time.sleep(0.02)
    client.acl_setuser("ops", enabled=True, passwords=[f"+{OPS_PW}"], keys=["*"], channels=["*"],
                       commands=["+@all"])
    client.close()
    yield server
    server.cleanup()


def secret_parts(*secrets: str) -> list[str]:
    """The secrets, percent-encoded and not, and their pieces between URL delimiters (3 characters or more)."""
    parts = set()
    for s in secrets:
        parts |= {s, quote(s, safe="")}
        parts |= {p for p in re.split(r"[/?#@:=&]", s) if len(p) >= 3}
    return sorted(parts)


def assert_no_secret(text: str, *secrets: str, where: str = "") -> None:
    for part in secret_parts(*secrets):
        assert part not in text, f"{where}: {part!r} shown in {text!r}"


def good_urls(port: int) -> dict[str, str]:
    """URLs that reach the password-protected server, in every form a password can take."""
    ops = quote(OPS_PW, safe="")
    return {
        "user part, unencoded @": f"redis://:{DEFAULT_PW}@127.0.0.1:{port}/0",
        "user part, encoded": f"redis://ops:{ops}@127.0.0.1:{port}/0",
        "password option": f"redis://127.0.0.1:{port}/0?password={quote(DEFAULT_PW, safe='')}",
        "user and password options": f"redis://127.0.0.1:{port}/0?username=ops&password={ops}&socket_timeout=5",
    }


def bad_urls(dead: int, port: int) -> dict[str, tuple[str, tuple[str, ...]]]:
    """URLs that cannot work, each with the secrets it holds."""
    return {
        "unencoded / in the password": (f"redis://ops:{OPS_PW}@127.0.0.1:{port}/0", (OPS_PW,)),
        "a numeric start then /": (f"redis://u:9191/sekrit1@127.0.0.1:{dead}/0", ("9191/sekrit1", "9191")),
        "unencoded ?": (f"redis://:abc?sekrit2@127.0.0.1:{dead}/0", ("abc?sekrit2",)),
        "unencoded #": (f"redis://:abc#sekrit3@127.0.0.1:{dead}/0", ("abc#sekrit3",)),
        "= then / (redis-py would read a port)": (f"redis://:k=v/sekrit4@127.0.0.1:{dead}/0", ("k=v/sekrit4",)),
        "? = in the password": (f"redis://:pq?x=sekrit5@127.0.0.1:{dead}/0", ("pq?x=sekrit5",)),
        "unencoded / in a sentinel password": (f"redis+sentinel://:ab/sekrit6@127.0.0.1:{dead}/svc", ("ab/sekrit6",)),
        "wrong password": (f"redis://:wrongpw7@127.0.0.1:{port}/0", ("wrongpw7",)),
        "password option, nobody there": (f"redis://127.0.0.1:{dead}/0?password=sekrit8", ("sekrit8",)),
        "ssl_password, nobody there": (f"rediss://:sekrit9@127.0.0.1:{dead}/0?ssl_password=sslsekrit9",
                                       ("sekrit9", "sslsekrit9")),
        "unix socket": ("unix://:sekrit10@/nonexistent/jobs.sock?db=0", ("sekrit10",)),
        "bad db with a password": (f"redis://:sekrit11@127.0.0.1:{dead}/notadb", ("sekrit11",)),
        "bad option value": (f"redis://:sekrit12@127.0.0.1:{dead}/0?socket_timeout=notanumber", ("sekrit12",)),
        "no scheme": ("ops:sekrit13@127.0.0.1:6379", ("sekrit13",)),
    }


def run_cli(*args: str, url: str, prefix: str = "sec:") -> Result:
    proc = subprocess.run([sys.executable, "-m", "jobs_core", *args], env=clean_env(url, prefix),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    return Result(proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8"))


def test_no_secret_from_working_urls(locked_server: RedisServer) -> None:
    for form, url in good_urls(locked_server.port).items():
        watch = run_cli("watch", "--iterations", "1", "--interval", "0.1", "-v", url=url)
        assert watch.code == 0, (form, watch.err)
        assert watch.out.startswith("jobs-core watch: redis://") and "0 running, 0 waiting" in watch.out
        assert_no_secret(watch.out + watch.err, DEFAULT_PW, OPS_PW, where=form)
        c = Coordinator.from_url(url, "sec:")
        assert c.running_jobs() == []
        assert_no_secret(repr(c), DEFAULT_PW, OPS_PW, where=f"repr, {form}")
        c.close()
    sentinel = Coordinator.from_url(f"redis+sentinel://:{DEFAULT_PW}@127.0.0.1:1/svc?sentinel_password=sentpw1")
    assert_no_secret(repr(sentinel), DEFAULT_PW, "sentpw1", where="repr, sentinel")


def test_no_secret_from_failing_urls(locked_server: RedisServer) -> None:
    dead = free_port()
    for form, (url, secrets) in bad_urls(dead, locked_server.port).items():
        r = run_cli("status", "-v", url=url)
        assert r.code in (2, 4), (form, r)
        assert r.err.startswith("jobs-core: ") and "Traceback" not in r.err, (form, r.err)
        assert_no_secret(r.out + r.err, *secrets, where=form)
        try:
            c = Coordinator.from_url(url, "sec:", retry=Retry(NoBackoff(), 0))
            c.running_jobs()
        except (ConfigurationError, redis.RedisError) as exc:
            shown = str(exc) + "".join(traceback.format_exception(exc))
            assert_no_secret(shown, *secrets, where=f"API, {form}")
        else:
            pytest.fail(f"{form}: {url} worked")
    for form in ("wrong password", "ssl_password, nobody there"):  # the watch view goes on through errors
        url, secrets = bad_urls(dead, locked_server.port)[form]
        r = run_cli("watch", "--iterations", "1", "--interval", "0.1", url=url)
        assert r.code == 0 and "Redis error: " in r.out, (form, r)
        assert_no_secret(r.out + r.err, *secrets, where=f"watch, {form}")


def test_an_unencoded_password_is_refused_with_advice(locked_server: RedisServer) -> None:
    r = run_cli("status", url=f"redis://ops:{OPS_PW}@127.0.0.1:{locked_server.port}/0")
    assert r.code == 2 and "percent-encode" in r.err and "%2F" in r.err
    assert f"redis://ops:***@127.0.0.1:{locked_server.port}/0" in r.err
    # an "@" inside a query option is not taken for the end of a user part
    c = Coordinator.from_url(f"redis://127.0.0.1:{locked_server.port}/0?password={quote(DEFAULT_PW, safe='')}"
                             "&client_name=etl@host1", "sec:")
    assert c.running_jobs() == []
    c.close()


def test_no_secret_from_the_demo(locked_server: RedisServer) -> None:
    urls = bad_urls(free_port(), locked_server.port)
    for form in ("a numeric start then /", "wrong password", "ssl_password, nobody there"):
        url, secrets = urls[form]
        done = subprocess.run([sys.executable, "-m", "jobs_core.demo"], env=clean_env(url, "sec:"),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (form, done.stdout, done.stderr)
        assert_no_secret(done.stdout + done.stderr, *secrets, where=f"demo, {form}")


# -- 17: untrusted text ------------------------------------------------------------------------------

LEGACY = """
import sys, redis, jobs
jobs.CONN = redis.Redis.from_url(sys.argv[1])
jobs.GLOBAL_PREFIX = sys.argv[2]
job = jobs.ResourceManager([], [sys.argv[4]], 30, identifier=sys.argv[3])
job.start()
jobs.LOCKED.discard(job)  # keep the locks after this process exits
print("ID=" + repr(job.identifier))
"""


@pytest.fixture
def hostile(redis7: Backend, prefix: str) -> Iterator[Cli]:
    """A namespace holding ids, hosts and names with escape sequences, newlines and bidi overrides."""
    cli = Cli(redis7, prefix, decode=False)
    r, p = cli.raw, prefix
    now = cli.coord.server_time()
    cli.write("in.ok")
    # a jobspy 0.31 client whose job id and output name hold escapes
    done = subprocess.run([sys.executable, "-c", LEGACY, redis7.url, prefix, "jobspy\x1b[2J\nFORGED jobspy\u202e",
                           EVIL_NAME], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    # written directly: a lock holder with no record, a reader, a waiter, an output, lineage edges
    r.zadd(p + "jobs:running", {EVIL_ID: now + 60})
    r.set(p + "jobs:running:" + EVIL_ID, json.dumps(["in.ok", "", "locked.name"]), px=60_000)
    r.set(p + "olock:locked.name", EVIL_ID, px=60_000)
    r.zadd(p + "ilock:read.name", {EVIL_READER: now + 60})
    r.set(p + "written.name", EVIL_ID)
    r.zadd(p + "jobs:waiting", {EVIL_WAITER: now + 30})
    r.set(p + "jobs:waiting:" + EVIL_WAITER, json.dumps({"id": EVIL_WAITER, "names": ["in.ok", "read.name"],
                                                        "nin": 1, "host": EVIL_HOST, "pid": 7, "since": now,
                                                        "deadline": now + 30}), px=30_000)
    r.zadd(p + "jobs:graph:input", {f"in.ok -> {EVIL_ID}": now})
    r.zadd(p + "jobs:graph:output", {f"{EVIL_ID} -> {EVIL_NAME}": now})
    # a jobs_core job whose holder record names a hostile host
    honest = cli.job(["in.ok"], ["honest.out"], job_id="honest").start()
    r.hset(p + "jobs:holder:honest", "host", EVIL_HOST)
    yield cli
    honest.stop()
    cli.close()


def test_every_view_escapes_untrusted_text(hostile: Cli) -> None:
    cli = hostile
    runs = {
        "status": cli.run("status"),
        "watch": cli.run("watch", "--iterations", "1", "--interval", "0.1"),
        "show locked": cli.run("show", "locked.name"),
        "show read": cli.run("show", "read.name"),
        "show written": cli.run("show", "written.name"),
        "show honest": cli.run("show", "honest.out"),
        "why-blocked": cli.run("why-blocked", "-i", "written.name", "-i", "honest.out", "-o", "locked.name", "-o",
                               "read.name", "--no-overwrite"),
        "unlock plan": cli.run("unlock", "-o", "locked.name", "-o", "honest.out", "-i", "read.name"),
        "create plan": cli.run("create", "locked.name", "written.name", "read.name"),
        "start blocked, -v": cli.run("start", "me", "-o", "locked.name", "-i", "honest.out", "--duration", "5", "-v"),
        "lineage": cli.run("lineage"),
        "lineage upstream": cli.run("lineage", "locked.name", "--upstream"),
        "lineage mermaid": cli.run("lineage", "-f", "mermaid"),
        "lineage dot": cli.run("lineage", "-f", "dot"),
    }
    for where, r in runs.items():
        assert r.code in (0, 1, 2), (where, r)
        assert "Traceback" not in r.err, (where, r.err)
        assert_safe(r.out, where)
        assert_safe(r.err, where)
    assert "evil\\x1b[2J\\x1b]0;pwned\\x07\\x0aFORGED id\\u202edi-ltr\\x9b31m" in runs["status"].out
    assert "host\\x1b[31m\\x0d\\x0aFORGED host\\u2067" in runs["status"].out
    assert "waiting  waiter\\x0aFORGED waiter\\u2066" in runs["status"].out
    assert "writes out\\x1b[1mname\\x0aFORGED name\\u200f" in runs["status"].out
    assert "jobspy\\x1b[2J\\x0aFORGED jobspy\\u202e" in runs["status"].out
    assert "write lock on locked.name: evil\\x1b[2J" in runs["unlock plan"].err
    assert "read locks on read.name: reader\\x0dFORGED reader\\x1b[8m" in runs["unlock plan"].err
    assert "host host\\x1b[31m" in runs["unlock plan"].err
    assert "written by evil\\x1b[2J" in runs["create plan"].err
    assert "could not start" in runs["start blocked, -v"].err  # the library's own log line, escaped
    assert "held by evil\\x1b[2J" in runs["start blocked, -v"].err


def test_json_documents_are_exact_but_escaped(hostile: Cli) -> None:
    cli = hostile
    for args in (["status", "--json"], ["show", "locked.name", "--json"], ["show", "read.name", "--json"],
                 ["why-blocked", "-o", "locked.name", "-o", "read.name", "--json"], ["lineage", "-f", "json"]):
        r = cli.run(*args)
        assert r.code in (0, 1), (args, r.err)
        assert_safe(r.out, " ".join(args))
        doc = json.loads(r.out)
        if args[0] == "status":
            ids = {j["job_id"] for j in doc["running"]} | {w["job_id"] for w in doc["waiting"]}
            assert {EVIL_ID, EVIL_WAITER} <= ids
            assert {j["host"] for j in doc["running"]} >= {EVIL_HOST}
            assert {w["host"] for w in doc["waiting"]} == {EVIL_HOST}
        elif args[0] == "lineage":
            assert {fold(EVIL_NAME), fold(EVIL_ID)} <= {n["name"] for n in doc["nodes"]}
        elif args[0] == "why-blocked":
            assert {b["holder"]["job_id"] for b in doc["blockers"]} == {EVIL_ID, EVIL_READER}
        elif args[1] == "locked.name":
            assert doc["write_lock"]["job_id"] == EVIL_ID
        else:
            assert [h["job_id"] for h in doc["readers"]] == [EVIL_READER]
            assert doc["waiters"] == [EVIL_WAITER]


def test_blocker_describe_and_errors_escape(hostile: Cli, caplog: pytest.LogCaptureFixture) -> None:
    c = hostile.coord
    report = c.why_blocked(["honest.out", "written.name"], ["locked.name", "read.name"], overwrite=False)
    assert {b.holder.job_id for b in report.blockers if b.holder} >= {EVIL_ID, EVIL_READER, "honest"}
    for b in report.blockers:
        assert_safe(b.describe(), b.reason)
    assert any(EVIL_HOST in (b.holder.host or "") for b in report.blockers if b.holder)  # facts stay exact
    caplog.set_level(logging.INFO, logger="jobs_core")
    with pytest.raises(ResourceUnavailable) as raised:
        c.job(["honest.out"], ["locked.name", "read.name"], duration=5, wait=0.2, heartbeat=False).start()
    assert_safe(str(raised.value), "ResourceUnavailable")
    assert "held by evil\\x1b[2J" in str(raised.value)
    assert_safe(caplog.text, "log")
    assert "could not start" in caplog.text


def test_the_librarys_own_log_lines_escape_ids(redis7, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    """A job id may hold bidirectional controls (jobs_core refuses only C0/C1 controls): every line the
    jobs_core logger writes about it shows them escaped, whatever handler takes it (a task log, a file)."""
    c = jobs_core.Coordinator.from_url(redis7.url, prefix)
    caplog.set_level(logging.INFO, logger="jobs_core")
    job = c.job([], ["bidi.out"], duration=5, job_id="evil\u202eid", heartbeat=False).start()
    c.stop_job(job.id)
    with c.job([], ["bidi.out"], duration=5, job_id="evil\u202eid2", heartbeat=False):
        pass
    messages = [r.getMessage() for r in caplog.records if r.name == "jobs_core"]
    assert len(messages) >= 3 and any("evil\\u202eid" in m for m in messages), messages
    assert not any("\u202e" in m for m in messages), messages
    c.close()


# -- 22: the embedded demo server ------------------------------------------------------------------------


def connect_as_nobody(path: str) -> str:
    """PING the unix socket at ``path`` as user nobody (with redis-cli): "refused", "connected" or its output."""
    done = subprocess.run(["redis-cli", "-s", path, "ping"], capture_output=True, text=True, timeout=30,
                          user=65534, group=65534, env={"PATH": os.environ.get("PATH", "")})
    answer = (done.stdout + done.stderr).strip()
    return "connected" if answer == "PONG" else "refused" if "Permission denied" in answer else answer


def test_embedded_server_takes_no_other_user() -> None:
    with embedded_server() as url:
        assert url.startswith("unix:///") and url.endswith("?db=0")
        path = url[len("unix://"):].partition("?")[0]
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
        client = redis.Redis.from_url(url)
        assert client.config_get("port") == {"port": "0"}  # no TCP listener at all
        assert client.ping()
        c = Coordinator(client, "emb:")
        with c.job([], ["made"], duration=5, heartbeat=False):
            pass
        assert c.output_info("made").written
        if os.geteuid() == 0:
            assert connect_as_nobody(path) == "refused"  # another local user cannot even reach the socket
        client.close()
    assert not os.path.exists(path)


def test_demo_runs_on_the_private_embedded_server() -> None:
    env = clean_env(None, None)
    done = subprocess.run([sys.executable, "-m", "jobs_core.demo", "--day", "2026-11-27"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "embedded Valkey" in done.stdout and "private socket unix:///" in done.stdout
    assert "report.2026-11-27" in done.stdout and "NOT WRITTEN" not in done.stdout
