"""The whole console at phone width (375 px: no sideways scrolling, the navigation wraps),
destructive buttons that look destructive, and the navigation marking the current page."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.console.conftest import login, publish, shot
from tests.console.test_accessibility import assert_page_is_labelled
from tests.support.server import ModelbusServer

pytestmark = pytest.mark.timeout(1200)

PHONE = {"width": 375, "height": 740}
# Page -> the navigation entry marked current on it.
PAGES = {
    "/console/models": "Models",
    "/console/models/examples/hello": "Models",
    "/console/models/examples/hello/versions/1.0.0": "Models",
    "/console/listeners": "Event listeners",
    "/console/listeners/new": "Event listeners",
    "/console/listeners/{name}": "Event listeners",
    "/console/listeners/{name}/delete": "Event listeners",
    "/console/flow": "Flow map",
    "/console/runs?message_id=nothing-here": "Runs",
    "/console/dead-letters": "Dead letters",
    "/console/listeners/{name}/dead-letters": "Dead letters",
    "/console/keys": "API keys",
}
DANGER_RED = "rgb(179, 38, 30)"  # --bad


@pytest.fixture(scope="module")
def listener(console_server: ModelbusServer) -> str:
    """A listener with one dead letter, so every page has something on it."""
    name, inbox = f"phone-{uuid.uuid4().hex[:8]}", f"in-{uuid.uuid4().hex[:8]}"
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
    return name


@pytest.fixture
def phone(browser: Browser) -> Page:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2)  # type: ignore[arg-type]
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    yield opened  # type: ignore[misc]
    context.close()


def overflow(page: Page) -> list[str]:
    """The page's sideways overflow, and the elements sticking out past the viewport."""
    return list(
        page.evaluate(
            """() => {
              const root = document.documentElement;
              const out = [];
              if (root.scrollWidth > root.clientWidth)
                out.push(`scrollWidth ${root.scrollWidth} > clientWidth ${root.clientWidth}`);
              const scrolls = (el) => {
                for (let up = el.parentElement; up && up !== document.body; up = up.parentElement)
                  if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(up).overflowX))
                    return true;
                return false;
              };
              for (const el of document.body.querySelectorAll('*')) {
                const r = el.getBoundingClientRect();
                if (r.width && r.right > root.clientWidth + 1 && !scrolls(el))
                  out.push(`${el.tagName}.${el.className} right=${Math.round(r.right)}`);
              }
              return out.slice(0, 10);
            }"""
        )
    )


def test_every_page_fits_a_phone(
    phone: Page, console_server: ModelbusServer, listener: str
) -> None:
    login(phone, console_server)
    nav = phone.get_by_role("navigation", name="Console")
    for path, current in PAGES.items():
        phone.goto(console_server.url + path.format(name=listener))
        assert overflow(phone) == [], path
        for link in nav.get_by_role("link").all():
            box = link.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert_page_is_labelled(phone)  # the same accessibility tree at phone width
        marked = nav.locator('[aria-current="page"]')
        expect(marked).to_have_count(1)
        expect(marked).to_have_text(current)
    phone.goto(f"{console_server.url}/console/models/examples/hello/versions/1.0.0")
    # A table that scrolls in its own box is still a table to assistive technology.
    expect(phone.get_by_role("table", name=re.compile("^Runners of this version"))).to_be_visible()
    shot(phone, "phone-version")
    phone.goto(f"{console_server.url}/console/keys")
    shot(phone, "phone-keys")


def test_current_page_is_marked_visibly(page: Page, console_server: ModelbusServer) -> None:
    login(page, console_server)
    nav = page.get_by_role("navigation", name="Console")
    current, other = nav.get_by_role("link", name="Models"), nav.get_by_role("link", name="Runs")
    style = """el => { const s = getComputedStyle(el);
                 return [s.backgroundColor, s.boxShadow, s.fontWeight]; }"""
    assert current.evaluate(style) != other.evaluate(style)
    assert current.evaluate("el => getComputedStyle(el).textDecorationLine") == "underline"


def test_destructive_buttons_look_destructive(
    page: Page, console_server: ModelbusServer, listener: str
) -> None:
    login(page, console_server)
    page.goto(f"{console_server.url}/console/listeners/{listener}")
    delete = page.get_by_role("link", name="Delete…")
    edit = page.get_by_role("link", name="Edit")
    page.goto(f"{console_server.url}/console/listeners/{listener}/delete")
    confirm = page.get_by_role("button", name=f"Delete {listener}")
    colours = [confirm.evaluate("el => getComputedStyle(el).backgroundColor")]
    page.goto(f"{console_server.url}/console/listeners/{listener}")
    colours.append(delete.evaluate("el => getComputedStyle(el).backgroundColor"))
    assert edit.evaluate("el => getComputedStyle(el).backgroundColor") != DANGER_RED
    page.goto(f"{console_server.url}/console/keys")
    revoke = page.locator("a.button.danger").first
    colours.append(revoke.evaluate("el => getComputedStyle(el).backgroundColor"))
    assert colours == [DANGER_RED] * 3
    marker = revoke.evaluate("el => getComputedStyle(el, '::before').content")
    assert "⚠" in marker
