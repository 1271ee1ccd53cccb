"""Event listeners, runs and dead letters in the console, in headless Chromium against a
real server with real runners and the embedded queue (``local://``)."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import login, publish, shot
from tests.support.server import ModelbusServer, free_port

# The first test may install Debian's chromium (apt-get) before it starts: allow for that.
pytestmark = pytest.mark.timeout(1200)


POISON = b"\xff\xfe not UTF-8, so the hello model gets binary and refuses it"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def fill_listener_form(page: Page, *, name: str, source: str, model: str, outputs: str) -> None:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Source URL").fill(source)
    page.get_by_label("Model", exact=True).fill(model)
    page.get_by_label("Output sink URLs").fill(outputs)


def nav(page: Page, section: str) -> None:
    """Follow a link of the console's main navigation."""
    page.get_by_role("navigation", name="Console").get_by_role("link", name=section).click()


def figure(page: Page, listener: str, name: str) -> object:
    return page.locator(f'tr[data-listener="{listener}"] [data-figure="{name}"]')


def test_create_a_listener_send_messages_and_redrive_a_dead_letter(
    page: Page, console_server: ModelbusServer
) -> None:
    name, inbox, outbox, dead = (unique(p) for p in ("greeter", "in", "out", "dead"))
    login(page, console_server)
    nav(page, "Event listeners")
    page.get_by_role("link", name="New listener").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New listener")

    # A refused definition shows the API's own message for it, and keeps what was typed.
    fill_listener_form(
        page, name=name, source="nowhere://queue", model="examples/hello@1.0.0", outputs=""
    )
    page.get_by_role("button", name="Create listener").click()
    with console_server.http() as api:
        refused = api.post(
            "/v1/listeners",
            json={"name": name, "source": "nowhere://queue", "model": "examples/hello@1.0.0"},
        )
    assert refused.status_code == 400
    expect(page.get_by_role("alert")).to_contain_text(refused.json()["error"]["message"])
    expect(page.get_by_role("alert")).to_be_focused()
    expect(page.get_by_label("Model", exact=True)).to_have_value("examples/hello@1.0.0")
    shot(page, "listener-form-error")

    page.get_by_label("Source URL").fill(f"local://{inbox}")
    page.get_by_label("Output sink URLs").fill(f"local://{outbox}")
    page.get_by_label("Error sink URL").fill(f"local://{dead}")
    page.get_by_label("Max attempts").fill("2")
    page.get_by_role("button", name="Create listener").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Listener {name}")
    expect(page.get_by_role("status").first).to_contain_text(f"Listener {name} was created.")
    expect(page.locator('[data-field="state-name"]')).to_have_text("running")

    # Figures change while the page stays loaded (a marker on window survives: no reload).
    nav(page, "Event listeners")
    row = page.locator(f'tr[data-listener="{name}"]')
    expect(row.locator('[data-field="version"]')).to_have_text("1.0.0")
    page.evaluate("window.__stillTheSamePage = true")
    publish(console_server, inbox, [(f"m{i}-{name}", b'{"name": "Ada"}') for i in range(3)])
    expect(figure(page, name, "received")).to_have_text("3", timeout=30_000)
    expect(figure(page, name, "succeeded")).to_have_text("3", timeout=30_000)
    publish(console_server, inbox, [(f"poison-{name}", POISON)])
    expect(figure(page, name, "dead_lettered")).to_have_text("1", timeout=30_000)
    expect(figure(page, name, "received")).to_have_text("4")
    expect(figure(page, name, "rate")).to_have_text(re.compile(r"^\d+\.\d/s$"))
    for wave in (1, 2, 3):  # a few more waves, a second apart: the sparkline has a shape
        page.wait_for_timeout(1_200)
        publish(console_server, inbox, [(f"w{wave}-{i}-{name}", b'"Bo"') for i in range(wave * 3)])
        expect(figure(page, name, "succeeded")).to_have_text(str(3 + 3 * wave * (wave + 1) // 2))
    expect(figure(page, name, "received")).to_have_text("22")
    assert page.evaluate("window.__stillTheSamePage") is True
    shot(page, "listeners")

    # The poisoned message is in the dead letters, inspected, then redriven to 1.1.0.
    nav(page, "Dead letters")
    page.get_by_label("Listener", exact=True).select_option(name)
    page.get_by_role("button", name="Search").click()
    letter = page.locator("tr[data-dead-letter]")
    expect(letter).to_have_count(1)
    expect(letter).to_contain_text(f"poison-{name}")
    expect(letter).to_contain_text("PermanentError")
    letter.get_by_text(f"Inspect poison-{name}").click()
    body = letter.get_by_label(f"Body of poison-{name}")
    expect(body).to_contain_text("00000000  ff fe 20 6e 6f 74")
    letter.get_by_label(f"Select dead letter poison-{name}").check()
    page.get_by_label("Version to run them on").select_option("1.1.0")
    page.get_by_role("button", name="Redrive selected").click()
    result = page.locator("#redrive-result")
    expect(result).to_contain_text(f"{name}: redriven to examples/hello@1.1.0: 1 succeeded")
    expect(page.locator("tr[data-dead-letter]")).to_have_count(0)  # none waits any more
    page.get_by_label("Show redriven letters too").check()
    page.get_by_role("button", name="Search").click()
    expect(page.locator("tr[data-dead-letter]")).to_contain_text("to examples/hello@1.1.0")

    # Runs: what happened to each message, by its broker id.
    nav(page, "Runs")
    page.get_by_label("Broker message id").fill(f"m0-{name}")
    page.get_by_role("button", name="Search").click()
    runs = page.get_by_role("table", name="Run records")
    expect(runs.get_by_role("row", name=re.compile(f"^m0-{name}"))).to_contain_text("succeeded")
    expect(runs).to_contain_text(f"local://{outbox}")
    page.get_by_label("Broker message id").fill(f"poison-{name}")
    page.get_by_role("button", name="Search").click()
    poisoned = runs.get_by_role("row", name=re.compile(f"^poison-{name}"))
    expect(poisoned).to_contain_text("succeeded")
    expect(poisoned).to_contain_text("1.1.0")
    page.get_by_label("Broker message id").fill("no-such-message")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_contain_text("No run record for message no-such-message")


def test_edit_pause_resume_and_delete_a_listener(
    page: Page, console_server: ModelbusServer
) -> None:
    name = unique("lifecycle")
    with console_server.http() as api:
        created = api.post(
            "/v1/listeners",
            json={"name": name, "source": f"local://{unique('in')}", "model": "examples/hello"},
        )
        assert created.status_code == 201, created.text
    login(page, console_server)
    page.goto(f"{console_server.url}/console/listeners/{name}")
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Model", exact=True)).to_have_value("examples/hello@latest")
    page.get_by_label("Max in flight").fill("0")
    page.get_by_role("button", name="Save listener").click()
    expect(page.get_by_role("alert")).to_contain_text("max_in_flight")
    page.get_by_label("Max in flight").fill("4")
    page.get_by_label("Model", exact=True).fill("examples/hello@1.*")
    page.get_by_role("button", name="Save listener").click()
    expect(page.get_by_role("status").first).to_contain_text(f"Listener {name} was saved.")
    with console_server.http() as api:
        stored = api.get(f"/v1/listeners/{name}").json()["definition"]
    assert stored["max_in_flight"] == 4
    assert stored["model"] == "examples/hello@1.*"
    shot(page, "listener")

    page.get_by_role("button", name="Pause").click()
    expect(page.locator('[data-field="state-name"]')).to_have_text("paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator('[data-field="state-name"]')).to_have_text("running")

    page.get_by_role("link", name="Delete…").click()
    page.get_by_role("button", name=f"Delete {name}").click()
    expect(page.get_by_role("status").first).to_contain_text(f"Listener {name} was deleted")
    with console_server.http() as api:
        assert api.get(f"/v1/listeners/{name}").status_code == 404


def test_a_key_without_listeners_manage_cannot_change_listeners(
    page: Page, console_server: ModelbusServer
) -> None:
    with console_server.client() as sdk:
        reader = sdk.create_key("caller", ["call:*"])
    login(page, console_server, reader.key)
    page.goto(f"{console_server.url}/console/listeners")
    expect(page.get_by_role("heading", level=1)).to_have_text("Event listeners")
    expect(page.get_by_role("link", name="New listener")).to_have_count(0)
    page.goto(f"{console_server.url}/console/listeners/new")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(page.get_by_role("alert")).to_contain_text("lacks scope 'listeners:manage'")


def test_a_degraded_listener_shows_why_with_credentials_masked(
    page: Page, console_server: ModelbusServer
) -> None:
    name, port = unique("broken"), free_port()  # nothing listens there
    source = f"amqp://app:s3cret-word@127.0.0.1:{port}/?queue={name}"
    with console_server.http() as api:
        created = api.post(
            "/v1/listeners",
            params={"check": "false"},
            json={"name": name, "source": source, "model": "examples/hello@1.0.0"},
        )
        assert created.status_code == 201, created.text
    login(page, console_server)
    nav(page, "Event listeners")
    row = page.locator(f'tr[data-listener="{name}"]')
    expect(row.locator('[data-field="state-name"]')).to_have_text("degraded", timeout=30_000)
    expect(row.locator('[data-field="reason"]')).not_to_be_empty()
    expect(row).to_contain_text(f"amqp://***@127.0.0.1:{port}/?queue=***")
    assert "s3cret-word" not in page.content()
    page.goto(f"{console_server.url}/console/listeners/{name}")
    expect(page.get_by_text("Last error")).to_be_visible()
    assert "s3cret-word" not in page.content()
    page.goto(f"{console_server.url}/console/listeners/{name}/edit")
    expect(page.get_by_label("Source URL")).to_have_value(
        f"amqp://***@127.0.0.1:{port}/?queue=***"  # the console shows every URL redacted
    )
    page.get_by_label("Max in flight").fill("3")
    page.get_by_label("Check that the connectors open before saving").uncheck()
    page.get_by_role("button", name="Save listener").click()
    expect(page.get_by_role("status").first).to_contain_text(f"Listener {name} was saved.")
    # Saved from a form showing "***": the stored URL was kept (sealed whole), and the
    # other change was made.
    with contextlib.closing(sqlite3.connect(console_server.data_dir / "modelbus.sqlite")) as db:
        query = "SELECT definition FROM listeners WHERE name = ?"
        (stored,) = db.execute(query, (name,)).fetchone()
    definition = json.loads(stored)
    assert definition["max_in_flight"] == 3
    assert "source" in definition["sealed"]
    assert "s3cret-word" not in stored and "s3cret-word" not in console_server.log()
    with console_server.http() as api:
        assert api.get(f"/v1/listeners/{name}").json()["definition"]["source"] == source
        assert api.delete(f"/v1/listeners/{name}").status_code == 204
