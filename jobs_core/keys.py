"""Every Redis key and channel name jobs_core uses; the only place Python builds them.

The scripts derive the keys they touch from the prefix in ``lua/lib.lua``,
with the same rules (``tests/test_scripts.py`` checks the two agree).

The layout is shared with jobs.py (jobspy 0.31) so both can run on one Redis:
``<prefix><name>`` is an output, ``olock:``/``ilock:`` are the write and read
locks, ``jobs:running*`` the running jobs and ``jobs:graph:*`` the lineage.
Everything jobs_core adds lives under ``<prefix>jobs:``.
"""

from __future__ import annotations


class Keys:
    """Key names of one namespace (``prefix``)."""

    __slots__ = ("prefix", "running", "guard", "token", "graph_input", "graph_output", "waiting", "channel",
                 "identity", "scripts", "limits")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.running = prefix + "jobs:running"
        #: Never written: the scripts declare it so that a cluster refuses them while the
        #: namespace's slot migrates (see lua/lib.lua).
        self.guard = prefix + "jobs:guard"
        #: KEYS of every script on lua/lib.lua.
        self.scripts = (self.running, self.guard)
        self.token = prefix + "jobs:token"
        self.graph_input = prefix + "jobs:graph:input"
        self.graph_output = prefix + "jobs:graph:output"
        self.waiting = prefix + "jobs:waiting"
        self.channel = prefix + "jobs:wake"
        #: A random token naming the namespace (see :func:`jobs_core.connect.namespace_id`).
        self.identity = prefix + "jobs:namespace"
        #: Capacity of each limit: a hash, limit name -> slots.
        self.limits = prefix + "jobs:limits"

    def output(self, name: str) -> str:
        """The output key: exists once written, holds the writer's job id."""
        return self.prefix + name

    def olock(self, name: str) -> str:
        """Write lock: the writer's job id, expiring with its lease."""
        return self.prefix + "olock:" + name

    def ilock(self, name: str) -> str:
        """Read locks: zset of reader job ids scored by lease expiry."""
        return self.prefix + "ilock:" + name

    def queue(self, name: str) -> str:
        """The line of a name: waiting start() calls (nonces), scored by when they began to wait."""
        return self.prefix + "jobs:queue:" + name

    def facts(self, name: str) -> str:
        """Output facts (writer, token, time) written beside the output."""
        return self.prefix + "jobs:output:" + name

    def job(self, job_id: str) -> str:
        """The running job's ``[inputs..., "", outputs...]`` JSON array."""
        return self.prefix + "jobs:running:" + job_id

    def holder(self, job_id: str) -> str:
        """Hash of holder facts: token, host, pid, start time."""
        return self.prefix + "jobs:holder:" + job_id

    def op(self, nonce: str) -> str:
        """The remembered result of one repair call, so a replayed call repeats it."""
        return self.prefix + "jobs:op:" + nonce

    def waiter(self, nonce: str) -> str:
        """A waiting start() call's request (JSON: job id, names, lease, host, pid, ticket...)."""
        return self.prefix + "jobs:waiting:" + nonce

    def idqueue(self, job_id: str) -> str:
        """Start calls waiting for another start of the same job id to end, scored by ticket."""
        return self.prefix + "jobs:idqueue:" + job_id

    def limit(self, name: str) -> str:
        """The slots held of limit ``name``: a zset of ``<job id>#<n>`` scored by lease expiry."""
        return self.prefix + "jobs:limit:" + name

    def limit_line(self, name: str) -> str:
        """The line of jobs waiting for slots of limit ``name`` (nonces by ticket, as a name's line)."""
        return self.prefix + "jobs:limitq:" + name

    def wake(self, channel_id: str) -> str:
        """The pub/sub channel of one coordinator: grants and nudges for its waiting jobs."""
        return self.channel + ":" + channel_id


def has_hash_tag(prefix: str) -> bool:
    """Whether ``prefix`` pins every key to one cluster slot, as ``{jobs}:`` does.

    Redis hashes only the text between the first ``{`` and the next ``}``, when
    that text is not empty.
    """
    start = prefix.find("{")
    return start >= 0 and prefix.find("}", start + 1) > start + 1
