"""The web view of a namespace: ``jobs-core serve`` (``pip install 'jobs-core[web]'``).

:func:`create_app` builds the ASGI app (the page, ``/api/*``, ``/events``,
``/metrics``); :func:`jobs_core.web.serve.serve` runs it with uvicorn. One
shared reader per app reads the namespace for every browser
(:mod:`jobs_core.web.reader`).
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
