"""jobs_luigi: jobs_core outputs as Luigi targets, and Luigi tasks that hold their locks while they run.

::

    import luigi
    from jobs_luigi import JobsTask

    class Sales(JobsTask):
        date = luigi.DateParameter()
        region = luigi.Parameter()
        jobs_output = "sales.{date}.{region}"

        def requires(self):
            return Orders(date=self.date)  # its JobsTarget outputs are read-locked while run() runs

        def run(self):
            ...  # "sales.<date>.<region>" is write-locked; it is written when run() returns

The Redis URL and prefix come from the ``[jobs]`` section of luigi.cfg
(:class:`jobs_luigi.config.jobs`), else ``$JOBS_REDIS_URL`` and ``$JOBS_PREFIX``.
"""

from .errors import ResourcesBusy
from .target import JobsTarget
from .task import JobsExternalTask, JobsTask, JobsTaskMixin

__all__ = ["JobsExternalTask", "JobsTarget", "JobsTask", "JobsTaskMixin", "ResourcesBusy"]
