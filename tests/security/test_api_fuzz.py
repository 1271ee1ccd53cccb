"""The HTTP API fuzzed from its own OpenAPI document (schemathesis) against a real
``modelbus serve`` with an admin key: no 5xx, no hang, every error answered as JSON (in the
Open Inference Protocol's ``{"error": "<message>"}`` under ``/v2``).

Every operation of ``/openapi.json`` gets positive cases (valid by the schema) and negative
ones (broken on purpose: wrong types, missing parameters, no ``Authorization`` header...).
The number of examples per operation is bounded (:data:`EXAMPLES`) to keep this test within
its CI budget; ``MODELBUS_FUZZ_EXAMPLES`` raises it for a longer local run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.support.fixtures import MODELS_DIR
from tests.support.server import ModelbusServer

EXAMPLES = int(os.environ.get("MODELBUS_FUZZ_EXAMPLES", "8"))
# A request that takes longer than this is a hang (the test models answer in milliseconds).
REQUEST_TIMEOUT_S = 20.0

# Pushing a model takes a gzip archive; random bytes are what a fuzzer should send there.
schemathesis.serializer.alias("application/gzip", "application/octet-stream")


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelbusServer]:
    """A server of its own (the fuzzer creates keys and listeners at random), with a model."""
    with ModelbusServer.start(tmp_path_factory.mktemp("fuzz") / "data") as server:
        with server.client() as client:
            client.push(MODELS_DIR / "echo", version="1.0.0")
        yield server


def _problem(response: Any) -> str | None:
    """What is wrong with an answer, or None."""
    status = response.status_code
    if status >= 500:
        return f"server error {status}: {response.text[:300]}"
    if status < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    if "json" not in content_type:
        return f"error {status} answered as {content_type!r}, not JSON"
    body = response.json()
    if _is_oip(response):  # the Open Inference Protocol's own shape: {"error": "<message>"}
        if not (isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]):
            return f"OIP error {status} without an error message: {response.text[:300]}"
        return None
    if not (isinstance(body, dict) and isinstance(body.get("error"), dict)):
        return f"error {status} without an error object: {response.text[:300]}"
    if not body["error"].get("message"):
        return f"error {status} without a message: {response.text[:300]}"
    return None


def _is_oip(response: Any) -> bool:
    path = urlsplit(response.request.url).path
    return path == "/v2" or path.startswith("/v2/")


def _fuzz(operation: Any, mode: GenerationMode, server: ModelbusServer) -> list[str]:
    problems: list[str] = []
    headers = {"Authorization": f"Bearer {server.admin_key}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,  # the per-request timeout is the hang detector
        database=None,
        derandomize=True,  # the same cases on every run: CI failures reproduce
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def one(case: Any) -> None:
        try:
            response = case.call(base_url=server.url, headers=headers, timeout=REQUEST_TIMEOUT_S)
        except requests.Timeout:
            problems.append(f"no answer within {REQUEST_TIMEOUT_S} s: {case.as_curl_command()}")
            return
        problem = _problem(response)
        if problem:
            problems.append(f"{problem}\n    {case.as_curl_command()}")

    # Nothing to break in an operation without parameters (GET /health, negative mode).
    with contextlib.suppress(Unsatisfiable):
        one()
    return problems


def test_every_operation_survives_fuzzing(fuzzed: ModelbusServer) -> None:
    schema = schemathesis.openapi.from_url(
        f"{fuzzed.url}/openapi.json", headers={"Authorization": f"Bearer {fuzzed.admin_key}"}
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30  # the whole API, not a stub
    problems = [
        f"{operation.label} ({mode.value}): {problem}"
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for problem in _fuzz(operation, mode, fuzzed)
    ]
    assert not problems, "\n".join(problems[:20])
    # The server logged no unexpected exception either (a 5xx hidden behind a retry).
    assert "unexpected error" not in fuzzed.log(), fuzzed.log()[-4000:]
