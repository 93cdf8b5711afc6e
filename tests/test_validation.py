"""Bad input fails with a specific, clear error before anything reaches Redis."""

from __future__ import annotations

import asyncio
import math

import pytest
import redis

import jobs_core
from jobs_core import NG, ConfigurationError, InvalidArgument, InvalidName, InvalidNameType, InvalidType, JobsError

from .conftest import keyspace

BAD_NAMES = [
    ("", InvalidName, "empty"),
    (5, InvalidNameType, "must be a str"),
    (None, InvalidNameType, "must be a str"),
    (b"raw.events", InvalidNameType, "not bytes"),
    ("x" * 1025, InvalidName, "1024"),
    ("a -> b", InvalidName, "lineage"),
    ("line\nbreak", InvalidName, "control"),
    ("tab\there", InvalidName, "control"),
    ("nul\x00", InvalidName, "control"),
    ("jobs:running", InvalidName, "internal"),
    ("ilock:x", InvalidName, "internal"),
    ("olock:x", InvalidName, "internal"),
    ("\ud800", InvalidName, "surrogate"),
]


def entry_points(c: jobs_core.Coordinator, bad):
    """Every public sync entry point taking a name, called with ``bad``."""
    return {
        "job input": lambda: c.job([bad], ["ok"], duration=5),
        "job output": lambda: c.job(["ok"], [bad], duration=5),
        "why_blocked": lambda: c.why_blocked([bad], []),
        "output_info": lambda: c.output_info(bad),
        "unlock input": lambda: c.unlock(inputs=[bad]),
        "unlock output": lambda: c.unlock(outputs=[bad]),
        "create_outputs": lambda: c.create_outputs([bad]),
        "ResourceManager": lambda: jobs_core.ResourceManager([bad], [], 30, conn=c.client),
        "add_outputs": lambda: jobs_core.ResourceManager([], [], 30, conn=c.client).add_outputs(bad),
    }


@pytest.mark.parametrize("bad,error,words", BAD_NAMES, ids=[repr(b[0])[:20] for b in BAD_NAMES])
def test_bad_names_are_refused_before_redis(redis7, prefix, bad, error, words):
    client = redis7.client()
    c = jobs_core.Coordinator(client, prefix)
    c.create_outputs(["ok"])
    before = keyspace(client, prefix)
    commands = client.info("stats")["total_commands_processed"]
    for where, call in entry_points(c, bad).items():
        with pytest.raises(error) as e:
            call()
        assert isinstance(e.value, ValueError) and isinstance(e.value, JobsError), where
        if error is InvalidNameType:
            assert isinstance(e.value, TypeError)
        msg = str(e.value)
        if words == "not bytes":
            assert "bytes" in msg, (where, msg)
        else:
            assert words in msg, (where, msg)
    assert client.info("stats")["total_commands_processed"] == commands + 1  # only the INFO itself
    assert keyspace(client, prefix) == before


def test_bad_job_id_and_names_of_the_async_coordinator(redis7, prefix):
    async def main():
        c = jobs_core.AsyncCoordinator(redis7.async_client(), prefix)
        with pytest.raises(InvalidName):
            c.job([], ["x"], duration=5, job_id="a -> b")
        with pytest.raises(InvalidName):
            await c.output_info("jobs:token")
        with pytest.raises(InvalidNameType):
            await c.create_outputs(["x"], job_id=7)

    asyncio.run(main())


def test_a_string_is_not_a_list_of_names(coordinator):
    with pytest.raises(InvalidNameType, match="list"):
        coordinator.job("raw.events", [], duration=5)
    with pytest.raises(InvalidType, match="list"):
        jobs_core.ResourceManager("raw.events", [], 30)


def test_good_unusual_names_are_kept_exactly(coordinator, client, prefix):
    names = ["café.日本", 'quoted "name"', "a->b", "a - > b", str(NG.reporting.events[2026]), " spaced "]
    with coordinator.job([], names, duration=5) as job:
        (running,) = coordinator.running_jobs()
        assert list(running.outputs) == names
    for n in names:
        assert coordinator.output_info(n).writer == job.id
    assert {e.split(" -> ")[1] for e in coordinator.edges()[1]} == {jobs_core.names.fold(n) for n in names}


def test_ng_names_are_accepted(coordinator):
    with coordinator.job([], [NG.a.b[1]], duration=5) as job:
        assert job.outputs == ("a.b.1",)


BAD_NUMBERS = [0, -1, "10", None, math.nan, math.inf, True]


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=repr)
def test_bad_durations(coordinator, value):
    with pytest.raises(InvalidArgument) as e:
        coordinator.job([], ["x"], duration=value)
    assert "duration" in str(e.value)
    if isinstance(value, (str, bool)) or value is None:
        assert isinstance(e.value, TypeError)


@pytest.mark.parametrize("value", [-1, "5", math.nan, math.inf], ids=repr)
def test_bad_waits(coordinator, value):
    with pytest.raises(InvalidArgument, match="wait"):
        coordinator.job([], ["x"], duration=5, wait=value)


@pytest.mark.parametrize("options,words", [
    ({"heartbeat": 0}, "heartbeat"),
    ({"heartbeat": 5}, "shorter than the lease"),
    ({"max_hold": 0}, "max_hold"),
    ({"on_lost": "not callable"}, "callable"),
    ({"output_ttl": -1}, "output_ttl"),
    ({"job_id": ""}, "empty"),
    ({"name": "x\ny"}, "control"),
])
def test_bad_job_options(coordinator, options, words):
    with pytest.raises(InvalidArgument, match=words):
        coordinator.job([], ["x"], duration=5, **options)


def test_missing_connection():
    with pytest.raises(ConfigurationError, match="JOBS_REDIS_URL") as e:
        jobs_core.Coordinator(None)
    assert isinstance(e.value, RuntimeError)
    with pytest.raises(ConfigurationError, match="connection"):
        jobs_core.ResourceManager([], ["x"], 30).start()


def test_from_env_without_url(monkeypatch):
    monkeypatch.delenv("JOBS_REDIS_URL", raising=False)
    with pytest.raises(ConfigurationError, match="no Redis URL .* JOBS_REDIS_URL=redis://"):
        jobs_core.Coordinator.from_env()
    monkeypatch.setenv("JOBS_REDIS_URL", "")  # empty: not set
    with pytest.raises(ConfigurationError, match="no Redis URL"):
        jobs_core.Coordinator.from_env()


def test_from_env_and_from_url(redis7, monkeypatch):
    monkeypatch.setenv("JOBS_REDIS_URL", redis7.url)
    monkeypatch.setenv("JOBS_PREFIX", "envpfx:")
    c = jobs_core.Coordinator.from_env()
    assert c.prefix == "envpfx:" and c.client.ping()
    with pytest.raises(ConfigurationError, match="bad Redis URL"):
        jobs_core.Coordinator.from_url("http://localhost:1")
    with pytest.raises(ConfigurationError, match="URL"):
        jobs_core.Coordinator.from_url("")


def test_wrong_client_types(redis7):
    with pytest.raises(ConfigurationError, match="redis-py or valkey-py client"):
        jobs_core.Coordinator(object())
    with pytest.raises(ConfigurationError, match="AsyncCoordinator"):
        jobs_core.Coordinator(redis.asyncio.Redis.from_url(redis7.url))


@pytest.mark.parametrize("prefix,error", [(5, InvalidType), ("a\nb", InvalidName), ("a -> b", InvalidName)])
def test_bad_prefixes(redis7, prefix, error):
    with pytest.raises(error):
        jobs_core.Coordinator(redis7.client(), prefix)


@pytest.mark.parametrize("kwargs", [{"poll": 0}, {"output_ttl": 0}, {"poll": "1"}])
def test_bad_coordinator_settings(redis7, kwargs):
    with pytest.raises(InvalidArgument):
        jobs_core.Coordinator(redis7.client(), "p:", **kwargs)


@pytest.mark.parametrize("bound", ["yesterday", "2026-13-01", object()], ids=repr)
def test_bad_lineage_bounds(coordinator, bound):
    with pytest.raises(InvalidArgument):
        coordinator.edges(after=bound)
