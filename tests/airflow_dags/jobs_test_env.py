"""Point Airflow at a temporary home, SQLite database and this DAGs folder before it is imported.

Imported by the Airflow test modules first thing (before ``pytest.importorskip("airflow")``,
which loads Airflow's configuration); does nothing when Airflow is not installed.
The home is ``$JOBS_AIRFLOW_TEST_HOME`` (scripts/test-airflow makes one per run), else a temporary
directory removed at exit.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DAGS = Path(__file__).resolve().parent

if importlib.util.find_spec("airflow") is not None:
    if "airflow" in sys.modules and "JOBS_AIRFLOW_TEST_HOME" not in os.environ:
        raise RuntimeError("Airflow was imported before jobs_test_env could point it at a test home")
    if not os.environ.get("JOBS_AIRFLOW_TEST_HOME"):  # a run of pytest by hand: a home of its own
        os.environ["JOBS_AIRFLOW_TEST_HOME"] = tempfile.mkdtemp(prefix="jobs-airflow-home-")
        atexit.register(shutil.rmtree, os.environ["JOBS_AIRFLOW_TEST_HOME"], True)
    HOME = Path(os.environ["JOBS_AIRFLOW_TEST_HOME"])
    # never the developer's own Airflow: these win over whatever the environment says
    os.environ.update({
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME}/airflow.db",
        # Airflow 2.11 warns at import that the old timer unit is deprecated unless the new one is chosen
        "AIRFLOW__METRICS__TIMER_UNIT_CONSISTENCY": "True",
    })
if str(DAGS) not in sys.path:
    sys.path.insert(0, str(DAGS))

_migrated = False


def migrate() -> None:
    """Create the metadata database (``airflow db migrate``), once per process."""
    global _migrated
    if not _migrated:
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=300)
        _migrated = True
