"""jobs-core start --wait showing what it waits for, and lineage --after/--before with times ago,
through the real command (see test_cli.py for how it is driven)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest

from .conftest import Backend
from .test_cli import Cli, clean_env


@pytest.fixture
def cli(redis7: Backend, prefix: str) -> Cli:
    c = Cli(redis7, prefix, decode=False)
    yield c
    c.close()


def start_waiting(cli: Cli, *extra: str, stderr: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "jobs_core", "start", "waiter", "-o", "shared.out",
                             "--duration", "10", *extra], env=clean_env(cli.url, cli.prefix),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)


def test_start_wait_reports_on_stderr_a_line_each(cli: Cli) -> None:
    holder = cli.job([], ["shared.out"], job_id="the.holder").start()
    threading.Timer(1.0, holder.stop).start()
    proc = start_waiting(cli, "--wait", "20", "--progress", "0.3", stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [line for line in err.decode().splitlines() if line.startswith("jobs-core: waiting: ")]
    assert 2 <= len(lines) <= 6, err
    assert lines[0].startswith("jobs-core: waiting: waited 0s (20s left): output_locked: 'shared.out' "
                               f"(held by the.holder on {cli.coord.host} pid {os.getpid()}")
    assert "\r" not in err.decode() and b"token=" in out
    assert cli.run("stop", "waiter", "--failed").code == 0


def test_start_wait_on_a_terminal_keeps_one_line_and_clears_it(cli: Cli) -> None:
    holder = cli.job([], ["shared.out"], job_id="the.holder").start()
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 200, 0, 0))  # 200 columns
    try:
        proc = start_waiting(cli, "--wait", "0.8", "--progress", "0.2", stderr=follower)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the command exited: the terminal is gone
                break
            if not chunk:
                break
            shown += chunk
        proc.communicate(timeout=30)
    finally:
        os.close(leader)
    text = shown.decode()
    assert proc.returncode == 1, text
    reports = text.split("\r\x1b[K")
    live = [r for r in reports if r.startswith("jobs-core: waiting: ")]
    assert len(live) >= 3 and "held by the.holder" in live[0] and "\n" not in "".join(live)
    assert all(len(r) < 200 for r in live)  # cut to the terminal's width: a wrapped line would stay
    # cleared before the final message, which starts on a clean line
    assert reports[-1].startswith("jobs-core: cannot start: "), text
    holder.stop()


def test_start_wait_verbose_leaves_the_reports_to_the_log(cli: Cli) -> None:
    holder = cli.job([], ["shared.out"], job_id="the.holder").start()
    proc = start_waiting(cli, "--wait", "0.5", "--progress", "0.2", "-v", stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=30)
    text = err.decode()
    assert proc.returncode == 1
    assert "jobs-core: waiting: " not in text and "INFO: job waiter waited 0s" in text
    holder.stop()


def test_lineage_times_ago(cli: Cli) -> None:
    with cli.job([], ["a"], job_id="ja"):
        pass

    def edges(*args: str) -> set[tuple[str, str]]:
        return {(e["from"], e["to"]) for e in cli.json("lineage", *args, "-f", "json")["edges"]}

    assert edges("--after", "1h") == edges("--after", "30m", "--before", "0s") == {("ja", "a")}
    assert edges("--before", "1h") == set() and edges("--after", "1w", "--before", "1d") == set()
    doc = cli.json("lineage", "--after", "7d", "-f", "json")
    assert abs(doc["after"] - (time.time() - 7 * 86400)) < 60
    for bad in ("1y", "-1h", "1h30m"):
        r = cli.run("lineage", f"--after={bad}")
        assert r.code == 2 and "a time ago (90s, 30m, 1h, 7d, 2w)" in r.err and r.out == ""
