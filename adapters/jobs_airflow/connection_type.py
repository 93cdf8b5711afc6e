"""The ``jobs_core`` connection type: its id defaults and form fields, as provider info declares them.

No import of Airflow or jobs_core here: :mod:`jobs_airflow.provider` reads it
in every Airflow process that lists providers.
"""

from __future__ import annotations

from typing import Any

#: This provider's connection type, and the id looked up when nothing else is configured.
CONN_TYPE = "jobs_core"
DEFAULT_CONN_ID = "jobs_core_default"
#: The Redis provider's default connection, looked up when ``jobs_core_default`` does not exist.
REDIS_DEFAULT_CONN_ID = "redis_default"
#: The form fields of the ``jobs_core`` connection type, as provider info declares them (Airflow 3.2+).
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "prefix": {"label": "Key prefix", "description": "The jobs_core namespace, e.g. 'etl:' ('{jobs}:' on a "
               "cluster). Empty: $JOBS_PREFIX, else no prefix.", "schema": {"type": ["string", "null"]}},
    "tls": {"label": "TLS", "description": "Connect with TLS (rediss://).",
            "schema": {"type": ["boolean", "null"], "default": False}},
    "url": {"label": "URL", "description": "A full URL instead of host, port, login, password and database: "
            "redis://, rediss://, unix://, redis+sentinel://host:26379/service, redis+cluster://host:port,...",
            "schema": {"type": ["string", "null"], "format": "password"}},
    "ssl_ca_certs": {"label": "CA certificates file", "schema": {"type": ["string", "null"]}},
    "ssl_certfile": {"label": "Client certificate file", "schema": {"type": ["string", "null"]}},
    "ssl_keyfile": {"label": "Client key file", "schema": {"type": ["string", "null"]}},
    "ssl_cert_reqs": {"label": "TLS verify mode", "description": "required, optional or none.",
                      "schema": {"type": ["string", "null"], "enum": ["required", "optional", "none", None]}},
    "web_url": {"label": "Web view URL", "description": "Where `jobs-core web` serves this namespace: tasks "
                "get a link to their job there.", "schema": {"type": ["string", "null"]}},
}
#: How the standard fields of the ``jobs_core`` connection form are shown.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["extra"],
    "relabeling": {"schema": "Database", "login": "User"},
    "placeholders": {"host": "localhost", "port": "6379", "schema": "0"},
}
