"""``jobs-core limit set/list/remove``, ``start --limit`` and limits in ``status``, run as a user would."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from .conftest import Backend
from .test_cli import Cli, clean_env


@pytest.fixture
def cli(redis7: Backend, prefix: str) -> Cli:
    c = Cli(redis7, prefix, decode=False)
    yield c
    c.close()


def test_set_list_and_remove(cli: Cli) -> None:
    r = cli.run("limit", "set", "warehouse", "2")
    assert r.code == 0 and r.out == "limit warehouse: capacity 2 (was not set)\n"
    assert cli.run("limit", "set", "warehouse", "3").out == "limit warehouse: capacity 3 (was 2)\n"
    holder = cli.job([], ["x"], job_id="cron:<load>\u202e", limits={"warehouse": 2}).start()
    r = cli.run("limit", "list")
    assert r.code == 0, r.err
    assert r.out.splitlines()[0] == "limit warehouse: 2/3 slots used, 1 free"
    assert "held    2 by cron:<load>\\u202e (token 1" in r.out and "\u202e" not in r.out
    doc = cli.json("limit", "list", "--json")
    (limit,) = doc["limits"]
    assert doc["version"] == 1 and (limit["name"], limit["capacity"], limit["used"], limit["free"]) == (
        "warehouse", 3, 2, 1)
    assert [(h["job_id"], h["slots"], h["token"]) for h in limit["holders"]] == [(holder.id, 2, holder.token)]
    status = cli.json("status", "--json")
    assert status["running"][0]["limits"] == {"warehouse": 2}
    assert [x["name"] for x in status["limits"]] == ["warehouse"]
    assert "holds 2 slots of limit warehouse" in cli.run("status").out
    r = cli.run("limit", "list", "nope")
    assert r.code == 1 and r.out == "limit nope: not set\n"
    before = cli.snapshot()
    r = cli.run("limit", "remove", "warehouse")  # stdin is not a terminal
    assert r.code == 2 and "pass --yes" in r.err and cli.snapshot() == before
    r = cli.run("limit", "remove", "warehouse", "--yes")
    assert r.code == 0 and r.out == "removed limit warehouse (capacity was 3)\n"
    assert "2 slots held by 1 jobs" in r.err
    r = cli.run("limit", "list", "warehouse")
    assert r.code == 1 and r.out.splitlines()[0] == "limit warehouse: not set (2 slots still held)"
    holder.stop()
    assert cli.run("limit", "list").out.startswith("no limits set")
    assert cli.run("limit", "remove", "warehouse", "--yes").code == 1


def test_start_takes_slots_and_waits_in_the_limits_line(cli: Cli) -> None:
    assert cli.run("limit", "set", "api", "1").code == 0
    r = cli.run("start", "first", "--duration", "30", "--limit", "api")  # LIMIT alone: one slot
    assert r.code == 0, r.err
    r = cli.run("start", "second", "--duration", "30", "--limit", "api=1")
    assert r.code == 1 and "limit_full: 'api' (held by first" in r.err
    proc = subprocess.Popen([sys.executable, "-m", "jobs_core", "start", "second", "--duration", "30",
                             "--limit", "api=1", "--wait", "20"], env=clean_env(cli.url, cli.prefix),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not cli.coord.waiting_jobs() and time.monotonic() < deadline:
        time.sleep(0.01)
    (info,) = cli.coord.limits(["api"])
    assert [(w.job_id, slots) for w, slots in info.line] == [("second", 1)]
    assert "1 in line" in cli.run("status").out
    assert cli.run("stop", "first").code == 0
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    (info,) = cli.coord.limits(["api"])
    assert [h.job_id for h, _ in info.holders] == ["second"]
    assert cli.run("stop", "second").code == 0


def test_bad_limits_change_nothing(cli: Cli) -> None:
    cli.run("limit", "set", "api", "1")
    before = cli.snapshot()
    for args, words in [
        (("limit", "set", "api", "0"), "give 1 or more"),
        (("limit", "set", "api", "1.5"), "1.5"),
        (("limit", "set", "a\nb", "2"), "control characters"),
        (("start", "j", "--duration", "5", "--limit", "api=-1"), "--limit"),
        (("start", "j", "--duration", "5", "--limit", "=1"), "expected LIMIT=SLOTS"),
        (("start", "j", "--duration", "5", "--limit", "api=2"), "capacity"),
        (("start", "j", "--duration", "5", "--limit", "nope=1"), "not set"),
        (("start", "j", "--duration", "5", "--limit", "api", "--limit", "api=1"), "named twice"),
    ]:
        r = cli.run(*args)
        assert r.code in (1, 2) and words in r.err, (args, r.err)
        assert cli.snapshot() == before, args


def test_why_blocked_names_a_full_limit_and_its_holders(cli: Cli) -> None:
    cli.run("limit", "set", "api", "1")
    holder = cli.job([], [], job_id="holder", limits={"api": 1}).start()
    r = cli.run("why-blocked", "--limit", "api=1")
    assert r.code == 1 and "limit_full" in r.out and "holder (token" in r.out, r.out
    doc = cli.json("why-blocked", "--limit", "api", "--json")
    assert doc["reasons"] == {"limit_full": ["api"]} and doc["blockers"][0]["holder"]["job_id"] == "holder"
    r = cli.run("why-blocked", "--limit", "nope")
    assert r.code == 1 and "limit_unknown  nope" in r.out  # a limit nobody set is what blocks
    holder.stop()
    assert cli.run("why-blocked", "--limit", "api").code == 0
