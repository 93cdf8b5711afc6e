"""The coordinator: a Redis client plus a namespace, and the jobs made from it.

:class:`CoordinatorBase` validates the configuration and holds every
multi-step operation as a flow (:mod:`jobs_core.steps`); :class:`Coordinator`
runs them on a sync client, :class:`jobs_core.aio.AsyncCoordinator` on an
asyncio one.
"""

from __future__ import annotations

import inspect
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, TypeVar

from .connect import client_from_url, close_client, is_cluster_url
from .errors import ConfigurationError, InvalidType, LockLost, NotRunning, ResourceUnavailable, StateChanged
from .events import Observer, emit
from .facts import Blocker, BlockReport, Holder, LimitInfo, OutputInfo, RunningJob, Waiter
from .heartbeat import Heartbeat
from .job import Job, caller_name, new_job_id
from .keys import Keys, has_hash_tag
from .limits import check_capacity, check_limit, check_limit_names, check_limits, limit_info, read_limits, slot_holders
from .lineage import clean_edges, score_range
from .listener import Listener, Wakeup
from .metrics import MetricsObserver
from .names import check_io, check_job_id, check_name, check_names, check_text
from .namespace import ENV_URL, resolve_namespace
from .openlineage import lineage_observer
from .plan import CHECK, Plan, parse_start, parse_stop
from .protocol import (
    READ_BATCH,
    Malformed,
    Read,
    check_seconds,
    create_expectation,
    holder_facts,
    output_info,
    parse_read,
    parse_repair,
    read_io,
    running_fields,
    running_job,
    server_time,
    shown_state,
    text,
    to_ms,
    unlock_expectation,
    waiter,
    whole,
)
from .scripts import LimitArgs, ScanArgs, Scripts, argv
from .steps import Batch, Call, Expect, Flow, Sleep, Watch, cmd, queue
from .waiting import Closed, Wait, limit_error, ready_flow
from .wire import Wire, usable

log = logging.getLogger("jobs_core")
_NO_HASH_TAG = ("prefix {prefix} has no hash tag: on Redis Cluster every key of a namespace must map to one slot, "
                "so use a prefix such as '{{jobs}}:' (braces included)")
#: How many plan templates a coordinator keeps (one per kind of job it runs).
PLAN_CACHE = 256
T = TypeVar("T")


def is_cluster_client(client: Any) -> bool:
    """Whether ``client`` is a Redis Cluster client (redis-py or valkey-py, sync or asyncio)."""
    return hasattr(client, "nodes_manager")


def check_client(client: Any, want_async: bool) -> None:
    """Refuse what is not a usable redis-py/valkey-py client of the right flavour."""
    if client is None:
        raise ConfigurationError(
            "no Redis connection: pass a client (redis.Redis(...)), or use "
            f"from_url('redis://host:6379/0') or from_env() with {ENV_URL} set")
    if any(klass.__name__.endswith("Pipeline") for klass in type(client).__mro__):
        raise ConfigurationError("expected a redis-py or valkey-py client, got a pipeline: pass the client itself")
    # a cluster client needs no pubsub(): the listener subscribes on the channel's node itself
    pubsub = hasattr(client, "pubsub") or is_cluster_client(client)
    if not (hasattr(client, "register_script") and hasattr(client, "pipeline") and pubsub):
        raise ConfigurationError(f"expected a redis-py or valkey-py client, got {type(client).__name__}")
    is_async = inspect.iscoroutinefunction(getattr(client, "execute_command", None))
    if is_async and not want_async:
        raise ConfigurationError("this is an asyncio client (redis.asyncio): use jobs_core.AsyncCoordinator")
    if want_async and not is_async:
        raise ConfigurationError("this is a sync client: use jobs_core.Coordinator, or pass a redis.asyncio client")


def standard_observers(coordinator: CoordinatorBase, metrics: bool) -> tuple[Observer, ...]:
    """The observers every coordinator has: the metrics (unless ``metrics`` is False) and, when its
    client is configured, OpenLineage."""
    found: list[Observer] = [MetricsObserver(coordinator.prefix)] if metrics else []
    lineage = lineage_observer(coordinator)
    if lineage is not None:
        found.append(lineage)
    return tuple(found)


class CoordinatorBase:
    """Settings and operations shared by the sync and asyncio coordinators.

    Args:
        client: a redis-py or valkey-py client (``redis.Redis``, ``RedisCluster``...).
        prefix: key prefix of the namespace (``""``, ``"pfx:"``; on a cluster it
            must hold a hash tag such as ``"{jobs}:"``).
        history: record lineage edges when jobs start.
        output_ttl: seconds outputs live after being written (None: forever).
        poll: longest fallback poll, in seconds, while waiting on something that
            does not publish wake-ups (a jobs.py writer, a plain ``SET``).
        clock: monotonic clock for waits and lease bookkeeping (tests inject one).
        observers: :class:`jobs_core.events.Observer` objects that hear of every job (also
            :meth:`observe`).
        metrics: record the OpenTelemetry metrics of its jobs (:mod:`jobs_core.metrics`;
            nothing is recorded until the application configures an SDK).

    An OpenLineage observer (:mod:`jobs_core.openlineage`) is added too when the
    ``openlineage`` extra is installed and the OpenLineage client is configured.

    Raises:
        ConfigurationError: no client, a client of the wrong kind, or a cluster
            client with a prefix lacking a hash tag.
    """

    _async = False

    def __init__(
        self,
        client: Any,
        prefix: str = "",
        *,
        history: bool = True,
        output_ttl: float | None = None,
        poll: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        observers: Iterable[Observer] = (),
        metrics: bool = True,
    ) -> None:
        check_client(client, self._async)
        if not isinstance(prefix, str):
            raise InvalidType(f"prefix must be a str, not {type(prefix).__name__}")
        if prefix:
            check_text(prefix, "prefix")
        self.sharded = is_cluster_client(client)
        if self.sharded and not has_hash_tag(prefix):
            raise ConfigurationError(_NO_HASH_TAG.format(prefix=repr(prefix)))
        self.client = client
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.history = bool(history)
        self.output_ttl = check_seconds(output_ttl, "output_ttl", minimum=0.001, allow_none=True)
        self.poll = check_seconds(poll, "poll", minimum=0.001)
        self.clock = clock
        self.host = socket.gethostname()
        self.publish = "SPUBLISH" if self.sharded else "PUBLISH"
        self.scripts = Scripts(client)
        #: Suffix of this coordinator's own wake-up channel (grants for its waiting jobs).
        self.channel_id = secrets.token_hex(8)
        #: Guards what the threads sharing this coordinator share: the plans, the running jobs,
        #: and the lazily made heartbeat and listeners.
        self._lock = threading.Lock()
        self._plans: dict[tuple[Any, ...], Plan] = {}  # templates of job plans; see JobBase._plan_now
        self._checked: dict[tuple[Any, ...], tuple[tuple[str, ...], tuple[str, ...]]] = {}  # see checked_io
        self._running: dict[int, Any] = {}  # jobs started here and not stopped, by id()
        self._waits: dict[str, Wait] = {}  # start() calls under way here, by nonce
        self.closed = False
        #: What hears of every job of this coordinator (see :meth:`observe`).
        self.observers: tuple[Observer, ...] = (*standard_observers(self, metrics), *observers)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} prefix={self.prefix!r} client={self.client!r}>"

    @classmethod
    def _client_from_url(cls, url: str, **options: Any) -> Any:
        return client_from_url(url, asyncio=cls._async, **options)

    @classmethod
    def from_url(cls, url: str, prefix: str = "", *, history: bool = True, output_ttl: float | None = None,
                 poll: float = 2.0, metrics: bool = True, **client_options: Any) -> Any:
        """A coordinator on a new client for ``url``: see :mod:`jobs_core.connect` for the forms
        (``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``, ``redis+cluster://``).

        ``client_options`` go to the client (``ssl_ca_certs=...``, ``decode_responses=...``);
        ``socket_timeout`` defaults to 30 s so a dead connection cannot hang a job forever.

        Raises:
            ConfigurationError: a bad URL, or a cluster URL with a prefix lacking a hash tag.
        """
        if is_cluster_url(url) and not has_hash_tag(prefix if isinstance(prefix, str) else ""):
            raise ConfigurationError(_NO_HASH_TAG.format(prefix=repr(prefix)))
        client_options.setdefault("socket_timeout", 30.0)
        client_options.setdefault("socket_connect_timeout", 10.0)
        client = cls._client_from_url(url, **client_options)
        return cls(client, prefix, history=history, output_ttl=output_ttl, poll=poll, metrics=metrics)

    @classmethod
    def from_env(cls, **kwargs: Any) -> Any:
        """A coordinator for ``$JOBS_REDIS_URL`` with prefix ``$JOBS_PREFIX`` (default ``""``); a
        ``prefix=`` given wins (see :func:`jobs_core.namespace.resolve_namespace`)."""
        where = resolve_namespace(None, kwargs.pop("prefix", None), given="")
        return cls.from_url(where.url, where.prefix, **kwargs)

    def observe(self, observer: Observer) -> None:
        """Add ``observer``: it hears of every job of this coordinator from now on."""
        with self._lock:
            self.observers = (*self.observers, observer)

    def plan_for(self, key: tuple[Any, ...], build: Callable[[], Plan]) -> Plan:
        """The plan template for ``key`` (one per kind of job run here), built once with ``build``."""
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                plan = build()
                if len(self._plans) >= PLAN_CACHE:
                    self._plans.pop(next(iter(self._plans)))
                self._plans[key] = plan
            return plan

    def checked_io(self, inputs: Any, outputs: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``check_io(inputs, outputs)``, remembered for lists and tuples of text seen before (a job
        made afresh for every run of the same work is validated once)."""
        if type(inputs) not in (list, tuple) or type(outputs) not in (list, tuple):
            return check_io(inputs, outputs)
        key = (tuple(inputs), tuple(outputs))
        try:
            return self._checked[key]
        except (KeyError, TypeError):  # TypeError: an unhashable item, which check_io refuses
            checked = check_io(inputs, outputs)
        with self._lock:
            if len(self._checked) >= PLAN_CACHE:
                self._checked.pop(next(iter(self._checked)))
            self._checked[key] = checked
        return checked

    def _track_job(self, job: Any) -> None:
        with self._lock:
            self._running[id(job)] = job

    def _untrack_job(self, job: Any) -> None:
        with self._lock:
            self._running.pop(id(job), None)

    def wait_began(self, wait: Wait) -> None:
        """A start() call of one of this coordinator's jobs is under way (:meth:`stop_all` ends it first)."""
        with self._lock:
            self._waits[wait.nonce] = wait

    def wait_ended(self, wait: Wait) -> None:
        """That start() call ended (started or not)."""
        with self._lock:
            self._waits.pop(wait.nonce, None)

    def _end_waits(self, reason: str) -> list[Wait]:
        """Mark the start() calls under way here as ended (they give up at their next step); return them."""
        ended = Closed(reason)
        with self._lock:
            waits = list(self._waits.values())
        for wait in waits:
            wait.ended = ended
            listener = getattr(self, "_grants", None)
            if listener is not None:
                listener.end(wait.nonce, ended)
        return waits

    def running_here(self) -> list[Any]:
        """Jobs this process started through this coordinator and has not stopped."""
        with self._lock:
            jobs = list(self._running.values())
        return [j for j in jobs if j.is_running and not j._forked()]

    # -- flows ---------------------------------------------------------------------------

    def _check_plan(self, inputs: Iterable[str], outputs: Iterable[str], overwrite: bool, limits: Any = None) -> Plan:
        """A plan for dry-run starts; job id "": no real job has it, so every lock counts as someone else's."""
        return Plan(self.keys, "", *check_io(inputs, outputs), lease=1.0, renews=False, overwrite=overwrite,
                    history=False, output_ttl=None, host=self.host, pid=os.getpid(), publish=self.publish,
                    limits=check_limits(limits))

    def report_flow(self, now: float, blockers: Iterable[Blocker]) -> Flow[BlockReport]:
        """A :class:`BlockReport` of ``blockers`` with their holders' facts."""
        blockers = tuple(blockers)
        if not blockers:
            return BlockReport(True, now)
        facts = yield from self._holders_flow(b.holder for b in blockers if b.holder)
        return BlockReport(False, now, tuple(
            Blocker(b.reason, b.name, facts[b.holder.job_id]) if b.holder else b for b in blockers))

    def _wait_ready_flow(self, inputs: Iterable[str], outputs: Iterable[str], overwrite: bool, timeout: float,
                         limits: Any = None) -> Flow[BlockReport]:
        plan = self._check_plan(inputs, outputs, overwrite, limits)
        timeout = check_seconds(timeout, "timeout")
        began = self.clock()
        reply = yield from ready_flow(plan, timeout, self.clock, self.poll)
        if reply.started:
            return BlockReport(True, reply.now)
        error = limit_error(reply, plan)
        if error is not None:
            raise error
        report = yield from self.report_flow(reply.now, reply.blockers)
        raise ResourceUnavailable(report.reasons, report.blockers, self.clock() - began)

    def _holders_flow(self, holders: Iterable[Holder]) -> Flow:
        """Holder facts (token, host, pid) for lock holders known only by id and expiry."""
        by_id = {h.job_id: h for h in holders}
        if not by_id:
            return {}
        reads = yield from self._read_flow([(self.keys.holder(i), "hash") for i in by_id])
        return {i: holder_facts(i, r.value, h.expires) for (i, h), r in zip(by_id.items(), reads)}

    def _why_blocked_flow(self, inputs: Iterable[str], outputs: Iterable[str], overwrite: bool,
                          limits: Any = None) -> Flow:
        plan = self._check_plan(inputs, outputs, overwrite, limits)
        reply = parse_start((yield Call("start", plan.keys, plan.start_args("", CHECK))), plan)
        return (yield from self.report_flow(reply.now, reply.blockers))

    def _holder_flow(self, job_id: str) -> Flow:
        job_id = check_job_id(job_id, "job id")
        record, expires = yield Batch([cmd("hgetall", self.keys.holder(job_id)),
                                       cmd("zscore", self.keys.running, job_id)])
        holder = holder_facts(job_id, record, None if expires is None else float(expires))
        return holder if holder.token is not None else None

    def _output_info_flow(self, name: str) -> Flow:
        name = check_name(name)
        k = self.keys
        now = yield from self._now_flow()
        output, facts, lock, readers = yield from self._read_flow(
            [(k.output(name), "string"), (k.facts(name), "string"), (k.olock(name), "string"), (k.ilock(name), "zset")])
        waiting = yield from self._waiting_flow()
        waiters = [w.job_id for w in waiting if name in w.inputs or name in w.outputs]
        info = output_info(name, now, output, facts, lock, readers, waiters)
        lock_holders = ([info.write_lock] if info.write_lock else []) + list(info.readers)
        if not lock_holders:
            return info
        facts_by_id = yield from self._holders_flow(lock_holders)
        return replace(info, write_lock=facts_by_id[info.write_lock.job_id] if info.write_lock else None,
                       readers=tuple(facts_by_id[r.job_id] for r in info.readers))

    def _written_flow(self, names: Iterable[str]) -> Flow:
        names = check_names(names, "names", limit=None)  # a read without a script: no limit
        if not names:
            return {}
        values = yield from self._get_many_flow([self.keys.output(n) for n in names])
        return {n: text(v) for n, v in zip(names, values) if v is not None}

    def _get_many_flow(self, keys: list[str]) -> Flow:
        """The values of ``keys`` in one round trip: MGET, or GETs on a cluster (whose pipelines refuse MGET)."""
        if self.sharded:
            return (yield Batch([cmd("get", k) for k in keys]))
        return (yield Batch([cmd("mget", keys)]))[0]

    def _now_flow(self) -> Flow:
        """The namespace server's clock (through a script, so a cluster asks the right shard)."""
        return server_time((yield Call("time", self.keys.scripts, ())))

    def _stop_job_flow(self, job_id: str, failed: bool, token: int | None, output_ttl: float | None) -> Flow:
        """Stop a running job by id, from any process: see :meth:`Coordinator.stop_job`."""
        job_id = check_job_id(job_id, "job id")
        if token is not None and (isinstance(token, bool) or not isinstance(token, int) or token < 1):
            raise InvalidType(f"a fencing token is a positive int, not {token!r}")
        given_ttl = None if output_ttl is None else check_seconds(output_ttl, "output_ttl", minimum=0.001)
        io, record = yield from self._read_flow([(self.keys.job(job_id), "string"), (self.keys.holder(job_id), "hash")])
        # with its token, the caller acts as the job (a start made from a shell); without, it is a repair
        forced = token is None
        if io.value is None:
            if token is not None:  # that start may have been ended by another call: say so, as Job.stop does
                plan = self._stop_plan(job_id, (), (), None)
                reply = parse_stop((yield Call("stop", plan.keys, plan.stop_args(token, not failed,
                                                                                  secrets.token_hex(8)))), plan)
                if reply.status == 3 and not failed:
                    raise LockLost(job_id, {}, f"job {job_id!r} (token {token}) was already stopped by another "
                                               f"call (as {reply.state}), so this stop wrote nothing")
            raise NotRunning(f"job {job_id!r} is not running (never started, already stopped, or its lease ran out)")
        inputs, outputs, _ = read_io(io.value, "names record")
        fields = running_fields(record.value)
        if token is None:
            token = whole(fields.get("token"))  # None for a jobs.py job, or a record that cannot be read
        if given_ttl is not None:
            ttl: float | None = given_ttl
        elif fields:
            ttl = (whole(fields.get("ttl")) or 0) / 1000 or None  # the output time to live the job started with
        else:
            ttl = self.output_ttl
        plan = self._stop_plan(job_id, inputs, outputs, ttl, read_limits(fields.get("limits")))
        reply = parse_stop((yield Call("stop", plan.keys, plan.stop_args(token, not failed, secrets.token_hex(8),
                                                                          forced=forced))), plan)
        if reply.status == 3:
            if not failed:
                raise LockLost(job_id, {}, f"job {job_id!r} was already stopped by another call (as {reply.state}), "
                                           "so this stop wrote nothing")
            raise NotRunning(f"job {job_id!r} was already stopped (as {reply.state})")
        if reply.status == 0 and not failed:
            raise LockLost(job_id, reply.lost, f"job {job_id!r} no longer holds {reply.lost!r}: nothing was written, "
                                               f"the locks it still held are released")
        log.info("job %s stopped from outside (%s)", job_id, reply.state)
        if forced:
            emit(self.observers, "repaired", "stop", tuple(inputs) + tuple(outputs))
        elif self.observers:
            holder = replace(holder_facts(job_id, record.value), token=token)
            emit(self.observers, "stopped_by_id", self, holder, reply.state, tuple(inputs), tuple(outputs))
        return reply.state

    def _stop_plan(self, job_id: str, inputs: Iterable[str], outputs: Iterable[str], ttl: float | None,
                   limits: Iterable[tuple[str, int]] = ()) -> Plan:
        # the names come from Redis (a jobs.py client may have used any): keys only, no validation
        return Plan(self.keys, job_id, tuple(inputs), tuple(outputs), lease=1.0, renews=False, overwrite=True,
                    history=self.history, output_ttl=ttl, host=self.host, pid=os.getpid(), publish=self.publish,
                    limits=limits)

    def _live_members_flow(self, key: str) -> Flow:
        """``[(member, score)]`` of a zset scored by expiry, keeping those not yet expired."""
        now = yield from self._now_flow()
        (members,) = yield Batch([cmd("zrange", key, 0, -1, withscores=True)])
        return [(text(m), float(s)) for m, s in members if float(s) > now]

    def _running_jobs_flow(self) -> Flow:
        live = yield from self._live_members_flow(self.keys.running)
        if not live:
            return []
        reads = yield from self._read_flow([r for i, _ in live for r in ((self.keys.job(i), "string"),
                                                                         (self.keys.holder(i), "hash"))])
        jobs = (running_job(i, s, reads[2 * n].value, reads[2 * n + 1].value) for n, (i, s) in enumerate(live))
        return [j for j in jobs if j is not None]

    def _waiting_flow(self) -> Flow:
        live = yield from self._live_members_flow(self.keys.waiting)
        if not live:
            return []
        reads = yield from self._read_flow([(self.keys.waiter(i), "string") for i, _ in live])
        waiters = (waiter(member, alive, r.value) for (member, alive), r in zip(live, reads))
        return [w for w in waiters if w is not None]

    def _unlock_flow(self, inputs: Iterable[str], outputs: Iterable[str], expected: Any = None) -> Flow:
        ins, outs = check_io(inputs, outputs)
        shown = shown_state(expected, ins + outs, "names to unlock")
        keys = [self.keys.token, self.keys.op(secrets.token_hex(8))]
        keys += [self.keys.ilock(n) for n in ins] + [self.keys.olock(n) for n in outs]
        args = [self.publish, self.keys.channel, "\n".join(ins + outs), len(ins) + len(outs), len(ins), 0]
        if shown is not None:
            holder_keys, compare = unlock_expectation(self.keys, ins, outs, shown)
            keys += holder_keys
            args[-1] = 1
            args += compare
        done, values = parse_repair((yield Call("unlock", keys, args)))
        if not done:
            changed = tuple(dict.fromkeys((ins + outs)[i - 1] for i in values))
            raise StateChanged(changed, "nothing was unlocked: the locks on " + ", ".join(map(repr, changed))
                               + " are no longer held by the holders shown (another job took, released or "
                               "renewed them)")
        yield from self._scan_flow(ins + outs)
        emit(self.observers, "repaired", "unlock", ins + outs)
        return values[0]

    def _create_flow(self, outputs: Iterable[str], job_id: str, ttl: float | None, expected: Any = None) -> Flow:
        outs = check_names(outputs, "outputs")
        ttl = self.output_ttl if ttl is None else check_seconds(ttl, "ttl", minimum=0.001)
        shown = shown_state(expected, outs, "outputs")
        keys = [self.keys.token, self.keys.op(secrets.token_hex(8))]
        for n in outs:
            keys += (self.keys.output(n), self.keys.olock(n), self.keys.facts(n))
        args = [job_id, 0 if ttl is None else to_ms(ttl), self.publish, self.keys.channel, "\n".join(outs),
                len(outs), 0]
        if shown is not None:
            holder_keys, compare = create_expectation(self.keys, outs, shown)
            keys += holder_keys
            args[-1] = 1
            args += compare
        done, values = parse_repair((yield Call("create", keys, args)))
        if not done:
            changed = tuple(dict.fromkeys(outs[i - 1] for i in values))
            raise StateChanged(changed, "nothing was created: " + ", ".join(map(repr, changed)) + " no longer "
                               "has the writer or write lock shown (another job wrote or locked it meanwhile)")
        yield from self._scan_flow(outs)
        emit(self.observers, "repaired", "create", outs)
        return values[0]

    def _scan_flow(self, names: Iterable[str]) -> Flow[None]:
        """After a repair changed ``names``: start the waiters this lets run, and tell them (scan.lua)."""
        yield Call("scan", self.keys.scripts, argv(ScanArgs(self.publish), list(names)))

    def _set_limit_flow(self, name: str, capacity: Any, remove: bool) -> Flow:
        name = check_limit(name)
        slots = 0 if remove else check_capacity(capacity, name)  # 0: remove (limit.lua)
        before = yield Call("limit", self.keys.scripts, argv(LimitArgs(self.publish, name, slots)))
        log.info("limit %r: capacity %s (was %s)", name, slots or "removed", int(before) or "not set")
        return int(before) or None

    def _limits_flow(self, names: Iterable[str] | None) -> Flow[list[LimitInfo]]:
        k = self.keys
        (capacities,) = yield from self._read_flow([(k.limits, "hash")])
        table = capacities.value if isinstance(capacities.value, dict) else {}
        problems = [f"limits table: {capacities.value.message}"] if isinstance(capacities.value, Malformed) else []
        wanted = sorted(table) if names is None else list(check_limit_names(names))
        now = yield from self._now_flow()
        reads = yield from self._read_flow([r for n in wanted
                                            for r in ((k.limit(n), "zset"), (k.limit_line(n), "zset"))])
        held, lines = reads[::2], reads[1::2]
        by_limit = [slot_holders(r.value if isinstance(r.value, list) else [], now) for r in held]
        facts = yield from self._holders_flow(Holder(i, e) for h in by_limit for i, (_, e) in h.items())
        nonces = [[m for m, _ in r.value] if isinstance(r.value, list) else [] for r in lines]
        records = yield from self._read_flow([(k.waiter(m), "string") for ms in nonces for m in ms])
        waiters = iter(records)
        out = []
        for n, h, ms, r_held, r_line in zip(wanted, by_limit, nonces, held, lines):
            line = [w for m in ms if (w := waiter(m, 0.0, next(waiters).value)) is not None]
            bad = [f"{what} of limit {n!r}: {r.value.message}" for what, r in (("slots", r_held), ("line", r_line))
                   if isinstance(r.value, Malformed)]
            out.append(limit_info(n, table.get(n), [(facts[i], slots) for i, (slots, _) in h.items()], line,
                                  problems + bad))
        return out

    def _edges_flow(self, before: Any, after: Any) -> Flow:
        low, high = score_range(before, after)
        ins, outs = yield Batch([cmd("zrangebyscore", self.keys.graph_input, low, high),
                                 cmd("zrangebyscore", self.keys.graph_output, low, high)])
        return clean_edges(ins), clean_edges(outs)

    def _read_flow(self, keys: list[tuple[str, str]]) -> Flow:
        """``[Read]`` of ``(key, kind)`` pairs through read.lua, a bounded batch per call: a key of
        another type than ``kind`` reads as :class:`jobs_core.protocol.Malformed`, not an error."""
        out: list[Read] = []
        for first in range(0, len(keys), READ_BATCH):
            batch = keys[first:first + READ_BATCH]
            reply = yield Call("read", [k for k, _ in batch], [kind for _, kind in batch])
            out += [parse_read(r, kind) for r, (_, kind) in zip(reply, batch)]
        return out


class Coordinator(CoordinatorBase):
    """Jobs on a sync redis-py/valkey-py client. See :class:`CoordinatorBase` for the arguments."""

    def __init__(self, client: Any, prefix: str = "", **kwargs: Any) -> None:
        super().__init__(client, prefix, **kwargs)
        scripts = self.scripts
        self._wire = Wire(client) if usable(client) else None
        if self._wire is not None:
            call = self._wire.call
            #: ``call(script, keys, args)``: run the registered script ``script`` (a :class:`Call` step).
            self.call: Callable[[str, Any, Any], Any] = lambda name, keys, args: call(getattr(scripts, name), keys,
                                                                                         args)
        else:
            self.call = lambda name, keys, args: getattr(scripts, name)(keys, args)
        self._heartbeat: Heartbeat | None = None
        self._firsts: dict[tuple[Any, ...], Job] = {}  # see job()
        self._grants: Listener | None = None
        self._names: Listener | None = None

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the wake-up listeners and the heartbeat, and close the client's connections.

        Jobs waiting to start give up (:class:`CoordinatorClosed`). Jobs still
        running keep their locks until their leases run out: they are no
        longer renewed (a warning says how many).
        """
        with self._lock:
            self.closed = True
            listeners = [x for x in (self._grants, self._names) if x is not None]
        for listener in listeners:
            listener.close()
        running = self.running_here()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._wire is not None:
            self._wire.close()
        if running:
            log.warning("coordinator closed with %d running job(s): their leases are no longer renewed and "
                        "lapse", len(running))
        close_client(self.client)

    def _listener(self, grants: bool) -> Listener:
        with self._lock:
            if grants:
                if self._grants is None:
                    self._grants = Listener(self.client, self.keys.wake(self.channel_id), self.sharded, self.poll,
                                            by_nonce=True)
                return self._grants
            if self._names is None:
                self._names = Listener(self.client, self.keys.channel, self.sharded, self.poll, by_nonce=False)
            return self._names

    def wakeups(self, names: Iterable[str]) -> Wakeup:
        """Register for wake-ups when any of ``names`` is released or written (a context manager:
        ``wait(timeout)`` returns True if one came).

        Every such wait of this coordinator shares one subscription; this
        returns once the server confirmed it, so no release after the call is missed.
        """
        return self._listener(grants=False).register(frozenset(check_names(names, "names")))

    def run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` on this client: the sync driver of :mod:`jobs_core.steps`."""
        wakeup: Wakeup | None = None
        try:
            step = next(flow)
            while True:
                result: Any = None
                match step:
                    case Call():  # the most common step first
                        result = self.call(step.script, step.keys, step.args)
                    case Batch(commands, transaction):
                        with self.client.pipeline(transaction=transaction) as pipe:
                            result = queue(pipe, commands).execute()
                    case Expect(nonce, only_if_up):
                        grants = self._listener(grants=True)
                        found = grants.registered(nonce) if only_if_up else grants.register(nonce)
                        if found is not None:
                            wakeup = found
                            result = self.channel_id
                    case Watch(names):
                        wakeup = self._listener(grants=False).register(names)
                    case Sleep(seconds):
                        if wakeup is None:
                            time.sleep(seconds)
                        else:
                            result = wakeup.take(seconds)
                step = flow.send(result)
        except StopIteration as done:
            return done.value
        finally:
            if wakeup is not None:
                wakeup.close()

    def track(self, job: Job, first_beat: float | None) -> None:
        """Count ``job`` as running here, renewed by the heartbeat after ``first_beat`` seconds (None: never)."""
        self._track_job(job)
        if first_beat is not None:
            self.heartbeat.add(job, first_beat)

    def untrack(self, job: Job) -> None:
        """``job`` no longer runs here: no more renewals."""
        self.unbeat(job)
        self._untrack_job(job)

    def unbeat(self, job: Job) -> None:
        """No more renewals of ``job``."""
        if self._heartbeat is not None:
            self._heartbeat.remove(job)

    def job(self, inputs: Iterable[str] = (), outputs: Iterable[str] = (), duration: float = 60.0,
            wait: float | None = 0.0, overwrite: bool = True, heartbeat: bool | float = True, **options: Any) -> Job:
        """A job reading ``inputs`` and writing ``outputs``, not started yet.

        Args:
            inputs: names that must exist, and nobody be writing, to start.
            outputs: names written (marked as existing) when the job succeeds.
            duration: the lease, in seconds, of every lock; the heartbeat renews it.
            wait: seconds to wait for busy or missing resources before failing.
            overwrite: if False, an existing output stops the job from starting.
            heartbeat: renew leases in the background (True: every duration/3;
                a number: that interval in seconds; False: never).
            **options: ``job_id`` (a fixed id), ``name`` (id base, default
                ``<file>:<function>`` of the caller), ``on_lost(job)`` callback,
                ``max_hold`` (seconds after which the heartbeat stops renewing),
                ``progress`` (seconds between the reports of a wait, logged at INFO:
                what blocks it and who holds it; default 30, None for none),
                ``on_progress(job, progress)`` callback with each report
                (:class:`jobs_core.events.WaitProgress`), ``lineage_name`` (the
                job's name in lineage edges, default its id with digit runs
                folded to ``*``), ``limits`` (slots of shared capacity it takes with
                its locks: ``{"warehouse": 1}``; see :meth:`set_limit`), ``output_ttl``
                and ``history`` (override the coordinator's).

        Raises:
            InvalidName: a bad input or output name.
            InvalidArgument: a bad duration, wait or option.
        """
        if options or type(inputs) not in (list, tuple) or type(outputs) not in (list, tuple):
            options.setdefault("_depth", 3)
            return Job(self, inputs, outputs, duration, wait, overwrite, heartbeat, **options)
        # the same call again (a job made afresh for every run of the same work): a copy of the job it
        # made the first time, already checked, with a fresh id; the types are part of the key, as
        # heartbeat=True and heartbeat=1 are equal but mean different things
        key = (sys._getframe(1).f_code, tuple(inputs), tuple(outputs), type(duration), duration, type(wait), wait,
               type(overwrite), overwrite, type(heartbeat), heartbeat)
        try:
            first = self._firsts.get(key)
        except TypeError:  # an unhashable name or argument, which the checks refuse
            return Job(self, inputs, outputs, duration, wait, overwrite, heartbeat, _depth=3)
        if first is None:
            first = Job(self, inputs, outputs, duration, wait, overwrite, heartbeat, _depth=3)
            first._plan_now()  # its copies share the plan
            with self._lock:
                if len(self._firsts) >= PLAN_CACHE:
                    self._firsts.pop(next(iter(self._firsts)))
                self._firsts[key] = first
        return first.clone()

    @property
    def heartbeat(self) -> Heartbeat:
        """The thread that renews this coordinator's jobs (started on first use)."""
        with self._lock:
            if self._heartbeat is None:
                self._heartbeat = Heartbeat(self.clock)
            return self._heartbeat

    def stop_all(self, failed: bool = True) -> None:
        """Stop every job :meth:`running_here` (as failed by default), e.g. on shutdown.

        Jobs of this coordinator still waiting to start give up first (their
        ``start()`` raises :class:`CoordinatorClosed`), so that the locks
        released are not handed to them.
        """
        for wait in self._end_waits("stop_all() ended it"):
            try:
                self.run(wait.leave_flow())
            except Exception:
                log.warning("could not end the wait of job %s; its place lapses within 30s", wait.plan.job_id,
                            exc_info=True)
        for job in self.running_here():
            try:
                job.stop(failed=failed)
            except Exception:
                log.exception("could not stop job %s", job.id)

    def wait_ready(self, inputs: Iterable[str] = (), outputs: Iterable[str] = (), *, timeout: float,
                   overwrite: bool = True, limits: Any = None) -> BlockReport:
        """Wait until a job with these inputs, outputs and ``limits`` could start, taking nothing.

        Woken by releases like a waiting job; returns the (ready) report.

        Raises:
            ResourceUnavailable: still blocked after ``timeout`` seconds (or an
                existing output with ``overwrite=False``).
            UnknownLimit, LimitTooSmall: as for a job's start.
        """
        return self.run(self._wait_ready_flow(inputs, outputs, overwrite, timeout, limits))

    def holder(self, job_id: str) -> Holder | None:
        """The running jobs_core start of ``job_id`` (token, host, pid, lease expiry), or None."""
        return self.run(self._holder_flow(job_id))

    def written(self, names: Iterable[str]) -> dict[str, str]:
        """``{name: writer job id}`` for those of ``names`` written (and not expired), in one round trip."""
        return self.run(self._written_flow(names))

    def server_time(self) -> float:
        """The Redis server's clock (of the namespace's shard), in epoch seconds."""
        return self.run(self._now_flow())

    def stop_job(self, job_id: str, failed: bool = False, token: int | None = None,
                 output_ttl: float | None = None) -> str:
        """Stop a running job by its id from any process (a repair, or a job started from a shell).

        Like :meth:`Job.stop`: unless ``failed``, the outputs are written, but
        only if the job still holds every lock; whatever it still holds is
        released either way. A jobs_core job is identified by its holder
        record's token (or ``token``, to make sure it is that start); a jobs.py
        job, which keeps no record, by its id alone. Outputs get ``output_ttl``,
        else the time to live the job started with. Returns ``"written"`` or
        ``"failed"``.

        Raises:
            NotRunning: no such running job.
            LockLost: a successful stop found locks lost; nothing was written.
        """
        return self.run(self._stop_job_flow(job_id, failed, token, output_ttl))

    def why_blocked(self, inputs: Iterable[str] = (), outputs: Iterable[str] = (), overwrite: bool = True,
                    limits: Any = None) -> BlockReport:
        """Would a job with these inputs, outputs and ``limits`` start now? If not, what blocks it,
        held by whom, until when."""
        return self.run(self._why_blocked_flow(inputs, outputs, overwrite, limits))

    def set_limit(self, name: str, capacity: int) -> int | None:
        """Set the capacity of limit ``name`` (slots jobs may hold at once); returns the one it
        had (None: none).

        A change takes effect at once: more room starts the jobs waiting for
        it; less never ends a holder, new starts wait until use is under it.

        Raises:
            InvalidArgument: a bad name, or a capacity not an int from 1 up.
        """
        return self.run(self._set_limit_flow(name, capacity, remove=False))

    def remove_limit(self, name: str) -> int | None:
        """Remove limit ``name``; returns the capacity it had (None: none). Its holders keep their
        slots until they stop; jobs asking for it from now on (and those waiting) fail with
        :class:`UnknownLimit`."""
        return self.run(self._set_limit_flow(name, None, remove=True))

    def limits(self, names: Iterable[str] | None = None) -> list[LimitInfo]:
        """Every limit set in the namespace (or those of ``names``, set or not): capacity, slots
        used, holders with the facts of their starts, and the jobs in line for it."""
        return self.run(self._limits_flow(names))

    def output_info(self, name: str) -> OutputInfo:
        """Whether ``name`` was written, by which job, when, with which token; who locks or waits on it."""
        return self.run(self._output_info_flow(name))

    def running_jobs(self) -> list[RunningJob]:
        """Every running job of the namespace, jobs_core and jobs.py alike."""
        return self.run(self._running_jobs_flow())

    def waiting_jobs(self) -> list[Waiter]:
        """Jobs of the namespace waiting to start (jobs_core jobs; jobs.py does not record waits)."""
        return self.run(self._waiting_flow())

    def unlock(self, inputs: Iterable[str] = (), outputs: Iterable[str] = (), *,
               expected: Iterable[OutputInfo] | None = None) -> int:
        """Force-release read locks on ``inputs`` and write locks on ``outputs`` (a repair).

        jobs_core holders are fenced out (they find the locks lost and write
        nothing); a jobs.py holder would take a lost write lock back at its next
        refresh and write anyway. Waiters are woken. Returns how many lock keys
        existed.

        ``expected`` makes the release act only on the state that was shown:
        the :meth:`output_info` of every name, as shown to whoever decided. The
        locks are released only if each input's live readers and each output's
        writer are still exactly those holders (same job ids, same starts by
        fencing token; a lock shown free must still be free); otherwise nothing
        changes and :class:`StateChanged` says which names changed. At most
        :data:`jobs_core.MAX_NAMES` names.

        Raises:
            StateChanged: with ``expected``, the locks are no longer as shown.
        """
        return self.run(self._unlock_flow(inputs, outputs, expected))

    def create_outputs(self, outputs: Iterable[str], job_id: str | None = None, ttl: float | None = None, *,
                       expected: Iterable[OutputInfo] | None = None) -> int:
        """Mark ``outputs`` written without running a job (a repair); returns the fencing token.

        A current writer of any of them is fenced out. ``job_id`` is recorded as
        the writer (default ``<file>:<function>.<random>`` of the caller).
        ``expected`` (the :meth:`output_info` of every output, as shown) makes
        it act only if each output is still written by the same job (or still
        not written) and write-locked by the same start (or still not locked);
        otherwise nothing changes and :class:`StateChanged` is raised. At most
        :data:`jobs_core.MAX_NAMES` outputs.

        Raises:
            StateChanged: with ``expected``, an output's writer or write lock is no longer as shown.
        """
        job_id = check_job_id(job_id, "job id") if job_id is not None else new_job_id(caller_name(1))
        return self.run(self._create_flow(outputs, job_id, ttl, expected))

    def edges(self, before: Any = None, after: Any = None) -> tuple[list[str], list[str]]:
        """Lineage edges last seen in the time range: ``(["input -> job"...], ["job -> output"...])``."""
        return self.run(self._edges_flow(before, after))
