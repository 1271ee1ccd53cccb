"""Model routes: list and inspect models, versions and builds; push and publish versions.

``POST /v1/models/{owner}/{name}/versions`` takes a model archive (``.tar.gz`` or ``.tar`` of
the folder holding ``modelbus.toml``) and builds it. With ``Accept: application/x-ndjson``
the answer is a stream of JSON lines while the build runs: ``{"event": "log", "line"}`` for
each build output line, then one ``{"event": "result", "result"}`` or
``{"event": "error", "error"}``. Otherwise the answer comes when the build is over: the
pushed version (201 when something new was recorded, 200 for a repeated push), or the error
with its status (422 with the log for a failed build). Logs stay with the build
(``GET /v1/builds/{hash}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from modelbus.client.schemas import (
    BuildInfo,
    ModelInfo,
    PublishRequest,
    PushInfo,
    VersionInfo,
)
from modelbus.errors import Forbidden, ModelbusError
from modelbus.registry import catalog as reg
from modelbus.web.api.auth import Key, Manager, Reader, can_read_model
from modelbus.web.api.context import services
from modelbus.web.api.errors import error_detail, responses
from modelbus.web.api.limits import allow_body
from modelbus.web.api.payloads import read_body

router = APIRouter(tags=["models"])

# Model archives may carry weights: their limit is separate from the invocation body limit.
MAX_ARCHIVE_BYTES = 1024**3
NDJSON = "application/x-ndjson"


def model_out(m: reg.ModelInfo) -> ModelInfo:
    return ModelInfo(
        owner=m.owner,
        name=m.name,
        description=m.description,
        created_at=m.created_at,
        latest_version=m.latest_version,
    )


def version_out(v: reg.VersionInfo) -> VersionInfo:
    return VersionInfo(
        owner=v.owner,
        name=v.name,
        version=v.version,
        build=v.build_hash,
        published=v.published,
        created_at=v.created_at,
    )


def build_out(b: reg.BuildInfo) -> BuildInfo:
    return BuildInfo(
        hash=b.hash,
        owner=b.owner,
        name=b.name,
        status=b.status,
        env_hash=b.env_hash,
        created_at=b.created_at,
        finished_at=b.finished_at,
        versions=list(b.versions),
        manifest=b.manifest.to_json(),
        log=b.log,
        node_logs=b.node_logs,
    )


def push_out(p: reg.PushResult) -> PushInfo:
    return PushInfo(
        owner=p.owner,
        name=p.name,
        version=p.version,
        build=p.build_hash,
        published=p.published,
        created=p.created,
        built=p.built,
        env_reused=p.env_reused,
    )


@router.get(
    "/v1/models", summary="List the models this key may see", response_model=list[ModelInfo]
)
async def list_models(request: Request, key: Key) -> list[ModelInfo]:
    found = await services(request).registry.list_models()
    return [model_out(m) for m in found if can_read_model(key, m.owner, m.name)]


@router.get(
    "/v1/models/{owner}/{name}",
    summary="Get one model",
    response_model=ModelInfo,
    responses=responses(404),
)
async def get_model(request: Request, owner: str, name: str, key: Reader) -> ModelInfo:
    return model_out(await services(request).registry.get_model(owner, name))


@router.get(
    "/v1/models/{owner}/{name}/versions",
    summary="List a model's versions, highest first",
    response_model=list[VersionInfo],
    responses=responses(404),
)
async def list_versions(request: Request, owner: str, name: str, key: Reader) -> list[VersionInfo]:
    return [version_out(v) for v in await services(request).registry.list_versions(owner, name)]


@router.get(
    "/v1/models/{owner}/{name}/builds",
    summary="List a model's builds, newest first (without logs)",
    response_model=list[BuildInfo],
    responses=responses(404),
)
async def list_builds(request: Request, owner: str, name: str, key: Reader) -> list[BuildInfo]:
    return [build_out(b) for b in await services(request).registry.list_builds(owner, name)]


@router.get(
    "/v1/builds/{build}",
    summary="Get one build with its log, by hash or unique hash prefix",
    response_model=BuildInfo,
    responses=responses(400, 404),
)
async def get_build(request: Request, build: str, key: Key) -> BuildInfo:
    found = await services(request).registry.get_build(build)
    if not can_read_model(key, found.owner, found.name):
        raise Forbidden(
            f"this API key may neither manage models nor call {found.owner}/{found.name}"
        )
    return build_out(found)


@router.post(
    "/v1/models/{owner}/{name}/publish",
    summary="Publish a version (of a build pushed earlier)",
    response_model=VersionInfo,
    responses=responses(400, 404, 409),
)
async def publish(
    request: Request, owner: str, name: str, body: PublishRequest, key: Manager
) -> VersionInfo:
    published = await services(request).registry.publish(
        owner, name, build=body.build, version=body.version, bump=body.bump
    )
    return version_out(published)


Bump = Literal["major", "minor", "patch"]


@router.post(
    "/v1/models/{owner}/{name}/versions",
    summary="Push a model archive: build it and record a version",
    status_code=201,
    response_model=PushInfo,
    responses={
        **responses(400, 409, 413, 422, 503),
        200: {"description": "The same push was made before; nothing changed"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A .tar.gz (or .tar) of the model folder.",
            "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
@allow_body(MAX_ARCHIVE_BYTES)
async def push(
    request: Request,
    owner: str,
    name: str,
    key: Manager,
    version: Annotated[str | None, Query(description="Version number X.Y.Z to record.")] = None,
    bump: Annotated[Bump | None, Query(description="Record the next major/minor/patch.")] = None,
    publish: Annotated[bool, Query(description="Serve it by version spec at once.")] = True,
) -> Response:
    # Nothing here opens the archive: it is checked (names, sizes, entries) while it is
    # unpacked, in a thread, with its limits applied as it streams (see safe_extract).
    archive = await read_body(request, MAX_ARCHIVE_BYTES)
    registry = services(request).registry
    options: dict[str, Any] = {
        "version": version,
        "bump": bump,
        "publish": publish,
        "expect_model": (owner, name),
    }
    if NDJSON in request.headers.get("accept", ""):
        return StreamingResponse(push_events(registry, archive, options), media_type=NDJSON)
    pushed = await registry.push(archive, **options)
    return JSONResponse(push_out(pushed).model_dump(), status_code=201 if pushed.created else 200)


async def push_events(
    registry: reg.Registry, archive: bytes, options: dict[str, Any]
) -> AsyncIterator[bytes]:
    """The NDJSON progress stream of one push (see the module docstring)."""
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    task = asyncio.create_task(registry.push(archive, progress=lines.put_nowait, **options))
    task.add_done_callback(lambda _: lines.put_nowait(None))
    try:
        while (line := await lines.get()) is not None:
            yield _ndjson({"event": "log", "line": line})
        yield _ndjson({"event": "result", "result": push_out(task.result()).model_dump()})
    except ModelbusError as exc:
        yield _ndjson({"event": "error", "error": error_detail(exc)})
    finally:
        # A client that goes away does not stop the build: it completes and is recorded
        # (its outcome, good or bad, is in the store and the build log).
        if not task.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(task)


def _ndjson(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode() + b"\n"
