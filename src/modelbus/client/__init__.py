"""The Python SDK: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio), over httpx.

::

    from modelbus import Client

    with Client() as mb:                          # MODELBUS_URL, MODELBUS_API_KEY
        mb.push("examples/hello")                 # build + publish the next version
        out = mb.call("examples/hello", "world")  # -> CallResult(value="Hello world", ...)
        job = mb.submit("examples/hello@1.*", "later")
        print(mb.wait(job.id, timeout_s=30).unwrap().value)

Errors the server reports come back as the classes of :mod:`modelbus.errors`
(:class:`~modelbus.errors.VersionNotFound`, :class:`~modelbus.errors.ModelError` with the
model's ``stacktrace``, :class:`~modelbus.errors.Unauthenticated`...); a server that cannot be
reached raises :class:`~modelbus.errors.ModelbusError`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx

from modelbus import errors
from modelbus.client.archive import pack_model
from modelbus.client.refs import ModelRef
from modelbus.client.schemas import (
    LISTENER_NAME_PATTERN,
    ApplyOut,
    BuildInfo,
    CallEnvelope,
    ContentTypeName,
    CreatedKey,
    DeadLetterOut,
    DeadLetterPage,
    ErrorDetail,
    JobInfo,
    KeyInfoOut,
    ListenerFields,
    ListenerOut,
    ListenerStatusOut,
    ModelInfo,
    PushEvent,
    PushInfo,
    RedriveOut,
    RunOut,
    RunPage,
    VersionInfo,
)
from modelbus.config import DEFAULT_PORT

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
DEFAULT_TIMEOUT_S = 600.0
# Time allowed beyond a call's own timeout for the server to answer with its 504.
_TIMEOUT_MARGIN_S = 30.0
Bump = Literal["major", "minor", "patch"]

__all__ = ["AsyncClient", "CallResult", "Client", "Job", "pack_model"]


@dataclass(frozen=True, kw_only=True, slots=True)
class CallResult:
    """One successful call: the decoded ``value`` (JSON value, ``str`` or ``bytes``)."""

    value: Any
    content_type: ContentTypeName
    duration_s: float
    version: str | None
    stdout: str | None = None
    mime: str | None = None

    @classmethod
    def from_envelope(cls, envelope: CallEnvelope) -> CallResult:
        meta = envelope.metadata
        value = envelope.result
        if meta.content_type == "binary":
            value = base64.b64decode(value)
        return cls(
            value=value,
            content_type=meta.content_type,
            duration_s=meta.duration,
            version=meta.version,
            stdout=meta.stdout,
            mime=meta.mime,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """An asynchronous call. ``result`` is set once it succeeded, ``error`` once it failed."""

    id: str
    status: str
    ref: ModelRef
    version: str | None
    created_at: float
    finished_at: float | None = None
    result: CallResult | None = None
    error: errors.ModelbusError | None = field(default=None, compare=False)

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")

    def unwrap(self) -> CallResult:
        """The result; raises the job's error if it failed, or :class:`ModelbusError` if it has
        not finished yet."""
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise errors.ModelbusError(f"job {self.id} has not finished (status {self.status})")
        return self.result

    @classmethod
    def from_info(cls, info: JobInfo) -> Job:
        return cls(
            id=info.id,
            status=info.status,
            ref=ModelRef(info.owner, info.name, info.spec),
            version=info.version,
            created_at=info.created_at,
            finished_at=info.finished_at,
            result=CallResult.from_envelope(info.result) if info.result else None,
            error=_job_error(info.error) if info.error else None,
        )


def _job_error(detail: ErrorDetail) -> errors.ModelbusError:
    # A job's error is what its invocation raised: a model error unless it says otherwise.
    return error_from_detail(detail, 0, errors.ModelError)


# --- requests and responses, shared by both clients ---------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class _Request:
    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    json_body: Any = None


def _as_ref(ref: str | ModelRef) -> ModelRef:
    return ref if isinstance(ref, ModelRef) else ModelRef.parse(ref)


_MEDIA = {
    "json": "application/json",
    "text": "text/plain; charset=utf-8",
    "binary": "application/octet-stream",
}


def encode_input(data: Any, content_type: str | None) -> tuple[bytes, str]:
    """Body and ``Content-Type`` for ``data``: bytes are binary, str is text, anything else
    JSON. ``content_type`` (``json``, ``text``, ``binary`` or a MIME type) overrides the kind;
    bytes are then sent as they are (already encoded), a str as UTF-8, other values as JSON."""
    kind = content_type or _kind_of(data)
    media = _MEDIA.get(kind, kind)
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data), media
    if kind == "json":
        return json.dumps(data).encode(), media
    if isinstance(data, str):
        return data.encode(), media
    raise errors.InvalidInput(f"a {kind} input must be str or bytes, not {type(data).__name__}")


def _kind_of(data: Any) -> ContentTypeName:
    if isinstance(data, bytes | bytearray | memoryview):
        return "binary"
    return "text" if isinstance(data, str) else "json"


def _model_path(ref: ModelRef) -> str:
    base = f"/v1/models/{ref.owner}/{ref.name}"
    return base if ref.spec == "latest" else f"{base}/versions/{ref.spec}"


def _call_request(
    ref: ModelRef, data: Any, content_type: str | None, timeout_s: float | None, stdout: bool
) -> _Request:
    body, media = encode_input(data, content_type)
    params = {"stdout": "true"} if stdout else {}
    if timeout_s is not None:
        params["timeout"] = str(timeout_s)
    return _Request(
        method="POST",
        path=_model_path(ref) + "/invoke",
        params=params,
        content=body,
        headers={"Content-Type": media},
        timeout_s=None if timeout_s is None else timeout_s + _TIMEOUT_MARGIN_S,
    )


def _submit_request(
    ref: ModelRef, data: Any, content_type: str | None, timeout_s: float | None
) -> _Request:
    body, media = encode_input(data, content_type)
    params = {} if timeout_s is None else {"timeout": str(timeout_s)}
    return _Request(
        method="POST",
        path=_model_path(ref) + "/jobs",
        params=params,
        content=body,
        headers={"Content-Type": media},
    )


def _push_request(path: Path, version: str | None, bump: Bump | None, publish: bool) -> _Request:
    manifest, archive = pack_model(path)
    params = {"publish": "true" if publish else "false"}
    if version:
        params["version"] = version
    if bump:
        params["bump"] = bump
    return _Request(
        method="POST",
        path=f"/v1/models/{manifest.owner}/{manifest.name}/versions",
        params=params,
        content=archive,
        headers={"Content-Type": "application/gzip", "Accept": "application/x-ndjson"},
    )


def _error_class(code: str) -> type[errors.ModelbusError] | None:
    found = getattr(errors, code, None)
    if isinstance(found, type) and issubclass(found, errors.ModelbusError):
        return found
    return None


_BY_STATUS: dict[int, type[errors.ModelbusError]] = {
    400: errors.InvalidInput,
    401: errors.Unauthenticated,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedContentType,
    422: errors.InvalidInput,
    502: errors.RunnerCrashed,
    503: errors.Overloaded,
    504: errors.InvocationTimeout,
}


def error_from_detail(
    detail: ErrorDetail, status: int, default: type[errors.ModelbusError] = errors.ModelbusError
) -> errors.ModelbusError:
    """The :mod:`modelbus.errors` exception an error body describes (by its ``code``, else by
    the HTTP ``status``, else ``default``)."""
    cls = _error_class(detail.code) or _BY_STATUS.get(status, default)
    if issubclass(cls, errors.InvocationError):
        exc: errors.ModelbusError = cls(
            detail.message,
            error_type=detail.error_type,
            stacktrace=detail.stacktrace or "",
            permanent=detail.permanent,
        )
        exc.version = detail.version  # type: ignore[attr-defined]
        return exc
    if issubclass(cls, errors.BuildError):
        return cls(detail.message, log=detail.log or "")
    if issubclass(cls, errors.MissingExtra):
        return errors.ConnectorConfigError(detail.message)
    if issubclass(cls, errors.ConnectorError):
        return cls(detail.message, permanent=detail.permanent)
    return cls(detail.message)


def error_from_response(status: int, body: bytes) -> errors.ModelbusError:
    """The exception for an error response (any body, even one that is not ours)."""
    try:
        detail = ErrorDetail.model_validate(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip() or f"HTTP {status}"
        detail = ErrorDetail(message=text, error_type=f"HTTP{status}")
    return error_from_detail(detail, status)


def _json(response: httpx.Response) -> Any:
    if response.is_error:
        raise error_from_response(response.status_code, response.content)
    return response.json()


def _push_event(line: str, on_log: Callable[[str], None] | None) -> PushInfo | None:
    """Handle one NDJSON progress line; the PushInfo once the final line arrives."""
    event = PushEvent.model_validate_json(line)
    if event.event == "log" and on_log is not None:
        on_log(event.line or "")
    if event.event == "error" and event.error is not None:
        raise error_from_detail(event.error, 422)
    return event.result


def _unreachable(url: str, exc: httpx.TransportError) -> errors.ModelbusError:
    return errors.ModelbusError(f"cannot reach the modelbus server at {url}: {exc}")


def _settings(url: str | None, key: str | None) -> tuple[str, dict[str, str]]:
    url = (url or os.environ.get("MODELBUS_URL") or DEFAULT_URL).rstrip("/")
    key = key or os.environ.get("MODELBUS_API_KEY")
    return url, ({"Authorization": f"Bearer {key}"} if key else {})


def _publish_request(
    owner: str, name: str, build: str | None, version: str | None, bump: Bump | None
) -> _Request:
    body = {"build": build, "version": version, "bump": bump}
    return _Request(method="POST", path=f"/v1/models/{owner}/{name}/publish", json_body=body)


def _key_request(name: str, scopes: Iterable[str]) -> _Request:
    return _Request(
        method="POST", path="/v1/keys", json_body={"name": name, "scopes": list(scopes)}
    )


def _no_result() -> errors.ModelbusError:
    return errors.ModelbusError("the push stream ended without a result")


# --- listeners, runs, dead letters: requests -----------------------------------------------

DefinitionLike = ListenerFields | Mapping[str, Any]


def _definition_json(definition: DefinitionLike) -> dict[str, Any]:
    """The definition as JSON. A mapping is sent as it is: the server validates it and
    answers a DefinitionError saying what to change, as a listener file gets."""
    if isinstance(definition, ListenerFields):
        return definition.model_dump(mode="json")
    body = dict(definition)
    try:
        json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise errors.DefinitionError(
            f"{_label(body)}: not JSON ({exc}): give strings, numbers, booleans, lists and "
            "tables only"
        ) from None
    return body


def _label(body: Mapping[str, Any]) -> str:
    name = body.get("name")
    return f"listener {name!r}" if isinstance(name, str) else "listener"


def _listener_path(body: Mapping[str, Any]) -> str:
    name = body.get("name")
    if isinstance(name, str) and re.fullmatch(LISTENER_NAME_PATTERN, name):
        return f"/v1/listeners/{name}"
    # No valid name: the server refuses the body (a DefinitionError naming the field)
    # before it reads the path, which needs a segment all the same.
    return "/v1/listeners/-"


def _check_param(check: bool) -> dict[str, str]:
    return {"check": "true" if check else "false"}


def _create_listener_request(definition: DefinitionLike, check: bool) -> _Request:
    body = _definition_json(definition)
    return _Request(method="POST", path="/v1/listeners", params=_check_param(check), json_body=body)


def _put_listener_request(definition: DefinitionLike, check: bool) -> _Request:
    body = _definition_json(definition)
    path = _listener_path(body)
    return _Request(method="PUT", path=path, params=_check_param(check), json_body=body)


def _apply_request(definitions: Iterable[DefinitionLike], prune: bool, check: bool) -> _Request:
    body = {"listeners": [_definition_json(d) for d in definitions], "prune": prune}
    return _Request(method="PUT", path="/v1/listeners", params=_check_param(check), json_body=body)


def _listener_action(name: str, action: str) -> _Request:
    return _Request(method="POST", path=f"/v1/listeners/{name}/{action}")


def _page_params(limit: int, cursor: str | None, **more: str | None) -> dict[str, str]:
    params = {"limit": str(limit), **{k: v for k, v in more.items() if v is not None}}
    if cursor:
        params["cursor"] = cursor
    return params


def _redrive_request(
    listener: str, ids: Iterable[str] | None, spec: str | None, rate_per_s: float | None
) -> _Request:
    body = {"ids": list(ids) if ids is not None else None, "spec": spec, "rate_per_s": rate_per_s}
    path = f"/v1/listeners/{listener}/dead-letters/redrive"
    return _Request(method="POST", path=path, json_body=body, timeout_s=24 * 3600.0)


def _run_path(message_id: str) -> str:
    # Broker ids may hold '/', '?', '#' or spaces: the route takes the whole decoded path.
    return "/v1/runs/" + quote(message_id, safe="")


def _empty(response: httpx.Response) -> None:
    if response.is_error:
        raise error_from_response(response.status_code, response.content)


def _text(response: httpx.Response) -> str:
    if response.is_error:
        raise error_from_response(response.status_code, response.content)
    return response.text


# --- the clients ---------------------------------------------------------------------------


class Client:
    """Blocking client. ``url`` and ``key`` default to ``MODELBUS_URL`` and
    ``MODELBUS_API_KEY``; ``timeout_s`` bounds every request that sets no timeout of its own.
    Use it as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.url, headers = _settings(url, key)
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0)
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, request: _Request) -> httpx.Response:
        try:
            return self._http.request(
                request.method,
                request.path,
                params=dict(request.params),
                content=request.content,
                json=request.json_body,
                headers=dict(request.headers),
                timeout=request.timeout_s or httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc

    def _get(self, path: str, **params: str) -> Any:
        return _json(self._send(_Request(method="GET", path=path, params=params)))

    def call(
        self,
        ref: str | ModelRef,
        data: Any,
        *,
        content_type: str | None = None,
        timeout_s: float | None = None,
        stdout: bool = False,
    ) -> CallResult:
        """Run one input on ``owner/name[@spec]`` and wait for its result.

        ``data``: bytes are sent as binary, str as text, anything else as JSON, unless
        ``content_type`` (``json``, ``text``, ``binary`` or a MIME type) says otherwise.
        ``timeout_s`` defaults to the version's own timeout. Raises the model's
        :class:`~modelbus.errors.ModelError`, :class:`~modelbus.errors.InvocationTimeout`,
        :class:`~modelbus.errors.NotFound`...
        """
        request = _call_request(_as_ref(ref), data, content_type, timeout_s, stdout)
        return CallResult.from_envelope(CallEnvelope.model_validate(_json(self._send(request))))

    def submit(
        self,
        ref: str | ModelRef,
        data: Any,
        *,
        content_type: str | None = None,
        timeout_s: float | None = None,
    ) -> Job:
        """Queue one input to run in the background; returns at once with the queued job."""
        request = _submit_request(_as_ref(ref), data, content_type, timeout_s)
        return Job.from_info(JobInfo.model_validate(_json(self._send(request))))

    def job(self, job_id: str) -> Job:
        """The job's current state; raises :class:`~modelbus.errors.JobNotFound`."""
        return Job.from_info(JobInfo.model_validate(self._get(f"/v1/jobs/{job_id}")))

    def wait(self, job_id: str, timeout_s: float = 60.0, *, poll_s: float = 0.2) -> Job:
        """Poll until the job has finished and return it (see :meth:`Job.unwrap`); raises
        :class:`TimeoutError` if it is still queued or running after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not (job := self.job(job_id)).done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s}s")
            time.sleep(poll_s)
        return job

    def push(
        self,
        path: str | Path,
        version: str | None = None,
        bump: Bump | None = None,
        publish: bool = True,
        *,
        on_log: Callable[[str], None] | None = None,
    ) -> PushInfo:
        """Upload a model folder and build it; record a version and publish it.

        ``version`` ("1.2.3") or ``bump`` ("major", "minor", "patch": the next after the
        model's highest, from 0.0.0) names the version; with neither, the push is a build
        callable by its hash only (``PushInfo.version`` is None). ``publish=False`` records
        the version without serving it by version spec. ``on_log`` receives build output
        lines as they happen. A repeated push of the same content is a no-op. Raises
        :class:`~modelbus.errors.BuildError` (with the log), ``ManifestError``,
        ``ArchiveError``, ``VersionConflict``...
        """
        request = _push_request(Path(path), version, bump, publish)
        try:
            with self._http.stream(
                "POST",
                request.path,
                params=dict(request.params),
                content=request.content,
                headers=dict(request.headers),
                timeout=httpx.Timeout(None, connect=10.0),
            ) as response:
                if response.is_error:
                    raise error_from_response(response.status_code, response.read())
                for line in response.iter_lines():
                    if line.strip() and (done := _push_event(line, on_log)):
                        return done
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
        raise _no_result()

    def publish(
        self,
        owner: str,
        name: str,
        *,
        build: str | None = None,
        version: str | None = None,
        bump: Bump | None = None,
    ) -> VersionInfo:
        """Publish ``version``, or give ``build`` (default: the newest ready build) the
        version ``version`` or the next ``bump`` one, published. Idempotent."""
        request = _publish_request(owner, name, build, version, bump)
        return VersionInfo.model_validate(_json(self._send(request)))

    def models(self) -> list[ModelInfo]:
        """The models this key may see."""
        return [ModelInfo.model_validate(m) for m in self._get("/v1/models")]

    def model(self, owner: str, name: str) -> ModelInfo:
        """One model; raises :class:`~modelbus.errors.ModelNotFound`."""
        return ModelInfo.model_validate(self._get(f"/v1/models/{owner}/{name}"))

    def versions(self, owner: str, name: str) -> list[VersionInfo]:
        """The versions of a model, newest first."""
        return [VersionInfo.model_validate(v) for v in self._get(_versions_path(owner, name))]

    def builds(self, owner: str, name: str) -> list[BuildInfo]:
        """The builds of a model, newest first (without logs)."""
        found = self._get(f"/v1/models/{owner}/{name}/builds")
        return [BuildInfo.model_validate(b) for b in found]

    def build(self, build_hash: str) -> BuildInfo:
        """One build with its log; raises :class:`~modelbus.errors.BuildNotFound`."""
        return BuildInfo.model_validate(self._get(f"/v1/builds/{build_hash}"))

    def create_key(self, name: str, scopes: Iterable[str]) -> CreatedKey:
        """A new API key (admin only); its secret is in the answer and never shown again."""
        return CreatedKey.model_validate(_json(self._send(_key_request(name, scopes))))

    def keys(self) -> list[KeyInfoOut]:
        """All API keys, without their secrets (admin only)."""
        return [KeyInfoOut.model_validate(k) for k in self._get("/v1/keys")]

    def revoke_key(self, key_id: str) -> KeyInfoOut:
        """Revoke a key; it stops working at once (admin only)."""
        request = _Request(method="DELETE", path=f"/v1/keys/{key_id}")
        return KeyInfoOut.model_validate(_json(self._send(request)))

    # --- listeners ---------------------------------------------------------------------------

    def listeners(self) -> list[ListenerOut]:
        """Every listener with its status (credentials shown as ``***``)."""
        return [ListenerOut.model_validate(x) for x in self._get("/v1/listeners")]

    def listener(self, name: str) -> ListenerOut:
        """One listener; raises :class:`~modelbus.errors.ListenerNotFound`."""
        return ListenerOut.model_validate(self._get(f"/v1/listeners/{name}"))

    def create_listener(self, definition: DefinitionLike, *, check: bool = True) -> ListenerOut:
        """Create a listener (a :class:`ListenerDefinition` or its JSON/TOML mapping); it
        starts at once if enabled. ``check`` has the server open its connectors first.
        Raises :class:`~modelbus.errors.DefinitionError` (what to change) or
        :class:`~modelbus.errors.Conflict` when the name is taken (needs listeners:manage)."""
        request = _create_listener_request(definition, check)
        return ListenerOut.model_validate(_json(self._send(request)))

    def put_listener(self, definition: DefinitionLike, *, check: bool = True) -> ListenerOut:
        """Create or replace one listener; it restarts only if its definition changed.
        ``***`` where the stored definition has a credential keeps that credential."""
        request = _put_listener_request(definition, check)
        return ListenerOut.model_validate(_json(self._send(request)))

    def apply_listeners(
        self, definitions: Iterable[DefinitionLike], *, prune: bool = False, check: bool = True
    ) -> ApplyOut:
        """Create or update several listeners (a listener file); ``prune`` deletes the
        stored ones not given. Nothing is stored if one of them is refused."""
        request = _apply_request(definitions, prune, check)
        return ApplyOut.model_validate(_json(self._send(request)))

    def delete_listener(self, name: str) -> None:
        """Stop and delete a listener; its run records and dead letters are kept."""
        _empty(self._send(_Request(method="DELETE", path=f"/v1/listeners/{name}")))

    def pause_listener(self, name: str) -> ListenerOut:
        """Stop a listener gracefully; it stays paused across restarts. Idempotent."""
        return ListenerOut.model_validate(_json(self._send(_listener_action(name, "pause"))))

    def resume_listener(self, name: str) -> ListenerOut:
        """Start a paused listener again. Idempotent."""
        return ListenerOut.model_validate(_json(self._send(_listener_action(name, "resume"))))

    def listener_status(self, name: str) -> ListenerStatusOut:
        """State, last error, counters and the version its spec resolves to now."""
        return ListenerStatusOut.model_validate(self._get(f"/v1/listeners/{name}/status"))

    # --- runs and dead letters ---------------------------------------------------------------

    def runs(self, message_id: str, *, listener: str | None = None) -> list[RunOut]:
        """What happened to broker message ``message_id`` (one record per listener);
        raises :class:`~modelbus.errors.RunNotFound`."""
        params = {"listener": listener} if listener else {}
        return [RunOut.model_validate(r) for r in self._get(_run_path(message_id), **params)]

    def listener_runs(
        self, name: str, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        """A page of a listener's run records, most recently updated first."""
        params = _page_params(limit, cursor, status=status)
        return RunPage.model_validate(self._get(f"/v1/listeners/{name}/runs", **params))

    def dead_letters(
        self,
        listener: str,
        *,
        include_redriven: bool = True,
        limit: int = 50,
        cursor: str | None = None,
    ) -> DeadLetterPage:
        """A page of a listener's dead letters, newest first (without bodies)."""
        params = _page_params(limit, cursor, include_redriven=str(include_redriven).lower())
        path = f"/v1/listeners/{listener}/dead-letters"
        return DeadLetterPage.model_validate(self._get(path, **params))

    def dead_letter(self, letter_id: str) -> DeadLetterOut:
        """One dead letter with its original body (``body_base64``); listeners:manage."""
        return DeadLetterOut.model_validate(self._get(f"/v1/dead-letters/{letter_id}"))

    def redrive(
        self,
        listener: str,
        *,
        ids: Iterable[str] | None = None,
        spec: str | None = None,
        rate_per_s: float | None = None,
    ) -> RedriveOut:
        """Run dead letters again (``ids``, default every one not redriven yet) on the
        listener's model at ``spec`` (default its own), at most ``rate_per_s`` a second;
        returns once all were tried. Needs listeners:manage."""
        request = _redrive_request(listener, ids, spec, rate_per_s)
        return RedriveOut.model_validate(_json(self._send(request)))

    def metrics(self) -> str:
        """The server's Prometheus metrics, as text."""
        return _text(self._send(_Request(method="GET", path="/metrics")))


def _versions_path(owner: str, name: str) -> str:
    return f"/v1/models/{owner}/{name}/versions"


class AsyncClient:
    """The asyncio twin of :class:`Client`: the same methods, awaited."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.url, headers = _settings(url, key)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0)
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _send(self, request: _Request) -> httpx.Response:
        try:
            return await self._http.request(
                request.method,
                request.path,
                params=dict(request.params),
                content=request.content,
                json=request.json_body,
                headers=dict(request.headers),
                timeout=request.timeout_s or httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc

    async def _get(self, path: str, **params: str) -> Any:
        return _json(await self._send(_Request(method="GET", path=path, params=params)))

    async def call(
        self,
        ref: str | ModelRef,
        data: Any,
        *,
        content_type: str | None = None,
        timeout_s: float | None = None,
        stdout: bool = False,
    ) -> CallResult:
        """See :meth:`Client.call`."""
        request = _call_request(_as_ref(ref), data, content_type, timeout_s, stdout)
        body = _json(await self._send(request))
        return CallResult.from_envelope(CallEnvelope.model_validate(body))

    async def submit(
        self,
        ref: str | ModelRef,
        data: Any,
        *,
        content_type: str | None = None,
        timeout_s: float | None = None,
    ) -> Job:
        """See :meth:`Client.submit`."""
        request = _submit_request(_as_ref(ref), data, content_type, timeout_s)
        return Job.from_info(JobInfo.model_validate(_json(await self._send(request))))

    async def job(self, job_id: str) -> Job:
        """See :meth:`Client.job`."""
        return Job.from_info(JobInfo.model_validate(await self._get(f"/v1/jobs/{job_id}")))

    async def wait(self, job_id: str, timeout_s: float = 60.0, *, poll_s: float = 0.2) -> Job:
        """See :meth:`Client.wait`."""
        deadline = time.monotonic() + timeout_s
        while not (job := await self.job(job_id)).done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s}s")
            await asyncio.sleep(poll_s)
        return job

    async def push(
        self,
        path: str | Path,
        version: str | None = None,
        bump: Bump | None = None,
        publish: bool = True,
        *,
        on_log: Callable[[str], None] | None = None,
    ) -> PushInfo:
        """See :meth:`Client.push`."""
        request = _push_request(Path(path), version, bump, publish)
        try:
            async with self._http.stream(
                "POST",
                request.path,
                params=dict(request.params),
                content=request.content,
                headers=dict(request.headers),
                timeout=httpx.Timeout(None, connect=10.0),
            ) as response:
                if response.is_error:
                    raise error_from_response(response.status_code, await response.aread())
                async for line in _lines(response):
                    if done := _push_event(line, on_log):
                        return done
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
        raise _no_result()

    async def publish(
        self,
        owner: str,
        name: str,
        *,
        build: str | None = None,
        version: str | None = None,
        bump: Bump | None = None,
    ) -> VersionInfo:
        """See :meth:`Client.publish`."""
        request = _publish_request(owner, name, build, version, bump)
        return VersionInfo.model_validate(_json(await self._send(request)))

    async def models(self) -> list[ModelInfo]:
        """See :meth:`Client.models`."""
        return [ModelInfo.model_validate(m) for m in await self._get("/v1/models")]

    async def model(self, owner: str, name: str) -> ModelInfo:
        """See :meth:`Client.model`."""
        return ModelInfo.model_validate(await self._get(f"/v1/models/{owner}/{name}"))

    async def versions(self, owner: str, name: str) -> list[VersionInfo]:
        """See :meth:`Client.versions`."""
        found = await self._get(_versions_path(owner, name))
        return [VersionInfo.model_validate(v) for v in found]

    async def builds(self, owner: str, name: str) -> list[BuildInfo]:
        """See :meth:`Client.builds`."""
        found = await self._get(f"/v1/models/{owner}/{name}/builds")
        return [BuildInfo.model_validate(b) for b in found]

    async def build(self, build_hash: str) -> BuildInfo:
        """See :meth:`Client.build`."""
        return BuildInfo.model_validate(await self._get(f"/v1/builds/{build_hash}"))

    async def create_key(self, name: str, scopes: Iterable[str]) -> CreatedKey:
        """See :meth:`Client.create_key`."""
        return CreatedKey.model_validate(_json(await self._send(_key_request(name, scopes))))

    async def keys(self) -> list[KeyInfoOut]:
        """See :meth:`Client.keys`."""
        return [KeyInfoOut.model_validate(k) for k in await self._get("/v1/keys")]

    async def revoke_key(self, key_id: str) -> KeyInfoOut:
        """See :meth:`Client.revoke_key`."""
        request = _Request(method="DELETE", path=f"/v1/keys/{key_id}")
        return KeyInfoOut.model_validate(_json(await self._send(request)))

    # --- listeners ---------------------------------------------------------------------------

    async def listeners(self) -> list[ListenerOut]:
        """See :meth:`Client.listeners`."""
        return [ListenerOut.model_validate(x) for x in await self._get("/v1/listeners")]

    async def listener(self, name: str) -> ListenerOut:
        """See :meth:`Client.listener`."""
        return ListenerOut.model_validate(await self._get(f"/v1/listeners/{name}"))

    async def create_listener(
        self, definition: DefinitionLike, *, check: bool = True
    ) -> ListenerOut:
        """See :meth:`Client.create_listener`."""
        request = _create_listener_request(definition, check)
        return ListenerOut.model_validate(_json(await self._send(request)))

    async def put_listener(self, definition: DefinitionLike, *, check: bool = True) -> ListenerOut:
        """See :meth:`Client.put_listener`."""
        request = _put_listener_request(definition, check)
        return ListenerOut.model_validate(_json(await self._send(request)))

    async def apply_listeners(
        self, definitions: Iterable[DefinitionLike], *, prune: bool = False, check: bool = True
    ) -> ApplyOut:
        """See :meth:`Client.apply_listeners`."""
        request = _apply_request(definitions, prune, check)
        return ApplyOut.model_validate(_json(await self._send(request)))

    async def delete_listener(self, name: str) -> None:
        """See :meth:`Client.delete_listener`."""
        _empty(await self._send(_Request(method="DELETE", path=f"/v1/listeners/{name}")))

    async def pause_listener(self, name: str) -> ListenerOut:
        """See :meth:`Client.pause_listener`."""
        return ListenerOut.model_validate(_json(await self._send(_listener_action(name, "pause"))))

    async def resume_listener(self, name: str) -> ListenerOut:
        """See :meth:`Client.resume_listener`."""
        request = _listener_action(name, "resume")
        return ListenerOut.model_validate(_json(await self._send(request)))

    async def listener_status(self, name: str) -> ListenerStatusOut:
        """See :meth:`Client.listener_status`."""
        return ListenerStatusOut.model_validate(await self._get(f"/v1/listeners/{name}/status"))

    async def runs(self, message_id: str, *, listener: str | None = None) -> list[RunOut]:
        """See :meth:`Client.runs`."""
        params = {"listener": listener} if listener else {}
        found = await self._get(_run_path(message_id), **params)
        return [RunOut.model_validate(r) for r in found]

    async def listener_runs(
        self, name: str, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        """See :meth:`Client.listener_runs`."""
        params = _page_params(limit, cursor, status=status)
        return RunPage.model_validate(await self._get(f"/v1/listeners/{name}/runs", **params))

    async def dead_letters(
        self,
        listener: str,
        *,
        include_redriven: bool = True,
        limit: int = 50,
        cursor: str | None = None,
    ) -> DeadLetterPage:
        """See :meth:`Client.dead_letters`."""
        params = _page_params(limit, cursor, include_redriven=str(include_redriven).lower())
        path = f"/v1/listeners/{listener}/dead-letters"
        return DeadLetterPage.model_validate(await self._get(path, **params))

    async def dead_letter(self, letter_id: str) -> DeadLetterOut:
        """See :meth:`Client.dead_letter`."""
        return DeadLetterOut.model_validate(await self._get(f"/v1/dead-letters/{letter_id}"))

    async def redrive(
        self,
        listener: str,
        *,
        ids: Iterable[str] | None = None,
        spec: str | None = None,
        rate_per_s: float | None = None,
    ) -> RedriveOut:
        """See :meth:`Client.redrive`."""
        request = _redrive_request(listener, ids, spec, rate_per_s)
        return RedriveOut.model_validate(_json(await self._send(request)))

    async def metrics(self) -> str:
        """See :meth:`Client.metrics`."""
        return _text(await self._send(_Request(method="GET", path="/metrics")))


async def _lines(response: httpx.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        if line.strip():
            yield line
