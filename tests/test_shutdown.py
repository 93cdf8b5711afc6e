"""jobs.py's ``handle_auto_shutdown()`` and an ignored SIGTERM (issue 13, item 21).

A process that ignores SIGTERM goes on working when it gets one, so its jobs
must keep their locks: ``handle_auto_shutdown()`` leaves an ignored SIGTERM
alone, as ``release_on_signal`` does. A SIGTERM that is not ignored still stops
the jobs as failed and ends the process (143).
"""

from __future__ import annotations

import subprocess
import sys

from .conftest import Backend

SCRIPT = """
import os, signal, sys, time
import redis
import jobs_core as jobs

url, prefix, ignore = sys.argv[1], sys.argv[2], sys.argv[3] == "ignore"
if ignore:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
client = redis.Redis.from_url(url)
jobs.CONN, jobs.GLOBAL_PREFIX = client, prefix
jobs.handle_auto_shutdown()
job = jobs.ResourceManager([], ["work.out"], 30)
job.start()
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.3)  # the work goes on
print("locked after SIGTERM:", client.exists(prefix + "olock:work.out"), flush=True)
job.stop()
print("written:", client.exists(prefix + "work.out"), flush=True)
"""


def run(backend: Backend, prefix: str, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, backend.url, prefix, mode], capture_output=True, text=True,
                          timeout=60)


def test_an_ignored_sigterm_keeps_the_locks(redis7: Backend, prefix: str) -> None:
    done = run(redis7, prefix, "ignore")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["locked after SIGTERM: 1", "written: 1"], done.stderr


def test_a_sigterm_still_stops_the_jobs_as_failed(redis7: Backend, prefix: str) -> None:
    done = run(redis7, prefix, "default")
    assert done.returncode == 143, done.stdout + done.stderr
    assert done.stdout == ""
    client = redis7.client()
    assert client.exists(prefix + "olock:work.out", prefix + "work.out") == 0
    client.close()
