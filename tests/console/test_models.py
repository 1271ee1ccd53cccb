"""The console's login and Models pages in headless Chromium against a real server."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import EXAMPLES, login, shot
from tests.support.server import ModelbusServer

# The first test may install Debian's chromium (apt-get) before it starts: allow for that.
pytestmark = pytest.mark.timeout(1200)


def test_pages_need_a_login_and_logout_ends_the_session(
    page: Page, console_server: ModelbusServer
) -> None:
    page.goto(f"{console_server.url}/console/models")
    expect(page).to_have_url(re.compile(r"/console/login\?next=%2Fconsole%2Fmodels$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in to the console")
    shot(page, "login")

    page.get_by_label("API key").fill("mb_0123456789abcdef_" + "x" * 43)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("invalid or revoked API key")
    expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")

    login(page, console_server)
    expect(page.get_by_role("heading", level=1)).to_have_text("Models")
    cookie = next(c for c in page.context.cookies() if c["name"] == "modelbus_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert console_server.admin_key not in cookie["value"]  # encrypted, not just signed

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.goto(f"{console_server.url}/console/models")
    expect(page).to_have_url(re.compile(r"/console/login"))


def test_models_versions_builds_and_try_it_on_hello(
    page: Page, console_server: ModelbusServer
) -> None:
    login(page, console_server)
    table = page.get_by_role("table", name="Models this key may see")
    expect(table.get_by_role("link", name="examples/hello")).to_be_visible()
    shot(page, "models")

    table.get_by_role("link", name="examples/hello").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("examples/hello")
    versions = page.get_by_role("table", name="Versions of examples/hello")
    row = versions.get_by_role("row", name=re.compile(r"^1\.0\.0"))
    expect(row).to_contain_text("ready")

    page.get_by_label("Version", exact=True).select_option("1.0.0")
    page.get_by_label("JSON", exact=True).check()
    page.get_by_label("Input (JSON or text)").fill('{"name": "Ada"}')
    page.get_by_role("button", name="Run").click()
    outcome = page.locator("#outcome")
    expect(outcome.get_by_role("heading")).to_have_text("Result")
    expect(outcome.get_by_label("Result")).to_contain_text('"greeting": "Hello, Ada!"')
    expect(outcome.locator(".outcome-content-type")).to_have_text("json")
    expect(outcome.locator(".outcome-version")).to_have_text("1.0.0")
    expect(outcome.locator(".outcome-duration")).to_have_text(re.compile(r"^\d+\.\d ms$"))
    expect(outcome).to_be_focused()  # the result is announced where the keyboard is
    shot(page, "model-try-it")

    page.get_by_label("Text", exact=True).check()
    page.get_by_label("Input (JSON or text)").fill("Grace")
    page.get_by_role("button", name="Run").click()
    expect(outcome.get_by_label("Result")).to_have_text("Hello, Grace!")
    expect(outcome.locator(".outcome-content-type")).to_have_text("text")

    page.get_by_label("JSON", exact=True).check()
    page.get_by_label("Input (JSON or text)").fill("{not json")
    page.get_by_role("button", name="Run").click()
    expect(outcome.get_by_role("heading")).to_have_text("Error")
    expect(outcome.get_by_role("alert")).to_contain_text("not valid JSON")


def test_build_page_shows_log_and_manifest(page: Page, console_server: ModelbusServer) -> None:
    login(page, console_server)
    page.goto(f"{console_server.url}/console/models/examples/hello")
    versions = page.get_by_role("table", name="Versions of examples/hello")
    row = versions.get_by_role("row", name=re.compile(r"^1\.0\.0"))
    row.get_by_role("link", name=re.compile(r"^[0-9a-f]{12}$")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Build [0-9a-f]{12}$"))
    manifest = page.get_by_role("region", name="Manifest")
    expect(manifest).to_contain_text('"entrypoint": "model:apply"')
    build_log = page.get_by_role("region", name="Build log")
    expect(build_log).to_contain_text("== build of examples/hello")
    shot(page, "build")


def test_try_it_sends_a_file_and_shows_an_image_result(
    page: Page, console_server: ModelbusServer
) -> None:
    login(page, console_server)
    page.goto(f"{console_server.url}/console/models/test/echo")
    page.get_by_label("File", exact=True).check()
    expect(page.get_by_label("Input (JSON or text)")).to_be_hidden()
    page.get_by_label("File (sent as binary with its type)").set_input_files(
        EXAMPLES / "ocr" / "sample.png"
    )
    page.get_by_role("button", name="Run").click()
    outcome = page.locator("#outcome")
    expect(outcome.get_by_role("heading")).to_have_text("Result")
    expect(outcome.locator(".outcome-content-type")).to_contain_text("binary")
    image = outcome.get_by_role("img", name="Image returned by test/echo")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth > 0")


def test_a_key_sees_only_what_its_scopes_allow(page: Page, console_server: ModelbusServer) -> None:
    with console_server.client() as sdk:
        created = sdk.create_key("hello caller", ["call:examples/hello"])
    login(page, console_server, created.key)
    table = page.get_by_role("table", name="Models this key may see")
    expect(table.get_by_role("link", name="examples/hello")).to_be_visible()
    expect(table.get_by_role("link", name="test/echo")).to_have_count(0)

    page.goto(f"{console_server.url}/console/models/test/echo")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    refusal = page.get_by_role("alert")
    expect(refusal).to_contain_text("may neither manage models nor call test/echo")

    with console_server.client() as sdk:
        sdk.revoke_key(created.info.id)
    page.goto(f"{console_server.url}/console/models")
    expect(page).to_have_url(re.compile(r"/console/login"))  # a revoked key ends its session
