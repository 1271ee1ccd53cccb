"""Graceful stop of ``modelbus serve`` (SIGTERM): HTTP first, then the listeners drain:
in-flight messages finish before the deadline, or are handed back to their broker."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.fixtures import MODELS_DIR
from tests.support.server import ModelbusServer, running_server

from .conftest import eventually, publish, receive_all


def start_slow_listener(server: ModelbusServer) -> None:
    with server.client() as mb:
        mb.push(MODELS_DIR / "echo", version="1.0.0")
        mb.create_listener(
            {
                "name": "slow",
                "source": "local://slow-in?poll_ms=50",
                "model": "test/echo",
                "outputs": ["local://slow-out"],
            }
        )
    publish(server.data_dir, "slow-in", ("job-1", json.dumps({"sleep": 4}).encode()))
    with server.client() as mb:
        eventually(lambda: mb.listener_status("slow").counters["in_flight"] == 1)


def test_sigterm_lets_in_flight_messages_finish(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as server:
        start_slow_listener(server)
        server.stop(timeout_s=60)  # SIGTERM, and wait for the process to end
        assert "Application shutdown complete" in server.log()  # not killed
        log = server.log()
        assert log.index("stopping listeners") < log.index("listener slow stopped")

        [result] = receive_all(server.data_dir, "slow-out")  # published before the stop ended
        assert result.attributes["sourcemessageid"] == "job-1"
        server.restart()
        with server.client() as mb:
            [run] = mb.runs("job-1")
        assert (run.status, run.attempts) == ("succeeded", 1)  # acked: not run again
        assert receive_all(server.data_dir, "slow-in") == []


def test_what_outlives_the_deadline_is_released_and_runs_after_restart(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", args=["--stop-deadline", "0.5"]) as server:
        start_slow_listener(server)
        server.stop(timeout_s=60)
        assert "Application shutdown complete" in server.log()  # not killed
        assert receive_all(server.data_dir, "slow-out") == []  # it did not finish

        server.restart()  # released at once, not left to its lease: picked up again now
        with server.client() as mb:
            run = eventually(
                lambda: (r := mb.runs("job-1")[0]).status == "succeeded" and r, timeout_s=60
            )
        assert run.attempts == 2
        [result] = receive_all(server.data_dir, "slow-out")
        assert json.loads(result.body)["data"] == {"sleep": 4}
