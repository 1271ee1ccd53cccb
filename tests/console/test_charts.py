"""The last hour's charts on the listener and model pages (uPlot, served by the console), in
headless Chromium against a real server: real messages through a real listener on the
embedded queue, and real calls, show up in the charts, their legends and the summary."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.console.conftest import SCREENSHOTS, login, publish
from tests.console.test_accessibility import assert_page_is_labelled
from tests.support.server import ModelbusServer

pytestmark = pytest.mark.timeout(1200)

POISON = b"\xff\xfe not UTF-8: the hello model refuses it"
VALUE = re.compile(r"^\d+(\.\d+)?( ms| s|/s)?$")


def section_shot(section: Locator, name: str) -> None:
    """Save a screenshot of one section as ``NAME.png`` next to the page screenshots."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    section.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def history_totals(server: ModelbusServer, path: str) -> Any:
    with server.http() as api:
        answer = api.get(path, params={"window_s": 3600, "step_s": 10})  # as the console asks
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_for(check: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "the history did not show the traffic in time"
        time.sleep(0.5)


def legend_value(chart: Locator, label: str) -> Locator:
    row = chart.locator(".u-legend tr.u-series").filter(
        has=chart.page.get_by_text(label, exact=True)
    )
    return row.locator(".u-value")


def send_traffic(server: ModelbusServer, name: str, inbox: str) -> None:
    """Waves of messages a few seconds apart (the charts have a shape), one poisoned, and
    calls over HTTP to two versions of the model."""
    with server.http() as api:
        created = api.post(
            "/v1/listeners",
            json={"name": name, "source": f"local://{inbox}", "model": "examples/hello@1.0.0"},
        )
        assert created.status_code == 201, created.text
        for wave in (1, 2, 3):
            publish(server, inbox, [(f"w{wave}-{i}-{name}", b'"Bo"') for i in range(wave * 4)])
            publish(server, inbox, [(f"poison-{wave}-{name}", POISON)]) if wave == 2 else None
            for version in ("1.0.0", "1.1.0"):
                for _ in range(wave):
                    called = api.post(
                        f"/v1/models/examples/hello/versions/{version}/invoke",
                        json={"name": "Ada"},
                    )
                    assert called.status_code == 200, called.text
            time.sleep(6)


def test_listener_and_model_pages_chart_the_last_hour(
    page: Page, console_server: ModelbusServer
) -> None:
    name, inbox = f"charted-{uuid.uuid4().hex[:8]}", f"in-{uuid.uuid4().hex[:8]}"
    send_traffic(console_server, name, inbox)
    path = f"/v1/listeners/{name}/history"
    wait_for(
        lambda: (
            (t := history_totals(console_server, path)["totals"])["received"] > 24.99
            and t["succeeded"] > 23.99
            and t["dead_lettered"] > 0.99
        )
    )

    # Opened after the traffic: the server kept the history, the charts show it.
    login(page, console_server)
    page.goto(f"{console_server.url}/console/listeners/{name}")
    section = page.locator("[data-history]")
    for chart in ("rates", "load", "latency"):
        expect(
            section.locator(f'[data-chart="{chart}"][data-rendered="true"] canvas')
        ).to_have_count(1)
    summary = section.locator("[data-history-summary]")
    expect(summary).to_contain_text(
        "25 received, 24 succeeded, 0 retried, 1 dead-lettered", timeout=30_000
    )
    expect(summary).to_contain_text(re.compile(r"latency p50 \d+(\.\d+)? (ms|s), p99"))
    rates = section.locator('[data-chart="rates"]')
    for label in ("Received", "Succeeded", "Retried", "Dead-lettered"):
        expect(legend_value(rates, label)).to_have_text(VALUE)
    latency = section.locator('[data-chart="latency"]')
    # Away from the chart, a legend shows the latest value: the last step with a message.
    expect(legend_value(latency, "p50")).to_have_text(re.compile(r"^\d+(\.\d+)? (ms|s)$"))
    expect(legend_value(section.locator('[data-chart="load"]'), "In flight")).to_have_text("0")

    # Pointing at the steps of the traffic shows their rates in the legend.
    over = rates.locator(".u-over")
    box = over.bounding_box()
    assert box is not None
    seen = set()
    for dx in range(1, 90):
        over.hover(position={"x": box["width"] - dx, "y": box["height"] / 2})
        seen.add(legend_value(rates, "Received").inner_text())
    assert any(v not in ("0.0/s", "—") for v in seen), seen
    page.mouse.move(0, 0)

    assert_page_is_labelled(page)
    expect(section).to_match_aria_snapshot(
        """
        - heading "Last hour" [level=2]
        - group "Show the last":
          - radio "5 minutes"
          - radio "15 minutes"
          - radio "hour" [checked]
        - figure "Messages per second":
          - img /Messages received, succeeded, retried and dead-lettered per second, last hour/
          - table "Messages per second, values now or under the pointer"
        - figure "In flight and backlog":
          - img "Messages in flight and waiting at the source, last hour"
          - table "In flight and backlog, values now or under the pointer"
        - figure "End-to-end latency":
          - img "Median and 99th percentile end-to-end latency, last hour"
          - table "End-to-end latency, values now or under the pointer"
        """
    )

    # A shorter window: asked of the server at once, drawn in finer steps.
    with page.expect_response(lambda r: "window_s=300" in r.url) as answered:
        section.get_by_label("5 minutes", exact=True).check()
    assert answered.value.json()["step_s"] == 5
    expect(summary).to_contain_text("In the last 5 minutes, over every node: 25 received")
    expect(section.get_by_role("img", name=re.compile("last 5 minutes$"))).to_have_count(3)
    section_shot(section, "listener-charts")

    # The model: calls over HTTP and from the listener, per version.
    wait_for(
        lambda: (
            len(history_totals(console_server, "/v1/models/examples/hello/history")["versions"])
            == 2
        )
    )
    page.goto(f"{console_server.url}/console/models/examples/hello")
    section = page.locator("[data-history]")
    section.get_by_label("5 minutes", exact=True).check()
    for chart in ("calls", "duration"):
        expect(
            section.locator(f'[data-chart="{chart}"][data-rendered="true"] canvas')
        ).to_have_count(1)
    calls = section.locator('[data-chart="calls"]')
    for label in ("1.1.0 calls", "1.1.0 errors", "1.0.0 calls", "1.0.0 errors"):
        expect(legend_value(calls, label)).to_have_text(VALUE)
    duration = section.locator('[data-chart="duration"]')
    expect(legend_value(duration, "1.0.0")).to_have_text(re.compile(r"^\d+(\.\d+)? (ms|s)$"))
    expect(section.locator("[data-history-summary]")).to_contain_text(
        re.compile(
            r"1\.1\.0: \d+ calls, 0 errors, mean duration .*; 1\.0\.0: \d+ calls, [1-9]\d* errors?"
        )
    )
    assert_page_is_labelled(page)
    expect(section).to_match_aria_snapshot(
        """
        - heading "Last hour" [level=2]
        - group "Show the last":
          - radio "5 minutes" [checked]
          - radio "15 minutes"
          - radio "hour"
        - figure "Calls and errors per second":
          - img "Inputs run and errors per second, per version, last 5 minutes"
          - table "Calls and errors per second, values now or under the pointer"
        - figure "Mean duration per input":
          - img "Mean runner time per input, per version, last 5 minutes"
          - table "Mean duration per input, values now or under the pointer"
        """
    )
    section_shot(section, "model-charts")

    # On a phone the charts shrink to the screen's width (nothing sticks out sideways).
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function(
        """() => [...document.querySelectorAll('.chart .uplot, .chart canvas')].every(
               (el) => el.getBoundingClientRect().right <= document.documentElement.clientWidth)
             && document.documentElement.scrollWidth <= document.documentElement.clientWidth"""
    )


def test_the_vendored_chart_library_is_served_by_the_console(
    console_server: ModelbusServer,
) -> None:
    import httpx

    for name, kind in (
        ("vendor/uPlot.iife.min.js", "text/javascript"),
        ("vendor/uPlot.min.css", "text/css"),
    ):
        answer = httpx.get(f"{console_server.url}/console/static/{name}", timeout=30)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith(kind)
    assert httpx.get(f"{console_server.url}/console/static/vendor/VERSION").status_code == 404
    escape = f"{console_server.url}/console/static/vendor%2F..%2F..%2Fhistory.py"
    assert httpx.get(escape).status_code == 404
