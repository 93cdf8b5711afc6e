"""jobs_core.connect.namespace_id: one identity per namespace, however its server is spelled."""

from __future__ import annotations

import re
import secrets

import redis

from jobs_core.connect import client_from_url, close_client, namespace_id

from .test_acl import set_user


def test_same_namespace_same_id_through_any_client(backend, prefix):
    first, second = backend.client(), backend.client()
    try:
        found = namespace_id(first, prefix)
        assert re.fullmatch(r"[0-9a-f]{32}", found)
        assert namespace_id(second, prefix) == found == namespace_id(first, prefix)  # set once, then read
        assert namespace_id(first, "other-" + prefix) != found  # another prefix: other keys
    finally:
        first.close()
        second.close()


def test_spellings_of_one_server_agree_and_other_places_differ(redis_server, valkey_server, prefix):
    port = redis_server.port
    urls = [f"redis://127.0.0.1:{port}/0", f"redis://localhost:{port}", f"redis://localhost:{port}/?db=0",
            f"redis://127.0.0.1:{port}/1", valkey_server.url]
    clients = [client_from_url(u) for u in urls]
    try:
        ids = [namespace_id(c, prefix) for c in clients]
    finally:
        for c in clients:
            close_client(c)
    assert ids[0] == ids[1] == ids[2]  # one server and database, spelled three ways
    assert len({ids[0], ids[3], ids[4]}) == 3  # another database; another server


def test_deleted_token_is_made_again(redis7, prefix):
    c = redis7.client()
    try:
        before = namespace_id(c, prefix)
        c.delete(prefix + "jobs:namespace")
        after = namespace_id(c, prefix)
        assert after != before and namespace_id(c, prefix) == after
    finally:
        c.close()


def test_an_acl_user_limited_to_the_namespace_can_ask(redis_server, prefix):
    admin = redis.Redis.from_url(redis_server.url)
    user, password = f"ns-{secrets.token_hex(3)}", secrets.token_hex(8)
    set_user(admin, user, prefix, password)
    limited = client_from_url(f"redis://{user}:{password}@127.0.0.1:{redis_server.port}/0")
    try:
        assert namespace_id(limited, prefix) == namespace_id(admin, prefix)
    finally:
        close_client(limited)
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()
