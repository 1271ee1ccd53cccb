"""The Open Inference Protocol v2 (REST), as KServe, Triton, MLServer and Seldon speak it.

``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``; per model
``GET /v2/models/{owner}/{name}[/versions/{spec}]`` (metadata), ``.../ready`` and
``POST .../infer``. The protocol's model name is ``OWNER/NAME`` (clients put it in the path as
given) and its version any version spec (``1.2.3``, ``1.2.*``, ``latest``, a build hash).
Requests run through the model service like every other call; tensors are translated by
:mod:`modelbus.web.api.tensors`. Every route needs an API key (``Bearer KEY``) like the rest
of the API; errors are ``{"error": "<message>"}`` with the status the native API would give
(:mod:`modelbus.web.api.errors`).

Request parameters: ``binary_data_output`` (answer every output in the binary tensor data
extension) and ``timeout`` (microseconds, as Triton's clients send it) are read here; the
others are handed to the model as context attributes (strings; other JSON values as JSON
text). Sequences, priorities, shared memory and compressed request bodies are refused with
a message naming them.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.routing import Match

from modelbus import __version__
from modelbus.client.refs import ModelRef
from modelbus.errors import InvalidInput, NotFound, UnsupportedContentType
from modelbus.runtime.invocation import CallOptions, Result
from modelbus.web.api import tensors
from modelbus.web.api.auth import Caller, Key, Reader
from modelbus.web.api.context import services
from modelbus.web.api.errors import plain_error
from modelbus.web.api.payloads import read_body

router = APIRouter(tags=["open inference protocol"])

HEADER_LENGTH = "Inference-Header-Content-Length"
# The protocol extensions modelbus implements (Triton names them in server metadata).
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "modelbus"
_OWN_PARAMETERS = {"binary_data_output", "timeout"}
_MICROSECONDS = 1_000_000


class OIPError(BaseModel):
    error: str = Field(description="What went wrong, or what modelbus does not support.")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1: any size (a leading -1 is the batch dimension).")


class ModelMetadata(BaseModel):
    name: str = Field(description="OWNER/NAME")
    versions: list[str] = Field(description="The published versions (or the one resolved).")
    platform: str
    inputs: list[TensorMetadata] = Field(description="From the input JSON Schema, if any.")
    outputs: list[TensorMetadata] = Field(description="From the output JSON Schema, if any.")
    parameters: dict[str, Any] | None = Field(
        None, description="`input_schema` and `output_schema`: the JSON Schemas themselves."
    )


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


_DESCRIPTIONS = {
    400: "Malformed or unsupported request (the message names what), an input the model's "
    "schema rejects, or an error raised by the model",
    401: "No API key, or an unknown or revoked one",
    403: "The API key lacks the scope",
    404: "Unknown model or version (model names are OWNER/NAME)",
    413: "Body over the size limit",
    415: "Compressed request body (Content-Encoding)",
    500: "The version's archive is missing or corrupt in the artifact store",
    502: "The runner process crashed during the call",
    503: "The model's pool is overloaded, or the artifact store cannot be reached",
    504: "The call ran past its timeout",
}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": OIPError, "description": _DESCRIPTIONS[s]} for s in (401, 403, *statuses)}


_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string", "enum": list(tensors.DATATYPES)},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "data": {"description": "Row-major, flat or nested; BYTES elements as strings."},
        "parameters": {
            "type": "object",
            "description": "`binary_data_size` (binary tensor data extension), "
            "`content_type` (`text`, `binary`, `json`) for a one-element BYTES tensor.",
        },
    },
}
INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An inference request; with `Inference-Header-Content-Length`, that "
        "many bytes of JSON followed by the inputs' binary data.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object"},
                        "inputs": {"type": "array", "items": _TENSOR},
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "parameters": {"type": "object"},
                                },
                            },
                        },
                    },
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


# --- server ---------------------------------------------------------------------------------


@router.get("/v2", summary="Server metadata (OIP)", response_model=ServerMetadata)
async def server_metadata(key: Key) -> ServerMetadata:
    return ServerMetadata(name=PLATFORM, version=__version__, extensions=EXTENSIONS)


@router.get("/v2/health/live", summary="Server liveness (OIP)", response_model=Live)
async def server_live(key: Key) -> Live:
    return Live(live=True)


@router.get("/v2/health/ready", summary="Server readiness (OIP)", response_model=Ready)
async def server_ready(key: Key) -> Ready:
    return Ready(ready=True)


# --- models ---------------------------------------------------------------------------------


async def _metadata(request: Request, ref: ModelRef, *, pinned: bool) -> ModelMetadata:
    resolved = await services(request).models.resolve(ref)
    if pinned:
        versions = [resolved.label]
    else:
        listed = await services(request).registry.list_versions(ref.owner, ref.name)
        versions = [v.version for v in listed if v.published] or [resolved.label]
    schemas = resolved.manifest.schemas
    declared = {"input_schema": schemas.input, "output_schema": schemas.output}
    parameters = {k: v for k, v in declared.items() if v is not None}
    return ModelMetadata(
        name=f"{ref.owner}/{ref.name}",
        versions=versions,
        platform=PLATFORM,
        inputs=_described(tensors.schema_tensors(schemas.input, name="input", batch=False)),
        outputs=_described(tensors.schema_tensors(schemas.output, name="output", batch=True)),
        parameters=parameters or None,
    )


def _described(found: list[tensors.TensorInfo]) -> list[TensorMetadata]:
    return [TensorMetadata(name=t.name, datatype=t.datatype, shape=list(t.shape)) for t in found]


@router.get(
    "/v2/models/{owner}/{name}",
    summary="Model metadata of the latest published version (OIP)",
    response_model=ModelMetadata,
    response_model_exclude_none=True,
    responses=_responses(404),
)
async def model_metadata(request: Request, owner: str, name: str, key: Reader) -> ModelMetadata:
    return await _metadata(request, ModelRef(owner, name), pinned=False)


@router.get(
    "/v2/models/{owner}/{name}/versions/{spec}",
    summary="Model metadata of a version: 1.2.3, 1.2.*, latest or a build hash (OIP)",
    response_model=ModelMetadata,
    response_model_exclude_none=True,
    responses=_responses(400, 404),
)
async def version_metadata(
    request: Request, owner: str, name: str, spec: str, key: Reader
) -> ModelMetadata:
    return await _metadata(request, ModelRef(owner, name, spec), pinned=True)


async def _ready(request: Request, ref: ModelRef) -> ModelReady:
    await services(request).models.resolve(ref)
    return ModelReady(name=f"{ref.owner}/{ref.name}", ready=True)


@router.get(
    "/v2/models/{owner}/{name}/ready",
    summary="Whether the latest published version can be called (OIP)",
    response_model=ModelReady,
    responses=_responses(404),
)
async def model_ready(request: Request, owner: str, name: str, key: Reader) -> ModelReady:
    return await _ready(request, ModelRef(owner, name))


@router.get(
    "/v2/models/{owner}/{name}/versions/{spec}/ready",
    summary="Whether a version can be called (OIP)",
    response_model=ModelReady,
    responses=_responses(400, 404),
)
async def version_ready(
    request: Request, owner: str, name: str, spec: str, key: Reader
) -> ModelReady:
    return await _ready(request, ModelRef(owner, name, spec))


# --- inference ------------------------------------------------------------------------------

INFER_ERRORS = _responses(400, 404, 413, 415, 500, 502, 503, 504)


@router.post(
    "/v2/models/{owner}/{name}/infer",
    summary="Run the latest published version on input tensors (OIP)",
    response_model=InferenceResponse,
    responses=INFER_ERRORS,
    openapi_extra=INFER_BODY,
)
async def infer_latest(request: Request, owner: str, name: str, key: Caller) -> Response:
    return await _infer(request, ModelRef(owner, name))


@router.post(
    "/v2/models/{owner}/{name}/versions/{spec}/infer",
    summary="Run a version (1.2.3, 1.2.*, latest or a build hash) on input tensors (OIP)",
    response_model=InferenceResponse,
    responses=INFER_ERRORS,
    openapi_extra=INFER_BODY,
)
async def infer_version(
    request: Request, owner: str, name: str, spec: str, key: Caller
) -> Response:
    return await _infer(request, ModelRef(owner, name, spec))


async def _infer(request: Request, ref: ModelRef) -> Response:
    parsed = tensors.parse_request(await _body(request), _header_length(request))
    models = services(request).models
    resolved = await models.resolve(ref)
    payloads, batch = tensors.model_inputs(parsed.inputs, resolved.manifest.schemas.input)
    # The version resolved above runs, even if a publish moves the spec meanwhile.
    pinned = ModelRef(ref.owner, ref.name, resolved.label)
    options = _options(parsed.parameters)
    if batch:
        results = _successes(await models.invoke_batch(pinned, payloads, options))
    else:
        results = [await models.invoke(pinned, payloads[0], options)]
    outputs = tensors.output_tensors([r.output for r in results], batch=batch)
    return _answer(f"{ref.owner}/{ref.name}", results[0].version, parsed, outputs)


async def _body(request: Request) -> bytes:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise UnsupportedContentType(
            f"Content-Encoding {encoding!r} is not supported by modelbus: send the request "
            "uncompressed"
        )
    return await read_body(request, services(request).settings.max_body_bytes)


def _header_length(request: Request) -> int | None:
    value = request.headers.get(HEADER_LENGTH)
    if value is None:
        return None
    # ASCII digits only: "²" is a digit to str.isdigit, but no number to int().
    if not (value.strip().isascii() and value.strip().isdigit()):
        raise InvalidInput(f"{HEADER_LENGTH} must be a number of bytes, got {value!r}")
    return int(value)


def _options(parameters: dict[str, Any]) -> CallOptions:
    timeout = parameters.get("timeout")
    attributes = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in parameters.items()
        if key not in _OWN_PARAMETERS
    }
    return CallOptions(
        timeout_s=timeout / _MICROSECONDS if timeout is not None else None,
        attributes=attributes,
    )


def _successes(outcomes: list[Result | Exception]) -> list[Result]:
    """The results of a batch; OIP answers one status for the request, so the first
    failed row fails it."""
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome
    return [o for o in outcomes if isinstance(o, Result)]


def _answer(
    model: str, version: str, parsed: tensors.InferRequest, outputs: list[tensors.Tensor]
) -> Response:
    chosen = _chosen(outputs, parsed)
    parts = [tensors.tensor_json(tensor, binary=binary) for tensor, binary in chosen]
    head: dict[str, Any] = {"model_name": model, "model_version": version}
    if parsed.id is not None:
        head["id"] = parsed.id
    head["outputs"] = [found for found, _ in parts]
    raw = b"".join(data for _, data in parts)
    if not any(binary for _, binary in chosen):
        return JSONResponse(head)
    header = json.dumps(head, separators=(",", ":")).encode()
    return Response(
        header + raw,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


def _chosen(
    outputs: list[tensors.Tensor], parsed: tensors.InferRequest
) -> list[tuple[tensors.Tensor, bool]]:
    """The outputs to answer with, each with whether it goes as binary data."""
    default = bool(parsed.parameters.get("binary_data_output", False))
    if parsed.outputs is None:
        return [(t, default) for t in outputs]
    by_name = {t.name: t for t in outputs}
    chosen = []
    for wanted in parsed.outputs:
        if wanted.name not in by_name:
            raise InvalidInput(
                f"the model has no output {wanted.name!r}: its result gave "
                f"{', '.join(repr(n) for n in by_name)}"
            )
        binary = default if wanted.binary is None else wanted.binary
        chosen.append((by_name[wanted.name], binary))
    return chosen


# --- anything else under /v2 ----------------------------------------------------------------


@router.api_route(
    "/v2/{rest:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    include_in_schema=False,
)
async def unknown(request: Request, rest: str) -> Response:
    """No such OIP route: 405 when the path exists with another method, else a 404 that
    says what the paths look like (model names are OWNER/NAME)."""
    for route in router.routes:
        if getattr(route, "endpoint", None) is unknown:
            continue
        if route.matches(request.scope)[0] is Match.PARTIAL:
            return plain_error(405, "Method Not Allowed", "MethodNotAllowed", path="/v2")
    if rest.startswith("models/"):
        raise NotFound(
            f"no OIP route /v2/{rest}: models are /v2/models/OWNER/NAME[/versions/SPEC]"
            "[/ready|/infer]"
        )
    raise NotFound(f"no OIP route /v2/{rest}")
