"""The web console end to end in headless Chromium (Debian's /usr/bin/chromium driven by
Playwright): create a pipeline from the SQL editor, see it running with rates and a
watermark, preview its output, stop it. With CAUDAL_CONSOLE_SCREENSHOT=path it also saves a
screenshot (docs/console.png is made this way, and docs/console-preview.png beside it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

SQL = """CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', event_rate = '2000',
  base_time = 'now');
SELECT window_start, auction, count(*) AS bids, max(price) AS top
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '1' SECOND))
GROUP BY window_start, window_end, auction;"""


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install -y chromium to run the console test")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser.new_page(viewport={"width": 1360, "height": 900})
        finally:
            browser.close()


@pytest.mark.slow  # about 30 s with the server's and the browser's start
def test_console_create_watch_preview_stop(server, page):
    from playwright.sync_api import expect

    page.goto(server.url + "/")
    page.fill("#name", "bids-per-second")
    page.fill("#parallelism", "2")
    page.fill("#sql", "SELECT nope FROM nowhere;")
    expect(page.locator("#validation")).to_contain_text("line 1", timeout=20_000)
    expect(page.locator("#gutter .bad")).to_have_text("1")
    page.fill("#sql", SQL)
    expect(page.locator("#validation")).to_contain_text("valid", timeout=20_000)
    page.click("#create")
    expect(page.locator("#d-state")).to_have_text("running", timeout=20_000)
    # rates above zero and a watermark, on the graph's table of operators
    source_row = page.locator("#op-table tbody tr").first
    expect(source_row.locator("td.rate-in")).not_to_have_text("0", timeout=30_000)
    expect(source_row.locator("td.wm")).not_to_have_text("-", timeout=30_000)
    expect(page.locator("#graph svg g.node")).to_have_count(3)
    expect(page.locator("#wm-hint")).to_contain_text("Watermark held back")
    page.click(".tabs button[data-tab=preview]")
    expect(page.locator("#preview")).to_contain_text(" ", timeout=30_000)
    expect(page.locator("#preview")).to_contain_text(":", timeout=30_000)
    # any node's rows: pick the window aggregate in the graph
    page.click(".tabs button[data-tab=graph]")
    page.locator("#graph g.node").nth(1).click()
    expect(page.locator("#preview-node")).to_have_value("1")
    expect(page.locator("#preview-table thead")).to_contain_text("auction", timeout=30_000)
    expect(page.locator("#preview-table tbody tr").first).to_be_visible(timeout=30_000)
    expect(page.locator("#preview-dropped")).to_contain_text("rows shown")
    expect(page.locator("#preview")).to_be_hidden()
    shot = os.environ.get("CAUDAL_CONSOLE_SCREENSHOT")
    if shot:
        page.wait_for_timeout(1500)
        page.screenshot(path=shot.replace(".png", "-preview.png"))
    if shot:
        page.click(".tabs button[data-tab=graph]")
        page.wait_for_timeout(2500)
        page.screenshot(path=shot, full_page=True)
    page.click("#d-stop")
    expect(page.locator("#d-state")).to_have_text("stopped", timeout=60_000)
    page.click(".tabs button[data-tab=checkpoints]")
    expect(page.locator("#cp-table tbody")).to_contain_text("savepoint", timeout=10_000)


def test_console_asks_for_the_token(tmp_path, page):
    from playwright.sync_api import expect

    from tests.server.conftest import Server

    s = Server(tmp_path / "state", token="s3cret").start()
    try:
        page.goto(s.url + "/")
        expect(page.locator("#login")).to_be_visible(timeout=20_000)
        expect(page.locator("#app")).to_be_hidden()
        page.fill("#token", "wrong")
        page.click("#login-form button")
        expect(page.locator("#login-error")).to_contain_text("refused", timeout=20_000)
        page.fill("#token", "s3cret")
        page.click("#login-form button")
        expect(page.locator("#app")).to_be_visible(timeout=20_000)
        expect(page.locator("#pipelines")).to_contain_text("none yet")
        assert page.evaluate("sessionStorage.getItem('caudal-token')") == "s3cret"
    finally:
        s.stop()


def test_console_shows_why_an_action_or_a_create_was_refused(server, page):
    """A refused action (a rescale the checkpoints cannot take, a checkpoint of a stopped
    pipeline…) was written under the buttons and wiped by the refresh that followed at once:
    the user saw nothing happen. Parallelism 0 (or an empty field) was sent as 1: a pipeline
    the user did not ask for. A validation still in flight overwrote why a create was
    refused (a name in use) with "valid". No error in the browser's log either way (every page load
    logged the 404 of /favicon.ico)."""
    from playwright.sync_api import expect

    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    # (a refused call is logged by the browser as a failed resource: expected; a file the
    # page asks for that is not there, as /favicon.ico was, is not)
    page.on("console", lambda m: problems.append(f"{m.text} {m.location['url']}")
            if m.type == "error" and ("404" in m.text or "Failed to load resource"
                                      not in m.text) else None)
    page.goto(server.url + "/")
    page.fill("#name", "imp")
    page.fill("#parallelism", "0")
    page.fill("#sql", "CREATE TABLE t (counter BIGINT) WITH (connector = 'impulse', "
                      "event_rate = '50');\nSELECT counter FROM t;")
    expect(page.locator("#validation")).to_contain_text("parallelism", timeout=20_000)
    expect(page.locator("#create")).to_be_disabled()
    page.fill("#parallelism", "2")
    page.fill("#interval", "500ms")
    page.locator("#parallelism").dispatch_event("change")
    expect(page.locator("#validation")).to_contain_text("valid", timeout=20_000)
    page.click("#create")
    expect(page.locator("#d-state")).to_have_text("running", timeout=20_000)
    expect(page.locator("#d-info")).to_contain_text("parallelism 2")
    page.click("#new-pipeline")                    # the same name again: refused, and said
    page.fill("#name", "imp")
    page.fill("#sql", "SELECT 1 AS one;")
    expect(page.locator("#validation")).to_contain_text("valid", timeout=20_000)
    page.click("#create")
    expect(page.locator("#validation")).to_contain_text("exists", timeout=10_000)
    page.locator("#pipelines li").first.click()
    expect(page.locator("#d-state")).to_have_text("running", timeout=20_000)
    pid = server.client.get("/api/v1/pipelines").json()["data"][0]["id"]
    deadline = time.monotonic() + 30
    while not server.client.get(f"/api/v1/pipelines/{pid}/checkpoints").json()["data"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    page.fill("#d-par", "3")                       # impulse cannot rescale: refused, said
    page.click("#d-rescale")
    expect(page.locator("#d-error")).to_contain_text("cannot rescale", timeout=20_000)
    page.wait_for_timeout(2500)                    # and still said after the refreshes
    expect(page.locator("#d-error")).to_contain_text("cannot rescale")
    expect(page.locator("#d-state")).to_have_text("running")
    assert len(server.client.get("/api/v1/pipelines").json()["data"]) == 1
    assert not problems, problems


def test_console_says_why_a_node_preview_cannot_start(server, page):
    """The preview of a node of a pipeline that is not running is refused (409) before the
    stream begins: the browser's EventSource just closes, and the console showed an empty
    table under "Rows the pipeline prints" with nothing said."""
    from playwright.sync_api import expect

    c = server.client
    q = ("CREATE TABLE t (counter BIGINT) WITH (connector = 'impulse', events = '10');\n"
         "SELECT counter FROM t;")
    pid = c.post("/api/v1/pipelines", json={"name": "done", "query": q}).json()["id"]
    server.wait_state(pid, {"finished"})
    page.goto(server.url + "/")
    page.locator("#pipelines li").first.click()
    expect(page.locator("#d-state")).to_have_text("finished", timeout=20_000)
    page.click(".tabs button[data-tab=preview]")
    expect(page.locator("#preview-node option")).to_have_count(2, timeout=20_000)
    page.select_option("#preview-node", "0")
    expect(page.locator("#preview-dropped")).to_contain_text("finished", timeout=10_000)
    expect(page.locator("#preview-dropped")).to_contain_text("while it runs")
