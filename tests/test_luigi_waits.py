"""The Luigi adapter's waits and limits, in real ``luigi.build`` runs (and a real luigid) on a real
redis-server: the status message and progress a waiting task shows, limits shared by tasks, output TTL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"\s*Autoloading range tasks", DeprecationWarning)
    luigi = pytest.importorskip("luigi")

from jobs_luigi import JobsTask  # noqa: E402

import jobs_core  # noqa: E402

from . import luigi_helpers as h  # noqa: E402
from .servers import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def span(task, seconds=0.3):
    """Work for ``seconds``, noting (task, enter, leave) in the namespace (workers are processes)."""
    enter = time.time()
    time.sleep(seconds)
    c = h.probe()
    c.client.rpush(c.keys.prefix + "test:spans", json.dumps([task.task_id, enter, time.time()]))


def spans(c):
    return [tuple(json.loads(s)) for s in c.client.lrange(c.keys.prefix + "test:spans", 0, -1)]


class LimitedWork(JobsTask):
    n = luigi.IntParameter()
    jobs_output = "lw.{n}"
    jobs_limits = {"warehouse": 1}

    def run(self):
        span(self)


class DefaultLimited(JobsTask):
    """Takes the [jobs] section's limits; writes no jobs output (its output is a file)."""

    n = luigi.IntParameter()
    path = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"{self.path}/dl.{self.n}")

    def run(self):
        span(self)
        with self.output().open("w") as f:
            f.write("done")


class ShortLived(JobsTask):
    jobs_output = "short.lived"
    jobs_output_ttl = 100

    def run(self):
        pass


class Waits(JobsTask):
    jobs_output = "held.out"
    jobs_progress = 0.2
    jobs_wait = 30

    def run(self):
        pass


@pytest.fixture
def ns(redis7, prefix):
    h.configure(redis7.url, prefix)
    c = jobs_core.Coordinator.from_url(redis7.url, prefix)
    yield c
    c.close()
    h.unconfigure()
    luigi.configuration.get_config().remove_option("jobs", "limits")


def overlaps(spans):
    spans = sorted(spans, key=lambda s: s[1])
    return [(a[0], b[0]) for a, b in zip(spans, spans[1:]) if b[1] < a[2]]


def test_tasks_sharing_a_limit_never_overlap(ns):
    ns.set_limit("warehouse", 1)
    result = luigi.build([LimitedWork(n=i) for i in range(4)], local_scheduler=True, workers=4,
                         detailed_summary=True)
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    assert len(spans(ns)) == 4 and overlaps(spans(ns)) == []
    assert all(ns.output_info(f"lw.{i}").written for i in range(4))
    (info,) = ns.limits(["warehouse"])
    assert info.used == 0 and info.holders == () and info.line == ()


def test_the_sections_limits_apply_to_tasks_without_jobs_outputs(ns, tmp_path):
    ns.set_limit("warehouse", 1)
    luigi.configuration.get_config().set("jobs", "limits", '{"warehouse": 1}')
    result = luigi.build([DefaultLimited(n=i, path=str(tmp_path)) for i in range(3)], local_scheduler=True,
                         workers=3, detailed_summary=True)
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    assert len(spans(ns)) == 3 and overlaps(spans(ns)) == []


def test_a_limit_nobody_set_fails_the_task_clearly(ns, caplog):
    result = luigi.build([LimitedWork(n=9)], local_scheduler=True, detailed_summary=True)
    assert result.status == luigi.LuigiStatusCode.FAILED
    assert "limit 'warehouse' is not set" in caplog.text or "warehouse" in caplog.text
    assert any(isinstance(r.exc_info[1], jobs_core.UnknownLimit) for r in caplog.records if r.exc_info)
    assert spans(ns) == [] and not ns.output_info("lw.9").written


def test_bad_limits_fail_before_redis(ns, caplog):
    class BadLimits(JobsTask):
        jobs_output = "bad.limits"
        jobs_limits = {"warehouse": 0}

        def run(self):
            span(self, 0)

    result = luigi.build([BadLimits()], local_scheduler=True, detailed_summary=True)
    assert result.status == luigi.LuigiStatusCode.FAILED and spans(ns) == []
    assert any(isinstance(r.exc_info[1], jobs_core.InvalidArgument) for r in caplog.records if r.exc_info)
    assert ns.running_jobs() == [] and ns.limits() == []


def test_output_ttl(ns):
    assert luigi.build([ShortLived()], local_scheduler=True)
    ttl = ns.client.pttl(ns.keys.output("short.lived"))
    assert 0 < ttl <= 100_000


@pytest.fixture
def luigid(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from luigi.cmdline import luigid; luigid(sys.argv[1:])",
                             "--port", str(port), "--address", "127.0.0.1", "--logdir", str(tmp_path)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, f"luigid exited with {proc.returncode}"
            try:
                rpc(port, "ping", worker="test")
                break
            except OSError:
                assert time.monotonic() < deadline, "luigid did not answer in 20 s"
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def rpc(port, method, **data):
    query = urllib.parse.urlencode({"data": json.dumps(data)})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/{method}?{query}", timeout=5) as reply:
        return json.load(reply)["response"]


def test_luigid_shows_what_a_waiting_task_waits_for(ns, redis7, luigid):
    holder = ns.job([], ["held.out"], duration=30, job_id="cron:holder <b>\u202e")
    holder.start()
    task = Waits()
    code = ("import luigi, sys; from tests.test_luigi_waits import Waits; "
            "sys.exit(0 if luigi.build([Waits()], scheduler_host='127.0.0.1', scheduler_port=int(sys.argv[1])) else 1)")
    env = {**os.environ, "JOBS_REDIS_URL": redis7.url,
           "JOBS_PREFIX": ns.prefix}
    build = subprocess.Popen([sys.executable, "-c", code, str(luigid)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    messages, percents = set(), set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(percents) < 2:
        messages.add(rpc(luigid, "get_task_status_message", task_id=task.task_id).get("statusMessage"))
        percents.add(rpc(luigid, "get_task_progress_percentage", task_id=task.task_id).get("progressPercentage"))
        percents.discard(None)
        time.sleep(0.1)
    holder.stop(failed=True)  # nothing written: the task does the work
    out, _ = build.communicate(timeout=60)
    assert build.returncode == 0, out
    waiting = [m for m in messages if m and m.startswith("waiting for its locks")]
    assert waiting, messages
    assert "output_locked: 'held.out'" in waiting[-1] and "cron:holder <b>\\u202e" in waiting[-1]
    assert "\u202e" not in "".join(waiting)  # the holder's bidi override is shown escaped
    assert len(percents) >= 2 and all(0 <= p <= 100 for p in percents), percents
    final = rpc(luigid, "get_task_status_message", task_id=task.task_id)["statusMessage"]
    assert final.startswith("running: took its locks after waiting"), final
    assert ns.output_info("held.out").writer == task.jobs_job_id
