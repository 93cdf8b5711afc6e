"""The web view as an Airflow 3 plugin, served by a real ``airflow api-server`` (run by scripts/test-airflow).

The api-server mounts the page at ``/jobs-core`` and lists it in the navigation;
it reads the ``jobs_core`` Airflow connection and lets only logged-in users in.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

import pytest

airflow = pytest.importorskip("airflow")
if tuple(int(p) for p in airflow.__version__.split(".")[:2]) < (3, 1):
    pytest.skip("plugins serve FastAPI apps and external views from Airflow 3.1", allow_module_level=True)
pytest.importorskip("prometheus_client", reason="the web extra")

import httpx  # noqa: E402

import jobs_core  # noqa: E402

from .servers import RedisServer, free_port  # noqa: E402

pytestmark = pytest.mark.airflow_services


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    s = RedisServer().start()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("airflow-home")
    port = free_port()
    prefix = f"af{secrets.token_hex(3)}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        # the connection the plugin reads (query options are its extras: jobs_prefix names the namespace)
        "AIRFLOW_CONN_JOBS_CORE": f"{redis_server.url}?jobs_prefix={urllib.parse.quote(prefix)}",
    })
    env.pop("JOBS_REDIS_URL", None)
    password = secrets.token_urlsafe(12)
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    if not any(e.value.startswith("jobs_airflow.web_plugin") for e in entry_points(group="airflow.plugins")):
        # a source tree not installed: the plugins folder stands in for the entry point
        plugins = home / "plugins"
        plugins.mkdir()
        (plugins / "jobs_core_web.py").write_text("from jobs_airflow.web_plugin import JobsCoreWebPlugin  # noqa\n")
        env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(plugins)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True,
                   timeout=300)
    log = open(home / "api-server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "airflow", "api-server", "--workers", "1"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (home / "api-server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the api-server did not answer within 180s"
            time.sleep(0.5)
        yield {"base": base, "prefix": prefix, "url": redis_server.url, "password": password}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_page_inside_airflow(api_server: dict[str, Any]) -> None:
    base = api_server["base"]
    coordinator = jobs_core.Coordinator.from_url(api_server["url"], api_server["prefix"])
    job = coordinator.job(["raw"], ["airflow.page"], duration=60, job_id="airflow-page-job")
    coordinator.create_outputs(["raw"])
    job.start()
    try:
        with httpx.Client(base_url=base, timeout=20) as http:
            assert http.get("/jobs-core/api/status").status_code == 401  # Airflow's login first
            assert http.get("/jobs-core/", headers={"Authorization": "Bearer forged"}).status_code in (401, 403)
            login = http.post("/auth/token", json={"username": "admin", "password": api_server["password"]})
            token = login.json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            page = http.get("/jobs-core/", headers=auth)
            assert page.status_code == 200 and "static/app.js" in page.text
            status = http.get("/jobs-core/api/status", headers=auth).json()
            assert status["prefix"] == api_server["prefix"]
            assert [j["job_id"] for j in status["running"]] == ["airflow-page-job"]
            config = http.get("/jobs-core/api/config", headers=auth).json()
            assert config["where"] == "Airflow connection 'jobs_core'" and not config["allow_repairs"]
            assert http.post("/jobs-core/api/unlock", headers=auth, json={"outputs": ["airflow.page"]}
                             ).status_code == 403  # read-only inside Airflow
            http.cookies.set("_token", token)  # as the UI's session cookie
            with http.stream("GET", "/jobs-core/events") as events:
                data = next(line for line in events.iter_lines() if line.startswith("data: "))
            assert "airflow-page-job" in {j["job_id"] for j in json.loads(data[6:])["status"]["running"]}
            plugins = http.get("/api/v2/plugins", headers=auth).json()["plugins"]
            ours = next(p for p in plugins if p["name"] == "jobs_core_web")
            assert ours["external_views"][0]["href"] == "jobs-core/"
            assert ours["fastapi_apps"][0]["url_prefix"] == "/jobs-core"
    finally:
        job.stop()
        coordinator.close()
