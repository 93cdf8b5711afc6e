"""The web view in a real browser: Debian's chromium driven by Playwright (scripts/test installs chromium).

Playwright's own browser download is not used: ``executable_path`` points at
``/usr/bin/chromium`` (``$JOBS_TEST_CHROMIUM`` to use another).

The screenshots of the README (``docs/web-*.png``) come from
:func:`test_screenshots`: ``JOBS_WEB_SCREENSHOTS=docs`` writes them there,
otherwise they go to a temporary directory and are only checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
playwright = pytest.importorskip("playwright.sync_api")

import jobs_core  # noqa: E402

from .servers import RedisServer  # noqa: E402
from .web_server import Waiters, WebServer, collect_dropped_connections  # noqa: E402

CHROMIUM = os.environ.get("JOBS_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no chromium at {CHROMIUM}: scripts/test installs Debian's chromium (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer().start()
    yield s
    s.cleanup()


@pytest.fixture
def web(server: RedisServer, prefix: str) -> Iterator[WebServer]:
    w = WebServer(server.url, prefix, min_interval=0.5).start()
    yield w
    w.stop()


@pytest.fixture
def c(server: RedisServer, prefix: str) -> Iterator[jobs_core.Coordinator]:
    coordinator = jobs_core.Coordinator.from_url(server.url, prefix)
    yield coordinator
    coordinator.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    p = context.new_page()
    dialogs: list[str] = []
    p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    # an API error (a name not in the lineage: 404) is the page's to show; a missing file is not
    p.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and "/api/" not in r.url
         else None)
    p.on("console", lambda m: errors.append(m.text)
         if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    yield p
    context.close()
    assert not dialogs, f"the page opened dialogs (injected script?): {dialogs}"
    assert not errors, f"errors in the page: {errors}"


def row(page: Any, job_id: str) -> Any:
    return page.locator(f"tr[data-job={json.dumps(job_id)}]")


def open_page(page: Any, web: WebServer, query: str = "") -> None:
    page.goto(f"{web.base}/{query}")
    page.wait_for_selector("#live[data-state='live']", timeout=5000)


def test_a_started_job_appears_within_2s_and_its_release_removes_it(page: Any, web: WebServer,
                                                                    c: jobs_core.Coordinator) -> None:
    open_page(page, web)
    c.create_outputs(["raw.day"])
    job = c.job(["raw.day"], ["clean.day"], duration=9, job_id="clean-job", lineage_name="etl/clean",
                heartbeat=False).start()
    began = time.monotonic()
    row(page, "clean-job").wait_for(timeout=2000)
    assert time.monotonic() - began < 2
    text = row(page, "clean-job").inner_text()
    assert "etl/clean" in text and "raw.day" in text and "clean.day" in text and f"pid {os.getpid()}" in text
    assert "jobs_core" in text and str(job.token) in text
    left = row(page, "clean-job").locator("td.left")
    first = left.inner_text()
    time.sleep(1.1)
    assert left.inner_text() != first  # the lease counts down between snapshots
    job.stop()
    began = time.monotonic()
    row(page, "clean-job").wait_for(state="detached", timeout=2000)
    assert time.monotonic() - began < 2


def test_a_waiting_job_shows_its_blocker_and_place_in_line(page: Any, web: WebServer, c: jobs_core.Coordinator,
                                                           server: RedisServer, prefix: str) -> None:
    holder = c.job([], ["dim.users"], duration=30, job_id="holder-job").start()
    waiters = Waiters(server.url, prefix)
    try:
        waiters.start(["waiter-one", "waiter-two"], ["dim.users"])
        open_page(page, web)
        second = row(page, "waiter-two")
        second.wait_for(timeout=3000)
        text = second.inner_text()
        assert "output_locked" in text and "holder-job" in text  # the blocker and its holder
        assert "place 2 of 2" in text and "waiter-one" in text  # its place, and who is first
        assert "place 1 of 2" in row(page, "waiter-one").inner_text()
    finally:
        waiters.close()
        holder.stop()


def test_lineage_graph_and_name_panel_from_a_deep_link(page: Any, web: WebServer, c: jobs_core.Coordinator) -> None:
    c.create_outputs(["raw.events.2026-11-27"])
    with c.job(["raw.events.2026-11-27"], ["clean.events.2026-11-27"], lineage_name="etl/clean"):
        pass
    with c.job(["clean.events.2026-11-27"], ["report.2026-11-27"], lineage_name="etl/report"):
        pass
    open_page(page, web, "?name=clean.events.2026-11-27")
    page.wait_for_selector("#lineage-graph svg g.node", timeout=5000)
    nodes = set(page.eval_on_selector_all("#lineage-graph g.node", "els => els.map(e => e.dataset.name)"))
    assert nodes == {"raw.events.*", "etl/clean", "clean.events.*", "etl/report", "report.*"}
    assert page.locator("#lineage-graph path.edge").count() == 4
    assert page.locator("#lineage-graph g.node.root").get_attribute("data-name") == "clean.events.*"
    facts = page.locator("#show-facts")
    facts.wait_for(timeout=3000)
    assert "yes, by" in facts.inner_text()  # written, by the etl/clean job
    page.locator("#lineage-graph g.node[data-name='etl/report']").click()  # recentre on a job
    # (expect, not wait_for_function: the page's Content-Security-Policy refuses the eval that one needs)
    playwright.expect(page.locator("#lineage-graph g.node.root")).to_have_attribute("data-name", "etl/report")


def test_deep_link_to_a_job_highlights_it(page: Any, web: WebServer, c: jobs_core.Coordinator) -> None:
    jobs = [c.job([], [f"part.{i}"], duration=30, job_id=f"part-{i}").start() for i in range(40)]
    open_page(page, web, "?job=part-33")
    target = row(page, "part-33")
    target.wait_for(timeout=3000)
    playwright.expect(page.locator("tr.highlight")).to_have_attribute("data-job", "part-33")
    assert target.is_visible() and target.evaluate("e => { const r = e.getBoundingClientRect(); "
                                                   "return r.top >= 0 && r.bottom <= window.innerHeight; }")
    for job in jobs:
        job.stop()


def test_hostile_names_are_shown_as_text(page: Any, web: WebServer, c: jobs_core.Coordinator) -> None:
    hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>\"'\n\u202eevil\x1b[31m"
    now = c.server_time()
    c.client.zadd(c.keys.running, {hostile: now + 30})  # as a jobs.py client writes it: any text goes
    c.client.set(c.keys.job(hostile), json.dumps([hostile + ".in", "", hostile + ".out"]), px=30000)
    open_page(page, web)
    page.wait_for_selector("#running tbody tr", timeout=3000)
    cell = page.locator("#running tbody tr td").first.inner_text()
    assert "<script>alert(2)</script>" in cell and "\\x0a" in cell and "\\u202e" in cell and "\\x1b" in cell
    assert page.locator("#running img, #running script").count() == 0
    # jobs_core refuses such a name: the panel says so, as text
    page.locator("#running td:nth-child(3) .name").first.click()
    page.wait_for_selector("#show-panel .error", timeout=3000)
    assert "control characters" in page.locator("#show-panel").inner_text()
    assert page.locator("#show-panel img, #lineage-graph img").count() == 0


def test_redis_down_shows_an_outage_then_recovers(page: Any, prefix: str) -> None:
    s = RedisServer().start()
    web = WebServer(s.url, prefix, min_interval=0.5).start()
    try:
        open_page(page, web)
        banner = page.locator("#banner")
        assert banner.is_hidden()
        s.stop()
        banner.wait_for(state="visible", timeout=5000)
        assert "Redis unreachable" in banner.inner_text()
        assert page.locator("#live").inner_text() == "Redis down"
        s.start()
        banner.wait_for(state="hidden", timeout=10000)
        page.wait_for_selector("#live[data-state='live']", timeout=5000)
    finally:
        web.stop()
        s.cleanup()
        collect_dropped_connections()


def test_repairs_are_confirmed_and_off_by_default(page: Any, web: WebServer, server: RedisServer, prefix: str,
                                                  c: jobs_core.Coordinator) -> None:
    holder = c.job([], ["stuck"], duration=30, heartbeat=False).start()
    open_page(page, web, "?name=stuck")
    page.wait_for_selector("#show-facts", timeout=3000)
    assert page.locator("#repair-unlock").count() == 0  # read-only: no repair buttons
    repairing = WebServer(server.url, prefix, allow_repairs=True, min_interval=0.5).start()
    try:
        open_page(page, repairing, "?name=stuck")
        page.locator("#repair-unlock").click()
        assert "write lock on stuck" in page.locator("#confirm-plan").inner_text()
        page.locator("#confirm-cancel").click()
        time.sleep(0.3)
        assert c.output_info("stuck").write_lock is not None  # cancelled: nothing changed
        page.locator("#repair-unlock").click()
        page.locator("#confirm-ok").click()
        page.wait_for_selector("#notice:has-text('unlock done')", timeout=3000)
        assert c.output_info("stuck").write_lock is None
    finally:
        repairing.stop()
        with pytest.raises(jobs_core.LockLost):
            holder.stop()


def test_screenshots(page: Any, web: WebServer, c: jobs_core.Coordinator, server: RedisServer, prefix: str,
                     tmp_path: Path) -> None:
    """The README's pictures: a pipeline with running and waiting jobs, and its lineage."""
    out = Path(os.environ.get("JOBS_WEB_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    yesterday, day = "2026-11-26", "2026-11-27"
    c.create_outputs(["raw.users"])
    for d in (yesterday, day):  # yesterday's whole run records the lineage; today's is under way
        with c.job([], [f"raw.events.{d}"], lineage_name="etl/extract"):
            pass
    for ins, outs, name in [([f"raw.events.{yesterday}", "raw.users"], [f"clean.events.{yesterday}"], "etl/transform"),
                            ([f"raw.events.{yesterday}"], [f"audit.{yesterday}"], "etl/audit"),
                            ([f"clean.events.{yesterday}"], [f"report.{yesterday}"], "etl/report")]:
        with c.job(ins, outs, lineage_name=name):
            pass
    c.set_limit("warehouse", 2)
    running = [
        c.job([f"raw.events.{day}", "raw.users"], [f"clean.events.{day}"], duration=300, job_id=f"transform.{day}",
              lineage_name="etl/transform", limits={"warehouse": 1}).start(),
        c.job([f"raw.events.{day}"], [f"audit.{day}"], duration=120, job_id=f"audit.{day}",
              lineage_name="etl/audit").start(),
    ]
    waiters = Waiters(server.url, prefix)
    try:
        waiters.start([f"report.{day}"], [f"report.{day}"], inputs=(f"clean.events.{day}",), wait=600)
        waiters.start([f"report.{day}.rerun"], [f"report.{day}"], inputs=(f"clean.events.{day}",), wait=600)
        waiters.start([f"backfill.{day}"], [f"clean.events.{day}"], wait=600)
        open_page(page, web, f"?name=clean.events.{day}")
        page.wait_for_selector("#lineage-graph svg g.node", timeout=5000)
        row(page, f"backfill.{day}").wait_for(timeout=3000)
        page.locator("#lineage-depth").fill("3")
        page.locator("#lineage-form button").click()
        page.wait_for_timeout(500)
        page.keyboard.press("Home")  # the deep link scrolled down to the name's panel
        page.wait_for_timeout(300)
        page.screenshot(path=str(out / "web-overview.png"), full_page=True)
        page.locator("#lineage-section").screenshot(path=str(out / "web-lineage.png"))
        for name in ("web-overview.png", "web-lineage.png"):
            data = (out / name).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    finally:
        waiters.close()
        for job in running:
            job.stop()


def test_the_page_works_under_a_path_as_inside_airflow(page: Any, server: RedisServer, prefix: str,
                                                       c: jobs_core.Coordinator) -> None:
    """Mounted at /jobs-core/ (as Airflow's api-server mounts it), the page finds its files and API."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    def mount(app: Any) -> Any:
        @contextlib.asynccontextmanager
        async def lifespan(host: Any) -> Any:
            yield
            await app.state.web.stop()  # the mounted app gets no lifespan of its own

        return Starlette(routes=[Mount("/jobs-core", app)], lifespan=lifespan)

    web = WebServer(server.url, prefix, wrap=mount, allowed_hosts=None, min_interval=0.5).start()
    job = c.job([], ["mounted.page"], duration=30, job_id="mounted-job").start()
    try:
        page.goto(f"{web.base}/jobs-core/?job=mounted-job")
        page.wait_for_selector("#live[data-state='live']", timeout=5000)
        playwright.expect(page.locator("tr.highlight")).to_have_attribute("data-job", "mounted-job")
    finally:
        job.stop()
        page.close()  # before the server stops: its /events stream
        web.stop()
