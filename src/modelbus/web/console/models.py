"""Models pages: the models a key may see, a model's versions and builds, and "try it".

"Try it" posts a form (JSON or text typed in, or a file) and calls the chosen version
through the model service, as ``POST /v1/models/.../invoke`` does with the same body: the
input's kind follows the same Content-Type rules
(:func:`modelbus.web.api.payloads.payload_from_body`) and the key needs the same ``call:`` scope.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from modelbus.client.refs import ModelRef
from modelbus.errors import Forbidden, InvalidInput, InvocationError, ModelbusError
from modelbus.registry import catalog as reg
from modelbus.runtime.invocation import CallOptions, Payload, Result
from modelbus.store.keys import call_scope
from modelbus.web.api.auth import can_read_model
from modelbus.web.api.context import services
from modelbus.web.api.payloads import payload_from_body, result_value
from modelbus.web.console.auth import Posted, Posting, Viewer, Viewing
from modelbus.web.console.web import PREFIX, ConsoleRoute, render, see_other

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

BUILD_LOG_TAIL_LINES = 25
KINDS = {"json": "application/json", "text": "text/plain; charset=utf-8"}
IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class VersionRow:
    """A version as the model page lists it, with its build's status."""

    version: str
    build: str
    published: bool
    status: str
    created_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class TryOutcome:
    """What "try it" shows: a result (as text, an image or a download) or an error."""

    spec: str
    ok: bool
    version: str | None = None
    content_type: str | None = None
    mime: str | None = None
    duration_ms: float | None = None
    size_bytes: int | None = None
    text: str | None = None
    data_url: str | None = None
    image: bool = False
    error_type: str | None = None
    message: str | None = None
    stacktrace: str | None = None


def check_reader(viewer: Viewer, owner: str, name: str) -> None:
    """The API's rule for model metadata; raises Forbidden."""
    if not can_read_model(viewer.key, owner, name):
        raise Forbidden(f"this API key may neither manage models nor call {owner}/{name}")


@router.get("")
async def home() -> Response:
    return see_other(PREFIX + "/models")


@router.get("/models")
async def models_page(request: Request, viewer: Viewing) -> Response:
    found = await services(request).registry.list_models()
    visible = [m for m in found if can_read_model(viewer.key, m.owner, m.name)]
    return render(request, "models.html", viewer=viewer, models=visible)


@router.get("/models/{owner}/{name}")
async def model_page(request: Request, owner: str, name: str, viewer: Viewing) -> Response:
    check_reader(viewer, owner, name)
    return await _model_page(request, viewer, owner, name, outcome=None, form={})


@router.post("/models/{owner}/{name}/try")
async def try_it(request: Request, owner: str, name: str, posted: Posting) -> Response:
    viewer = posted.viewer
    # The invoke route's check alone (a key that may call may read): a refusal names the
    # missing scope, whatever else the key holds.
    viewer.key.require(call_scope(owner, name))
    spec = posted.text("version") or "latest"
    try:
        payload = await _payload(posted)
        outcome = await _call(request, ModelRef(owner, name, spec), payload)
    except ModelbusError as exc:
        outcome = _failure(spec, exc)
    finally:
        await posted.form.close()
    form = {k: posted.text(k) for k in ("version", "kind", "input")}
    status = 200 if outcome.ok else 400
    return await _model_page(
        request, viewer, owner, name, outcome=outcome, form=form, status=status
    )


@router.get("/builds/{build}")
async def build_page(request: Request, build: str, viewer: Viewing) -> Response:
    found = await services(request).registry.get_build(build)
    check_reader(viewer, found.owner, found.name)
    failure = build_failure(found.log or "") if found.status == "failed" else None
    return render(request, "build.html", viewer=viewer, build=found, failure=failure)


@dataclass(frozen=True, kw_only=True, slots=True)
class LogLine:
    """A line of a build log's tail; ``error`` marks the lines that say what failed."""

    text: str
    error: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildFailure:
    """Why a build failed, read from its log: the step that failed, the reason the builder
    gave, and the last lines of the log."""

    step: str
    reason: str
    tail: list[LogLine]


def build_failure(log: str, *, tail_lines: int = BUILD_LOG_TAIL_LINES) -> BuildFailure:
    """The failure a build log records (:mod:`modelbus.registry.builds` writes a ``$ argv``
    line before each command and an ``error: ...`` line when a step fails). The step is the
    last command before the first error, else the launch check."""
    lines = log.splitlines()
    first_error = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    upto = lines if first_error is None else lines[:first_error]
    command = next((line[2:] for line in reversed(upto) if line.startswith("$ ")), None)
    if first_error is None:
        reason = "the build stopped before it finished (the server stopped, or it was cancelled)"
    else:
        reason = lines[first_error].removeprefix("error:").strip()
    step = f"running {command}" if command else "checking the model can be launched"
    shown = lines[-tail_lines:]
    return BuildFailure(
        step=step,
        reason=reason,
        tail=[LogLine(text=line, error=_is_error_line(line)) for line in shown],
    )


def _is_error_line(line: str) -> bool:
    lowered = line.strip().lower()
    # uv marks its errors with a multiplication sign.
    return lowered.startswith(("error", "fatal", "\u00d7")) or "error:" in lowered


async def _model_page(
    request: Request,
    viewer: Viewer,
    owner: str,
    name: str,
    *,
    outcome: TryOutcome | None,
    form: dict[str, str],
    status: int = 200,
) -> Response:
    registry = services(request).registry
    model = await registry.get_model(owner, name)
    versions = await registry.list_versions(owner, name)
    builds = await registry.list_builds(owner, name)
    return render(
        request,
        "model.html",
        status_code=status,
        viewer=viewer,
        model=model,
        versions=_version_rows(versions, builds),
        builds=builds,
        choices=version_choices(model, versions, builds),
        can_call=viewer.key.can_call(owner, name),
        outcome=outcome,
        form=form,
    )


def _version_rows(versions: list[reg.VersionInfo], builds: list[reg.BuildInfo]) -> list[VersionRow]:
    status = {b.hash: b.status for b in builds}
    return [
        VersionRow(
            version=v.version,
            build=v.build_hash,
            published=v.published,
            status=status.get(v.build_hash, "unknown"),
            created_at=v.created_at,
        )
        for v in versions
    ]


def version_choices(
    model: reg.ModelInfo, versions: list[reg.VersionInfo], builds: list[reg.BuildInfo]
) -> list[tuple[str, str]]:
    """``(spec, label)`` for the version menu: latest, every published version, then the
    ready builds no published version names (callable by hash only)."""
    choices = []
    if model.latest_version:
        choices.append(("latest", f"latest ({model.latest_version})"))
    published = {v.build_hash for v in versions if v.published}
    choices += [(v.version, v.version) for v in versions if v.published]
    for b in builds:
        if b.status == "ready" and b.hash not in published:
            named = f" — version {', '.join(b.versions)}, unpublished" if b.versions else ""
            choices.append((b.hash, f"build {b.hash.removeprefix('sha256:')[:12]}{named}"))
    return choices


async def _payload(posted: Posted) -> Payload:
    kind = posted.text("kind") or "json"
    if kind == "file":
        upload = posted.form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise InvalidInput("choose a file to send")
        data = await upload.read()
        return payload_from_body(upload.content_type or "application/octet-stream", data)
    if kind not in KINDS:
        raise InvalidInput(f"unknown input kind {kind!r}: choose JSON, text or a file")
    raw = posted.form.get("input")
    text = raw if isinstance(raw, str) else ""
    return payload_from_body(KINDS[kind], text.encode("utf-8"))


async def _call(request: Request, ref: ModelRef, payload: Payload) -> TryOutcome:
    result = await services(request).models.invoke(ref, payload, CallOptions())
    return _success(ref.spec, result)


def _success(spec: str, result: Result) -> TryOutcome:
    output = result.output
    shown = _shown(output)
    return TryOutcome(
        spec=spec,
        ok=True,
        version=result.version,
        content_type=output.content_type,
        mime=shown.get("mime") or output.mime,
        duration_ms=result.duration_ms,
        size_bytes=len(output.data),
        text=shown.get("text"),
        data_url=shown.get("data_url"),
        image=bool(shown.get("image")),
    )


def _shown(output: Payload) -> dict[str, Any]:
    """How a result is shown: JSON pretty-printed, text as is, images as images, other
    binary as a download."""
    if output.content_type == "json":
        return {"text": json.dumps(output.value(), indent=2, ensure_ascii=False)}
    if output.content_type == "text":
        return {"text": output.value()}
    mime = output.mime or _sniff_image(output.data) or "application/octet-stream"
    data_url = f"data:{mime};base64,{result_value(output)}"
    return {"mime": mime, "data_url": data_url, "image": mime.startswith("image/")}


def _sniff_image(data: bytes) -> str | None:
    for signature, mime in IMAGE_SIGNATURES:
        if data.startswith(signature):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _failure(spec: str, exc: ModelbusError) -> TryOutcome:
    if isinstance(exc, InvocationError):
        return TryOutcome(
            spec=spec,
            ok=False,
            version=exc.version,
            error_type=exc.error_type,
            message=exc.message,
            stacktrace=exc.stacktrace or None,
        )
    return TryOutcome(spec=spec, ok=False, error_type=type(exc).__name__, message=exc.message)
