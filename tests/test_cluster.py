"""jobs_core on a real Redis Cluster and Valkey Cluster (3 masters + 3 replicas each).

The core behaviours run on ``redis.cluster.RedisCluster``, ``valkey.cluster.ValkeyCluster``
and their asyncio twins, in hash-tagged namespaces; then what only a cluster
has: namespaces on different masters, a slot migrated while jobs run, and
failovers (graceful, a killed master that had replicated the locks, and a
killed master whose replica had not: the lock is lost, the job learns it, and
the fencing token is issued again).

``JOBS_TEST_CLUSTER=1`` also runs the whole backend-parametrized core suite on
these clusters (see ``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time

import pytest
from redis.cluster import key_slot

import jobs_core
from jobs_core import ConfigurationError, LockLost, ResourceUnavailable

from .cluster import LocalCluster, admin, cut_off_replica, tags_on_every_master, thaw, until

pytestmark = pytest.mark.deploy

CLUSTERS = [("redis", "redis"), ("valkey", "redis"), ("valkey", "valkey")]


def text(v):
    return v.decode() if isinstance(v, bytes) else v


@pytest.fixture(params=CLUSTERS, ids=["redis7-redispy", "valkey9-redispy", "valkey9-valkeypy"])
def on_cluster(request):
    """``(cluster, library)``: a session cluster of that server, and the client library to use."""
    server, library = request.param
    cluster = request.getfixturevalue("redis_cluster" if server == "redis" else "valkey_cluster")
    return cluster, library


@pytest.fixture
def tag_prefix():
    return f"{{jobs{secrets.token_hex(4)}}}:"


@pytest.fixture
def fresh_cluster():
    """A cluster of its own, for tests that kill or fail over nodes."""
    cluster = LocalCluster().start()
    yield cluster
    cluster.cleanup()


def keys_of(cluster: LocalCluster, prefix: str) -> dict[int, list[str]]:
    """``{master port: [keys of the namespace]}`` over every master."""
    out = {}
    for port in cluster.masters():
        found = [text(k) for k in admin(port).scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + "*")]
        if found:
            out[port] = found
    return out


def test_cluster_client_needs_a_hash_tag(redis_cluster):
    client = redis_cluster.client()
    try:
        for bad in ("", "jobs:", "{}:", "jobs}{:"):
            with pytest.raises(ConfigurationError, match="hash tag.*'{jobs}:'"):
                jobs_core.Coordinator(client, bad)
        jobs_core.Coordinator(client, "{jobs}:")
        jobs_core.Coordinator(client, "team-a:{jobs}:")
    finally:
        client.close()
    with pytest.raises(ConfigurationError, match="hash tag"):
        jobs_core.Coordinator.from_url(redis_cluster.url, "pfx:")  # refused before connecting

    async def main():
        aclient = redis_cluster.async_client()
        with pytest.raises(ConfigurationError, match="hash tag"):
            jobs_core.AsyncCoordinator(aclient, "pfx:")
        await aclient.aclose()

    asyncio.run(main())


def test_core_operations(on_cluster, tag_prefix):
    """Every operation of the coordinator on one namespace, and all its keys in one slot."""
    cluster, library = on_cluster
    client = cluster.client(library=library)
    c = jobs_core.Coordinator(client, tag_prefix, poll=30)
    other = jobs_core.Coordinator(cluster.client(library=library), tag_prefix, poll=30)
    try:
        assert c.sharded and c.publish == "SPUBLISH"
        with c.job([], ["raw.2026-11-27"], duration=10) as first:
            assert text(client.get(tag_prefix + "olock:raw.2026-11-27")) == first.id
            with pytest.raises(ResourceUnavailable) as e:
                other.job(["raw.2026-11-27"], ["clean"], duration=5).start()
            assert e.value.args[0] == {"input_missing": ["raw.2026-11-27"]}
            assert e.value.blockers[0].holder.job_id == first.id
            blocked = other.why_blocked([], ["raw.2026-11-27"])
            assert not blocked.can_start and blocked.blockers[0].holder.token == first.token
            running = other.running_jobs()
            assert [(r.job_id, r.outputs, r.token) for r in running] == [(first.id, ("raw.2026-11-27",), first.token)]
        assert other.written(["raw.2026-11-27", "nope"]) == {"raw.2026-11-27": first.id}
        info = other.output_info("raw.2026-11-27")
        assert info.written and info.writer == first.id and info.token == first.token
        assert abs(info.written_at - other.server_time()) < 5

        # readers share, a writer waits: the waiter is listed and woken by the (sharded) release
        r1 = c.job(["raw.2026-11-27"], ["clean"], duration=10).start()
        assert r1.token > first.token
        started = threading.Event()

        def wait_to_write():
            with other.job([], ["raw.2026-11-27"], duration=10, wait=20, job_id="rewrite"):
                started.set()

        t = threading.Thread(target=wait_to_write)
        t.start()
        until(lambda: [w.job_id for w in c.waiting_jobs()] == ["rewrite"], 10, "the writer listed as waiting")
        channel = tag_prefix + "jobs:wake:" + other.channel_id  # the waiting coordinator's own channel
        assert admin(cluster.master_of(tag_prefix)).execute_command("PUBSUB", "SHARDNUMSUB", channel) == [channel, 1]
        assert other.output_info("raw.2026-11-27").waiters == ("rewrite",)
        released = time.monotonic()
        r1.stop()
        assert started.wait(5) and time.monotonic() - released < 1.5, "woken by the release, not the 30 s poll"
        t.join(5)

        # a lost lock: refresh says so, stop writes nothing
        lost = []
        job = c.job([], ["lost"], duration=10, heartbeat=False, on_lost=lost.append).start()
        client.delete(tag_prefix + "olock:lost")
        with pytest.raises(LockLost) as e:
            job.refresh()
        assert e.value.lost == {"output_lock_lost": ["lost"]} and lost == [job]
        with pytest.raises(LockLost):
            job.stop()
        assert not client.exists(tag_prefix + "lost")

        # repairs: unlock fences the holder out, create and stop_job
        holder = c.job(["clean"], ["x"], duration=10, heartbeat=False).start()
        assert other.unlock(outputs=["x"]) == 1
        with pytest.raises(LockLost):
            holder.stop()
        token = other.create_outputs(["made"], job_id="repair")
        assert token > holder.token and other.output_info("made").forced
        by_id = c.job(["made"], ["y"], duration=10, heartbeat=False, job_id="shell-job").start()
        assert other.stop_job("shell-job") == "written"
        assert text(client.get(tag_prefix + "y")) == by_id.id
        ins, outs = other.edges()
        assert "rewrite -> raw.*" in outs and "made -> shell-job" in ins
    finally:
        c.close()
        other.close()

    # every key of the namespace lives in the one slot of its hash tag, on one master
    where = keys_of(cluster, tag_prefix)
    assert list(where) == [cluster.master_of(tag_prefix)]
    assert {key_slot(k.encode()) for k in where[cluster.master_of(tag_prefix)]} == {key_slot(tag_prefix.encode())}


def test_waiters_share_one_sharded_subscription(redis_cluster, tag_prefix):
    """Three waiting jobs, one SSUBSCRIBE on the namespace's master, each granted by its release."""
    c = jobs_core.Coordinator(redis_cluster.client(), tag_prefix, poll=30)
    master = admin(redis_cluster.master_of(tag_prefix))
    try:
        holders = [c.job([], [f"o{i}"], duration=10).start() for i in range(3)]
        done = []

        def waiter(i):
            with c.job([], [f"o{i}"], duration=10, wait=20):
                done.append((i, time.monotonic()))

        threads = [threading.Thread(target=waiter, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        until(lambda: len(c.waiting_jobs()) == 3, 10, "three waiters")
        channel = tag_prefix + "jobs:wake:" + c.channel_id  # the coordinator's own channel
        assert master.execute_command("PUBSUB", "SHARDNUMSUB", channel) == [channel, 1]
        for i, h in enumerate(holders):
            released = time.monotonic()
            h.stop()
            until(lambda i=i: any(d[0] == i for d in done), 5, f"waiter {i}")
            assert next(d[1] for d in done if d[0] == i) - released < 1.0
        for t in threads:
            t.join(5)
    finally:
        c.close()


@pytest.mark.parametrize("library", ["redis", "valkey"])
def test_async_coordinator(redis_cluster, valkey_cluster, tag_prefix, library):
    """AsyncCoordinator on redis-py's and valkey-py's asyncio cluster clients: exclusion, a
    wait woken by a sync release, 30 coroutines taking turns on one output, a heartbeat."""
    cluster = redis_cluster if library == "redis" else valkey_cluster
    sync = jobs_core.Coordinator(cluster.client(), tag_prefix)
    client = cluster.client()

    async def main():
        c = jobs_core.AsyncCoordinator(cluster.async_client(library=library), tag_prefix, poll=30)
        holder = sync.job([], ["a"], duration=10).start()
        with pytest.raises(ResourceUnavailable):
            await c.job([], ["a"], duration=5).start()
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, holder.stop)
        t0 = time.monotonic()
        async with c.job(["a"], ["b"], duration=5, wait=10) as job:
            assert time.monotonic() - t0 < 1.5
            assert (await c.output_info("a")).readers[0].job_id == job.id
            assert [r.job_id for r in await c.running_jobs()] == [job.id]
        channel = tag_prefix + "jobs:wake:" + c.channel_id  # the listener that woke the job is still subscribed
        assert admin(cluster.master_of(tag_prefix)).execute_command("PUBSUB", "SHARDNUMSUB", channel) == [channel, 1]

        @c.job([], ["counter"], duration=5, wait=30)
        async def bump():
            value = int(await c.client.get(tag_prefix + "count") or 0)
            await asyncio.sleep(0)
            await c.client.set(tag_prefix + "count", value + 1)

        await asyncio.gather(*(bump() for _ in range(30)))

        beating = await c.job([], ["long"], duration=0.6).start()
        await asyncio.sleep(1.5)
        await beating.refresh()
        assert beating.lost is None
        await beating.stop()
        assert (await c.written(["long", "b"])).keys() == {"long", "b"}
        await c.aclose()

    try:
        asyncio.run(main())
        assert int(client.get(tag_prefix + "count")) == 30
    finally:
        sync.close()
        client.close()


def test_namespaces_spread_across_masters(redis_cluster):
    """Two namespaces on each master: each keeps its keys on its own master and its own
    fencing counter, and the same output name in two namespaces never conflicts."""
    prefixes = tags_on_every_master(redis_cluster, 2, stem=f"n{secrets.token_hex(2)}-")
    owners = {p: redis_cluster.master_of(p) for p in prefixes}
    assert len(set(owners.values())) == 3
    client = redis_cluster.client()
    coordinators = [jobs_core.Coordinator(client, p) for p in prefixes]
    try:
        jobs = [c.job([], ["report"], duration=10).start() for c in coordinators]
        assert [j.token for j in jobs] == [1] * len(prefixes)
        errors = []

        def work(c):
            try:
                for _ in range(10):
                    with c.job([], ["daily"], duration=5, wait=10):
                        pass
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(c,)) for c in coordinators]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        for j in jobs:
            j.stop()
        for p, c in zip(prefixes, coordinators):
            assert c.output_info("daily").token == 11
            assert list(keys_of(redis_cluster, p)) == [owners[p]]
    finally:
        client.close()


def test_slot_migration_while_jobs_run(redis_cluster, tag_prefix):
    """The namespace's slot moves to another master as ``redis-cli --cluster reshard`` moves it
    (keys MIGRATEd in batches, then SETSLOT NODE), held half-migrated for a second, while a job
    holds locks with its heartbeat, another waits, and a worker runs short jobs.

    While the slot is half-moved, Redis answers multi-key scripts with TRYAGAIN; redis-py retries
    for about half a second, then raises ``ClusterError``: the call did nothing, so the worker
    repeats it (a start, or a stop). Nobody loses a lock, tokens stay unique and growing, the
    waiter is woken on the new master, and every key ends there."""
    from redis.exceptions import ClusterError, TryAgainError

    cluster = redis_cluster
    client = cluster.client()
    c = jobs_core.Coordinator(client, tag_prefix, poll=30)
    w = jobs_core.Coordinator(cluster.client(), tag_prefix, poll=30)
    try:
        for i in range(30):  # something to migrate
            c.create_outputs([f"old.{i}"], job_id="seed")
        lost = []
        holder = c.job(["old.1"], ["big"], duration=2.5, on_lost=lost.append).start()
        tokens, errors, stop = [], [], threading.Event()

        def worker():
            n = 0
            while not stop.is_set():
                job = w.job([f"old.{n % 30}"], [f"new.{n}"], duration=5, heartbeat=False)
                try:
                    job.start()
                except (ClusterError, TryAgainError) as exc:
                    errors.append(("start", exc))
                    continue
                while True:
                    try:
                        job.stop()
                        break
                    except (ClusterError, TryAgainError) as exc:
                        errors.append(("stop", exc))
                tokens.append(job.token)
                n += 1

        woke = []

        def waiter():
            with w.job([], ["big"], duration=5, wait=30) as job:
                woke.append((time.monotonic(), job.token))

        threads = [threading.Thread(target=worker), threading.Thread(target=waiter)]
        for t in threads:
            t.start()
        until(lambda: len(w.waiting_jobs()) == 1, 10, "the waiter")
        slot = key_slot(tag_prefix.encode())
        source = cluster.master_of(tag_prefix)
        target = next(p for p in cluster.masters() if p != source)
        window = []
        cluster.migrate_slot(slot, target, midway=lambda: (window.append(len(tokens)), time.sleep(1.0)), batch=5)
        window.append(len(tokens))
        assert cluster.master_of(tag_prefix) == target
        time.sleep(3.0)  # the holder's heartbeat renews on the new master, past its 2.5 s lease
        assert holder.lost is None and not lost
        released = time.monotonic()
        holder.stop()
        until(lambda: woke, 10, "the waiter woken")
        assert woke[0][0] - released < 2.0
        stop.set()
        for t in threads:
            t.join(20)
        assert len(tokens) > window[1] + 10, "the worker went on after the migration"
        assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
        assert woke[0][1] > holder.token
        assert list(keys_of(cluster, tag_prefix)) == [target]
        names = {f"new.{i}" for i in range(len(tokens))}
        assert w.written(names).keys() == names
        assert all("TTL exhausted" in str(e) or isinstance(e, TryAgainError) for _, e in errors)
    finally:
        c.close()
        w.close()


def test_graceful_failover_keeps_the_locks(fresh_cluster, tag_prefix):
    """CLUSTER FAILOVER on the namespace's replica while a job holds locks: the replica has
    every write before it takes over, so the heartbeat renews on the new master, the job
    writes its outputs, and the next token is larger."""
    cluster = fresh_cluster
    c = jobs_core.Coordinator(cluster.client(), tag_prefix, poll=30)
    try:
        c.create_outputs(["in"])
        lost = []
        job = c.job(["in"], ["out"], duration=2.0, on_lost=lost.append).start()
        master = cluster.master_of(tag_prefix)
        replica = cluster.replicas_of(master)[0]
        cluster.failover(replica)
        assert cluster.master_of(tag_prefix) == replica
        time.sleep(3.0)  # past the lease: only renewals on the new master keep it
        job.check()
        job.refresh()
        assert job.lost is None and not lost
        job.stop()
        assert c.output_info("out").writer == job.id
        with c.job(["out"], [], duration=5) as after:
            assert after.token > job.token
    finally:
        c.close()


def test_killed_master_whose_replica_had_the_locks(fresh_cluster, tag_prefix):
    """SIGKILL of the namespace's master after its replica received the start: the replica
    takes over with the locks, the heartbeat rides out the failover, the job completes."""
    cluster = fresh_cluster
    c = jobs_core.Coordinator(cluster.client(), tag_prefix, poll=30)
    try:
        job = c.job([], ["out"], duration=15, heartbeat=1.0).start()
        master = cluster.master_of(tag_prefix)
        replica = cluster.replicas_of(master)[0]
        until(lambda: admin(replica).info("replication")["slave_repl_offset"] >=
              admin(master).info("replication")["master_repl_offset"], 5, "the replica caught up")
        t0 = time.monotonic()
        assert cluster.kill_master(master) == replica
        took = time.monotonic() - t0
        time.sleep(1.5)
        job.refresh()
        assert job.lost is None
        job.stop()
        assert c.output_info("out").writer == job.id
        assert took < 15
    finally:
        c.close()


def test_killed_master_whose_replica_missed_the_start(fresh_cluster, tag_prefix):
    """What asynchronous replication allows: the master acknowledges a start, dies before its
    replica gets it, and the replica takes over without the locks. The job learns it
    (heartbeat -> on_lost, job.lost, LockLost from check/stop) and writes nothing; another
    job then starts on the same output and gets the same fencing token again, which is why
    storage must check tokens against the writer it last accepted, not trust them alone."""
    cluster = fresh_cluster
    c = jobs_core.Coordinator(cluster.client(), tag_prefix, poll=30)
    try:
        c.create_outputs(["in"], job_id="seed")
        before = c.job(["in"], ["out"], duration=5).start()
        before.stop()
        master = cluster.master_of(tag_prefix)
        replica = cluster.replicas_of(master)[0]
        until(lambda: admin(replica).info("replication")["slave_repl_offset"] >=
              admin(master).info("replication")["master_repl_offset"], 5, "the replica caught up")

        lost = threading.Event()
        pid = cut_off_replica(master, replica)
        try:
            job = c.job(["in"], ["out"], duration=20, heartbeat=0.5, on_lost=lambda j: lost.set()).start()
            cluster.kill(master)
        finally:
            thaw(pid)
        assert cluster.wait_promoted(master) == replica
        assert lost.wait(15), "the heartbeat found the locks gone on the new master"
        assert job.lost == {"input_lock_lost": ["in"], "output_lock_lost": ["out"]}
        with pytest.raises(LockLost):
            job.check()

        with c.job(["in"], ["out"], duration=5) as successor:
            assert successor.token == job.token  # the INCR that issued job.token was lost with the master
        with pytest.raises(LockLost):
            job.stop()
        info = c.output_info("out")
        assert info.writer == successor.id and info.token == successor.token
    finally:
        c.close()
