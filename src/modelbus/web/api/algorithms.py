"""Algorithmia's algorithm management API over the model registry, so the official clients
(``algorithmia`` 2.0.5 and its ``manageApi``, ``algorithmia-api-client`` 1.5.5) can create,
update, publish, list and delete algorithms.

* ``POST /v1/algorithms/{owner}`` creates an algorithm: a model with no build yet. Its
  ``details`` (``label``, ``summary``, ``tagline``), ``settings`` and
  ``version_info.sample_input`` are stored as given and shown back.
* ``PUT /v1/algorithms/{owner}/{name}`` updates them (an empty object leaves a part as it is).
* ``POST /v1/algorithms/{owner}/{name}/versions`` publishes the algorithm's most recent
  successful build as the next ``version_info.version_type`` version (``major``, ``minor``,
  ``patch``, or Algorithmia's ``revision`` for ``patch``), with its ``release_notes``,
  ``sample_input`` and ``sample_output``. Code reaches modelbus by push (``modelbus models
  push DIR``), not by git: a build must exist first.
* ``DELETE /v1/algorithms/{owner}/{name}`` deletes it (refused while a listener calls it).
* ``GET`` routes for the algorithm, its versions and its builds answer in Algorithmia's
  shapes, with every field ``algorithmia-api-client`` 1.5.5 requires.

What modelbus cannot honour is refused with a message naming it, never ignored: git
``source`` and ``scmsCredentials``, ``environment: gpu``, ``network_access: isolated``, a
``language`` other than Python 3, ``insights_enabled: true``, unknown fields.

``algorithmia`` 2.0.5's ``Algorithm.update`` sends its arguments as a form (``requests``
with ``data=dict``), which carries only the keys of each object: such a body is refused
with that explanation. A form whose fields are JSON texts (``update(details=json.dumps(...))``)
is read as JSON.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from modelbus.errors import BuildNotFound, Conflict, InvalidInput, ModelNotFound, VersionNotFound
from modelbus.registry import catalog as reg
from modelbus.registry.versioning import Bump
from modelbus.runtime import jsondoc
from modelbus.web.api.auth import Manager, Reader
from modelbus.web.api.context import services
from modelbus.web.api.errors import responses
from modelbus.web.api.payloads import read_body

router = APIRouter(tags=["algorithmia"])

MAX_BODY_BYTES = 1024 * 1024
VERSION_TYPES: dict[str, Bump] = {
    "major": "major",
    "minor": "minor",
    "patch": "patch",
    "revision": "patch",
}
_DETAILS = ("label", "summary", "tagline")
# Descriptive settings, stored and shown back; modelbus gates calls by API key scopes
# whatever `algorithm_callability` says.
_FREE_SETTINGS = (
    "algorithm_callability",
    "source_visibility",
    "license",
    "royalty_microcredits",
    "pipeline_enabled",
    "package_set",
    "algorithm_environment",
)
_SUPPORTED_SETTINGS = {"environment": ("cpu",), "network_access": ("full",)}
_WHY_NOT = {
    "environment": "modelbus runs algorithms on its nodes' CPUs",
    "network_access": "modelbus does not cut runners off the network",
}
_NO_SOURCE = (
    "modelbus hosts no source repositories: push the algorithm's folder with "
    "`modelbus models push DIR --version X.Y.Z`"
)


# --- request bodies -----------------------------------------------------------------------


async def algorithmia_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, or a form whose fields are JSON texts (see the module
    docstring); raises :class:`InvalidInput` saying what is wrong."""
    data = await read_body(request, MAX_BODY_BYTES)
    if "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
        return _form_body(data.decode("utf-8", "replace"))
    try:
        body = jsondoc.loads(data or b"{}")
    except ValueError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def _form_body(text: str) -> dict[str, Any]:
    fields: dict[str, list[str]] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        fields.setdefault(key, []).append(value)
    body: dict[str, Any] = {}
    for key, values in fields.items():
        try:
            found = jsondoc.loads(values[0]) if len(values) == 1 else None
        except ValueError:
            found = None
        if not isinstance(found, dict):
            raise InvalidInput(
                f"the body is a form whose field {key!r} holds {', '.join(values)!r}, not a "
                "JSON object: algorithmia 2.0.5's Algorithm.update sends its arguments this "
                "way and only their keys arrive. Send the update as JSON "
                "(client.manageApi.update_algorithm, or PUT with Content-Type: "
                "application/json), or pass each argument as a JSON text (json.dumps)"
            )
        body[key] = found
    return body


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{key} must be an object")
    return value


def _check_keys(where: str, found: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(found) - set(known))
    if unknown:
        raise InvalidInput(
            f"{where}{', '.join(unknown)} not supported by modelbus (it knows {', '.join(known)})"
        )


def _no_source(body: dict[str, Any]) -> None:
    for key in ("source", "scmsCredentials", "scms_credentials"):
        if body.get(key):
            raise InvalidInput(f"{key} is not supported: {_NO_SOURCE}")


def _details(body: dict[str, Any]) -> dict[str, Any]:
    details = _object(body, "details")
    _check_keys("details.", details, _DETAILS)
    return details


def _settings(body: dict[str, Any]) -> dict[str, Any]:
    settings = _object(body, "settings")
    _check_keys("settings.", settings, (*_FREE_SETTINGS, *_SUPPORTED_SETTINGS, "language"))
    for key, allowed in _SUPPORTED_SETTINGS.items():
        if key in settings and settings[key] not in allowed:
            raise InvalidInput(
                f"settings.{key} {settings[key]!r} is not supported: {_WHY_NOT[key]} "
                f"(supported: {', '.join(allowed)})"
            )
    language = settings.get("language")
    if language is not None and not _is_python3(language):
        raise InvalidInput(
            f"settings.language {language!r} is not supported: modelbus runs Python 3 "
            "algorithms (algorithmia-adk, or a modelbus.toml) and exec runtimes declared in "
            "a modelbus.toml"
        )
    return settings


def _is_python3(language: object) -> bool:
    return isinstance(language, str) and (language == "python" or language.startswith("python3"))


def _version_info(body: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    info = _object(body, "version_info")
    _check_keys("version_info.", info, known)
    if info.get("insights_enabled"):
        raise InvalidInput(
            "version_info.insights_enabled is not supported: modelbus has no Insights"
        )
    info.pop("insights_enabled", None)
    return info


def _merged(stored: dict[str, Any] | None, body: dict[str, Any]) -> dict[str, Any]:
    """The model's stored details with what ``body`` (a create or update) sets."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in (stored or {}).items()}
    for part, given in (("details", _details(body)), ("settings", _settings(body))):
        merged.setdefault(part, {}).update(given)
    sample = _version_info(body, ("sample_input",)).get("sample_input")
    if sample is not None:
        merged["sample_input"] = sample
    return merged


# --- write routes -------------------------------------------------------------------------


def json_body(description: str, properties: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its body itself."""
    schema = {"type": "object", "properties": properties}
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


_OBJECT: dict[str, Any] = {"type": "object"}
ALGORITHM_BODY = json_body(
    "Algorithmia's algorithm fields (see the module docs: unsupported ones are refused).",
    {"name": {"type": "string"}, "details": _OBJECT, "settings": _OBJECT, "version_info": _OBJECT},
)
PUBLISH_BODY = json_body(
    "version_info.version_type (major, minor, patch or revision) is required.",
    {"details": _OBJECT, "settings": _OBJECT, "version_info": _OBJECT},
)


@router.post(
    "/v1/algorithms/{owner}",
    summary="Create an algorithm: a model with no build yet (Algorithmia API)",
    responses=responses(400, 409),
    openapi_extra=ALGORITHM_BODY,
)
async def create_algorithm(request: Request, owner: str, key: Manager) -> dict[str, Any]:
    body = await algorithmia_body(request)
    _check_keys("", body, ("name", "details", "settings", "version_info", *_SOURCE_KEYS))
    _no_source(body)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("name is required: the algorithm's name")
    details = _merged(None, body)
    registry = services(request).registry
    model = await registry.create_model(
        owner, name, description=_description(details) or "", details=details
    )
    return algorithm_object(model, None, None, str(request.base_url))


_SOURCE_KEYS = ("source", "scmsCredentials", "scms_credentials")


def _description(details: dict[str, Any]) -> str | None:
    """The model description ``details`` give (its summary, else tagline), if any."""
    given = details.get("details", {})
    found = given.get("summary") or given.get("tagline")
    return str(found) if found else None


@router.put(
    "/v1/algorithms/{owner}/{name}",
    summary="Update an algorithm's details and settings (Algorithmia API)",
    responses=responses(400, 404),
    openapi_extra=ALGORITHM_BODY,
)
async def update_algorithm(request: Request, owner: str, name: str, key: Manager) -> dict[str, Any]:
    body = await algorithmia_body(request)
    _check_keys("", body, ("details", "settings", "version_info", *_SOURCE_KEYS))
    _no_source(body)
    registry = services(request).registry
    details = _merged((await registry.get_model(owner, name)).details, body)
    await registry.update_model(owner, name, description=_description(details), details=details)
    return await get_algorithm(request, owner, name, key)


@router.post(
    "/v1/algorithms/{owner}/{name}/versions",
    summary="Publish the latest successful build as the next major/minor/patch version "
    "(Algorithmia API)",
    responses=responses(400, 404, 409),
    openapi_extra=PUBLISH_BODY,
)
async def publish_algorithm(
    request: Request, owner: str, name: str, key: Manager
) -> dict[str, Any]:
    body = await algorithmia_body(request)
    _check_keys("", body, ("details", "settings", "version_info", *_SOURCE_KEYS))
    _no_source(body)
    info = _version_info(
        body, ("version_type", "release_notes", "sample_input", "sample_output", "insights_enabled")
    )
    bump = VERSION_TYPES.get(str(info.pop("version_type", "")))
    if bump is None:
        raise InvalidInput(
            "version_info.version_type is required: major, minor, patch (or revision)"
        )
    registry = services(request).registry
    model = await registry.get_model(owner, name)
    if body.get("details") or body.get("settings"):
        details = _merged(model.details, {k: body.get(k) for k in ("details", "settings")})
        await registry.update_model(owner, name, description=_description(details), details=details)
    published = await registry.publish(owner, name, bump=bump, details=info or None)
    return await get_algorithm_version(request, owner, name, published.version, key)


@router.delete(
    "/v1/algorithms/{owner}/{name}",
    summary="Delete an algorithm, its versions and builds (Algorithmia API)",
    status_code=204,
    response_class=Response,
    responses=responses(404, 409),
)
async def delete_algorithm(request: Request, owner: str, name: str, key: Manager) -> Response:
    running = services(request)
    await running.registry.get_model(owner, name)
    users = [
        info.name
        for info in await running.listeners.list()
        if (info.definition.ref.owner, info.definition.ref.name) == (owner, name)
    ]
    if users:
        raise Conflict(
            f"{owner}/{name} is called by listener(s) {', '.join(sorted(users))}: "
            "delete them or point them at another model first"
        )
    await running.registry.delete_model(owner, name)
    return Response(status_code=204)


# --- objects in Algorithmia's shapes --------------------------------------------------------


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
    """An Algorithmia algorithm (or algorithm version) object: what was stored through the
    management routes over what modelbus knows of the model."""
    stored = model.details or {}
    runtime = build.manifest.runtime.kind if build else "python"
    found: dict[str, Any] = {
        "id": _algorithm_id(model.owner, model.name),
        "name": model.name,
        "resource_type": "algorithm",
        "details": {
            "label": model.name,
            "summary": model.description,
            "tagline": model.description,
            **stored.get("details", {}),
        },
        "settings": {
            "algorithm_callability": "public" if version and version.published else "private",
            "source_visibility": "closed",
            "language": runtime,
            "environment": "cpu",
            "network_access": "full",
            "pipeline_enabled": True,
            **stored.get("settings", {}),
        },
        "self_link": f"{base_url}v1/algorithms/{model.owner}/{model.name}",
    }
    if build is not None:
        notes = (version.details if version else None) or {}
        found["version_info"] = {
            "semantic_version": version.version if version else None,
            "git_hash": build.hash,
            "release_notes": notes.get("release_notes", ""),
            "sample_input": notes.get("sample_input", stored.get("sample_input", "")),
            "sample_output": notes.get("sample_output", ""),
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
