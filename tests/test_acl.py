"""A Redis ACL user limited to one namespace runs every operation and reaches nothing else.

The user gets the README's ACL line: the keys ``~<prefix>*``, the wake-up channels
``&<prefix>jobs:wake*`` and only the commands jobs_core sends or its scripts run
(Redis checks the commands a script runs against the caller's ACL too). Tested on
Redis 7 and Valkey 9, standalone and cluster, with redis-py and valkey-py.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time

import pytest
import redis

import jobs_core

pytestmark = pytest.mark.deploy

#: The commands of the README's ACL line (standalone server).
COMMANDS = ("evalsha script|load time get set mget mset del exists incr pttl pexpire hget hgetall hmget hset hdel "
            "zadd zrem zrange zrangebyscore zcount zscore zremrangebyscore zcard publish subscribe").split()
#: What a cluster client needs besides: sharded pub/sub and the cluster's layout.
CLUSTER_COMMANDS = "spublish ssubscribe cluster|slots cluster|shards command".split()
#: redis-py names itself on connecting (Redis >= 7.2, Valkey); refused, it goes on, but the ACL log fills.
SETINFO = "client|setinfo"


def acl_rules(prefix: str, password: str, cluster: bool = False, setinfo: bool = True) -> list[str]:
    """The README's ``ACL SETUSER <user> ...`` rules for ``prefix``."""
    commands = COMMANDS + (CLUSTER_COMMANDS if cluster else []) + ([SETINFO] if setinfo else [])
    return ["reset", "on", f">{password}", f"~{prefix}*", f"&{prefix}jobs:wake*", "-@all",
            *(f"+{c}" for c in commands)]


def set_user(admin: redis.Redis, user: str, prefix: str, password: str, cluster: bool = False) -> None:
    try:
        admin.execute_command("ACL", "SETUSER", user, *acl_rules(prefix, password, cluster))
    except redis.ResponseError:  # Redis 7.0 has no CLIENT SETINFO
        admin.execute_command("ACL", "SETUSER", user, *acl_rules(prefix, password, cluster, setinfo=False))


def every_operation(c: jobs_core.Coordinator, make_async) -> None:
    """Start, wait (pushed), refresh, facts, listings, repairs, lineage, asyncio."""
    c.create_outputs(["in"])
    holder = c.job(["in"], ["a"], duration=10).start()
    holder.refresh()
    threading.Timer(0.3, holder.stop).start()
    with c.job(["in"], ["a"], duration=5, wait=10, output_ttl=600) as job:
        assert c.output_info("a").write_lock.job_id == job.id
        assert not c.why_blocked(["in"], ["a"]).can_start
        assert [r.job_id for r in c.running_jobs()] == [job.id]
        assert c.holder(job.id).token == job.token
        assert c.waiting_jobs() == []
    assert c.written(["a", "in"]).keys() == {"a", "in"}
    assert c.edges() != ([], [])
    assert c.server_time() > 0
    c.job([], ["b"], duration=5, heartbeat=False).start()
    assert c.unlock(["in"], ["b"]) == 1
    c.job(["a"], ["c"], duration=5, heartbeat=False, job_id="shell").start()
    assert c.stop_job("shell") == "written"
    c.set_limit("wh", 1)  # limits: set, taken, waited for (a line), shown, removed
    limited = c.job([], [], limits={"wh": 1}, duration=5).start()
    threading.Timer(0.3, limited.stop).start()
    with c.job([], [], limits={"wh": 1}, duration=5, wait=10):
        (info,) = c.limits(["wh"])
        assert info.used == 1
    assert c.remove_limit("wh") == 1

    async def main():
        ac = make_async()
        async with ac.job(["c"], ["d"], duration=5):
            pass
        await ac.aclose()

    asyncio.run(main())


def pushed_wait(c: jobs_core.Coordinator) -> float:
    """How long a wait for a released output took (the coordinator polls every 30 s)."""
    holder = c.job([], ["p"], duration=10).start()
    threading.Timer(0.5, holder.stop).start()
    t0 = time.monotonic()
    c.job([], ["p"], duration=5, wait=10).start().stop()
    return time.monotonic() - t0


@pytest.fixture(params=[("redis_server", "redis"), ("valkey_server", "redis"), ("valkey_server", "valkey")],
                ids=["redis7-redispy", "valkey9-redispy", "valkey9-valkeypy"])
def server_and_library(request):
    return request.getfixturevalue(request.param[0]), request.param[1]


def client_class(library: str, asyncio: bool = False):
    if library == "valkey":
        import valkey
        import valkey.asyncio
        return valkey.asyncio.Valkey if asyncio else valkey.Valkey
    import redis.asyncio
    return redis.asyncio.Redis if asyncio else redis.Redis


def test_namespace_user_runs_everything_and_nothing_else(server_and_library):
    server, library = server_and_library
    prefix = f"{{team{secrets.token_hex(3)}}}:"
    user, password = f"jobs-{secrets.token_hex(3)}", secrets.token_hex(8)
    admin = redis.Redis(port=server.port, decode_responses=True)
    set_user(admin, user, prefix, password)
    admin.execute_command("SCRIPT", "FLUSH")  # the user must be able to load the scripts itself
    admin.execute_command("ACL", "LOG", "RESET")
    sync, aio = client_class(library), client_class(library, asyncio=True)
    client = sync(port=server.port, username=user, password=password)
    c = jobs_core.Coordinator(client, prefix, poll=30)
    try:
        every_operation(c, lambda: jobs_core.AsyncCoordinator(aio(port=server.port, username=user,
                                                                  password=password), prefix))
        assert pushed_wait(c) < 1.5, "wake-ups were pushed on the namespace's channel"
        assert admin.execute_command("ACL", "LOG") == [], "no command was refused"

        # nothing outside the namespace: not another prefix's keys, channel or scripts' keys
        admin.set("other:x", "theirs")
        for attempt in (lambda: client.get("other:x"), lambda: client.set("other:x", "mine"),
                        lambda: client.publish("other:jobs:wake", "x"), lambda: client.keys("*"),
                        lambda: client.flushall()):
            with pytest.raises(redis.exceptions.NoPermissionError if library == "redis" else Exception,
                               match="(?i)permission"):
                attempt()
        intruder = jobs_core.Coordinator(client, "other:")
        with pytest.raises(Exception, match="(?i)permission|can't run|no permissions"):
            intruder.job([], ["x"], duration=5).start()
        with pytest.raises(Exception, match="(?i)permission|can't run|no permissions"):
            intruder.create_outputs(["x"])
        assert admin.get("other:x") == "theirs" and not admin.exists("other:olock:x")
    finally:
        c.close()
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


@pytest.mark.parametrize("which", ["redis_cluster", "valkey_cluster"])
def test_namespace_user_on_a_cluster(which, request):
    """The same user on every node of a cluster, with the cluster's few extra commands."""
    cluster = request.getfixturevalue(which)
    prefix = f"{{team{secrets.token_hex(3)}}}:"
    user, password = f"jobs-{secrets.token_hex(3)}", secrets.token_hex(8)
    admins = [redis.Redis(port=p, decode_responses=True) for p in cluster.ports]
    for a in admins:
        set_user(a, user, prefix, password, cluster=True)
        a.execute_command("ACL", "LOG", "RESET")
    c = jobs_core.Coordinator(cluster.client(username=user, password=password), prefix, poll=30)
    try:
        every_operation(c, lambda: jobs_core.AsyncCoordinator(
            cluster.async_client(username=user, password=password), prefix))
        assert pushed_wait(c) < 1.5
        assert all(a.execute_command("ACL", "LOG") == [] for a in admins)
        with pytest.raises(Exception, match="(?i)permission|can't run|no permissions"):
            jobs_core.Coordinator(c.client, "{other}:").job([], ["x"], duration=5).start()
    finally:
        c.close()
        for a in admins:
            a.execute_command("ACL", "DELUSER", user)
            a.close()


def test_tenants_on_one_server_do_not_interfere(redis_server):
    """Two teams, each an ACL user with its own namespace on one server, run jobs with the same
    names at once: each sees only its own jobs, outputs, waiters and fencing counter."""
    admin = redis.Redis(port=redis_server.port, decode_responses=True)
    tenants = {}
    for team in ("etl", "ml"):
        prefix, user, password = f"{{{team}{secrets.token_hex(3)}}}:", f"{team}-{secrets.token_hex(3)}", "pw"
        set_user(admin, user, prefix, password)
        tenants[team] = jobs_core.Coordinator(redis.Redis(port=redis_server.port, username=user, password=password),
                                              prefix, poll=30)
    etl, ml = tenants["etl"], tenants["ml"]
    try:
        held = etl.job([], ["daily"], duration=10).start()
        with ml.job([], ["daily"], duration=10) as other:  # the same name, another namespace
            assert other.token == 1 == held.token
            assert [r.job_id for r in etl.running_jobs()] == [held.id]
            assert [r.job_id for r in ml.running_jobs()] == [other.id]
        errors = []

        def busy(c):
            try:
                for _ in range(20):
                    with c.job([], ["shared"], duration=5, wait=10):
                        pass
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=busy, args=(c,)) for c in (etl, ml, etl, ml)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        held.stop()
        assert etl.output_info("shared").token == 41 == ml.output_info("shared").token
        assert etl.written(["daily"]) == {"daily": held.id} and ml.written(["daily"]) == {"daily": other.id}
    finally:
        for c in tenants.values():
            c.close()
        for user in [u for u in admin.execute_command("ACL", "USERS") if u.startswith(("etl-", "ml-"))]:
            admin.execute_command("ACL", "DELUSER", user)
        admin.close()
