"""``GET /v1/listeners/{name}/history`` and ``GET /v1/models/{owner}/{name}/history``: real
messages through a real listener on the embedded queue show up in the last hour's figures,
per listener and per model version, and are still there after the server restarts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelbus.errors import ListenerNotFound
from tests.support.fixtures import MODELS_DIR
from tests.support.server import ModelbusServer, running_server

from .conftest import eventually, publish

NAME = "charted"
# Samples every second (the heartbeat interval), so the test waits seconds, not minutes.
FAST = {"MODELBUS_HEARTBEAT_INTERVAL_S": "1"}
WINDOW = {"window_s": "600", "step_s": "5"}


def history(server: ModelbusServer, path: str, key: str | None = None) -> Any:
    with server.http(key) as http:
        answer = http.get(path, params=WINDOW)
    assert answer.status_code == 200, answer.text
    return answer.json()


def counted(totals: dict[str, Any], **expected: int) -> bool:
    """The counts of an interval are spread over the steps it covers: a step shows all of
    them once the samples after it are written."""
    return all(totals[k] == pytest.approx(v, abs=1e-3) for k, v in expected.items())


def listener_counted(server: ModelbusServer, **expected: int) -> Any:
    found = history(server, f"/v1/listeners/{NAME}/history")
    return found if counted(found["totals"], **expected) else None


def test_traffic_through_a_listener_shows_in_its_history(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", env=FAST) as server:
        with server.client() as mb:
            mb.push(MODELS_DIR / "echo", version="1.0.0")
            mb.create_listener(
                {
                    "name": NAME,
                    "source": f"local://{NAME}-in?poll_ms=50",
                    "model": "test/echo",
                    "outputs": [f"local://{NAME}-out"],
                }
            )
        good = [(f"ok-{i}", json.dumps({"n": i}).encode()) for i in range(6)]
        bad = [(f"bad-{i}", json.dumps({"fail_permanent": "no"}).encode()) for i in range(2)]
        publish(server.data_dir, f"{NAME}-in", *good, *bad)

        found = eventually(
            lambda: listener_counted(server, received=8, succeeded=6, dead_lettered=2),
            timeout_s=60,
        )
        totals = found["totals"]
        assert totals["retried"] == 0
        assert 0 < totals["latency_p50_s"] <= totals["latency_p99_s"] < 60
        assert found["step_s"] == 5 and len(found["times"]) == 120
        assert found["times"][-1] == found["end"] and found["end"] % 5 == 0
        for series in ("received_per_s", "in_flight", "backlog", "latency_p99_s"):
            assert len(found[series]) == 120, series
        # The rates add up to the counts: per second times the step.
        assert sum(found["received_per_s"]) * 5 == pytest.approx(8, abs=1e-3)
        assert any(p is not None for p in found["latency_p50_s"])
        assert found["backlog"][-1] == 0  # read from the queue: nothing waits

        model = eventually(
            lambda: (
                (m := history(server, "/v1/models/test/echo/history"))["versions"]
                and counted(m["versions"][0]["totals"], calls=8, errors=2)
                and m
            )
        )
        [version] = model["versions"]
        assert version["version"] == "1.0.0"
        assert version["totals"]["duration_mean_s"] > 0
        assert sum(version["calls_per_s"]) * 5 == pytest.approx(8, abs=1e-3)

        # The Python SDK reads the same figures, and the flow map's hops count the messages.
        with server.client() as mb:
            mine = mb.listener_history(NAME, window_s=600, step_s=5)
            assert mine.step_s == 5 and mine.totals == totals
            versions = mb.model_history("test", "echo", window_s=600, step_s=5).versions
            assert [(v.version, v.totals["calls"]) for v in versions] == [("1.0.0", 8)]
            graph = mb.flow()
            edges = {e.kind: e.messages for e in graph.edges if e.listener == NAME}
            assert edges == {"receive": 8, "invoke": 8, "result": 6}
            assert any(n.id == f"listener:{NAME}" and n.state == "running" for n in graph.nodes)
            with pytest.raises(ListenerNotFound):
                mb.listener_history("no-such-listener")

        # The history is in the store: a server started again still shows the last hour.
        server.restart()
        again = history(server, f"/v1/listeners/{NAME}/history")
        assert counted(again["totals"], received=8, succeeded=6, dead_lettered=2)


def test_history_routes_refuse_what_they_cannot_show(server: ModelbusServer) -> None:
    with server.http() as http:
        assert http.get("/v1/listeners/no-such-listener/history").status_code == 404
        assert http.get("/v1/models/nobody/nothing/history").status_code == 404
        too_long = http.get("/v1/models/test/echo/history", params={"window_s": 10, "step_s": 60})
        assert too_long.status_code == 400
        assert "step" in too_long.json()["error"]["message"]
        assert http.get("/v1/listeners/x/history", params={"window_s": 7200}).status_code == 422
        document = http.get("/openapi.json").json()
    for path in ("/v1/listeners/{name}/history", "/v1/models/{owner}/{name}/history"):
        assert document["paths"][path]["get"]["summary"], path
    with server.client() as mb:
        other = mb.create_key("history-outsider", ["call:test/strict"]).key
    with server.http(other) as http:
        assert http.get("/v1/models/test/echo/history").status_code == 403
