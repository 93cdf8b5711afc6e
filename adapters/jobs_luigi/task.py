"""Luigi tasks whose run() holds jobs_core locks: JobsTaskMixin, JobsTask, JobsExternalTask."""

from __future__ import annotations

import collections.abc
import functools
import inspect
import json
import logging
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import luigi
from luigi.task import flatten

from jobs_core import InvalidArgument, InvalidName, Job, NotRunning
from jobs_core.display import printable
from jobs_core.events import WaitProgress
from jobs_core.limits import check_limits
from jobs_core.names import check_job_id

from .config import jobs, resolve
from .locks import Locks
from .target import JobsTarget

log = logging.getLogger("jobs_luigi")

#: A parameter value shown in a job id as it is unless it is empty, has spaces at an end, or holds one
#: of these: the separators of ``name=value, ...``, a quote or backslash, or a control character.
_NEEDS_QUOTES = re.compile(r'[,"\\()=\x00-\x1f\x7f-\x9f]')


def jobs_targets(struct: Any) -> list[JobsTarget]:
    """The JobsTargets in a Luigi structure of targets (a target, a list, a dict...)."""
    return [t for t in flatten(struct) if isinstance(t, JobsTarget)]


class _Field:
    """A parameter in a name template: its serialized form, or the value's own with a spec or attribute."""

    __slots__ = ("value", "text")

    def __init__(self, value: Any, text: str) -> None:
        self.value = value
        self.text = text

    def __format__(self, spec: str) -> str:
        return format(self.value, spec) if spec else self.text

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.value, attr)


class JobsTaskMixin:
    """Makes a Luigi task's outputs jobs_core outputs, and its run() hold their locks.

    Derive from :class:`JobsTask` (or put this mixin before ``luigi.Task``).

    * Outputs: ``jobs_output = "sales.{date}.{region}"`` (or a list of such
      templates, formatted with the significant parameters' serialized values),
      or an ``output()`` returning :class:`JobsTarget`\\ s (other targets are
      left alone). :meth:`jobs_target` makes a target in the task's namespace.
    * Inputs: the JobsTargets among the requirements' outputs, plus
      ``jobs_inputs`` (templates too), plus those a generator run() yields.
    * Every subclass's ``run()``, wherever it is defined (the class, a base class
      listed after the mixin, a plain mixin listed before it, ``luigi.Task``'s
      empty one for a marker task), is wrapped once: while it runs the inputs are
      read-locked and the outputs write-locked (a heartbeat renews the leases);
      the outputs are written when it returns, and only if no lock was lost
      (else :class:`jobs_core.LockLost`); an exception leaves them unwritten.
      Busy resources are waited for up to ``jobs_wait`` seconds, then
      :class:`jobs_luigi.ResourcesBusy` fails the task. If another job already
      wrote every output, or the task is complete once a wait is over, run() is
      skipped (:meth:`on_jobs_skip`).
    * The task pickles while run() executes (Luigi's cluster task types pickle
      ``self`` there): a copy holds no locks, and cannot release the original's.
    * ``jobs_redis_url``, ``jobs_prefix``, ``jobs_duration``, ``jobs_wait``,
      ``jobs_progress``, ``jobs_output_ttl`` and ``jobs_limits`` override the
      ``[jobs]`` section of luigi.cfg (class attributes or insignificant
      parameters; None: the section's value).
    * While run() waits for its locks, the task's status message (and progress
      bar) in luigid say what blocks it and who holds it, every ``jobs_progress``
      seconds (:meth:`on_jobs_wait`).
    """

    jobs_output: ClassVar[str | Sequence[str] | None] = None
    jobs_inputs: ClassVar[str | Sequence[str]] = ()
    jobs_redis_url: str | None = None
    jobs_prefix: str | None = None
    jobs_duration: float | None = None
    jobs_wait: float | None = None
    jobs_progress: float | None = None
    jobs_output_ttl: float | None = None
    jobs_limits: Mapping[str, int] | None = None
    _jobs_locks: Locks | None = None

    if TYPE_CHECKING:  # what the mixin uses of luigi.Task
        task_id: str
        param_kwargs: dict[str, Any]
        set_status_message: Callable[[str], None] | None

        def to_str_params(self, only_significant: bool = False, only_public: bool = False) -> dict[str, str]: ...
        def get_task_family(self) -> str: ...
        def input(self) -> Any: ...
        def complete(self) -> bool: ...

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if issubclass(cls, luigi.Task) and getattr(cls, "output") is luigi.Task.output:  # noqa: B009 (for mypy)
            raise TypeError(f"{cls.__qualname__}: luigi.Task comes before JobsTaskMixin among its bases, so "
                            "luigi.Task.output() (no outputs: never complete) hides the mixin's; derive from "
                            "jobs_luigi.JobsTask, or list JobsTaskMixin first")
        # the run() the class has, wherever the MRO finds it; one already wrapped (inherited from a
        # JobsTaskMixin subclass) is left alone, and the wrapper lets a nested call through
        run = next((vars(k)["run"] for k in cls.__mro__ if "run" in vars(k)), None)
        if run is not None and not getattr(run, "__jobs_locked__", False):  # None: an external task
            setattr(cls, "run", _locked(run))  # noqa: B010 (the mixin declares no run() of its own)

    def __getstate__(self) -> Any:
        # a copy (pickled by a cluster task type inside run(), or copy.copy) holds none of the locks
        parent = getattr(super(), "__getstate__", None)  # object.__getstate__ exists from Python 3.11
        state = parent() if parent is not None else self.__dict__
        if isinstance(state, dict) and "_jobs_locks" in state:
            state = {k: v for k, v in state.items() if k != "_jobs_locks"}
        return state

    # -- names and targets ----------------------------------------------------------------

    def jobs_format(self, template: str) -> str:
        """``template`` formatted with the significant parameters.

        ``{date}`` is the parameter's serialized form, as in the task id and on
        the command line (``2026-11-27``); with a format spec or an attribute,
        the value's own (``{date:%Y%m%d}``, ``{date.year}``).

        Raises:
            InvalidArgument: the template names something that is not a significant
                parameter, or its spec does not suit the value.
        """
        params = self.to_str_params(only_significant=True)
        fields = {k: _Field(self.param_kwargs[k], v) for k, v in params.items()}
        try:
            return template.format_map(fields)
        except KeyError as exc:
            raise InvalidArgument(f"{type(self).__name__}: {template!r} names {exc}, which is not a significant "
                                  f"parameter; it can use {sorted(params)}") from None
        except (IndexError, AttributeError, ValueError) as exc:
            raise InvalidArgument(f"{type(self).__name__}: cannot format {template!r}: {exc}") from None

    def jobs_target(self, name: str, *, target: luigi.Target | None = None) -> JobsTarget:
        """A :class:`JobsTarget` named ``name`` in this task's namespace (optionally wrapping ``target``)."""
        return JobsTarget(name, redis_url=self.jobs_redis_url, prefix=self.jobs_prefix, target=target)

    def output(self) -> JobsTarget | list[JobsTarget]:
        """The targets of ``jobs_output``: one for a template, a list for a list of them."""
        templates = self.jobs_output
        if templates is None:
            raise NotImplementedError(f"{type(self).__name__}: set jobs_output = 'name.{{param}}' (or a list of "
                                      "them), or override output() to return JobsTargets")
        if isinstance(templates, str):
            return self.jobs_target(self.jobs_format(templates))
        return [self.jobs_target(self.jobs_format(t)) for t in templates]

    def jobs_input_targets(self) -> list[JobsTarget]:
        """The JobsTargets among the requirements' outputs, then those of ``jobs_inputs``."""
        extra = [self.jobs_inputs] if isinstance(self.jobs_inputs, str) else list(self.jobs_inputs)
        return jobs_targets(self.input()) + [self.jobs_target(self.jobs_format(t)) for t in extra]

    @property
    def jobs_job_id(self) -> str:
        """The id of this task's jobs: ``luigi:<family>(<param>=<value>, ...)`` with the significant,
        public parameters (as Luigi prints the task), or ``luigi:<task_id>`` if that cannot be a job id.

        A value is shown as it is (``day=2026-11-27``) unless it is empty, has spaces at an
        end or holds any of ``,"\\()=`` or a control character: then it is a JSON string
        (``a="x, b=y"``), so two different tasks never share an id.

        One id per task, so two runs of one task anywhere exclude each other, and lineage
        (which folds digit runs) joins the runs of every day into one node."""
        params = self.to_str_params(only_significant=True, only_public=True)
        readable = "luigi:{}({})".format(self.get_task_family(),
                                         ", ".join(f"{k}={_id_value(v)}" for k, v in params.items()))
        try:
            return check_job_id(readable, "job id")
        except InvalidName:
            return f"luigi:{self.task_id}"

    # -- while run() executes ---------------------------------------------------------------

    @property
    def jobs_job(self) -> Job | None:
        """While run() executes: the jobs_core job holding the outputs (``token`` is its fencing
        token); else None."""
        return self._jobs_locks.main if self._jobs_locks is not None else None

    def jobs_check(self) -> None:
        """Raise :class:`jobs_core.LockLost` if a lock was found lost; call it now and then in a long run().

        Raises:
            LockLost: the heartbeat found a lock lost (or could not renew one for a whole lease).
            NotRunning: called outside run().
        """
        if self._jobs_locks is None:
            raise NotRunning(f"{self.task_id} holds no locks: jobs_check() works inside run()")
        self._jobs_locks.check()

    def on_jobs_skip(self, writers: dict[str, str]) -> None:
        """Called instead of run() when the task was found complete: another job had already written
        every output (``{name: writer}`` of its jobs outputs), or another run of it did the work while
        this one waited for its locks.

        Sets the task's status message (writers' ids escaped: anyone sharing the Redis chooses them);
        Luigi then counts the task as done.
        """
        if writers:
            message = "skipped: already written (" + ", ".join(f"{n} by {w}" for n, w in writers.items()) + ")"
        else:
            message = "skipped: complete once its locks were free (another run did the work)"
        message = printable(message)
        log.info("%s %s", self.task_id, message)
        set_status = getattr(self, "set_status_message", None)
        if callable(set_status):
            set_status(message)

    def on_jobs_lost(self, job: Job) -> None:
        """Called once, in a heartbeat thread, when ``job`` finds a lock lost (``job.lost`` says which).

        run() is not interrupted: it learns at its next :meth:`jobs_check`, and when it
        returns nothing is written and the task fails. Override to stop work early.
        """

    def on_jobs_wait(self, job: Job, progress: WaitProgress) -> None:
        """Called while run() waits for its locks: when the wait begins, then every ``jobs_progress``
        seconds. Sets the task's status message (what blocks it, who holds it; escaped, as anyone
        sharing the Redis chooses names and ids) and its progress percentage (the share of
        ``jobs_wait`` used), which luigid shows."""
        message = printable(f"waiting for its locks: {progress.describe()}")
        set_status = getattr(self, "set_status_message", None)
        if callable(set_status):
            set_status(message)
        set_percentage = getattr(self, "set_progress_percentage", None)
        total = progress.waited + progress.left
        if callable(set_percentage) and total > 0:
            set_percentage(min(100, round(100 * progress.waited / total)))

    def _jobs_started(self, locks: Locks) -> None:
        """After a wait: the status message says the locks are held (luigid keeps the last message)."""
        waited = max((job.waited or 0.0 for job in locks.jobs), default=0.0)
        if not any(job.blockers for job in locks.jobs):
            return
        set_status = getattr(self, "set_status_message", None)
        if callable(set_status):
            set_status(f"running: took its locks after waiting {waited:.1f}s")
        set_percentage = getattr(self, "set_progress_percentage", None)
        if callable(set_percentage):
            set_percentage(0)

    def _jobs_take(self) -> Locks | None:
        """Take the locks for one run(); None if run() is to be skipped."""
        section = jobs()
        limits = section.limits if self.jobs_limits is None else self.jobs_limits
        progress = section.progress if self.jobs_progress is None else self.jobs_progress
        locks = Locks(self.task_id, self.jobs_job_id, jobs_targets(self.output()), self.jobs_input_targets(),
                      complete=self.complete,
                      duration=section.duration if self.jobs_duration is None else self.jobs_duration,
                      wait=section.wait if self.jobs_wait is None else self.jobs_wait,
                      on_lost=self.on_jobs_lost, limits=dict(check_limits(limits)), progress=progress or None,
                      space=resolve(self.jobs_redis_url, self.jobs_prefix) if limits else None,
                      output_ttl=section.output_ttl if self.jobs_output_ttl is None else self.jobs_output_ttl,
                      on_progress=self.on_jobs_wait)
        writers = locks.take()
        if writers is not None:
            self.on_jobs_skip(writers)
            return None
        self._jobs_started(locks)
        return locks


def _id_value(value: str) -> str:
    """A parameter's serialized value as shown in a job id (see :attr:`JobsTaskMixin.jobs_job_id`)."""
    if value and value == value.strip() and not _NEEDS_QUOTES.search(value):
        return value
    return json.dumps(value, ensure_ascii=False)


def _as_function(attr: Any) -> Callable[..., Any]:
    """A class's ``run`` attribute as a function of the instance (a staticmethod, a partialmethod, a
    callable object are called as the instance would call them)."""
    if inspect.isfunction(attr):
        return attr

    def call(self: JobsTaskMixin, *args: Any, **kwargs: Any) -> Any:
        bound = attr.__get__(self, type(self)) if hasattr(attr, "__get__") else attr
        return bound(*args, **kwargs)

    return call


def _locked(attr: Any) -> Callable[..., Any]:
    """A class's ``run`` attribute wrapped to hold the task's locks (see :class:`JobsTaskMixin`)."""
    run = _as_function(attr)
    if inspect.isgeneratorfunction(run):
        @functools.wraps(run)
        def locked_run(self: JobsTaskMixin, *args: Any, **kwargs: Any) -> Any:
            if self._jobs_locks is not None:  # a wrapped run() calling super().run()
                return (yield from run(self, *args, **kwargs))
            locks = self._jobs_take()
            if locks is None:
                return None
            return (yield from _hold(self, locks, run(self, *args, **kwargs)))
    else:
        @functools.wraps(run)
        def locked_run(self: JobsTaskMixin, *args: Any, **kwargs: Any) -> Any:
            if self._jobs_locks is not None:
                return run(self, *args, **kwargs)
            locks = self._jobs_take()
            if locks is None:
                return None
            self._jobs_locks = locks
            try:
                result = run(self, *args, **kwargs)
            except BaseException:
                locks.release()
                raise
            finally:
                self.__dict__.pop("_jobs_locks", None)
            if isinstance(result, collections.abc.Generator):  # a plain run() returning a generator
                return _hold(self, locks, result)
            locks.commit()
            return result

    setattr(locked_run, "__jobs_locked__", True)  # noqa: B010 (an attribute functools.wraps does not know)
    return locked_run


def _hold(task: JobsTaskMixin, locks: Locks, gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Drive a generator run() holding ``locks`` across its yields.

    Luigi sends back the outputs of yielded requirements once they are complete:
    their JobsTargets are read-locked before the generator resumes. When they are
    not complete, Luigi drops the generator, and closing it releases every lock
    (outputs unwritten); Luigi runs the requirements, then calls run() afresh.
    """
    task._jobs_locks = locks
    try:
        try:
            sent = None
            while True:
                try:
                    step = gen.send(sent)
                except StopIteration as stop:
                    result = stop.value
                    break
                sent = yield step
                locks.check()
                if locks.add_inputs(jobs_targets(sent)) and locks.complete():
                    writers = locks.writers()  # another run did the work while this one waited
                    gen.close()
                    locks.release()
                    task.on_jobs_skip(writers)
                    return None
        except BaseException:  # GeneratorExit too: Luigi dropped the generator
            gen.close()
            locks.release()
            raise
        locks.commit()
        return result
    finally:
        task.__dict__.pop("_jobs_locks", None)


class JobsTask(JobsTaskMixin, luigi.Task):
    """A Luigi task with jobs_core outputs and locks: subclass it, set ``jobs_output``, write ``run()``."""


class JobsExternalTask(JobsTaskMixin, luigi.ExternalTask):
    """An output written outside Luigi (a cron script, a jobs_core or jobs.py job): complete once written."""
