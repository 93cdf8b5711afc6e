"""examples/observability.py runs as shipped: its metrics and lineage events, against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .conftest import Backend

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "observability.py"


def test_the_example_shows_metrics_and_lineage(redis7: Backend, prefix: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "OPENLINEAGE", "OTEL_"))}
    env.update(JOBS_REDIS_URL=redis7.url, JOBS_PREFIX=prefix, HOME=str(tmp_path), TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, str(EXAMPLE)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    events = re.findall(r"^  (START|COMPLETE|FAIL|ABORT) +jobs_core/(\w+): (.*) \(token \d+, ", out, re.M)
    by_job: dict[str, list[str]] = {}
    for kind, job, _ in events:
        by_job.setdefault(job, []).append(kind)  # jobs in other threads may interleave their events
    assert by_job == {"extract_events": ["START", "COMPLETE"], "daily_report": ["START", "COMPLETE"],
                      "broken_report": ["START", "FAIL"], "load_users": ["START", "COMPLETE"],
                      "refresh_users": ["START", "COMPLETE"], "partner_export": ["START", "ABORT"]}
    assert events[2][2] == f"{prefix}raw.events.2026-11-29 -> {prefix}report.daily.2026-11-29"
    p = f"jobs_core.prefix={prefix}"
    for line in (f"jobs_core.job.starts {{{p}, outcome=started}} 6",
                 f"jobs_core.job.hold.duration {{{p}, outcome=failed}} count=1 ",
                 f"jobs_core.job.hold.duration {{{p}, outcome=lost}} count=1 ",
                 f"jobs_core.job.hold.duration {{{p}, outcome=written}} count=4 ",
                 f"jobs_core.job.wait.duration {{{p}, outcome=started}} count=6 ",
                 f"jobs_core.lock.forced {{{p}, kind=unlock}} 1",
                 f"jobs_core.lock.lost {{{p}}} 1"):
        assert f"  {line}" in out, out
    waited = re.search(rf"wait.duration {{{re.escape(p)}, outcome=started}} count=6 sum=([\d.]+)s", out)
    assert waited and 0.4 < float(waited.group(1)) < 5  # refresh_users waited for load_users' 0.5 s
