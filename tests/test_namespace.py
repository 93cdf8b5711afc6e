"""resolve_namespace: where the URL and the prefix come from, the same for every entry point."""

from __future__ import annotations

import pytest

from jobs_core import ConfigurationError, InvalidType
from jobs_core.namespace import Namespace, Source, resolve_namespace

ENV = {"JOBS_REDIS_URL": "redis://env:6379/0", "JOBS_PREFIX": "env:"}
CFG = Source("the [jobs] section", "redis://cfg:6379/0", "cfg:")


def test_given_values_win_then_sources_then_the_environment():
    assert resolve_namespace("redis://x/0", "x:", sources=[CFG], environ=ENV, given="--url") == Namespace(
        "redis://x/0", "x:", "--url", "--url")
    assert resolve_namespace(None, None, sources=[CFG], environ=ENV) == Namespace(
        "redis://cfg:6379/0", "cfg:", "the [jobs] section", "the [jobs] section")
    assert resolve_namespace(None, None, environ=ENV) == Namespace(
        "redis://env:6379/0", "env:", "$JOBS_REDIS_URL / $JOBS_PREFIX", "$JOBS_REDIS_URL / $JOBS_PREFIX")
    # each value on its own: the URL from one place, the prefix from another
    assert resolve_namespace("redis://x/0", None, sources=[Source("cfg", None, "p:")], environ=ENV).prefix == "p:"


def test_an_empty_prefix_is_a_prefix_and_stops_the_search():
    assert resolve_namespace("redis://x/0", "", sources=[CFG], environ=ENV).prefix == ""
    assert resolve_namespace(None, None, sources=[Source("cfg", None, "")], environ=ENV).prefix == ""
    assert resolve_namespace(None, None, environ={"JOBS_REDIS_URL": "redis://e/0", "JOBS_PREFIX": ""}).prefix == ""
    unset = resolve_namespace(None, None, environ={"JOBS_REDIS_URL": "redis://e/0"})
    assert (unset.prefix, unset.prefix_from) == ("", "default (no prefix)")


def test_no_url_anywhere_names_every_place():
    with pytest.raises(ConfigurationError) as caught:
        resolve_namespace(None, None, sources=[Source("the [jobs] section")], environ={"JOBS_REDIS_URL": ""},
                          given="--url")
    assert "--url, the [jobs] section, $JOBS_REDIS_URL / $JOBS_PREFIX" in str(caught.value)


def test_values_that_are_not_text_are_refused():
    with pytest.raises(InvalidType, match="prefix from the cfg"):
        resolve_namespace("redis://x/0", None, sources=[Source("the cfg", None, 5)], environ={})  # type: ignore[arg-type]
    with pytest.raises(InvalidType, match="URL from given"):
        resolve_namespace(b"redis://x/0", environ={})  # type: ignore[arg-type]
