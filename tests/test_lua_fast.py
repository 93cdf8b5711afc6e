"""The shortcuts lib.lua takes for speed give what the plain ways gave, on Redis 7 and Valkey 9.

NOWS is built from TIME's text instead of ``string.format('%.6f', NOW)``; ``num`` makes the text
of a number passed more than once to Redis as Redis would (``%.17g``); ``keep_for`` lengthens a
key's time to live with PEXPIRE NX/GT where PTTL then PEXPIRE did.
"""

from __future__ import annotations

import re

import pytest
import redis

import jobs_core
from jobs_core.keys import Keys
from jobs_core.scripts import _read, source

LIB = source("time").replace("return T\n", "")


@pytest.fixture(params=["redis_server", "valkey_server"])
def server(request):
    return request.getfixturevalue(request.param)


@pytest.fixture
def client(server):
    c = redis.Redis.from_url(server.url, decode_responses=True)
    yield c
    c.flushall()
    c.close()


def _run(client, body, *args):
    return client.eval(LIB + body, 2, *Keys("p:").scripts, *args)


def test_nows_is_now_to_the_microsecond(client):
    # lib.lua's own lines for NOW and NOWS, run on clock readings of every kind of microsecond part
    lines = re.findall(r"^local (?:NOW|NOWS) = .*$", _read("lib"), re.M)
    assert len(lines) == 2
    body = """
local out = {}
for _, sec in ipairs({'1', '1764457123', '1795993464', '2147483647', '4294967295', '8589934591'}) do
    for _, usec in ipairs({'0', '1', '9', '10', '99999', '100000', '123456', '499999', '500000', '500001',
                           '999990', '999999'}) do
        local T = {sec, usec}
        """ + "\n        ".join(lines) + """
        if NOWS ~= string.format('%.6f', NOW) then
            out[#out + 1] = NOWS .. ' ' .. string.format('%.6f', NOW)
        end
    end
end
return {NOWS, out}
"""
    nows, wrong = _run(client, body)
    assert wrong == []
    # and the script's own, from the server's clock
    sec, usec = client.time()
    assert abs(float(nows) - (sec + usec / 1e6)) < 5


def test_num_is_the_text_redis_makes_of_a_number(client):
    samples = ["1", "7", "60000", "120000", "4294967296", "999999999999999", "1000000000000000",
               "9007199254740993", "0", "-0", "-5", "0.5", "60000.25", "1795993464.0917201", "1e300", "-1e-300"]
    body = """
local out = {}
for i, a in ipairs(ARGV) do
    local x = tonumber(a)
    out[i] = {num(x), string.format('%.17g', x)}
end
return out
"""
    for got, want in _run(client, body, *samples):
        assert got == want


@pytest.mark.parametrize("ttl_ms, want", [(None, 5000), (1000, 5000), (5000, 5000), (900_000, 900_000)])
def test_keep_for_gives_at_least_the_time_to_live(client, ttl_ms, want):
    client.set("p:k", "v")
    if ttl_ms is not None:
        client.pexpire("p:k", ttl_ms)
    _run(client, "keep_for(PREFIX .. 'k', ARGV[1]) return 1", "5000")
    assert want - 100 < client.pttl("p:k") <= want


def test_a_wide_job_takes_and_releases_every_output_lock(server, client):
    c = jobs_core.Coordinator(redis.Redis.from_url(server.url), prefix="p:")
    outs = [f"out{i}" for i in range(600)]
    client.set("p:in", "x")
    with c.job(["in"], outs, 60, job_id="wide"):
        assert client.get("p:olock:out599") == "wide"
    assert client.keys("p:olock:*") == []
    assert client.get("p:out599") == "wide"
    c.close()
