"""A listener's backlog (messages waiting at its source, read from the broker) in the status
API, ``/metrics`` and ``modelbus listeners status``; and its totals, which survive a restart
of the server while the counters since the process started do not."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from modelbus.client import Client
from tests.support.fixtures import MODELS_DIR
from tests.support.server import ModelbusServer, running_server

from .conftest import eventually, publish
from .test_cli import as_json, ok
from .test_metrics import value

NAME = "waiting"


def start_listener(server: ModelbusServer) -> None:
    with server.client() as mb:
        mb.push(MODELS_DIR / "echo", version="1.0.0")
        mb.create_listener(
            {
                "name": NAME,
                "source": f"local://{NAME}-in?poll_ms=50",
                "model": "test/echo",
                "outputs": [f"local://{NAME}-out"],
                "max_in_flight": 1,  # the slow message holds the only slot: the rest wait
            }
        )


def backlog_of(mb: Client, wanted: int) -> object:
    status = mb.listener_status(NAME)
    return status if status.backlog == wanted else None


def test_backlog_is_shown_everywhere_and_totals_survive_a_restart(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as server:
        start_listener(server)
        publish(server.data_dir, f"{NAME}-in", ("slow", json.dumps({"sleep": 15}).encode()))
        with server.client() as mb:
            eventually(lambda: mb.listener_status(NAME).counters["in_flight"] == 1)
            publish(server.data_dir, f"{NAME}-in", *[(f"m-{i}", b'{"n": 1}') for i in range(4)])

            # The slow one is leased (not waiting); the four others wait at the source.
            status = eventually(lambda: backlog_of(mb, 4))
            assert status.backlog_at is not None
            assert time.time() - 30 < status.backlog_at <= time.time() + 1
            [node] = status.nodes
            assert node.backlog == 4
            text = eventually(
                lambda: (
                    (t := mb.metrics())
                    and value(t, "modelbus_listener_backlog", listener=NAME) == 4
                    and t
                )
            )
            assert value(text, "modelbus_listener_backlog", listener=NAME) == 4
            shown = as_json(server, "listeners", "status", NAME)["status"]
            assert shown["backlog"] == 4
            table = ok(server, "listeners", "status", NAME)
            assert re.search(r"backlog\s+│?\s*4 \(read \d+ s ago\)", table), table

            # Everything runs: nothing waits any more, and the totals count the five.
            eventually(lambda: mb.listener_status(NAME).totals.get("succeeded") == 5, 60)
            eventually(lambda: backlog_of(mb, 0))
            before = mb.listener_status(NAME)
            assert before.counters["succeeded"] == 5

        server.restart()
        with server.client() as mb:
            after = mb.listener_status(NAME)
            assert after.counters["succeeded"] == 0  # since this process started
            assert after.totals["succeeded"] == 5  # from the run store: kept
            assert after.totals["dead_lettered"] == 0
            text = mb.metrics()
            assert value(text, "modelbus_listener_succeeded_total", listener=NAME) == 0
            table = ok(server, "listeners", "status", NAME)
            assert re.search(r"total succeeded\s+│?\s*5\b", table), table
