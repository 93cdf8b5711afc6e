"""The Luigi adapter (jobs_luigi) in real ``luigi.build(..., local_scheduler=True)`` runs on a real redis-server.

The tasks live in tests/luigi_helpers.py, so that spawned processes can import
them; each records from inside its run() what it saw (see that module).
"""

from __future__ import annotations

import datetime
import json
import logging
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    # luigi 3.8 warns (DeprecationWarning) at import unless luigi.cfg sets [core] autoload_range;
    # the tests must not depend on a luigi.cfg, and the warning is Luigi's, not ours
    warnings.filterwarnings("ignore", r"\s*Autoloading range tasks", DeprecationWarning)
    luigi = pytest.importorskip("luigi")

from jobs_luigi import JobsExternalTask, JobsTarget, JobsTask, JobsTaskMixin, ResourcesBusy  # noqa: E402
from jobs_luigi.config import jobs as jobs_section  # noqa: E402

import jobs_core  # noqa: E402

from . import luigi_helpers as h  # noqa: E402

# jobspy replaces the SIGTERM handler when imported; keep the test process's own.
_SIGTERM = signal.getsignal(signal.SIGTERM)
import jobs  # noqa: E402  (jobspy 0.31)

signal.signal(signal.SIGTERM, _SIGTERM)

DAY = datetime.date(2026, 11, 27)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ns(redis7, prefix):
    """The [jobs] section pointed at a fresh namespace; yields a coordinator of the test's own on it."""
    h.configure(redis7.url, prefix)
    c = jobs_core.Coordinator.from_url(redis7.url, prefix)
    yield c
    c.close()
    h.unconfigure()


def build(*tasks, workers=1, **kwargs):
    return luigi.build(list(tasks), local_scheduler=True, workers=workers, detailed_summary=True, **kwargs)


def written_by(c, name):
    info = c.output_info(name)
    return info.writer if info.written else None


def no_locks(c, *names):
    """Neither write nor read locks on any of ``names``."""
    return all(c.output_info(n).write_lock is None and not c.output_info(n).readers for n in names)


def seed_diamond(c):
    """What the diamond needs from outside Luigi: raw data written by a cron job, and a config."""
    with c.job([], [f"dm.raw.{DAY}", "dm.config"], duration=10, job_id="cron:extract"):
        pass


# -- one process ----------------------------------------------------------------------------------

def test_diamond_with_four_workers(ns):
    seed_diamond(ns)
    result = build(h.Bottom(day=DAY), workers=4)
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    top, left, right, bottom = (task(day=DAY) for task in (h.Top, h.Left, h.Right, h.Bottom))
    for task in (top, left, right, bottom):
        family = task.get_task_family()
        assert h.runs(ns, family) == 1
        seen = h.seen(ns, family)
        assert seen["job_id"] == task.jobs_job_id
        for target in luigi.task.flatten(task.output()):
            assert written_by(ns, target.name) == task.jobs_job_id  # written once, by its owner
            assert seen["outputs"][target.name] == task.jobs_job_id  # write-locked by it inside run()
        for name, readers in seen["inputs"].items():
            assert task.jobs_job_id in readers, name  # read-locked by it inside run()
        assert isinstance(seen["token"], int)
    assert top.jobs_job_id == "luigi:Top(day=2026-11-27)"
    assert set(h.seen(ns, "Bottom")["inputs"]) == {f"dm.left.{DAY}", f"dm.right.{DAY}", f"dm.right.{DAY}.extra",
                                                     "dm.config"}
    assert h.seen(ns, "Top")["inputs"] == {f"dm.raw.{DAY}": ["luigi:Top(day=2026-11-27)"]}
    assert no_locks(ns, f"dm.raw.{DAY}", f"dm.top.{DAY}", f"dm.left.{DAY}", f"dm.bottom.{DAY}")
    inputs, outputs = ns.edges()  # lineage folds the day: one node per task for every day
    assert "dm.top.* -> luigi:Left(day=*)" in inputs
    assert "luigi:Bottom(day=*) -> dm.bottom.*" in outputs
    # a second build finds everything complete and runs nothing
    assert build(h.Bottom(day=DAY)).status == luigi.LuigiStatusCode.SUCCESS
    assert h.runs(ns, "Top") == h.runs(ns, "Bottom") == 1
    assert h.skips(ns) == 0


def test_failing_run_writes_nothing_and_stops_downstream(ns, caplog):
    seed_diamond(ns)
    result = build(h.AfterBoom(day=DAY))
    assert result.status == luigi.LuigiStatusCode.FAILED
    assert h.runs(ns, "Boom") == 1 and h.runs(ns, "AfterBoom") == 0
    assert written_by(ns, f"boom.{DAY}") is None
    assert h.seen(ns, "Boom")["outputs"] == {f"boom.{DAY}": h.Boom(day=DAY).jobs_job_id}  # it was locked...
    assert no_locks(ns, f"boom.{DAY}", f"dm.top.{DAY}")  # ... and released
    assert ns.running_jobs() == []


def test_lost_lock_writes_nothing_and_fails(ns, caplog):
    result = build(h.Fragile(day=DAY))
    assert result.status == luigi.LuigiStatusCode.FAILED
    assert h.runs(ns, "Fragile") == 1
    assert written_by(ns, f"fragile.{DAY}") is None
    fragile = json.loads(ns.client.get(f"{ns.prefix}test:fragile"))
    assert fragile == {"lost": {"output_lock_lost": [f"fragile.{DAY}"]}, "check": "LockLost"}
    assert int(ns.client.get(f"{ns.prefix}test:on_lost")) == 1
    failures = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert any(isinstance(e, jobs_core.LockLost) for e in failures), failures
    assert ns.running_jobs() == []


def test_generator_run_holds_locks_across_yields(ns):
    seed_diamond(ns)
    result = build(h.Dyn(day=DAY), workers=2)
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    dyn = h.Dyn(day=DAY)
    # first run(): yielded an incomplete DynDep, Luigi dropped the generator; second run(): went on
    assert int(ns.client.get(f"{ns.prefix}test:dyn-starts")) == 2
    assert h.runs(ns, "Dyn") == 1 and h.runs(ns, "DynDep") == 1
    assert ns.client.get(f"{ns.prefix}test:dyn-lock-during-dep") == b"None"  # released when dropped
    seen = h.seen(ns, "Dyn")
    assert seen["outputs"] == {f"dyn.main.{DAY}": dyn.jobs_job_id}  # write lock held after the yield
    assert seen["inputs"] == {f"dm.top.{DAY}": [dyn.jobs_job_id]}
    assert seen["dynamic"] == {f"dyn.dep.{DAY}": [dyn.jobs_job_id + ".1"]}  # the yielded output is read-locked
    assert written_by(ns, f"dyn.main.{DAY}") == dyn.jobs_job_id
    assert no_locks(ns, f"dyn.main.{DAY}", f"dyn.dep.{DAY}", f"dm.top.{DAY}")


def test_generator_run_failing_after_a_yield_releases_everything(ns):
    seed_diamond(ns)
    assert build(h.Top(day=DAY)).status == luigi.LuigiStatusCode.SUCCESS
    result = build(h.DynFail(day=DAY))
    assert result.status == luigi.LuigiStatusCode.FAILED
    job_id = h.DynFail(day=DAY).jobs_job_id
    assert h.seen(ns, "DynFail")["dynamic"] == {f"dm.top.{DAY}": [job_id + ".1"]}
    assert written_by(ns, f"dyn.fail.{DAY}") is None
    assert no_locks(ns, f"dyn.fail.{DAY}", f"dm.top.{DAY}") and ns.running_jobs() == []


def test_skips_when_another_job_wrote_the_outputs_while_it_waited(ns):
    h.Contended.messages = []
    other = ns.job([], ["cont.a", "cont.b"], duration=10, job_id="cron:contended").start()
    threading.Timer(0.3, other.stop).start()
    t0 = time.monotonic()
    result = build(h.Contended())
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    assert 0.25 < time.monotonic() - t0 < 8
    assert h.runs(ns, "Contended") == 0  # its work did not run
    assert h.Contended.messages == [{"cont.a": "cron:contended", "cont.b": "cron:contended"}]
    assert written_by(ns, "cont.a") == "cron:contended"
    assert ns.running_jobs() == []


def test_rewrites_partial_outputs(ns):
    ns.create_outputs(["cont.a"], job_id="cron:half")
    result = build(h.Contended())
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    assert h.runs(ns, "Contended") == 1
    assert written_by(ns, "cont.a") == written_by(ns, "cont.b") == h.Contended().jobs_job_id


def test_reruns_when_the_data_of_a_written_output_is_missing(ns, tmp_path):
    ns.create_outputs(["filed"], job_id="cron:lost-its-file")  # the jobs output, but no file
    task = h.Filed(path=str(tmp_path / "filed.csv"))
    assert not task.complete()
    result = build(task)
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    assert h.runs(ns, "Filed") == 1  # not skipped: completion means the data too
    assert task.complete() and written_by(ns, "filed") == task.jobs_job_id


def test_busy_resources_fail_clearly_after_the_wait(ns, caplog):
    holder = ns.job([], ["busy.out"], duration=10, job_id="cron:busy").start()
    try:
        result = build(h.Impatient())
    finally:
        holder.stop(failed=True)
    assert result.status == luigi.LuigiStatusCode.FAILED
    assert h.runs(ns, "Impatient") == 0
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
    busy = [e for e in errors if isinstance(e, ResourcesBusy)]
    assert busy and busy[0].reasons == {"output_locked": ["busy.out"]}
    assert isinstance(busy[0], jobs_core.ResourceUnavailable) and busy[0].waited >= 0.3
    assert "Impatient" in str(busy[0]) and "retry policy" in str(busy[0]) and "cron:busy" in str(busy[0])


@pytest.mark.timeout(60)
def test_parallel_scheduling_does_not_hang(ns):
    seed_diamond(ns)
    result = build(h.Bottom(day=DAY), workers=2, parallel_scheduling=True)
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    assert h.runs(ns, "Bottom") == 1


# -- outputs written outside Luigi ------------------------------------------------------------------

def test_consumes_an_output_of_a_plain_jobs_core_job(ns):
    with ns.job([], ["plain.out"], duration=10, job_id="cron:plain"):
        pass
    # a rewrite of the input is under way: the task waits for it (woken by the release) instead of reading it
    rewrite = ns.job([], ["plain.out"], duration=10, job_id="cron:plain-again").start()
    threading.Timer(0.3, rewrite.stop).start()
    result = build(h.Consumer(name="plain.out"))
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    consumer = h.Consumer(name="plain.out")
    assert h.seen(ns, "Consumer")["inputs"] == {"plain.out": [consumer.jobs_job_id]}
    assert written_by(ns, "plain.out.consumed") == consumer.jobs_job_id
    assert written_by(ns, "plain.out") == "cron:plain-again"


def test_reads_inputs_of_another_namespace(ns, redis7, prefix):
    elsewhere = jobs_core.Coordinator.from_url(redis7.url, "other-" + prefix)
    with elsewhere.job([], ["shared.out"], duration=10, job_id="cron:other-team"):
        pass
    consumer = h.Consumer(name="shared.out", source_prefix=elsewhere.prefix)
    assert build(consumer).status == luigi.LuigiStatusCode.SUCCESS
    assert h.seen(ns, "Consumer")["inputs"] == {"shared.out": [consumer.jobs_job_id]}  # read-locked over there
    assert written_by(ns, "shared.out.consumed") == consumer.jobs_job_id
    assert elsewhere.running_jobs() == [] and ns.running_jobs() == []
    elsewhere.close()


def test_consumes_an_output_of_a_jobspy_job(ns, redis7, monkeypatch):
    conn = redis7.client()  # jobspy's own client (bytes replies, as it requires)
    monkeypatch.setattr(jobs, "CONN", conn)
    monkeypatch.setattr(jobs, "GLOBAL_PREFIX", ns.prefix)
    monkeypatch.setattr(jobs, "DEFAULT_LOGGER", logging.getLogger("jobspy"))
    legacy = jobs.ResourceManager([], ["legacy.out"], duration=5)
    legacy.start()
    legacy.stop()
    # jobspy rewrites it while the task starts: jobspy publishes no wake-up, the task polls
    again = jobs.ResourceManager([], ["legacy.out"], duration=5)
    again.start()
    threading.Timer(0.3, again.stop).start()
    result = build(h.Consumer(name="legacy.out"))
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    consumer = h.Consumer(name="legacy.out")
    assert h.seen(ns, "Consumer")["inputs"] == {"legacy.out": [consumer.jobs_job_id]}
    assert written_by(ns, "legacy.out") == again.identifier
    assert written_by(ns, "legacy.out.consumed") == consumer.jobs_job_id
    conn.close()


# -- several processes ----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("processes", [2, 3])
def test_concurrent_builds_run_each_task_once(ns, redis7, method, processes):
    seed_diamond(ns)
    ctx = multiprocessing.get_context(method)
    barrier = ctx.Barrier(processes)
    procs = [ctx.Process(target=h.build_diamond, args=(redis7.url, ns.prefix, DAY.isoformat(), 2, 0.3, barrier))
             for _ in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * processes
    assert h.skips(ns) >= 1  # the builds did collide: some process found a task's outputs written by another
    for task in (h.Top, h.Left, h.Right, h.Bottom):
        assert h.runs(ns, task.get_task_family()) == 1, task  # each output's work ran exactly once
        for target in luigi.task.flatten(task(day=DAY).output()):
            assert written_by(ns, target.name) == task(day=DAY).jobs_job_id
    assert ns.running_jobs() == []


# -- the example pipeline ---------------------------------------------------------------------------

def test_example_pipeline_runs(redis7, prefix):
    env = {k: v for k, v in os.environ.items() if k != "LUIGI_CONFIG_PATH"}  # its own luigi.cfg
    env.update({"JOBS_REDIS_URL": redis7.url, "JOBS_PREFIX": prefix})
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "luigi" / "pipeline.py"), "--day", "2026-11-27"],
                          cwd=ROOT / "examples" / "luigi", env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    c = jobs_core.Coordinator.from_url(redis7.url, prefix)
    assert c.output_info("report.2026-11-27").writer == "luigi:Report(day=2026-11-27)"
    c.close()


def test_example_pipeline_reads_its_luigi_cfg_when_luigi_came_first(tmp_path):
    """As under ``luigi --module pipeline ...``: Luigi is imported before the pipeline module."""
    env = {k: v for k, v in os.environ.items() if k != "LUIGI_CONFIG_PATH"}
    env["PYTHONPATH"] = str(ROOT / "examples" / "luigi")
    code = "import luigi, pipeline; from jobs_luigi.config import jobs; print(jobs().wait, jobs().duration)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["120.0", "30.0"]  # examples/luigi/luigi.cfg's, not the defaults (600, 60)


# -- pieces ----------------------------------------------------------------------------------------

def test_tasks_and_targets_pickle(ns, tmp_path):
    seed_diamond(ns)
    assert build(h.Top(day=DAY)).status == luigi.LuigiStatusCode.SUCCESS
    for task in (h.Top(day=DAY), h.Top(day=DAY, hold=0.5), h.Bottom(day=DAY), h.Consumer(name="x")):
        back = pickle.loads(pickle.dumps(task))
        assert back == task and back.output() == task.output() and back.jobs_job_id == task.jobs_job_id
        assert back.jobs_input_targets() == task.jobs_input_targets()
    target = JobsTarget("a.b", redis_url="redis://somewhere:1/0", prefix="p:")
    assert pickle.loads(pickle.dumps(target)) == target
    wrapped = JobsTarget("data.x", target=luigi.LocalTarget(str(tmp_path / "x.csv")))
    back = pickle.loads(pickle.dumps(wrapped))
    assert back.name == "data.x" and back.path == str(tmp_path / "x.csv")
    assert back.exists() is False
    with ns.job([], ["data.x"], duration=5):
        pass
    assert back.exists() is False  # the data is not there yet
    with back.open("w") as f:
        f.write("1\n")
    assert back.exists() is True and h.Top(day=DAY).output().exists() is True


def test_target_namespace_comes_from_config_then_environment(ns, redis7, monkeypatch):
    assert JobsTarget("x").namespace == (redis7.url, ns.prefix)
    assert JobsTarget("x", prefix="other:").namespace == (redis7.url, "other:")
    assert JobsTarget("x", redis_url="redis://elsewhere:1/0").namespace == ("redis://elsewhere:1/0", ns.prefix)
    h.unconfigure()
    monkeypatch.setenv("JOBS_REDIS_URL", "redis://env:2/0")
    monkeypatch.setenv("JOBS_PREFIX", "env:")
    assert JobsTarget("x").namespace == ("redis://env:2/0", "env:")
    monkeypatch.delenv("JOBS_REDIS_URL")
    with pytest.raises(jobs_core.ConfigurationError, match=r"\[jobs\]"):
        JobsTarget("x").exists()
    h.configure(redis7.url, ns.prefix)


def test_job_id_falls_back_to_the_task_id():
    class Odd(JobsTask):
        text = luigi.Parameter()
        secret = luigi.Parameter(default="s", visibility=luigi.parameter.ParameterVisibility.PRIVATE)
        jobs_output = "odd"

    assert Odd(text="a b").jobs_job_id == "luigi:Odd(text=a b)"  # private parameters stay out
    assert Odd(text="a -> b").jobs_job_id == "luigi:" + Odd(text="a -> b").task_id
    assert Odd(text="x" * 2000).jobs_job_id == "luigi:" + Odd(text="x" * 2000).task_id


def test_mistakes_fail_early_with_clear_messages(ns):
    with pytest.raises(TypeError, match="JobsTaskMixin first"):
        class Wrong(luigi.Task, JobsTaskMixin):
            jobs_output = "x"

    class Unknown(JobsTask):
        jobs_output = "x.{nope}"

    with pytest.raises(jobs_core.InvalidArgument, match="nope"):
        Unknown().output()
    with pytest.raises(jobs_core.InvalidName):
        JobsTarget("olock:x")
    with pytest.raises(NotImplementedError, match="jobs_output"):
        JobsTask().output()
    with pytest.raises(jobs_core.NotRunning):
        h.Top(day=DAY).jobs_check()

    class Split(JobsTask):
        def output(self):
            return [JobsTarget("a", prefix="one:"), JobsTarget("b", prefix="two:")]

        def run(self):
            pass

    with pytest.raises(jobs_core.ConfigurationError, match="several namespaces"):
        Split().run()
    assert issubclass(JobsExternalTask, luigi.ExternalTask) and JobsExternalTask.run is None


def test_name_templates():
    class Spec(JobsTask):
        day = luigi.DateParameter()
        hour = luigi.DateHourParameter(default=datetime.datetime(2026, 11, 27, 13))
        jobs_output = ["a.{day}.{hour}", "b.{day:%Y%m%d}.{day.year}", "c.{hour:%H}"]

    assert [t.name for t in Spec(day=DAY).output()] == ["a.2026-11-27.2026-11-27T13", "b.20261127.2026", "c.13"]
    Spec.jobs_output = "d.{day:%Y}{hour.nope}"
    with pytest.raises(jobs_core.InvalidArgument, match="cannot format"):
        Spec(day=DAY).output()


# -- the edges (issue 13, items 1 to 5, and the Luigi sides of 16 and 17) -----------------------------------

@pytest.mark.parametrize("task", [h.Inherits, h.Chained, h.Program, h.MixinFirst, h.Marker, h.StaticRun],
                         ids=["inherited", "calls-super", "ExternalProgramTask", "mixin-first", "marker", "static"])
def test_run_is_locked_once_wherever_it_is_defined(ns, task):
    seed_diamond(ns)
    t = task(day=DAY)
    result = build(t)
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    family, out = t.get_task_family(), t.output().name
    assert written_by(ns, out) == t.jobs_job_id  # written, by its own job
    inputs, outputs = ns.edges()
    assert f"dm.top.* -> luigi:{family}(day=*)" in inputs  # its input was read-locked by its job
    assert f"luigi:{family}(day=*) -> {out.replace(str(DAY), '*')}" in outputs
    if task not in (h.Marker, h.StaticRun):  # those record nothing
        assert h.runs(ns, family) == 1
        seen = h.seen(ns, family)
        assert seen["outputs"] == {out: t.jobs_job_id}  # write-locked while its run() ran
        assert seen["inputs"] == {f"dm.top.{DAY}": [t.jobs_job_id]}
    assert no_locks(ns, out, f"dm.top.{DAY}") and ns.running_jobs() == []


def test_every_concrete_class_has_a_locked_run():
    for cls in (JobsTask, h.Inherits, h.Chained, h.Program, h.MixinFirst, h.Marker, h.StaticRun, h.Top, h.Dyn):
        assert getattr(cls.run, "__jobs_locked__", False), cls
    assert h.Foreign.run is None and JobsExternalTask.run is None  # external tasks never run


@pytest.fixture
def short_wait():
    """[jobs] wait = 3: a task that waits on itself fails in seconds, not in ten minutes."""
    config = luigi.configuration.get_config()
    config.set("jobs", "wait", "3")
    yield
    config.remove_option("jobs", "wait")


def test_one_server_spelled_two_ways_is_one_namespace(ns, redis7, short_wait):
    other_url = redis7.url.replace("127.0.0.1", "localhost")
    with ns.job([], ["spelled.in"], duration=10, job_id="cron:spelled"):
        pass
    consumer = h.Consumer(name="spelled.in", source_url=other_url)
    result = build(consumer)
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    # read-locked by the task's one job (not by a second job of the same id, which waited on the first)
    assert h.seen(ns, "Consumer")["inputs"] == {"spelled.in": [consumer.jobs_job_id]}
    assert written_by(ns, "spelled.in.consumed") == consumer.jobs_job_id
    # outputs through two spellings are one namespace too: written all-or-nothing by one job
    two = h.TwoSpellings(other_url=other_url)
    result = build(two)
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    assert h.seen(ns, "TwoSpellings")["outputs"] == {"spelled.a": two.jobs_job_id, "spelled.b": two.jobs_job_id}
    assert written_by(ns, "spelled.a") == written_by(ns, "spelled.b") == two.jobs_job_id
    assert ns.running_jobs() == []


def test_task_pickles_while_run_executes(ns):
    seed_diamond(ns)
    task = h.Pickled(day=DAY)
    result = build(task)
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    seen = h.seen(ns, "Pickled")
    # the copy holds nothing and knows it; the original kept its locks and wrote its output
    assert seen["copy_job"] == "None" and seen["copy_check"] == "NotRunning" and seen["copy_complete"] is False
    assert seen["outputs"] == {f"pickled.{DAY}": task.jobs_job_id}
    assert seen["inputs"] == {f"dm.top.{DAY}": [task.jobs_job_id]}
    assert written_by(ns, f"pickled.{DAY}") == task.jobs_job_id
    assert ns.running_jobs() == []


def test_job_ids_are_unambiguous(ns):
    one, two = h.Pair(a="x, b=y", b="z"), h.Pair(a="x", b="y, b=z")
    assert one.jobs_job_id == 'luigi:Pair(a="x, b=y", b=z)'
    assert two.jobs_job_id == 'luigi:Pair(a=x, b="y, b=z")'
    # both run at once: with one id, the second would wait for the first and fail after jobs_wait
    result = build(one, two, workers=2)
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    assert h.runs(ns, "Pair") == 2
    assert written_by(ns, one.output().name) == one.jobs_job_id
    assert written_by(ns, two.output().name) == two.jobs_job_id


@pytest.mark.parametrize(("value", "shown"), [
    ("eu west", "eu west"), ("é/ü", "é/ü"), ("", '""'), (" x", '" x"'), ('say "hi"', '"say \\"hi\\""'),
    ("a\\b", '"a\\\\b"'), ("f(x)", '"f(x)"'), ("k=v", '"k=v"'), ("line\nbreak", '"line\\nbreak"'),
])
def test_job_id_values_are_quoted_when_they_need_it(value, shown):
    class Quoted(JobsTask):
        text = luigi.Parameter()
        jobs_output = "quoted"

    job_id = Quoted(text=value).jobs_job_id
    assert job_id == f"luigi:Quoted(text={shown})"
    assert jobs_core.names.check_job_id(job_id) == job_id  # a newline, once quoted, is no control character


def _other_build(c, job_id, path, inputs):
    """Another build of the task, holding its job id; it writes the file, then stops."""
    other = c.job(inputs, [], duration=10, job_id=job_id).start()

    def finish():
        Path(path).write_text("done\n")
        other.stop()

    threading.Timer(0.5, finish).start()


@pytest.mark.parametrize("task", [h.FileOnly, h.FileOnlyDynamic], ids=["static-input", "dynamic-input"])
def test_complete_is_checked_again_after_a_wait(ns, tmp_path, task):
    ns.create_outputs(["fileonly.in"], job_id="cron:in")
    t = task(path=str(tmp_path / "out.txt"))
    _other_build(ns, t.jobs_job_id, t.path, ["fileonly.in"])
    t0 = time.monotonic()
    result = build(t)
    assert result.status == luigi.LuigiStatusCode.SUCCESS, result.summary_text
    assert time.monotonic() - t0 >= 0.4  # it did wait for the other build
    assert h.runs(ns, t.get_task_family()) == 0  # and did not do the work again
    assert h.skips(ns) == 1
    assert ns.running_jobs() == [] and no_locks(ns, "fileonly.in")


SECRETS = ("pw-s3cret", "q-s3cret", "sq-s3cret", "ssl-s3cret")


@pytest.mark.parametrize("url", [
    "redis://user:pw-s3cret@127.0.0.1:{port}/0?password=q-s3cret&sentinel_password=sq-s3cret",
    "redis://user:pw-s3cret/?#@127.0.0.1:{port}/0?ssl_password=ssl-s3cret",
], ids=["query-options", "unencoded-password"])
def test_no_secret_in_any_luigi_message(ns, redis7, caplog, url):
    caplog.set_level(logging.DEBUG)
    url = url.format(port=1)  # nobody listens there
    target = JobsTarget("a", redis_url=url, prefix="p:")
    shown = [repr(target), str(target)]
    luigi.configuration.get_config().set("jobs", "redis_url", url)  # as luigi.cfg would hold it
    shown.append(repr(jobs_section()))

    class Split(JobsTask):
        def output(self):
            return [JobsTarget("a", prefix="one:"), JobsTarget("b", redis_url=url.replace("127.0.0.1", "::1"))]

    with pytest.raises(jobs_core.ConfigurationError) as several:
        Split().run()
    shown.append(str(several.value))
    assert "several namespaces" in shown[-1]
    result = build(h.Impatient())  # cannot reach Redis (or read the URL): its complete() fails
    assert result.status != luigi.LuigiStatusCode.SUCCESS
    shown += [result.summary_text, caplog.text]
    for text in shown:
        for secret in SECRETS:
            assert secret not in text, text
    assert "user:***@" in repr(target)


def test_hostile_holders_are_escaped_in_resources_busy(ns, caplog):
    hostile_id = "cron\x1b[2J\nINFO forged line"
    ns.client.set(f"{ns.prefix}olock:busy.out", hostile_id, px=10000)  # a jobspy-style holder (any text)
    ns.client.hset(f"{ns.prefix}jobs:holder:{hostile_id}", mapping={"host": "evil\x1b]0;pwned\x07host", "pid": "1"})
    result = build(h.Impatient())
    assert result.status == luigi.LuigiStatusCode.FAILED
    busy = [r.exc_info[1] for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], ResourcesBusy)]
    assert busy
    message = str(busy[0])
    assert "\x1b" not in message and "\n" not in message and "\x07" not in message
    assert "cron\\x1b[2J\\x0aINFO forged line" in message


def test_skip_message_escapes_the_writers(ns, caplog):
    caplog.set_level(logging.INFO, logger="jobs_luigi")
    task = h.Top(day=DAY)
    messages = []
    task.set_status_message = messages.append
    try:
        task.on_jobs_skip({f"dm.top.{DAY}": "cron\x1b[2J\nforged"})
    finally:
        del task.set_status_message
    assert messages and "\x1b" not in messages[0] and "\n" not in messages[0]
    assert "cron\\x1b[2J\\x0aforged" in messages[0]
    assert all("\x1b" not in r.getMessage() for r in caplog.records)
