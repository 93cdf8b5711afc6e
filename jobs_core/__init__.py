"""jobs_core: Redis (or Valkey) as the locking layer between data jobs.

The explicit API::

    import redis, jobs_core
    coordinator = jobs_core.Coordinator(redis.Redis(), prefix="pfx:")
    with coordinator.job(["raw.events"], ["clean.events"], duration=60, wait=300) as job:
        ...  # inputs read-locked, outputs write-locked; job.token fences writes

The jobs.py (jobspy 0.31) API also works: ``import jobs_core as jobs`` then
``jobs.CONN = redis.Redis()`` and ``jobs.ResourceManager(...)`` as before.
"""

import logging as _logging

from .aio import AsyncCoordinator, AsyncJob
from .compat import ResourceManager, edges, get_job_io, get_jobs, handle_auto_shutdown, resource_manager
from .coordinator import Coordinator
from .display import PrintableArgs as _PrintableArgs
from .errors import (
                     ConfigurationError,
                     CoordinatorClosed,
                     InvalidArgument,
                     InvalidName,
                     InvalidNameType,
                     InvalidType,
                     JobsError,
                     LimitTooSmall,
                     LockLost,
                     NotRunning,
                     ResourceUnavailable,
                     StateChanged,
                     UnknownLimit,
)
from .facts import Blocker, BlockReport, Holder, LimitInfo, OutputInfo, RunningJob, Waiter
from .job import Job
from .names import EDGE_RE, MAX_NAMES
from .names import NG as TYPE_NG
from .signals import release_on_signal

__version__ = "0.1.0"
VERSION = __version__

#: jobs.py settings, read at call time by the compatibility API (jobs_core.compat).
CONN = None
GLOBAL_PREFIX = ""
GRAPH_HISTORY = True
OUTPUT_DURATION = None
DEFAULT_LOGGER = _logging.getLogger("jobs_core")
if not any(isinstance(f, _PrintableArgs) for f in DEFAULT_LOGGER.filters):
    DEFAULT_LOGGER.addFilter(_PrintableArgs())  # ids and names in its lines come from Redis: escaped
NG = TYPE_NG()

__all__ = [
    "AsyncCoordinator", "AsyncJob", "Blocker", "BlockReport", "CONN", "ConfigurationError", "Coordinator",
    "CoordinatorClosed",
    "DEFAULT_LOGGER", "EDGE_RE", "GLOBAL_PREFIX", "GRAPH_HISTORY", "Holder", "InvalidArgument", "InvalidName",
    "InvalidNameType", "InvalidType", "Job", "JobsError", "LimitInfo", "LimitTooSmall", "LockLost", "MAX_NAMES",
    "NG", "NotRunning",
    "OUTPUT_DURATION", "OutputInfo", "ResourceManager", "ResourceUnavailable", "RunningJob", "StateChanged",
    "TYPE_NG", "UnknownLimit", "VERSION", "Waiter",
    "edges", "get_job_io", "get_jobs", "handle_auto_shutdown", "release_on_signal", "resource_manager",
]
