"""Luigi tasks for tests/test_luigi.py, importable by spawned processes.

Every task records what it saw from inside run() in Redis (the test reads it
back, whichever process ran the task): ``<prefix>test:runs:<family>`` counts
how many times its work ran, ``<prefix>test:seen:<family>`` holds JSON of the
locks seen through a coordinator of its own.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import sys
import time
import warnings
from typing import Any

with warnings.catch_warnings():
    # luigi 3.8 warns (DeprecationWarning) at import unless luigi.cfg sets [core] autoload_range;
    # a test must not depend on a luigi.cfg, and the warning is Luigi's, not ours
    warnings.filterwarnings("ignore", r"\s*Autoloading range tasks", DeprecationWarning)
    import luigi
    from luigi.contrib.external_program import ExternalProgramTask

from jobs_luigi import JobsExternalTask, JobsTarget, JobsTask, JobsTaskMixin
from jobs_luigi.config import resolve

import jobs_core


def configure(url: str, prefix: str) -> None:
    """Point the ``[jobs]`` section at a namespace (what luigi.cfg would do); leave logging to pytest."""
    config = luigi.configuration.get_config()
    config.set("jobs", "redis_url", url)
    config.set("jobs", "prefix", prefix)
    config.set("core", "no_configure_logging", "true")


def unconfigure() -> None:
    config = luigi.configuration.get_config()
    for section, option in (("jobs", "redis_url"), ("jobs", "prefix"), ("core", "no_configure_logging")):
        config.remove_option(section, option)


def probe() -> jobs_core.Coordinator:
    """A coordinator of the test's own (not the adapter's) on the configured namespace."""
    return jobs_core.Coordinator.from_url(*resolve(None, None))


def record(task: JobsTask, **extra: Any) -> None:
    """Count a run of ``task``'s work and note the locks on its inputs and outputs, as seen now
    (each through a coordinator on the target's own namespace)."""
    c = probe()
    try:
        family = task.get_task_family()
        outputs = {t.name: getattr(c.output_info(t.name).write_lock, "job_id", None)
                   for t in luigi.task.flatten(task.output()) if isinstance(t, JobsTarget)}
        inputs = {}
        for t in task.jobs_input_targets():
            other = jobs_core.Coordinator.from_url(*t.namespace)
            inputs[t.name] = [r.job_id for r in other.output_info(t.name).readers]
            other.close()
        job = task.jobs_job
        seen = {"job_id": task.jobs_job_id, "token": job.token if job else None, "outputs": outputs,
                "inputs": inputs, **extra}
        c.client.set(f"{c.prefix}test:seen:{family}", json.dumps(seen))
        c.client.incr(f"{c.prefix}test:runs:{family}")
    finally:
        c.close()


def runs(c: jobs_core.Coordinator, family: str) -> int:
    return int(c.client.get(f"{c.prefix}test:runs:{family}") or 0)


def seen(c: jobs_core.Coordinator, family: str) -> dict[str, Any]:
    return json.loads(c.client.get(f"{c.prefix}test:seen:{family}"))


def skips(c: jobs_core.Coordinator) -> int:
    return int(c.client.get(f"{c.prefix}test:skips") or 0)


class Recorded(JobsTask):
    """Counts the runs it skipped because another process had written its outputs."""

    def on_jobs_skip(self, writers):
        super().on_jobs_skip(writers)
        c = probe()
        c.client.incr(f"{c.prefix}test:skips")
        c.close()


# -- a diamond: Raw (external) -> Top -> Left, Right -> Bottom -------------------------------

class Raw(JobsExternalTask):
    day = luigi.DateParameter()
    jobs_output = "dm.raw.{day}"


class Top(Recorded):
    day = luigi.DateParameter()
    hold = luigi.FloatParameter(default=0.0, significant=False)
    jobs_output = "dm.top.{day}"

    def requires(self):
        return Raw(day=self.day)

    def run(self):
        record(self)
        time.sleep(self.hold)


class Left(Recorded):
    day = luigi.DateParameter()
    hold = luigi.FloatParameter(default=0.0, significant=False)
    jobs_output = "dm.left.{day}"

    def requires(self):
        return Top(day=self.day, hold=self.hold)

    def run(self):
        record(self)
        time.sleep(self.hold)


class Right(Recorded):
    day = luigi.DateParameter()
    hold = luigi.FloatParameter(default=0.0, significant=False)
    jobs_output = ["dm.right.{day}", "dm.right.{day}.extra"]

    def requires(self):
        return Top(day=self.day, hold=self.hold)

    def run(self):
        record(self)
        time.sleep(self.hold)


class Bottom(Recorded):
    day = luigi.DateParameter()
    hold = luigi.FloatParameter(default=0.0, significant=False)
    jobs_output = "dm.bottom.{day}"
    jobs_inputs = ["dm.config"]

    def requires(self):
        return {"left": Left(day=self.day, hold=self.hold), "right": Right(day=self.day, hold=self.hold)}

    def run(self):
        record(self)
        time.sleep(self.hold)


def build_diamond(url: str, prefix: str, day: str, workers: int, hold: float, barrier: Any = None) -> None:
    """A separate process's ``luigi.build`` of the diamond; exits 1 unless it succeeded.

    The namespace comes through the environment: a Luigi worker process that is
    spawned (not forked) reads luigi.cfg files and the environment, but not
    configuration set in its parent's memory.
    """
    os.environ.update({"JOBS_REDIS_URL": url, "JOBS_PREFIX": prefix})
    task = Bottom(day=luigi.DateParameter().parse(day), hold=hold)
    if barrier is not None:
        barrier.wait(60)
    result = luigi.build([task], local_scheduler=True, workers=workers, detailed_summary=True)
    if result.status != luigi.LuigiStatusCode.SUCCESS:
        raise SystemExit(f"build failed: {result.summary_text}")


# -- failures -----------------------------------------------------------------------------------

class Boom(JobsTask):
    day = luigi.DateParameter()
    jobs_output = "boom.{day}"

    def requires(self):
        return Top(day=self.day)

    def run(self):
        record(self)
        raise RuntimeError("boom")


class AfterBoom(JobsTask):
    day = luigi.DateParameter()
    jobs_output = "after-boom.{day}"

    def requires(self):
        return Boom(day=self.day)

    def run(self):
        record(self)


class Fragile(JobsTask):
    """Its write lock is force-released from outside while it runs."""

    day = luigi.DateParameter()
    jobs_output = "fragile.{day}"
    jobs_duration = 0.9  # heartbeat every 0.3 s

    def run(self):
        c = probe()
        try:
            c.unlock(outputs=[self.output().name])  # an operator's repair, from another client
            deadline = time.monotonic() + 5
            while not self.jobs_job.lost and time.monotonic() < deadline:
                time.sleep(0.05)
            try:
                self.jobs_check()
                checked = "no error"
            except jobs_core.LockLost as exc:
                checked = type(exc).__name__
            c.client.set(f"{c.prefix}test:fragile", json.dumps({"lost": self.jobs_job.lost, "check": checked}))
        finally:
            c.close()
        record(self)

    def on_jobs_lost(self, job):
        c = probe()
        c.client.incr(f"{c.prefix}test:on_lost")
        c.close()


# -- dynamic dependencies -------------------------------------------------------------------------

class DynDep(JobsTask):
    day = luigi.DateParameter()
    jobs_output = "dyn.dep.{day}"

    def run(self):
        c = probe()
        # the generator task that yielded this one released its locks when Luigi dropped it
        c.client.set(f"{c.prefix}test:dyn-lock-during-dep", str(c.client.get(f"{c.prefix}olock:dyn.main.{self.day}")))
        c.close()
        record(self)


class Dyn(JobsTask):
    day = luigi.DateParameter()
    jobs_output = "dyn.main.{day}"

    def requires(self):
        return Top(day=self.day)

    def run(self):
        c = probe()
        c.client.incr(f"{c.prefix}test:dyn-starts")
        c.close()
        dep = yield DynDep(day=self.day)
        record(self, dynamic={dep.name: [r.job_id for r in probe().output_info(dep.name).readers]})


class DynFail(JobsTask):
    day = luigi.DateParameter()
    jobs_output = "dyn.fail.{day}"

    def run(self):
        top = yield Top(day=self.day)
        record(self, dynamic={top.name: [r.job_id for r in probe().output_info(top.name).readers]})
        raise RuntimeError("after the yield")


# -- skipping and partial outputs -----------------------------------------------------------------

class Contended(JobsTask):
    """Writes ``cont.a`` and ``cont.b``; the test has another job write them too."""

    jobs_output = ["cont.a", "cont.b"]
    jobs_wait = 10.0
    messages: list[str] = []

    def run(self):
        record(self)

    def on_jobs_skip(self, writers):
        type(self).messages.append(dict(writers))
        super().on_jobs_skip(writers)


class Impatient(JobsTask):
    jobs_output = "busy.out"
    jobs_wait = 0.3

    def run(self):
        record(self)


# -- inputs written outside Luigi -----------------------------------------------------------------

PRIVATE = luigi.parameter.ParameterVisibility.PRIVATE


class Foreign(JobsExternalTask):
    """An output a cron script writes (a jobs_core or jobspy job), maybe in a namespace of its own."""

    name = luigi.Parameter()
    jobs_prefix = luigi.OptionalParameter(default=None, significant=False)
    jobs_redis_url = luigi.OptionalParameter(default=None, significant=False, visibility=PRIVATE)
    jobs_output = "{name}"


class Consumer(JobsTask):
    name = luigi.Parameter()
    source_prefix = luigi.OptionalParameter(default=None, significant=False)
    source_url = luigi.OptionalParameter(default=None, significant=False, visibility=PRIVATE)
    jobs_output = "{name}.consumed"

    def requires(self):
        return Foreign(name=self.name, jobs_prefix=self.source_prefix, jobs_redis_url=self.source_url)

    def run(self):
        record(self)


class Filed(JobsTask):
    """Its output is a file and a jobs output."""

    path = luigi.Parameter(significant=False)

    def output(self):
        return self.jobs_target("filed", target=luigi.LocalTarget(self.path))

    def run(self):
        record(self)
        with self.output().open("w") as f:
            f.write("data\n")


class TwoSpellings(JobsTask):
    """Two outputs, one through [jobs]'s URL and one through another spelling of the same server."""

    other_url = luigi.Parameter(significant=False, visibility=PRIVATE)

    def output(self):
        return [self.jobs_target("spelled.a"), JobsTarget("spelled.b", redis_url=self.other_url)]

    def run(self):
        record(self)


# -- run() defined anywhere: each must run once, under the locks ------------------------------------

class RecordingBase(luigi.Task):
    """A user's own base class (a Luigi task), holding the run() its subclasses share."""

    def run(self):
        record(self)


class Inherits(JobsTaskMixin, RecordingBase):
    day = luigi.DateParameter()
    jobs_output = "inherits.{day}"

    def requires(self):
        return Top(day=self.day)


class Chained(Inherits):
    """Its run() calls the inherited, already locked one: the locks are still taken once."""

    jobs_output = "chained.{day}"
    jobs_wait = 2.0  # a second take of the same job id would wait for the first, then fail

    def run(self):
        return super().run()


class Program(JobsTaskMixin, ExternalProgramTask):
    """luigi.contrib's ExternalProgramTask: its run() starts a program."""

    day = luigi.DateParameter()
    jobs_output = "program.{day}"

    def requires(self):
        return Top(day=self.day)

    def program_args(self):  # called by ExternalProgramTask.run()
        record(self)
        return [sys.executable, "-c", "pass"]


class RecordingMixin:
    """A plain mixin (not a Luigi task) holding run(), listed before JobsTask."""

    def run(self):
        record(self)


class MixinFirst(RecordingMixin, JobsTask):
    day = luigi.DateParameter()
    jobs_output = "mixin-first.{day}"

    def requires(self):
        return Top(day=self.day)


class Marker(JobsTask):
    """No run() of its own: its output marks that its requirement is done."""

    day = luigi.DateParameter()
    jobs_output = "marker.{day}"

    def requires(self):
        return Top(day=self.day)


class StaticRun(JobsTask):
    """Its run() is a staticmethod."""

    day = luigi.DateParameter()
    jobs_output = "static-run.{day}"
    run = staticmethod(lambda: None)

    def requires(self):
        return Top(day=self.day)


# -- pickled inside run(), as Luigi's cluster task types do -------------------------------------------

class Pickled(JobsTask):
    day = luigi.DateParameter()
    jobs_output = "pickled.{day}"

    def requires(self):
        return Top(day=self.day)

    def run(self):
        with self.no_unpicklable_properties():  # as luigi.contrib's SGE, LSF and Hadoop tasks do
            data = pickle.dumps(self)
        copy = pickle.loads(data)
        try:
            copy.jobs_check()
            copy_check = "no error"
        except jobs_core.NotRunning:
            copy_check = "NotRunning"
        facts = {"copy_job": repr(copy.jobs_job), "copy_check": copy_check, "copy_complete": copy.complete()}
        del copy
        gc.collect()
        self.jobs_check()  # the original still holds every lock
        record(self, **facts)


# -- job ids ----------------------------------------------------------------------------------------

class Pair(JobsTask):
    """Two string parameters; each task's output is named after Luigi's task id (unique by its hash)."""

    a = luigi.Parameter()
    b = luigi.Parameter()
    jobs_wait = 0.5

    def output(self):
        return self.jobs_target(f"pair.{self.task_id}")

    def run(self):
        record(self)
        time.sleep(1.5)


# -- complete() re-checked after any wait -----------------------------------------------------------

class FileOnly(Recorded):
    """Its only output is a file; it reads a jobs output."""

    path = luigi.Parameter(significant=False)
    jobs_inputs = ["fileonly.in"]
    jobs_wait = 10.0

    def output(self):
        return luigi.LocalTarget(self.path)

    def run(self):
        record(self)
        with self.output().open("w") as f:
            f.write("done\n")


class FileOnlyDynamic(Recorded):
    """Its only output is a file; its jobs input comes as a dynamic dependency."""

    path = luigi.Parameter(significant=False)
    jobs_wait = 10.0

    def output(self):
        return luigi.LocalTarget(self.path)

    def run(self):
        yield Foreign(name="fileonly.in")
        record(self)
        with self.output().open("w") as f:
            f.write("done\n")
