"""Polling a job over bare HTTP until it finishes."""

from __future__ import annotations

import time
from typing import Any

import httpx


def wait_job(http: httpx.Client, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
    """The job once succeeded or failed; AssertionError if still unfinished at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish within {timeout_s}s")
