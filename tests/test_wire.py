"""The prepared-RESP path of script calls (jobs_core/wire.py), on a real server.

It must send exactly what redis-py would, answer exactly as redis-py's path
does (replies, NOSCRIPT, dropped connections, Sentinel's master changes are in
tests/test_sentinel.py), and step aside wherever a user configured something
it would bypass.
"""

from __future__ import annotations

import os
import threading

import pytest
import redis

import jobs_core
from jobs_core.protocol import text
from jobs_core.wire import Argv, Wire, bulk, usable


def test_the_bytes_sent_are_what_redis_py_packs(redis7, prefix):
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    job = c.job(["in", "ünï ✓"], ["out 1", "$2\r\n"[:2]], duration=7, job_id="the job")
    plan = job._plan_now()
    args = plan.start_args("nonce", "wait", 1.5, "chan")
    conn = client.connection_pool.get_connection()
    try:
        expected = b"".join(conn.pack_command("EVALSHA", c.scripts.start.sha, len(plan.keys), *plan.keys, *args))
    finally:
        client.connection_pool.release(conn)
    wire = Wire(client)
    assert wire._head(c.scripts.start.sha, plan.keys, len(args)) + args.resp() == expected
    assert list(args) == plan.start_args("nonce", "wait", 1.5, "chan")  # still the list redis-py takes
    c.close()


def test_argv_changes_only_what_it_is_told():
    base = Argv(["a", 1, 2.5, b"raw"])
    other = base.changed({1: 42, 3: "é"})
    third = other.changed({0: "z"})
    assert list(base) == ["a", 1, 2.5, b"raw"] and list(other) == ["a", 42, 2.5, "é"]
    assert third.resp() == b"".join(bulk(x) for x in ["z", 42, 2.5, "é"])
    assert other.resp() == b"".join(bulk(x) for x in ["a", 42, 2.5, "é"])
    assert base.resp() == b"".join(bulk(x) for x in ["a", 1, 2.5, b"raw"])
    assert bulk("é") == b"$2\r\n\xc3\xa9\r\n" and bulk(-3) == b"$2\r\n-3\r\n"
    for bad in (True, None, object()):
        with pytest.raises(TypeError):
            bulk(bad)


def test_a_cycle_goes_through_the_wire_and_keeps_one_connection(redis7, prefix):
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    assert c._wire is not None
    for _ in range(20):
        with c.job([], ["out"], duration=5) as job:
            pass
    assert text(client.get(prefix + "out")) == job.id
    pool = client.connection_pool
    assert len(pool._in_use_connections) == 1  # the wire's own, across every call
    c.close()
    assert not pool._in_use_connections  # given back on close


def test_a_script_the_server_forgot_is_loaded_again(redis7, prefix):
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    with c.job([], ["a"], duration=5):
        pass
    client.script_flush()  # a restarted server, or SCRIPT FLUSH by an operator
    with c.job(["a"], ["b"], duration=5) as job:
        pass
    assert text(client.get(prefix + "b")) == job.id
    c.close()


def test_replies_are_decoded_as_the_client_says(redis_server, prefix):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    c = jobs_core.Coordinator(client, prefix)
    assert c._wire is not None
    with c.job([], ["out"], duration=5) as job:
        assert isinstance(job.token, int)
    assert c.output_info("out").writer == job.id
    c.close()


class Recording(redis.Redis):
    """A client whose every command is seen by its own execute_command (as instrumentation does)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def execute_command(self, *args, **options):
        self.seen.append(args[0])
        return super().execute_command(*args, **options)


def test_clients_whose_commands_someone_watches_keep_redis_pys_path(redis_server, prefix):
    recording = Recording.from_url(redis_server.url)
    single = redis.Redis.from_url(redis_server.url, single_connection_client=True)
    latin = redis.Redis.from_url(redis_server.url, encoding="latin-1")
    blocking = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(redis_server.url))
    small = redis.Redis.from_url(redis_server.url, max_connections=4)
    for client in (recording, single, latin):
        assert not usable(client)
        c = jobs_core.Coordinator(client, prefix)
        assert c._wire is None
        with c.job([], ["x"], duration=5):
            pass
        c.close()
    assert "EVALSHA" in recording.seen
    for client in (blocking, small):  # the wire, but no connection kept from a bounded pool
        c = jobs_core.Coordinator(client, prefix)
        assert c._wire is not None and not c._wire._keep
        with c.job([], ["x"], duration=5):
            pass
        assert c._wire._conn is None
        c.close()


def test_an_instrumented_redis_py_keeps_its_path(redis_server, prefix, monkeypatch):
    """OpenTelemetry's redis instrumentation wraps ``redis.Redis.execute_command`` (with wrapt,
    which sets ``__wrapped__``): its spans must see the scripts."""
    original = redis.Redis.execute_command
    seen = []

    def wrapper(self, *args, **options):
        seen.append(args[0])
        return original(self, *args, **options)

    wrapper.__wrapped__ = original
    monkeypatch.setattr(redis.Redis, "execute_command", wrapper)
    client = redis.Redis.from_url(redis_server.url)
    c = jobs_core.Coordinator(client, prefix)
    assert c._wire is None
    with c.job([], ["x"], duration=5):
        pass
    assert seen.count("EVALSHA") == 2
    c.close()


def test_threads_share_the_kept_connection_or_take_their_own(redis7, prefix):
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    errors = []

    def work(i):
        try:
            for n in range(30):
                with c.job([], [f"out.{i}.{n}"], duration=5):
                    pass
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(client.keys(prefix + "out.*")) == 180
    c.close()


def test_a_forked_child_takes_its_own_connection(redis7, prefix):
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    with c.job([], ["parent.1"], duration=5):
        pass
    parent_conn = c._wire._conn
    pid = os.fork()
    if pid == 0:  # the child: a cycle of its own, on a connection of its own
        code = 1
        try:
            with c.job([], ["child"], duration=5):
                pass
            code = 0 if c._wire._conn is not parent_conn else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with c.job([], ["parent.2"], duration=5):  # the parent's connection still works
        pass
    assert c._wire._conn is parent_conn
    assert client.exists(prefix + "child", prefix + "parent.1", prefix + "parent.2") == 3
    c.close()


def test_a_kept_connection_the_server_closed_is_replaced_before_the_call(redis_server, prefix):
    """A client without retries still never sees a connection the server closed while it was idle
    (a restart, an idle time-out, CLIENT KILL): the pool's checkout would have replaced it too."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(redis_server.url, retry=Retry(NoBackoff(), 0))
    admin = redis.Redis.from_url(redis_server.url)
    c = jobs_core.Coordinator(client, prefix)
    for n in range(3):
        with c.job([], [f"out.{n}"], duration=5):
            pass
        assert c._wire._conn is not None
        killed = admin.client_kill_filter(skip_me=True, _type="normal")
        assert killed >= 1
    with c.job([], ["last"], duration=5) as job:
        pass
    assert text(admin.get(prefix + "last")) == job.id
    c.close()
    admin.close()


def test_an_interrupted_call_leaves_no_reply_for_the_next_one(redis_server, prefix):
    """An interrupt (here a signal) while a start waits for its reply: the reply still comes, and
    must not be read as the reply of the calls that follow (the job's leave, the next start). A
    Sentinel connection does not drop itself on an interrupt; this one is made to behave alike."""
    import functools
    import signal
    import time

    client = redis.Redis.from_url(redis_server.url)
    admin = redis.Redis.from_url(redis_server.url)
    c = jobs_core.Coordinator(client, prefix)
    with c.job([], ["warm"], duration=5):
        pass
    conn = c._wire._conn
    conn.read_response = functools.partial(type(conn).read_response, conn, disconnect_on_error=False)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        admin.execute_command("CLIENT", "PAUSE", 400, "ALL")  # the start is sent, its reply held back
        signal.setitimer(signal.ITIMER_REAL, 0.15)
        job = c.job([], ["x"], duration=30)
        with pytest.raises(KeyboardInterrupt):
            job.start()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert not job.is_running
    time.sleep(0.4)
    assert admin.get(prefix + "olock:x") is None  # dropped with its connection, or released by the leave
    with c.job([], ["x"], duration=5) as again:
        assert again.token == int(admin.get(prefix + "jobs:token"))  # its own reply, not an earlier call's
    assert text(admin.get(prefix + "x")) == again.id
    with c.job(["x"], ["y"], duration=5) as after:
        pass
    assert c.output_info("y").writer == after.id
    c.close()
    admin.close()
