"""The flow map page in headless Chromium against a real server: a two-step pipeline on the
embedded queue drawn as one graph with live rates, a paused listener and a model spec that
does not resolve, keyboard use (Tab to a node, Enter opens its page), the accessibility tree,
the page without JavaScript, and at phone width."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.console.conftest import login, publish, shot
from tests.console.test_accessibility import assert_page_is_labelled, focus_is_visible, focused
from tests.support.server import ModelbusServer

# The first test may install Debian's chromium (apt-get) before it starts: allow for that.
pytestmark = pytest.mark.timeout(1200)

MESSAGES = 8
POISON = b"\xff\xfe not UTF-8: hello 1.0.0 refuses binary input"
PHONE = {"width": 390, "height": 844}
WIDE = {"width": 1840, "height": 1000}
RATE = re.compile(r"^\d+\.\d/s$")  # measured: not "—"


@dataclass(frozen=True)
class Pipeline:
    ocr: str
    classify: str
    legacy: str
    scans: str


@pytest.fixture(scope="module")
def pipeline(console_server: ModelbusServer) -> Iterator[Pipeline]:
    """``ocr`` (hello 1.0.0) publishes to the queue ``classify`` (echo 1.*) reads; a poison
    message is dead-lettered; ``legacy`` is paused and names a version that does not exist."""
    tag = uuid.uuid4().hex[:6]
    names = Pipeline(f"ocr-{tag}", f"classify-{tag}", f"legacy-{tag}", f"scans-{tag}")
    definitions = [
        {
            "name": names.ocr,
            "source": f"local://{names.scans}",
            "model": "examples/hello@1.0.0",
            "outputs": [f"local://text-{tag}"],
            "error_sink": f"local://ocr-dead-{tag}",
        },
        {
            "name": names.classify,
            "source": f"local://text-{tag}",
            "model": "test/echo@1.*",
            "outputs": [f"local://labels-{tag}", f"local://archive-{tag}"],
        },
        {
            "name": names.legacy,
            "source": f"local://old-scans-{tag}",
            "model": "examples/hello@2.*",
            "outputs": [f"local://text-{tag}"],
            "enabled": False,
        },
    ]
    with console_server.http() as api:
        for body in definitions:
            created = api.post("/v1/listeners?check=false", json=body)
            assert created.status_code == 201, created.text
        api.get("/v1/flow")  # a first reading, so the rates can be measured from it
        bodies = [(f"scan-{tag}-{i}", f"page {i}".encode()) for i in range(MESSAGES)]
        publish(console_server, names.scans, [*bodies, (f"poison-{tag}", POISON)])
        deadline = time.monotonic() + 60
        while True:
            graph = api.get("/v1/flow").json()
            done = {
                (e["listener"], e["kind"]): e["messages"]
                for e in graph["edges"]
                if e["kind"] in ("result", "dead-letter")
            }
            if (
                done.get((names.classify, "result")) == MESSAGES
                and done.get((names.ocr, "dead-letter")) == 1
            ):
                break
            assert time.monotonic() < deadline, json.dumps(done)
            time.sleep(0.2)
        yield names
        for body in definitions:
            api.delete(f"/v1/listeners/{body['name']}")


def open_flow(page: Page, server: ModelbusServer) -> None:
    login(page, server)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Flow map").click()
    page.wait_for_url("**/console/flow")


def test_the_flow_map_draws_the_pipeline_with_live_rates(
    page: Page, console_server: ModelbusServer, pipeline: Pipeline
) -> None:
    open_flow(page, console_server)
    expect(page.get_by_role("heading", level=1)).to_have_text("Flow map")
    nav_link = page.get_by_role("navigation", name="Console").get_by_role("link", name="Flow map")
    expect(nav_link).to_have_attribute("aria-current", "page")
    flow_map = page.locator("[data-flow-map]")
    ocr = flow_map.get_by_role("link", name=f"Listener {pipeline.ocr}, running")
    expect(ocr).to_be_visible()
    expect(flow_map.get_by_role("link", name=f"Listener {pipeline.legacy}, paused")).to_be_visible()
    expect(
        flow_map.get_by_role("link", name=f"Model test/echo@1.* of listener {pipeline.classify}")
    ).to_have_accessible_name(
        f"Model test/echo@1.* of listener {pipeline.classify}, resolves to 1.0.0"
    )
    legacy_model = flow_map.get_by_role("link", name=f"of listener {pipeline.legacy}")
    unresolved = rf"^Model examples/hello@2\.\* of listener {pipeline.legacy}, does not resolve: .+"
    expect(legacy_model).to_have_attribute("aria-label", re.compile(unresolved))
    # The queue between the two listeners is one node, fed by ocr and legacy, read by classify.
    pipelines = page.get_by_role("region", name="Pipelines").get_by_role("listitem")
    expect(pipelines.filter(has_text=f"{pipeline.ocr} publishes to")).to_contain_text(
        f"which {pipeline.classify} reads"
    )
    expect(pipelines.filter(has_text=f"{pipeline.legacy} publishes to")).to_have_count(1)
    # Every hop, with its messages and a rate measured while they went through.
    hops = page.locator("table.flow-hops").filter(has_text=pipeline.classify).first
    expect(hops.locator("tbody tr")).to_have_count(4)  # receive, invoke, two results
    result = hops.locator("tbody tr").filter(has_text="labels-")
    expect(result.locator("[data-edge-messages]")).to_have_text(str(MESSAGES))
    expect(result.locator("[data-edge-rate]")).to_have_text(RATE)
    ocr_hops = page.locator("table.flow-hops").filter(has_text=f"{pipeline.ocr}:").first
    dead = ocr_hops.locator("tbody tr").filter(has_text="dead-letter")
    expect(dead.locator("[data-edge-messages]")).to_have_text("1")
    # The drawing shows the same rates; the script keeps them live (and says so).
    expect(page.locator("[data-flow-at]")).to_contain_text("live, updated", timeout=10_000)
    # The docs' picture: wide enough for the two-step pipeline to fit without scrolling.
    page.set_viewport_size(WIDE)
    box = page.locator(".flow-scroll")
    assert box.evaluate("el => el.scrollWidth <= el.clientWidth"), "the map does not fit"
    shot(page, "flow")


def test_tab_to_a_node_and_enter_opens_it(
    page: Page, console_server: ModelbusServer, pipeline: Pipeline
) -> None:
    open_flow(page, console_server)
    wanted = f"a: Listener {pipeline.classify}, running"
    seen = []
    for _ in range(60):
        page.keyboard.press("Tab")
        seen.append(focused(page))
        if seen[-1] == wanted:
            break
    assert seen[-1] == wanted, seen
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/console/listeners/{pipeline.classify}")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Listener {pipeline.classify}")
    # A model node opens the model's page.
    page.go_back()
    model = f"a: Model test/echo@1.* of listener {pipeline.classify}, resolves to 1.0.0"
    page.locator(f'[data-node="listener:{pipeline.classify}"]').focus()
    page.keyboard.press("Tab")
    assert focused(page) == model
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/models/test/echo")


def test_the_accessibility_tree(
    page: Page, console_server: ModelbusServer, pipeline: Pipeline
) -> None:
    open_flow(page, console_server)
    assert_page_is_labelled(page)
    figure = page.get_by_role("figure")
    expect(figure.locator("svg")).to_match_aria_snapshot(
        f"""
        - group /The flow map. \\d+ listeners/:
          - img /Source. local:\\/\\/{pipeline.scans}/
          - link "Listener {pipeline.ocr}, running"
          - link "Model examples/hello@1.0.0 of listener {pipeline.ocr}, resolves to 1.0.0"
        """
    )
    expect(page.get_by_role("heading", level=2, name="Pipelines")).to_be_visible()
    expect(
        page.get_by_role("heading", level=2, name="Every hop, listener by listener")
    ).to_be_visible()
    table = page.get_by_role("table", name=f"{pipeline.ocr}: running")
    expect(table.get_by_role("columnheader")).to_have_text(
        ["Hop", "From", "To", "Messages", "Rate"]
    )
    expect(table.get_by_role("rowheader")).to_have_text(
        ["receive", "invoke", "result", "dead-letter"]
    )


def test_without_javascript_and_at_phone_width(
    browser: Browser, console_server: ModelbusServer, pipeline: Pipeline
) -> None:
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)  # type: ignore[arg-type]
    try:
        page = context.new_page()
        login(page, console_server)
        page.goto(f"{console_server.url}/console/flow")
        flow_map = page.locator("[data-flow-map]")
        expect(
            flow_map.get_by_role("link", name=f"Listener {pipeline.ocr}, running")
        ).to_have_count(1)
        expect(page.locator("table.flow-hops").filter(has_text=pipeline.ocr).first).to_be_visible()
        expect(page.locator("[data-flow-at]")).to_contain_text("read ")  # no script: no polling
        # The page itself never scrolls sideways: the drawing and tables scroll in their boxes.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width
        shot(page, "flow-phone")
    finally:
        context.close()
