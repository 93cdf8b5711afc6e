"""``python -m jobs_core``: the ``jobs-core`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
