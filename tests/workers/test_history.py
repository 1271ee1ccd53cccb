"""The figure history with ``serve --workers 2``: the serve process and its worker each
write what they counted, and the history routes sum them (each process is a node)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis

from tests.serve.conftest import eventually
from tests.support.server import ModelbusServer

from .conftest import add_messages, live_workers, redis_listener, this_node

Serve = Callable[..., ModelbusServer]
WINDOW = {"window_s": "600", "step_s": "5"}


def history(server: ModelbusServer, path: str) -> Any:
    with server.http() as http:
        answer = http.get(path, params=WINDOW)
    assert answer.status_code == 200, answer.text
    return answer.json()


def writers(server: ModelbusServer, kind: str, name: str) -> set[str]:
    """The nodes that wrote samples of a series."""
    path = server.data_dir / "modelbus.sqlite"
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        rows = db.execute(
            "SELECT DISTINCT node FROM figure_history WHERE kind = ? AND name = ?", (kind, name)
        ).fetchall()
    return {row[0] for row in rows}


def test_the_history_sums_every_process(
    serve: Serve, redis: Redis, streams: tuple[str, str]
) -> None:
    server = serve(2)
    stream, out = streams
    me, [worker] = this_node(server), live_workers(server)
    with server.client() as client:
        client.create_listener(redis_listener("charted", stream, out), check=False)
        eventually(lambda: len(client.listener_status("charted").nodes) == 2, 30)
    add_messages(redis, stream, [json.dumps({"n": i}).encode() for i in range(300)])

    def summed() -> Any:
        found = history(server, "/v1/listeners/charted/history")
        totals = found["totals"]
        done = totals["received"] == pytest.approx(300, abs=1e-3)
        return found if done and totals["succeeded"] == pytest.approx(300, abs=1e-3) else None

    found = eventually(summed, 90, poll_s=0.5)
    assert found["totals"]["latency_p99_s"] is not None
    # Both processes consumed, and each wrote its own share.
    assert writers(server, "listener", "charted") == {me.id, worker.id}

    def calls() -> Any:
        model = history(server, "/v1/models/test/echo/history")
        versions = model["versions"]
        done = versions and versions[0]["totals"]["calls"] == pytest.approx(300, abs=1e-3)
        return model if done else None

    [version] = eventually(calls, 60, poll_s=0.5)["versions"]
    assert version["version"] == "1.0.0" and version["totals"]["errors"] == 0
    assert writers(server, "version", "test/echo") == {me.id, worker.id}
