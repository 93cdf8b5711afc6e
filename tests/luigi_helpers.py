"""Luigi tasks for tests/test_luigi.py, importable by spawned processes.

Every task records what it saw from inside run() in Redis (the test reads it
back, whichever process ran the task): ``<prefix>test:runs:<family>`` counts
how many times its work ran, ``<prefix>test:seen:<family>`` holds JSON of the
locks seen through a coordinator of its own.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from typing import Any

with warnings.catch_warnings():
    # luigi 3.8 warns (DeprecationWarning) at import unless luigi.cfg sets [core] autoload_range;
    # a test must not depend on a luigi.cfg, and the warning is Luigi's, not ours
    warnings.filterwarnings("ignore", r"\s*Autoloading range tasks", DeprecationWarning)
    import luigi

from jobs_luigi import JobsExternalTask, JobsTask
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
                   for t in luigi.task.flatten(task.output())}
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

class Foreign(JobsExternalTask):
    """An output a cron script writes (a jobs_core or jobspy job), maybe in a namespace of its own."""

    name = luigi.Parameter()
    jobs_prefix = luigi.OptionalParameter(default=None, significant=False)
    jobs_output = "{name}"


class Consumer(JobsTask):
    name = luigi.Parameter()
    source_prefix = luigi.OptionalParameter(default=None, significant=False)
    jobs_output = "{name}.consumed"

    def requires(self):
        return Foreign(name=self.name, jobs_prefix=self.source_prefix)

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
