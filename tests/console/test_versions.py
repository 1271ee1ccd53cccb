"""A version's page (schemas, calls to copy, runners, recent errors) and a failed build's
page, in headless Chromium against a real server. The curl and Python snippets shown are
run as they are, with the key in ``MODELBUS_API_KEY``, against that server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from modelbus.errors import ModelbusError
from tests.console.conftest import EXAMPLES, login, shot
from tests.console.test_accessibility import assert_page_is_labelled, focus_is_visible, focused
from tests.support.fixtures import MODELS_DIR
from tests.support.server import ModelbusServer

pytestmark = pytest.mark.timeout(1200)

SDK = Path(__file__).resolve().parents[2] / "sdks" / "typescript"
BROKEN_MANIFEST = """
[model]
owner = "test"
name = "broken"

[runtime]
entrypoint = "model:apply"
"""


@pytest.fixture(scope="module")
def strict(console_server: ModelbusServer) -> Iterator[str]:
    """``test/strict`` 1.0.0 (its input schema requires a ``text`` string)."""
    with console_server.client() as sdk:
        sdk.push(MODELS_DIR / "strict", version="1.0.0")
    yield f"{console_server.url}/console/models/test/strict/versions/1.0.0"


def snippet(page: Page, label: str) -> str:
    return (
        page.get_by_role("region", name="Call it")
        .locator(f'[data-snippet="{label}"] pre')
        .inner_text()
    )


def run_snippet(argv: list[str], key: str, tmp_path: Path) -> str:
    env = {**os.environ, "MODELBUS_API_KEY": key}
    env.pop("MODELBUS_URL", None)
    done = subprocess.run(
        argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{argv} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_version_page_snippets_run_as_shown(
    page: Page, console_server: ModelbusServer, strict: str, tmp_path: Path
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    login(page, console_server)
    page.goto(f"{console_server.url}/console/models/test/strict")
    versions = page.get_by_role("table", name="Versions of test/strict")
    versions.get_by_role("link", name="1.0.0").click()
    expect(page).to_have_url(strict)
    expect(page.get_by_role("heading", level=1)).to_have_text("test/strict 1.0.0")
    assert_page_is_labelled(page)
    nav = page.get_by_role("navigation", name="Console")
    expect(nav.get_by_role("link", name="Models")).to_have_attribute("aria-current", "page")

    schema = page.get_by_role("region", name="Schema")
    expect(schema.get_by_label("Input", exact=True)).to_contain_text('"required": [')
    expect(schema.get_by_label("Output", exact=True)).to_contain_text('"type": "object"')

    curl = snippet(page, "curl")
    python = snippet(page, "python")
    typescript = snippet(page, "typescript")
    for text in (curl, python, typescript):
        assert console_server.url in text
        assert "MODELBUS_API_KEY" in text
    assert console_server.admin_key not in page.content()
    assert '{"text": "text"}' in curl
    assert 'mb.call("test/strict@1.0.0", {"text": "text"})' in typescript
    page.get_by_role("button", name="Copy the curl snippet").click()
    expect(page.locator('[data-copied-for="snippet-text-curl"]')).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == curl

    # The snippets work as they are, with the key in the environment.
    assert shutil.which("curl"), "curl is needed to run the curl snippet"
    out = json.loads(run_snippet(["bash", "-c", curl], console_server.admin_key, tmp_path))
    assert out["result"] == {"text": "TEXT"}
    assert out["metadata"]["version"] == "1.0.0"
    script = tmp_path / "call.py"
    script.write_text(python)
    printed = run_snippet([sys.executable, str(script)], console_server.admin_key, tmp_path)
    assert printed.strip() == "{'text': 'TEXT'}"

    # Now its runner is warm, and a rejected input is a recent error.
    rejected = httpx.post(
        f"{console_server.url}/v1/models/test/strict/versions/1.0.0/invoke",
        json={"txet": "typo"},
        headers={"Authorization": f"Bearer {console_server.admin_key}"},
    )
    assert rejected.status_code == 400, rejected.text
    page.reload()
    runners = page.get_by_role("region", name=re.compile("^Runners"))
    expect(runners.get_by_role("heading", level=2)).to_contain_text("warm")
    serve_row = runners.get_by_role("row", name=re.compile("^serve"))
    expect(serve_row.locator('[data-figure="alive"]')).to_have_text(re.compile(r"^[1-9]"))
    errors = page.get_by_role("table", name=re.compile("^Latest errors of this version"))
    expect(errors.get_by_role("row").nth(1)).to_contain_text("InputRejected")
    expect(errors).to_contain_text("text")
    shot(page, "model")


@pytest.mark.slow
def test_the_typescript_snippet_runs_as_shown(
    page: Page, console_server: ModelbusServer, strict: str, tmp_path: Path
) -> None:
    """The TypeScript snippet is also plain JavaScript (ESM with top-level await): run under
    Node against the SDK compiled from sdks/typescript (npm ci and build when not built)."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    assert not missing, f"the TypeScript snippet needs {' and '.join(missing)} (Node 20+)"
    if not (SDK / "dist" / "index.js").is_file():
        for argv in (
            ["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"],
            ["npm", "run", "build"],
        ):
            built = subprocess.run(argv, cwd=SDK, capture_output=True, text=True, timeout=300)
            assert built.returncode == 0, f"{argv}: {built.stdout}{built.stderr}"
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "modelbus").symlink_to(SDK)
    login(page, console_server)
    page.goto(strict)
    (tmp_path / "call.mjs").write_text(snippet(page, "typescript"))
    printed = run_snippet(["node", "call.mjs"], console_server.admin_key, tmp_path)
    assert printed.strip() == "{ text: 'TEXT' }"


def test_a_cold_version_says_so(page: Page, console_server: ModelbusServer, tmp_path: Path) -> None:
    folder = tmp_path / "cold"
    shutil.copytree(EXAMPLES / "hello", folder)
    manifest = (folder / "modelbus.toml").read_text()
    (folder / "modelbus.toml").write_text(manifest.replace('owner = "examples"', 'owner = "cold"'))
    with console_server.client() as sdk:
        sdk.push(folder, version="2.0.0")
    login(page, console_server)
    page.goto(f"{console_server.url}/console/models/cold/hello/versions/2.0.0")
    runners = page.get_by_role("region", name=re.compile("^Runners"))
    expect(runners.get_by_role("heading", level=2)).to_contain_text("cold")
    expect(page.get_by_role("region", name="Schema")).to_contain_text("No input schema")
    expect(page.get_by_role("region", name="Recent errors")).to_contain_text("None: no listener")
    assert "-d '{}'" in snippet(page, "curl")


def test_copy_from_the_keyboard(page: Page, console_server: ModelbusServer, strict: str) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    login(page, console_server)
    page.goto(strict)
    page.get_by_role("button", name="Copy the curl snippet").focus()
    page.keyboard.press("Tab")
    assert focused(page).startswith("pre: ")  # the snippet itself scrolls by keyboard
    page.keyboard.press("Tab")
    assert focused(page) == "button: Copy the Python snippet"
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    expect(page.locator('[data-copied-for="snippet-text-python"]')).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == snippet(page, "python")


def test_failed_build_says_why(page: Page, console_server: ModelbusServer, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "modelbus.toml").write_text(BROKEN_MANIFEST)
    (folder / "model.py").write_text("def predict(x):\n    return x\n")
    with console_server.client() as sdk, pytest.raises(ModelbusError):
        sdk.push(folder, version="1.0.0")
    login(page, console_server)
    page.goto(f"{console_server.url}/console/models/test/broken")
    builds = page.get_by_role("table", name="Builds, newest first")
    expect(builds).to_contain_text("failed")
    builds.get_by_role("link").first.click()
    failure = page.get_by_role("region", name="Why the build failed")
    expect(failure.locator(".failure-step")).to_have_text("checking the model can be launched")
    expect(failure.locator(".failure-reason")).to_contain_text("apply")
    highlighted = failure.locator("mark.log-error")
    expect(highlighted).to_have_count(1)
    expect(highlighted).to_contain_text("error: [runtime] entrypoint")
    assert_page_is_labelled(page)
    shot(page, "build-failed")
