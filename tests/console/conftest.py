"""Browser fixtures: Debian's chromium driven by Playwright against a REAL ``modelbus serve``.

The browser is never downloaded (``playwright install`` is never run): :func:`chromium` uses
``/usr/bin/chromium`` and, when it is missing and the tests run as root (CI), installs
Debian's ``chromium`` package with apt-get. Only if that install fails are the browser tests
skipped, with the reason printed as a warning at the end of the run.

``console_server`` is one server for this package with ``examples/hello`` 1.0.0 pushed
through the SDK before any browser starts (the user flows push nothing), plus ``test/echo``
1.0.0 (returns what it gets: the image test) and a ``examples/hello`` 1.1.0 that also
greets binary input (the version dead letters are redriven to).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from modelbus.connectors import ConnectorContext, make_sink
from modelbus.connectors.base import OutMessage
from tests.support.fixtures import MODELS_DIR
from tests.support.server import ModelbusServer

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
# Every run saves its screenshots under build/screenshots (ignored by git); the README's
# copies in docs/screenshots are refreshed with MODELBUS_SCREENSHOTS_DIR=docs/screenshots.
SCREENSHOTS = Path(os.environ.get("MODELBUS_SCREENSHOTS_DIR", ROOT / "build" / "screenshots"))
CHROMIUM = Path("/usr/bin/chromium")
# As NOTES.md measured: without the background-networking flags Chromium keeps trying to
# reach Google's hosts, which this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
APT_TIMEOUT_S = 900
VIEWPORT = {"width": 1280, "height": 860}
HELLO_BINARY = """
def apply(input):
    if isinstance(input, (bytes, bytearray)):
        return f"Hello, {bytes(input).decode('utf-8', 'replace')}!"
    if isinstance(input, dict):
        return {"greeting": f"Hello, {input.get('name', 'world')}!"}
    return f"Hello, {input.strip() or 'world'}!"
"""


def _skip_loudly(reason: str) -> None:
    warnings.warn(f"console browser tests SKIPPED: {reason}", UserWarning, stacklevel=2)
    pytest.skip(reason)


def _apt_install() -> str:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = []
    for argv in (
        ["apt-get", "install", "-y", "-q", "chromium"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "chromium"],
    ):
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False
        )
        log.append(f"$ {' '.join(argv)} -> {done.returncode}\n{done.stdout[-1500:]}{done.stderr}")
        if argv[1] == "install" and done.returncode == 0:
            break
    return "\n".join(log)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get if missing (as root)."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        _skip_loudly(f"{CHROMIUM} is missing; install Debian's chromium (apt-get install chromium)")
    log = _apt_install()
    if not CHROMIUM.exists():
        _skip_loudly(f"apt-get install chromium failed, so {CHROMIUM} is missing:\n{log[-3000:]}")
    return str(CHROMIUM)


@pytest.fixture(scope="package")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright_driver: Playwright, chromium: str) -> Iterator[Browser]:
    launched = playwright_driver.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    try:
        yield launched
    finally:
        launched.close()


def _hello_binary(tmp: Path) -> Path:
    folder = tmp / "hello-binary"
    shutil.copytree(EXAMPLES / "hello", folder)
    (folder / "model.py").write_text(HELLO_BINARY)
    return folder


@pytest.fixture(scope="package")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelbusServer]:
    tmp = tmp_path_factory.mktemp("console")
    with ModelbusServer.start(tmp / "data") as server, server.client() as sdk:
        sdk.push(EXAMPLES / "hello", version="1.0.0")
        sdk.push(_hello_binary(tmp), version="1.1.0")
        sdk.push(MODELS_DIR / "echo", version="1.0.0")
        yield server


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    try:
        yield opened
    finally:
        context.close()


def login(page: Page, server: ModelbusServer, key: str | None = None) -> None:
    """Log in through the form and land on the models page."""
    page.goto(f"{server.url}/console/login")
    page.get_by_label("API key").fill(key or server.admin_key)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/console/models")


def shot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as ``NAME.png`` in :data:`SCREENSHOTS`."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def publish(server: ModelbusServer, queue: str, messages: Sequence[tuple[str, bytes]]) -> None:
    """Put messages (broker id, body) on the server's embedded queue ``local://QUEUE``, as
    any producer on the machine would (the queue is a file in the server's data dir)."""

    async def put() -> None:
        ctx = ConnectorContext(listener="console-tests", data_dir=server.data_dir)
        sink = make_sink(f"local://{queue}", ctx)
        await sink.open()
        try:
            await sink.publish([OutMessage(id=i, body=body) for i, body in messages])
        finally:
            await sink.close()

    # Playwright's sync API owns this thread's event loop: the queue gets a loop of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, put()).result()
