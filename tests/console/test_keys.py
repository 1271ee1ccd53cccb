"""The API keys page in headless Chromium against a real server: create (the secret shown
once), revoke (which ends the key's sessions), refusal to non-admin keys, the keyboard."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.console.conftest import VIEWPORT, login, shot
from tests.console.test_accessibility import assert_page_is_labelled, focus_is_visible, focused
from tests.support.server import ModelbusServer

pytestmark = pytest.mark.timeout(1200)


def key_works(server: ModelbusServer, key: str) -> bool:
    answer = httpx.get(f"{server.url}/v1/keys/self", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code in (200, 401), answer.text
    return answer.status_code == 200


def open_keys_page(page: Page, server: ModelbusServer) -> None:
    login(page, server)
    nav = page.get_by_role("navigation", name="Console")
    nav.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("API keys")
    expect(nav.get_by_role("link", name="API keys")).to_have_attribute("aria-current", "page")


def test_create_shows_the_secret_once_and_revoke_ends_its_sessions(
    page: Page, browser: Browser, console_server: ModelbusServer
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    name = f"pipeline {uuid.uuid4().hex[:6]}"
    open_keys_page(page, console_server)
    assert_page_is_labelled(page)
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("checkbox", name=re.compile(r"call:\*")).check()
    page.get_by_label("Call only these models").fill("examples/hello, test/echo")
    page.get_by_role("button", name="Create key").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(f"Key {name} created")
    expect(page.get_by_role("alert")).to_contain_text("shown only once")
    secret = page.locator("#secret-value").inner_text().strip()
    assert re.fullmatch(r"mb_[0-9a-f]{16}_[A-Za-z0-9_-]{43,}", secret), secret
    assert key_works(console_server, secret)
    assert_page_is_labelled(page)
    page.get_by_role("button", name="Copy the secret").click()
    expect(page.get_by_role("status").filter(has_text="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shot(page, "key-created")

    # The list never shows it again; the new key is there with its scopes.
    page.get_by_role("link", name="Done: back to the keys").click()
    assert secret not in page.content()
    assert secret.split("_", 2)[2] not in page.content()
    row = page.get_by_role("row", name=re.compile(re.escape(name)))
    expect(row).to_contain_text("call:*")
    expect(row).to_contain_text("call:examples/hello")
    expect(row).to_contain_text("call:test/echo")
    expect(row).to_contain_text(re.compile(r"\d{4}-\d\d-\d\d .*UTC"))  # created, last used
    shot(page, "keys")

    # The new key logs in elsewhere; revoking it ends that session.
    other = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        their_page = other.new_page()
        login(their_page, console_server, secret)
        revoke = row.get_by_role("link", name=f"Revoke {name}")
        assert "danger" in (revoke.get_attribute("class") or "")
        revoke.click()
        expect(page.get_by_role("heading", level=1)).to_have_text(f"Revoke key {name}?")
        assert_page_is_labelled(page)
        assert key_works(console_server, secret)  # the confirmation page changed nothing
        page.get_by_role("button", name=f"Revoke {name}").click()
        expect(page.get_by_role("status")).to_contain_text("is revoked")
        row = page.get_by_role("row", name=re.compile(re.escape(name)))
        expect(row).to_contain_text("revoked")
        expect(row.get_by_role("link")).to_have_count(0)
        assert not key_works(console_server, secret)
        their_page.goto(f"{console_server.url}/console/models")
        expect(their_page).to_have_url(re.compile(r"/console/login"))
    finally:
        other.close()


def test_a_refused_key_gets_the_form_back_with_the_reason(
    page: Page, console_server: ModelbusServer
) -> None:
    open_keys_page(page, console_server)
    page.get_by_label("Name", exact=True).fill("no scopes")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("alert")).to_contain_text("at least one scope")
    expect(page.get_by_label("Name", exact=True)).to_have_value("no scopes")
    page.get_by_label("Call only these models").fill("not a model")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("alert")).to_contain_text("scope")
    expect(page.locator("#form-error")).to_be_focused()


def test_a_key_without_admin_gets_a_403_page(page: Page, console_server: ModelbusServer) -> None:
    with console_server.client() as sdk:
        created = sdk.create_key("manager", ["models:manage", "call:*"])
    login(page, console_server, created.key)
    nav = page.get_by_role("navigation", name="Console")
    expect(nav.get_by_role("link", name="API keys")).to_have_count(0)
    answer = page.goto(f"{console_server.url}/console/keys")
    assert answer is not None and answer.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(page.get_by_role("alert")).to_contain_text("managed with an admin key")
    expect(page.get_by_role("alert")).to_contain_text("models:manage, call:*")
    answer = page.goto(f"{console_server.url}/console/keys/{created.info.id}/revoke")
    assert answer is not None and answer.status == 403
    assert key_works(console_server, created.key)


def test_create_a_key_from_the_keyboard_alone(page: Page, console_server: ModelbusServer) -> None:
    open_keys_page(page, console_server)
    page.get_by_label("Name", exact=True).focus()
    page.keyboard.type("keyboard key")
    page.keyboard.press("Tab")
    assert focused(page).startswith("input: call:*")
    page.keyboard.press("Space")
    for _ in range(4):  # models:manage, listeners:manage, admin, the models field
        page.keyboard.press("Tab")
    assert focused(page).startswith("input: Call only these models")
    page.keyboard.press("Tab")
    assert focused(page) == "button: Create key"
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Key keyboard key created")
    page.keyboard.press("Tab")  # past the skip link and the nav to the copy button
    for _ in range(12):
        if focused(page) == "button: Copy the secret":
            break
        page.keyboard.press("Tab")
    assert focused(page) == "button: Copy the secret"
    assert focus_is_visible(page)
