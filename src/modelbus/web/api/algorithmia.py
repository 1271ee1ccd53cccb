"""The Algorithmia-compatible surface, so existing Algorithmia clients keep working.

``POST /v1/algo/{owner}/{name}[/{version}]`` follows Algorithmia's API specification:

* the body's ``Content-Type`` gives the input kind (JSON, text, binary);
* ``timeout`` (seconds), ``stdout`` (bool) and ``output=raw|void`` query options;
* the default answer is ``{"result", "metadata": {"content_type", "duration"}}`` (binary
  results in base64), plus ``async: false`` and a ``request_id``, which
  ``algorithmia-api-client`` 1.5.x requires. As Algorithmia documents it, a well-formed
  call answers ``200 OK`` with either ``result`` or ``error``: an error raised while
  running the model comes back as
  ``{"error": {"message", "stacktrace", "error_type"}, "metadata": {"duration"}}`` with
  status 200, which is what the official clients turn into their ``AlgorithmException``;
* ``output=raw`` answers with the bare result, and an error with its HTTP status (400 for a
  model error, 504 for a timeout...);
* ``output=void`` queues the call and answers at once with ``{"async", "request_id"}``; the
  request id is a job id, which ``GET /v1/jobs/{id}`` shows.

Requests that are not well-formed (no or wrong key, unknown algorithm or version, bad body)
answer with their error status, as on Algorithmia. Version segments are ``1.2.3``,
``1.2.*``, ``1.*``, ``latest``, a build hash, or Algorithmia's short ``1.2`` / ``1``.

Algorithm management (``/v1/algorithms/...``) is in :mod:`modelbus.web.api.algorithms`.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from modelbus.client.refs import ModelRef
from modelbus.errors import InvocationError
from modelbus.registry.versioning import MIN_HASH_PREFIX
from modelbus.runtime.invocation import CallOptions, Result
from modelbus.web.api.auth import Caller
from modelbus.web.api.context import services
from modelbus.web.api.errors import error_detail, responses
from modelbus.web.api.payloads import (
    INPUT_BODY,
    raw_media_type,
    read_payload,
    result_envelope,
)

router = APIRouter(tags=["algorithmia"])

# "1" or "1.2"; a bare number as long as a hash prefix is taken as one.
_SHORT_VERSION = re.compile(rf"^(\d{{1,{MIN_HASH_PREFIX - 1}}}|\d+\.\d+)$")
ASYNC_PROTOCOL = "void"

Timeout = Annotated[
    float | None, Query(alias="timeout", gt=0, description="Seconds before the call is abandoned.")
]
Stdout = Annotated[bool, Query(description="Include the model's stdout in metadata.stdout.")]
Output = Annotated[
    Literal["default", "raw", "void"] | None,
    Query(description="`raw`: the bare result; `void`: run asynchronously, answer at once."),
]


def algorithmia_spec(version: str) -> str:
    """Algorithmia's short forms ``1.2`` and ``1`` mean ``1.2.*`` and ``1.*``."""
    if _SHORT_VERSION.match(version):
        return version + ".*"
    return version


def error_envelope(exc: InvocationError, duration_s: float) -> dict[str, Any]:
    """Algorithmia's error envelope (``stack_trace`` too: the Python client reads that key)."""
    detail = error_detail(exc)
    detail["stack_trace"] = detail.get("stacktrace", "")
    return {"error": detail, "metadata": {"duration": duration_s}}


async def _call(
    request: Request,
    ref: ModelRef,
    timeout_s: float | None,
    stdout: bool,
    output: str | None,
    key_id: str,
) -> Response:
    payload = await read_payload(request)
    options = CallOptions(timeout_s=timeout_s, capture_stdout=stdout)
    models = services(request).models
    if output == "void":
        job = await models.submit(ref, payload, options, key_id=key_id)
        return JSONResponse({"async": ASYNC_PROTOCOL, "request_id": job.id})
    if output == "raw":
        return _raw(await models.invoke(ref, payload, options))
    started = time.perf_counter()
    try:
        result = await models.invoke(ref, payload, options)
    except InvocationError as exc:
        return JSONResponse(
            error_envelope(exc, time.perf_counter() - started) | sync_answer_fields()
        )
    return JSONResponse(result_envelope(result, stdout=stdout) | sync_answer_fields())


def sync_answer_fields() -> dict[str, Any]:
    """``async`` and ``request_id``, which ``algorithmia-api-client`` 1.5.x requires in every
    call answer (it refuses one where they are missing): ``false`` and an id for this call."""
    return {"async": False, "request_id": str(uuid.uuid4())}


def _raw(result: Result) -> Response:
    return Response(result.output.data, media_type=raw_media_type(result.output))


CALL_ERRORS = responses(400, 404, 413, 415, 500, 502, 503, 504)
CALL_ANSWER = "`{result, metadata}`, or `{error, metadata}` for a model error"


@router.post(
    "/v1/algo/{owner}/{name}",
    summary="Call the latest published version (Algorithmia API)",
    response_description=CALL_ANSWER,
    responses=CALL_ERRORS,
    openapi_extra=INPUT_BODY,
)
async def algo_latest(
    request: Request,
    owner: str,
    name: str,
    key: Caller,
    timeout_s: Timeout = None,
    stdout: Stdout = False,
    output: Output = None,
) -> Response:
    return await _call(request, ModelRef(owner, name), timeout_s, stdout, output, key.id)


@router.post(
    "/v1/algo/{owner}/{name}/{version}",
    summary="Call a version: 1.2.3, 1.2.*, 1.*, latest or a build hash (Algorithmia API)",
    response_description=CALL_ANSWER,
    responses=CALL_ERRORS,
    openapi_extra=INPUT_BODY,
)
async def algo_version(
    request: Request,
    owner: str,
    name: str,
    version: str,
    key: Caller,
    timeout_s: Timeout = None,
    stdout: Stdout = False,
    output: Output = None,
) -> Response:
    ref = ModelRef(owner, name, algorithmia_spec(version))
    return await _call(request, ref, timeout_s, stdout, output, key.id)
