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

The read routes ``GET /v1/algorithms/{owner}/{name}[/versions[/{version}]]`` and
``.../builds[/{id}[/logs]]`` answer in Algorithmia's shapes.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from modelbus.client.refs import ModelRef
from modelbus.errors import BuildNotFound, InvocationError, ModelNotFound, VersionNotFound
from modelbus.registry import catalog as reg
from modelbus.registry.versioning import MIN_HASH_PREFIX
from modelbus.runtime.invocation import CallOptions, Result
from modelbus.web.api.auth import Caller, Reader
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


# --- read routes in Algorithmia's shapes ----------------------------------------------------


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


_BUILD_STATUS = {"ready": "succeeded", "failed": "failed", "building": "in-progress"}


def build_object(build: reg.BuildInfo, version: str | None) -> dict[str, Any]:
    """An Algorithmia algorithm-build object for one build."""
    return {
        "build_id": build.hash,
        "commit_sha": build.hash,
        "resource_type": "algorithm_build",
        "status": _BUILD_STATUS[build.status],
        "started_at": _iso(build.created_at),
        "finished_at": _iso(build.finished_at),
        # algorithmia-api-client refuses a build version_info without a semantic_version
        "version_info": {"semantic_version": version} if version else None,
    }


def algorithm_object(
    model: reg.ModelInfo,
    build: reg.BuildInfo | None,
    version: reg.VersionInfo | None,
    base_url: str,
) -> dict[str, Any]:
    """An Algorithmia algorithm (or algorithm version) object."""
    runtime = build.manifest.runtime.kind if build else "python"
    found: dict[str, Any] = {
        "id": _algorithm_id(model.owner, model.name),
        "name": model.name,
        "resource_type": "algorithm",
        "details": {
            "label": model.name,
            "summary": model.description,
            "tagline": model.description,
        },
        "settings": {
            "algorithm_callability": "public" if version and version.published else "private",
            "source_visibility": "closed",
            "language": runtime,
            "environment": "cpu",
            "network_access": "full",
            "pipeline_enabled": True,
        },
        "self_link": f"{base_url}v1/algorithms/{model.owner}/{model.name}",
    }
    if build is not None:
        found["version_info"] = {
            "semantic_version": version.version if version else None,
            "git_hash": build.hash,
            "release_notes": "",
            "sample_input": "",
            # modelbus has no Algorithmia Insights; algorithmia-api-client needs the field
            "insights_enabled": False,
        }
        found["build"] = build_object(build, version.version if version else None)
        found["compilation"] = {"successful": build.status == "ready", "output": ""}
    return found


def _algorithm_id(owner: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"modelbus:{owner}/{name}"))


async def _catalog(
    request: Request, owner: str, name: str
) -> tuple[reg.ModelInfo, list[reg.VersionInfo], dict[str, reg.BuildInfo]]:
    registry = services(request).registry
    try:
        model = await registry.get_model(owner, name)
    except ModelNotFound as exc:
        # The official client's Algorithm.exists() looks for these words.
        raise ModelNotFound(f"No such algorithm: {owner}/{name}") from exc
    versions = await registry.list_versions(owner, name)
    builds = {b.hash: b for b in await registry.list_builds(owner, name)}
    return model, versions, builds


def _entries(
    versions: list[reg.VersionInfo], builds: dict[str, reg.BuildInfo]
) -> list[tuple[reg.BuildInfo, reg.VersionInfo | None]]:
    """Versions highest first, then the builds no version names, newest first."""
    named = [(builds[v.build_hash], v) for v in versions if v.build_hash in builds]
    with_version = {v.build_hash for v in versions}
    bare = [(b, None) for b in builds.values() if b.hash not in with_version]
    return [*named, *bare]


def _page(
    request: Request, items: list[dict[str, Any]], limit: int, marker: str | None
) -> dict[str, Any]:
    start = int(marker) if marker and marker.isdigit() else 0
    end = start + limit
    next_marker = str(end) if end < len(items) else None
    next_link = str(request.url.include_query_params(marker=next_marker)) if next_marker else None
    return {"marker": next_marker, "next_link": next_link, "results": items[start:end]}


NOT_FOUND = responses(404)


@router.get(
    "/v1/algorithms/{owner}/{name}",
    summary="Get an algorithm (Algorithmia API)",
    responses=NOT_FOUND,
)
async def get_algorithm(request: Request, owner: str, name: str, key: Reader) -> dict[str, Any]:
    model, versions, builds = await _catalog(request, owner, name)
    latest = next((v for v in versions if v.version == model.latest_version), None)
    build = builds.get(latest.build_hash) if latest else None
    return algorithm_object(model, build, latest, str(request.base_url))


@router.get(
    "/v1/algorithms/{owner}/{name}/versions",
    summary="List an algorithm's versions (Algorithmia API)",
    responses=NOT_FOUND,
)
async def list_algorithm_versions(
    request: Request,
    owner: str,
    name: str,
    key: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    marker: str | None = None,
    published: Annotated[
        bool | None, Query(description="Only those with a version number.")
    ] = None,
    served: Annotated[
        bool | None, Query(alias="callable", description="Only those served by spec.")
    ] = None,
) -> dict[str, Any]:
    model, versions, builds = await _catalog(request, owner, name)
    base = str(request.base_url)
    items = [
        algorithm_object(model, build, version, base)
        for build, version in _entries(versions, builds)
        if (published is None or published == (version is not None))
        and (served is None or served == bool(version and version.published))
    ]
    return _page(request, items, limit, marker)


@router.get(
    "/v1/algorithms/{owner}/{name}/versions/{version}",
    summary="Get one algorithm version by version number or build hash (Algorithmia API)",
    responses=NOT_FOUND,
)
async def get_algorithm_version(
    request: Request, owner: str, name: str, version: str, key: Reader
) -> dict[str, Any]:
    model, versions, builds = await _catalog(request, owner, name)
    for build, named in _entries(versions, builds):
        if version in (build.hash, build.hash.removeprefix("sha256:")) or (
            named is not None and named.version == version
        ):
            return algorithm_object(model, build, named, str(request.base_url))
    raise VersionNotFound(f"{owner}/{name} has no version or build {version!r}")


@router.get(
    "/v1/algorithms/{owner}/{name}/builds",
    summary="List an algorithm's builds (Algorithmia API)",
    responses=NOT_FOUND,
)
async def list_algorithm_builds(
    request: Request,
    owner: str,
    name: str,
    key: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    marker: str | None = None,
) -> dict[str, Any]:
    _, versions, builds = await _catalog(request, owner, name)
    by_build = {v.build_hash: v.version for v in reversed(versions)}
    items = [build_object(b, by_build.get(b.hash)) for b in builds.values()]
    return _page(request, items, limit, marker)


@router.get(
    "/v1/algorithms/{owner}/{name}/builds/{build_id}",
    summary="Get one build of an algorithm (Algorithmia API)",
    responses=NOT_FOUND,
)
async def get_algorithm_build(
    request: Request, owner: str, name: str, build_id: str, key: Reader
) -> dict[str, Any]:
    build = await _owned_build(request, owner, name, build_id)
    return build_object(build, build.versions[0] if build.versions else None)


@router.get(
    "/v1/algorithms/{owner}/{name}/builds/{build_id}/logs",
    summary="Get the log of one build of an algorithm (Algorithmia API)",
    responses=NOT_FOUND,
)
async def get_algorithm_build_logs(
    request: Request, owner: str, name: str, build_id: str, key: Reader
) -> dict[str, Any]:
    build = await _owned_build(request, owner, name, build_id)
    return {"logs": build.log or ""}


async def _owned_build(request: Request, owner: str, name: str, build_id: str) -> reg.BuildInfo:
    build = await services(request).registry.get_build(build_id)
    if (build.owner, build.name) != (owner, name):
        raise BuildNotFound(f"{owner}/{name} has no build {build_id!r}")
    return build
