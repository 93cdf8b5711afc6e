"""The scripts' contracts: each Lua header against its Python record, and lib.lua's keys against keys.py.

A script's ARGV is written once as a ``NamedTuple`` (jobs_core.scripts) and
once as its Lua header (``-- ARGV[n] - <field>: ...``): these tests keep the
two in the same order. The scripts derive their keys from the prefix (lib.lua);
Python builds the same names in jobs_core.keys: a script run on a real server
returns the keys lib.lua builds, compared here with keys.py's.
"""

from __future__ import annotations

import re

import pytest
import redis

from jobs_core import protocol
from jobs_core.keys import Keys
from jobs_core.scripts import ARGS, ON_LIB, _read, source

HEADER = re.compile(r"^-- ARGV\[(\d+)(\.\.)?\] - (\w+)?", re.M)
#: Scripts whose ARGV is their record alone (no names after it).
NO_TAIL = {"limit"}


@pytest.mark.parametrize("name", sorted(ARGS))
def test_each_lua_header_lists_its_record_fields_in_order(name):
    lines = HEADER.findall(_read(name))
    fields = ARGS[name]._fields
    numbered = [(int(n), field) for n, rest, field in lines if not rest]
    assert numbered == [(i + 1, f) for i, f in enumerate(fields)], name
    tail = [int(n) for n, rest, _ in lines if rest]
    assert tail == ([] if name in NO_TAIL else [len(fields) + 1])  # then the names


def test_every_script_on_lib_declares_the_namespace_and_its_guard():
    for name in ON_LIB:
        text = _read(name)
        assert "-- KEYS[1] - jobs:running, KEYS[2] - jobs:guard (the namespace: see lib.lua)" in text, name
        assert source(name).startswith(f"local ALIVE_MS = {protocol.ALIVE_MS}\n")


@pytest.mark.parametrize("prefix", ["", "p:", "{jobs}:", "é:"])
def test_lib_lua_builds_the_keys_keys_py_builds(redis_server, prefix):
    """The same names, one built by lib.lua on a server, one by Python, for odd names too."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    k = Keys(prefix)
    names = ["x", "a.b.2026-11-27", "é 日本", "with space", "olock-ish"]
    body = source("time").replace("return T\n", "") + """
local out = {PREFIX, K_RUNNING, K_TOKEN, K_WAITING, K_GRAPH_IN, K_GRAPH_OUT, K_WAKE, K_LIMITS}
for _, n in ipairs(ARGV) do
    for _, key in ipairs({k_out(n), k_olock(n), k_ilock(n), k_facts(n), k_queue(n), k_job(n), k_holder(n),
                          k_idqueue(n), k_waiter(n), k_limit(n), k_limitq(n)}) do
        out[#out + 1] = key
    end
end
return out
"""
    got = client.eval(body, 2, *k.scripts, *names)
    want = [prefix, k.running, k.token, k.waiting, k.graph_input, k.graph_output, k.channel, k.limits]
    for n in names:
        want += [k.output(n), k.olock(n), k.ilock(n), k.facts(n), k.queue(n), k.job(n), k.holder(n), k.idqueue(n),
                 k.waiter(n), k.limit(n), k.limit_line(n)]
    assert got == want
    client.close()


def test_the_lua_fold_is_the_python_fold(redis_server):
    from jobs_core.names import fold

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    samples = ["a.2026-11-27", "x1-2-3y", "-1", "٣ arabic digit", "12--34", "none", "a1b22c333", "0"]
    body = source("time").replace("return T\n", "") + """
local out = {}
for i, s in ipairs(ARGV) do out[i] = fold(s) end
return out
"""
    assert client.eval(body, 2, *Keys("p:").scripts, *samples) == [fold(s) for s in samples]
    client.close()
