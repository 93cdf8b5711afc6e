"""The ``[jobs]`` section of luigi.cfg, and how a namespace is resolved from it."""

from __future__ import annotations

import luigi

from jobs_core.namespace import ENV_PREFIX, ENV_URL, Source, resolve_namespace


class jobs(luigi.Config):  # lower case: Luigi reads a config class from the section named like it
    """Where jobs_core keeps its locks, and how Luigi tasks take them.

    .. code-block:: ini

        [jobs]
        redis_url = redis://redis.internal:6379/0
        prefix = etl:
        duration = 60
        wait = 600
        progress = 30
        output_ttl = 604800
        limits = {"warehouse": 1}

    A task overrides any of them with the class attributes (or insignificant
    parameters) ``jobs_redis_url``, ``jobs_prefix``, ``jobs_duration``,
    ``jobs_wait``, ``jobs_progress``, ``jobs_output_ttl`` and ``jobs_limits``;
    a :class:`~jobs_luigi.JobsTarget` with ``redis_url=`` or ``prefix=``
    overrides the first two.
    """

    # insignificant and private: kept out of the section's repr and out of what a scheduler shows,
    # as the URL may hold a password
    redis_url = luigi.OptionalParameter(
        default=None, significant=False, visibility=luigi.parameter.ParameterVisibility.PRIVATE,
        description=f"Redis or Valkey URL of the jobs namespace; unset: ${ENV_URL}")
    prefix = luigi.OptionalParameter(
        default=None, description=f"key prefix of the namespace; unset: ${ENV_PREFIX}, else no prefix")
    duration = luigi.FloatParameter(
        default=60.0, description="lease of every lock, in seconds; a heartbeat renews it every third of that")
    wait = luigi.FloatParameter(
        default=600.0, description="seconds run() waits for busy resources before it fails (and Luigi may retry)")
    progress = luigi.FloatParameter(
        default=30.0, description="seconds between the reports of a wait (status message in luigid, INFO log); "
                                  "0: none")
    output_ttl = luigi.OptionalFloatParameter(
        default=None, description="seconds a written output lasts (unset: the namespace's default, no expiry)")
    limits: luigi.DictParameter = luigi.DictParameter(
        default={}, description='slots of shared capacity every task takes with its locks, as JSON: '
                                '{"warehouse": 1} (see jobs-core limit set)')


def resolve(redis_url: str | None, prefix: str | None) -> tuple[str, str]:
    """``(url, prefix)`` of a namespace: the values given, else ``[jobs]``, else the environment
    (:func:`jobs_core.namespace.resolve_namespace`).

    Raises:
        ConfigurationError: no URL anywhere.
    """
    section = jobs()
    where = resolve_namespace(redis_url, prefix, given="the JobsTarget's redis_url= (jobs_redis_url on the task)",
                              sources=[Source("redis_url in the [jobs] section of luigi.cfg", section.redis_url,
                                              section.prefix)])
    return where.url, where.prefix
