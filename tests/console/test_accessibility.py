"""Accessibility of the console: landmarks, headings, a name on every control (read from
Chromium's accessibility tree with Playwright's ARIA snapshots), and keyboard use: the Tab
order, visible focus, and "try it" run from the keyboard alone."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import login, publish
from tests.support.server import ModelbusServer

# The first test may install Debian's chromium (apt-get) before it starts: allow for that.
pytestmark = pytest.mark.timeout(1200)


CONTROL_ROLES = ("textbox", "combobox", "checkbox", "radio", "button", "spinbutton", "link")
# A control in an ARIA snapshot is `- role "name"`; one without a quoted name has none.
UNNAMED = re.compile(rf"^\s*- ({'|'.join(CONTROL_ROLES)})(?: \[[^\]]*\])*(?::.*)?$")


def unnamed_controls(page: Page) -> list[str]:
    snapshot = page.locator("body").aria_snapshot()
    return [line.strip() for line in snapshot.splitlines() if UNNAMED.match(line)]


def assert_page_is_labelled(page: Page) -> None:
    snapshot = page.locator("body").aria_snapshot()
    assert "- main" in snapshot
    assert re.search(r'- heading "[^"]+" \[level=1\]', snapshot), snapshot
    assert unnamed_controls(page) == [], snapshot
    # Every visible form field is tied to a <label> or named by ARIA, not just placeholder.
    orphans = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter(el => el.type !== 'hidden' && !el.hidden && el.offsetParent !== null)
            .filter(el => el.labels.length === 0 && !el.getAttribute('aria-label')
                          && !el.getAttribute('aria-labelledby'))
            .map(el => el.outerHTML)"""
    )
    assert orphans == []


def focused(page: Page) -> str:
    """The focused element as `tag: accessible text`."""
    return str(
        page.evaluate(
            """() => { const el = document.activeElement;
                 const name = el.getAttribute('aria-label') || (el.labels && el.labels[0]
                   && el.labels[0].textContent.trim()) || el.textContent.trim() || el.value;
                 return `${el.tagName.toLowerCase()}: ${name}`; }"""
        )
    )


def focus_is_visible(page: Page) -> bool:
    return bool(
        page.evaluate(
            """() => { const s = getComputedStyle(document.activeElement);
                 return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2; }"""
        )
    )


def test_login_page_landmarks_labels_and_keyboard(
    page: Page, console_server: ModelbusServer
) -> None:
    page.goto(f"{console_server.url}/console/login")
    assert_page_is_labelled(page)
    expect(page.locator("body")).to_match_aria_snapshot(
        """
        - link "Skip to content"
        - banner:
          - link "modelbus"
        - main:
          - heading "Log in to the console" [level=1]
          - text: API key
          - textbox "API key"
          - button "Log in"
        - contentinfo
        """
    )
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(console_server.admin_key)
    page.keyboard.press("Tab")
    assert focused(page) == "button: Log in"
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/models")


def test_tab_order_skip_link_and_visible_focus(page: Page, console_server: ModelbusServer) -> None:
    login(page, console_server)
    page.goto(f"{console_server.url}/console/models")
    order = []
    for _ in range(10):
        page.keyboard.press("Tab")
        assert focus_is_visible(page), focused(page)
        order.append(focused(page))
    # the first model listed (other tests of this server push models of their own)
    first_model = "a: " + page.locator("main a").first.inner_text().strip()
    assert first_model.count("/") == 1, first_model
    assert order == [
        "a: Skip to content",
        "a: modelbus",
        "a: Models",
        "a: Event listeners",
        "a: Flow map",
        "a: Runs",
        "a: Dead letters",
        "a: API keys",
        "button: Log out",
        first_model,
    ]
    page.reload()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # the skip link
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    assert focused(page) == first_model
    current = page.get_by_role("navigation", name="Console").get_by_role("link", name="Models")
    expect(current).to_have_attribute("aria-current", "page")


def test_try_it_from_the_keyboard_alone(page: Page, console_server: ModelbusServer) -> None:
    login(page, console_server)
    page.goto(f"{console_server.url}/console/models/examples/hello")
    assert_page_is_labelled(page)
    page.get_by_label("Version", exact=True).focus()
    page.keyboard.press("Tab")
    assert focused(page) == "input: JSON"
    page.keyboard.press("ArrowRight")  # radios: arrows move within the group
    expect(page.get_by_label("Text", exact=True)).to_be_checked()
    page.keyboard.press("Tab")
    assert focused(page).startswith("textarea: Input (JSON or text)")
    page.keyboard.press("Control+A")
    page.keyboard.type("Lin")
    page.keyboard.press("Tab")
    assert focused(page) == "button: Run"
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    outcome = page.locator("#outcome")
    expect(outcome.get_by_label("Result")).to_have_text("Hello, Lin!")
    expect(outcome).to_be_focused()


def test_every_page_names_its_controls(page: Page, console_server: ModelbusServer) -> None:
    name, inbox = f"a11y-{uuid.uuid4().hex[:8]}", f"in-{uuid.uuid4().hex[:8]}"
    with console_server.http() as api:
        created = api.post(
            "/v1/listeners",
            json={"name": name, "source": f"local://{inbox}", "model": "examples/hello@1.0.0"},
        )
        assert created.status_code == 201, created.text
        publish(console_server, inbox, [(f"poison-{name}", b"\xff\xfe")])
        deadline = time.monotonic() + 30
        while not api.get(f"/v1/listeners/{name}/dead-letters").json()["items"]:
            assert time.monotonic() < deadline, "the poisoned message was not dead-lettered"
            time.sleep(0.1)
    login(page, console_server)
    for path in (
        "/console/models",
        "/console/listeners",
        "/console/listeners/new",
        "/console/flow",
        f"/console/listeners/{name}",
        f"/console/listeners/{name}/edit",
        "/console/runs?message_id=nothing-here",
        "/console/dead-letters",
        f"/console/listeners/{name}/dead-letters",
    ):
        page.goto(console_server.url + path)
        assert_page_is_labelled(page)
    page.get_by_text(f"Inspect poison-{name}").click()
    assert_page_is_labelled(page)
