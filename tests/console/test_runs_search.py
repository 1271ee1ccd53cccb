"""Searching runs and dead letters in the console, in headless Chromium against a real
server: files dropped into a real ``dir://`` folder and messages on the embedded queue
(``local://``) are found by listener, status, message id and file name, paged, and the
dead letters a search matches are redriven in bulk after a confirmation page; the search
forms are used from the keyboard and read from Chromium's accessibility tree."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import EXAMPLES, login, publish, shot
from tests.console.test_accessibility import assert_page_is_labelled, focus_is_visible, focused
from tests.support.server import ModelbusServer

pytestmark = pytest.mark.timeout(1200)

PNG = (EXAMPLES / "ocr" / "sample.png").read_bytes()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(check: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not settled in time"
        time.sleep(0.2)


def make_listeners(server: ModelbusServer, tmp: Path) -> tuple[str, str, Path]:
    """A folder listener on examples/hello 1.0.0, which refuses binary input (so dropped
    images are dead-lettered), and a queue listener that greets JSON."""
    files, queue, inbox = unique("scans"), unique("greeter"), tmp / "inbox"
    inbox.mkdir()
    with server.http() as api:
        for body in (
            {
                "name": files,
                "source": f"dir://{inbox}?poll_ms=100",
                "model": "examples/hello@1.0.0",
            },
            {"name": queue, "source": f"local://{queue}-in", "model": "examples/hello@1.0.0"},
        ):
            created = api.post("/v1/listeners", json=body)
            assert created.status_code == 201, created.text
    return files, queue, inbox


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A folder with a short path (the screenshot shows the files' paths)."""
    folder = Path(tempfile.mkdtemp(prefix="demo-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_runs_and_dead_letters_are_searched_paged_and_redriven_in_bulk(
    page: Page, console_server: ModelbusServer, short_tmp: Path
) -> None:
    files, queue, inbox = make_listeners(console_server, short_tmp)
    publish(
        console_server, f"{queue}-in", [(f"{queue}-{i:02d}", b'{"name": "Ada"}') for i in range(53)]
    )
    for name in ("scan-001.png", "scan-002.png", "invoice-17.png"):
        (inbox / name).write_bytes(PNG)
    with console_server.http() as api:
        wait_for(
            lambda: (
                len(
                    api.get(
                        "/v1/runs", params={"listener": queue, "status": "succeeded", "limit": 100}
                    ).json()["items"]
                )
                == 53
            )
        )
        wait_for(
            lambda: (
                len(api.get("/v1/dead-letters", params={"listener": files}).json()["items"]) == 3
            )
        )

    # Runs: the latest of every listener, then searched from the keyboard by file name.
    login(page, console_server)
    page.goto(f"{console_server.url}/console/runs")
    assert_page_is_labelled(page)
    search = page.get_by_role("search", name="Search runs")
    expect(search).to_match_aria_snapshot(
        """
        - text: Listener
        - combobox "Listener"
        - text: Status
        - combobox "Status"
        - text: Broker message id
        - textbox "Broker message id"
        - text: File or object key
        - textbox "File or object key"
        - paragraph: /the whole path, or its end after a/
        - text: From (UTC)
        - textbox "From (UTC)"
        - text: Before (UTC)
        - textbox "Before (UTC)"
        - button "Search"
        - link "Clear"
        """
    )
    page.get_by_label("Status").focus()
    page.keyboard.press("Tab")
    assert focused(page) == "input: Broker message id"
    page.keyboard.press("Tab")
    assert focused(page) == "input: File or object key"
    assert focus_is_visible(page)
    page.keyboard.type("inbox/scan-002.png")
    page.keyboard.press("Enter")
    runs = page.get_by_role("table", name="Run records")
    expect(runs.locator("tbody tr")).to_have_count(1)
    row = runs.locator("tbody tr")
    expect(row).to_contain_text(files)
    expect(row).to_contain_text(f"{inbox.resolve()}/scan-002.png")
    expect(row).to_contain_text("dead lettered")
    expect(page.get_by_label("File or object key")).to_have_value("inbox/scan-002.png")

    # Narrowed by listener and status, 50 a page: the older ones on the next page.
    page.goto(f"{console_server.url}/console/runs")
    page.get_by_label("Listener", exact=True).select_option(queue)
    page.get_by_label("Status").select_option("succeeded")
    page.get_by_role("button", name="Search").click()
    expect(runs.locator("tbody tr")).to_have_count(50)
    expect(runs.locator("tbody tr").first).to_contain_text(f"{queue}-52")
    page.get_by_role("link", name="Older runs").click()
    expect(runs.locator("tbody tr")).to_have_count(3)
    expect(runs.locator("tbody tr").last).to_contain_text(f"{queue}-00")
    expect(page.get_by_label("Status")).to_have_value("succeeded")
    expect(page.get_by_role("link", name="Older runs")).to_have_count(0)
    page.get_by_role("link", name="Newest runs").click()
    expect(runs.locator("tbody tr")).to_have_count(50)

    page.get_by_label("From (UTC)").fill("2001-01-01T00:00:00")
    page.get_by_label("Before (UTC)").fill("2001-01-02T00:00:00")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_contain_text("No run record matches this search")

    page.goto(f"{console_server.url}/console/runs")
    page.get_by_label("Listener", exact=True).select_option(files)
    page.get_by_role("button", name="Search").click()
    expect(runs.locator("tbody tr")).to_have_count(3)
    expect(runs.get_by_role("columnheader", name="File / object")).to_be_visible()
    shot(page, "runs")

    # Dead letters: searched the same way; every matching one redriven after a confirmation.
    page.goto(f"{console_server.url}/console/dead-letters")
    assert_page_is_labelled(page)
    page.get_by_label("Listener", exact=True).select_option(files)
    page.get_by_label("File or object key").fill("scan-001.png")
    page.get_by_role("button", name="Search").click()
    letters = page.locator("tr[data-dead-letter]")
    expect(letters).to_have_count(1)
    expect(letters).to_contain_text(f"{inbox.resolve()}/scan-001.png")
    page.get_by_label("File or object key").fill("")
    page.get_by_role("button", name="Search").click()
    expect(letters).to_have_count(3)
    expect(letters.first).to_contain_text("PermanentError")
    shot(page, "dead-letters")
    bulk = page.get_by_role("link", name="Redrive all matching…")
    assert _background(page, bulk) == "rgb(179, 38, 30)"  # styled as the dangerous action
    bulk.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Redrive 3 dead letters?")
    assert_page_is_labelled(page)
    expect(page.get_by_role("table", name="Matching dead letters, per listener")).to_contain_text(
        re.compile(rf"{files}\s*3")
    )
    page.get_by_label("Version to run them on").select_option("1.1.0")
    shot(page, "dead-letters-redrive")
    confirm = page.get_by_role("button", name="Redrive 3 dead letters")
    assert _background(page, confirm) == "rgb(179, 38, 30)"
    confirm.click()
    expect(page.locator("#redrive-result")).to_contain_text(
        f"{files}: redriven to examples/hello@1.1.0: 3 succeeded"
    )
    expect(letters).to_have_count(0)
    page.get_by_role("link", name="Runs", exact=True).click()
    page.get_by_label("File or object key").fill("scan-001.png")
    page.get_by_role("button", name="Search").click()
    redriven = runs.locator("tbody tr")
    expect(redriven).to_have_count(1)
    expect(redriven).to_contain_text("succeeded")
    expect(redriven).to_contain_text("1.1.0")


def test_a_bad_time_is_said_on_the_page(page: Page, console_server: ModelbusServer) -> None:
    login(page, console_server)
    for path in ("/console/runs?since=yesterday", "/console/dead-letters?until=nope"):
        page.goto(console_server.url + path)
        expect(page.get_by_role("alert")).to_contain_text("not a date and time")


def _background(page: Page, locator: object) -> str:
    return str(locator.evaluate("el => getComputedStyle(el).backgroundColor"))  # type: ignore[attr-defined]
