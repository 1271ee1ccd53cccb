"""Jobs survive a crash: the server is SIGKILLed while jobs are queued or running; the next
server on the same store runs them to completion."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.fixtures import MODELS_DIR
from tests.support.jobs import wait_job
from tests.support.server import ModelbusServer


def test_jobs_survive_a_server_crash(tmp_path: Path) -> None:
    with ModelbusServer.start(tmp_path / "data") as server:
        with server.client() as client:
            client.push(MODELS_DIR / "echo", version="1.0.0")
        with server.http() as http:
            ids = [
                http.post("/v1/models/test/echo/jobs", json={"sleep": 2, "n": n}).json()["id"]
                for n in range(3)
            ]
            _wait_until_running(http, ids[0])
        server.kill()
        assert "admin API key" in server.log()

        server.restart()
        assert "admin API key" not in server.log()  # shown on the first start only
        with server.http() as http:
            jobs = [wait_job(http, job_id, timeout_s=90) for job_id in ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * 3
    assert [job["result"]["result"]["n"] for job in jobs] == [0, 1, 2]
    assert all(job["version"] == "1.0.0" for job in jobs)


def _wait_until_running(http: object, job_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = http.get(f"/v1/jobs/{job_id}").json()["status"]  # type: ignore[attr-defined]
        if status == "running":
            return
        time.sleep(0.05)
    raise AssertionError("the job never started")
