"""``/metrics``: Prometheus text with listener and per-version figures; key or public."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from modelbus.client import Client
from tests.support.server import ModelbusServer, running_server

from .conftest import eventually, publish, unique


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    for (found, pairs), v in samples(text).items():
        if found == name and all(dict(pairs).get(k) == w for k, w in labels.items()):
            return v
    return None


def test_metrics_need_a_key_of_any_scope(server: ModelbusServer, admin: Client) -> None:
    caller = admin.create_key("scraper", ["call:test/strict"]).key
    assert httpx.get(f"{server.url}/metrics", timeout=30).status_code == 401
    with server.http(caller) as http:
        answer = http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")


def test_listener_and_version_figures(server: ModelbusServer, admin: Client) -> None:
    name = unique("metered")
    admin.create_listener(
        {
            "name": name,
            "source": f"local://{name}-in?poll_ms=50",
            "model": "test/echo@2.0.0",
        }
    )
    publish(
        server.data_dir, f"{name}-in", ("a", b"1"), ("b", b"2"), ("c", b'{"fail_permanent": "no"}')
    )

    def settled() -> str | None:
        text = admin.metrics()
        done = value(text, "modelbus_listener_succeeded_total", listener=name)
        dead = value(text, "modelbus_listener_dead_lettered_total", listener=name)
        return text if (done, dead) == (2, 1) else None

    text = eventually(settled)
    assert value(text, "modelbus_listener_received_total", listener=name) == 3
    assert value(text, "modelbus_listener_in_flight", listener=name) == 0
    assert value(text, "modelbus_listener_latency_seconds_count", listener=name) == 3
    labels = {"model": "test/echo", "version": "2.0.0"}
    assert (value(text, "modelbus_version_invocations_total", **labels) or 0) >= 3
    assert (value(text, "modelbus_version_errors_total", **labels) or 0) >= 1
    assert (value(text, "modelbus_version_runner_calls_total", **labels) or 0) >= 1
    assert (value(text, "modelbus_version_duration_seconds_count", **labels) or 0) >= 3
    assert value(text, "modelbus_version_runners", **labels) is not None
    admin.delete_listener(name)
    assert value(admin.metrics(), "modelbus_listener_received_total", listener=name) is None


def test_metrics_public(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", args=["--metrics-public"]) as public:
        answer = httpx.get(f"{public.url}/metrics", timeout=30)
        assert answer.status_code == 200
        assert "modelbus_version_invocations" in answer.text
        # Nothing else opened up.
        assert httpx.get(f"{public.url}/v1/listeners", timeout=30).status_code == 401
