"""The request layer: every API operation, written once for both clients.

An API operation is an :class:`Operation`: the :class:`Request` to send (method, path, query,
body, headers, timeout) and how its response is read (``parse``, from
:mod:`modelbus.client.responses`: the typed result, or the :mod:`modelbus.errors` exception an
error response stands for). There is one function here per client method, named like it;
:class:`~modelbus.client.sync.Client` and :class:`~modelbus.client.aio.AsyncClient` only send
(``parse(http.request(**request.options()))``, awaited or not). Building an operation does no
I/O but :func:`push`'s packing of the folder; what it refuses (a bad reference, an input
that cannot be encoded) is raised before anything is sent.

Two operations are loops, written by each client around what is shared here: ``push`` reads
its NDJSON progress stream line by line (:func:`~modelbus.client.responses.push_event`), and
``wait`` polls :func:`job` until the job is done or its :class:`Deadline` has passed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx

from modelbus import errors
from modelbus.client.archive import ModelName, pack_model
from modelbus.client.connection import CONNECT_TIMEOUT_S
from modelbus.client.refs import ModelRef, is_name
from modelbus.client.responses import json_of, many, nothing, one, text_of
from modelbus.client.results import CallResult, Job
from modelbus.client.schemas import (
    LISTENER_NAME_PATTERN,
    MAX_REDRIVE_RATE_PER_S,
    ApplyOut,
    BuildInfo,
    CallEnvelope,
    ContentTypeName,
    CreatedKey,
    DeadLetterOut,
    DeadLetterPage,
    FlowGraph,
    JobInfo,
    KeyInfoOut,
    ListenerFields,
    ListenerHistoryOut,
    ListenerOut,
    ListenerStatusOut,
    ModelHistoryOut,
    ModelInfo,
    NodeOut,
    RedriveOut,
    RunOut,
    RunPage,
    SearchRedriveOut,
    VersionInfo,
)

__all__ = [
    "Bump",
    "Deadline",
    "DefinitionLike",
    "Moment",
    "Operation",
    "Request",
    "SearchFilters",
    "encode_input",
]

T = TypeVar("T")
Bump = Literal["major", "minor", "patch"]
DefinitionLike = ListenerFields | Mapping[str, Any]

# Time allowed beyond a call's own timeout for the server to answer with its 504.
_TIMEOUT_MARGIN_S = 30.0
_REDRIVE_TIMEOUT_S = 24 * 3600.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    """What to send. ``timeout`` None: the client's own timeout."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None
    json_body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | httpx.Timeout | None = None

    def options(self) -> dict[str, Any]:
        """The keyword arguments of ``request()`` and ``stream()``, on either httpx client."""
        return {
            "method": self.method,
            "url": self.path,
            "params": dict(self.params),
            "content": self.content,
            "json": self.json_body,
            "headers": dict(self.headers),
            "timeout": self.timeout or httpx.USE_CLIENT_DEFAULT,
        }


@dataclass(frozen=True, slots=True)
class Operation(Generic[T]):
    """One API operation: the request, and how its response is read."""

    request: Request
    parse: Callable[[httpx.Response], T]


class Deadline:
    """The end of ``wait(job_id, timeout_s)``, checked after each poll."""

    def __init__(self, job_id: str, timeout_s: float) -> None:
        self.job_id, self.timeout_s = job_id, timeout_s
        self.at = time.monotonic() + timeout_s

    def check(self, job: Job) -> None:
        """Raise :class:`TimeoutError` if the unfinished ``job`` is out of time."""
        if time.monotonic() > self.at:
            raise TimeoutError(f"job {self.job_id} still {job.status} after {self.timeout_s}s")


def _get(path: str, parse: Callable[[httpx.Response], T], **params: str) -> Operation[T]:
    return Operation(Request(method="GET", path=path, params=params), parse)


# --- invocations --------------------------------------------------------------------------

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


def _model_path(ref: str | ModelRef) -> str:
    ref = ref if isinstance(ref, ModelRef) else ModelRef.parse(ref)
    base = f"/v1/models/{ref.owner}/{ref.name}"
    return base if ref.spec == "latest" else f"{base}/versions/{ref.spec}"


def _call_result(response: httpx.Response) -> CallResult:
    return CallResult.from_envelope(CallEnvelope.model_validate(json_of(response)))


def _job(response: httpx.Response) -> Job:
    return Job.from_info(JobInfo.model_validate(json_of(response)))


def call(
    ref: str | ModelRef, data: Any, content_type: str | None, timeout_s: float | None, stdout: bool
) -> Operation[CallResult]:
    path = _model_path(ref) + "/invoke"
    body, media = encode_input(data, content_type)
    params = {"stdout": "true"} if stdout else {}
    if timeout_s is not None:
        params["timeout"] = str(timeout_s)
    request = Request(
        method="POST",
        path=path,
        params=params,
        content=body,
        headers={"Content-Type": media},
        timeout=None if timeout_s is None else timeout_s + _TIMEOUT_MARGIN_S,
    )
    return Operation(request, _call_result)


def submit(
    ref: str | ModelRef, data: Any, content_type: str | None, timeout_s: float | None
) -> Operation[Job]:
    path = _model_path(ref) + "/jobs"
    body, media = encode_input(data, content_type)
    params = {} if timeout_s is None else {"timeout": str(timeout_s)}
    request = Request(
        method="POST", path=path, params=params, content=body, headers={"Content-Type": media}
    )
    return Operation(request, _job)


def job(job_id: str) -> Operation[Job]:
    return _get(f"/v1/jobs/{job_id}", _job)


# --- models, builds, keys -----------------------------------------------------------------


def model_name(text: str | None) -> ModelName | None:
    """``"OWNER/NAME"`` as a :class:`ModelName`; raises InvalidInput for another form."""
    if text is None:
        return None
    owner, sep, name = text.partition("/")
    if not (sep and is_name(owner) and is_name(name)):
        raise errors.InvalidInput(f"{text!r} is not OWNER/NAME (letters, digits, '_', '.' or '-')")
    return ModelName(owner=owner, name=name)


def push(
    path: str | Path,
    version: str | None,
    bump: Bump | None,
    publish: bool,
    name: ModelName | None = None,
) -> Request:
    """The upload of the packed folder, answered as an NDJSON progress stream (read with
    :func:`~modelbus.client.responses.push_event`; the build may take long, so no read
    timeout). ``name``: the model's, for an Algorithmia ADK folder (see
    :func:`~modelbus.client.archive.pack_model`)."""
    model, archive = pack_model(Path(path), name)
    params = {"publish": "true" if publish else "false"}
    if version:
        params["version"] = version
    if bump:
        params["bump"] = bump
    return Request(
        method="POST",
        path=f"/v1/models/{model.owner}/{model.name}/versions",
        params=params,
        content=archive,
        headers={"Content-Type": "application/gzip", "Accept": "application/x-ndjson"},
        timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S),
    )


def publish(
    owner: str, name: str, build: str | None, version: str | None, bump: Bump | None
) -> Operation[VersionInfo]:
    body = {"build": build, "version": version, "bump": bump}
    request = Request(method="POST", path=f"/v1/models/{owner}/{name}/publish", json_body=body)
    return Operation(request, one(VersionInfo))


def models() -> Operation[list[ModelInfo]]:
    return _get("/v1/models", many(ModelInfo))


def model(owner: str, name: str) -> Operation[ModelInfo]:
    return _get(f"/v1/models/{owner}/{name}", one(ModelInfo))


def versions(owner: str, name: str) -> Operation[list[VersionInfo]]:
    return _get(f"/v1/models/{owner}/{name}/versions", many(VersionInfo))


def builds(owner: str, name: str) -> Operation[list[BuildInfo]]:
    return _get(f"/v1/models/{owner}/{name}/builds", many(BuildInfo))


def build(build_hash: str) -> Operation[BuildInfo]:
    return _get(f"/v1/builds/{build_hash}", one(BuildInfo))


def create_key(name: str, scopes: Iterable[str]) -> Operation[CreatedKey]:
    body = {"name": name, "scopes": list(scopes)}
    return Operation(Request(method="POST", path="/v1/keys", json_body=body), one(CreatedKey))


def keys() -> Operation[list[KeyInfoOut]]:
    return _get("/v1/keys", many(KeyInfoOut))


def revoke_key(key_id: str) -> Operation[KeyInfoOut]:
    return Operation(Request(method="DELETE", path=f"/v1/keys/{key_id}"), one(KeyInfoOut))


# --- listeners ----------------------------------------------------------------------------


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


def listeners() -> Operation[list[ListenerOut]]:
    return _get("/v1/listeners", many(ListenerOut))


def listener(name: str) -> Operation[ListenerOut]:
    return _get(f"/v1/listeners/{name}", one(ListenerOut))


def create_listener(definition: DefinitionLike, check: bool) -> Operation[ListenerOut]:
    body = _definition_json(definition)
    request = Request(
        method="POST", path="/v1/listeners", params=_check_param(check), json_body=body
    )
    return Operation(request, one(ListenerOut))


def put_listener(definition: DefinitionLike, check: bool) -> Operation[ListenerOut]:
    body = _definition_json(definition)
    path = _listener_path(body)
    request = Request(method="PUT", path=path, params=_check_param(check), json_body=body)
    return Operation(request, one(ListenerOut))


def apply_listeners(
    definitions: Iterable[DefinitionLike], prune: bool, check: bool
) -> Operation[ApplyOut]:
    body = {"listeners": [_definition_json(d) for d in definitions], "prune": prune}
    params = _check_param(check)
    request = Request(method="PUT", path="/v1/listeners", params=params, json_body=body)
    return Operation(request, one(ApplyOut))


def delete_listener(name: str) -> Operation[None]:
    return Operation(Request(method="DELETE", path=f"/v1/listeners/{name}"), nothing)


def _listener_action(name: str, action: str) -> Operation[ListenerOut]:
    request = Request(method="POST", path=f"/v1/listeners/{name}/{action}")
    return Operation(request, one(ListenerOut))


def pause_listener(name: str) -> Operation[ListenerOut]:
    return _listener_action(name, "pause")


def resume_listener(name: str) -> Operation[ListenerOut]:
    return _listener_action(name, "resume")


def asyncapi() -> Operation[dict[str, Any]]:
    return _get("/v1/asyncapi.json", json_of)


def listener_status(name: str) -> Operation[ListenerStatusOut]:
    return _get(f"/v1/listeners/{name}/status", one(ListenerStatusOut))


def _window(window_s: float | None, step_s: float | None) -> dict[str, str]:
    given = {"window_s": window_s, "step_s": step_s}
    return {k: str(v) for k, v in given.items() if v is not None}


def listener_history(
    name: str, window_s: float | None, step_s: float | None
) -> Operation[ListenerHistoryOut]:
    return _get(
        f"/v1/listeners/{name}/history", one(ListenerHistoryOut), **_window(window_s, step_s)
    )


def model_history(
    owner: str, name: str, window_s: float | None, step_s: float | None
) -> Operation[ModelHistoryOut]:
    path = f"/v1/models/{owner}/{name}/history"
    return _get(path, one(ModelHistoryOut), **_window(window_s, step_s))


def flow() -> Operation[FlowGraph]:
    return _get("/v1/flow", one(FlowGraph))


# --- runs and dead letters ----------------------------------------------------------------


def _page_params(limit: int, cursor: str | None, **more: str | None) -> dict[str, str]:
    params = {"limit": str(limit), **{k: v for k, v in more.items() if v is not None}}
    if cursor:
        params["cursor"] = cursor
    return params


def runs(message_id: str, listener: str | None) -> Operation[list[RunOut]]:
    # Broker ids may hold '/', '?', '#' or spaces: the route takes the whole decoded path.
    path = "/v1/runs/" + quote(message_id, safe="")
    params = {"listener": listener} if listener else {}
    return _get(path, many(RunOut), **params)


def listener_runs(
    name: str, status: str | None, limit: int, cursor: str | None
) -> Operation[RunPage]:
    params = _page_params(limit, cursor, status=status)
    return _get(f"/v1/listeners/{name}/runs", one(RunPage), **params)


def dead_letters(
    listener: str, include_redriven: bool, limit: int, cursor: str | None
) -> Operation[DeadLetterPage]:
    params = _page_params(limit, cursor, include_redriven=str(include_redriven).lower())
    return _get(f"/v1/listeners/{listener}/dead-letters", one(DeadLetterPage), **params)


Moment = str | float | datetime
"""A time for a search: epoch s, an ISO 8601 text (UTC if no zone) or a datetime."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SearchFilters:
    """What ``GET /v1/runs`` and ``/v1/dead-letters`` are narrowed to (None: anything)."""

    listener: str | None = None
    message_id: str | None = None
    object_key: str | None = None
    since: Moment | None = None
    until: Moment | None = None

    def params(self) -> dict[str, str]:
        """The query parameters (or JSON fields) of the filters given."""
        found = {
            "listener": self.listener,
            "message_id": self.message_id,
            "object_key": self.object_key,
            "since": _moment(self.since),
            "until": _moment(self.until),
        }
        return {k: v for k, v in found.items() if v is not None}


def search_filters(
    listener: str | None,
    message_id: str | None,
    object_key: str | None,
    since: Moment | None,
    until: Moment | None,
) -> SearchFilters:
    """The filters of a client's search method, from its keyword arguments in this order."""
    return SearchFilters(
        listener=listener, message_id=message_id, object_key=object_key, since=since, until=until
    )


def _moment(at: Moment | None) -> str | None:
    if at is None or isinstance(at, str):
        return at
    return at.isoformat() if isinstance(at, datetime) else repr(float(at))


def search_runs(
    filters: SearchFilters, status: str | None, limit: int, cursor: str | None
) -> Operation[RunPage]:
    params = _page_params(limit, cursor, status=status, **filters.params())
    return _get("/v1/runs", one(RunPage), **params)


def search_dead_letters(
    filters: SearchFilters, include_redriven: bool, limit: int, cursor: str | None
) -> Operation[DeadLetterPage]:
    params = _page_params(
        limit, cursor, include_redriven=str(include_redriven).lower(), **filters.params()
    )
    return _get("/v1/dead-letters", one(DeadLetterPage), **params)


def checked_rate(rate_per_s: float | None) -> float | None:
    """``rate_per_s`` if a redrive may go at that pace (above 0, at most
    MAX_REDRIVE_RATE_PER_S; None: the server's default); raises InvalidInput otherwise (nan
    and infinity included, which JSON cannot even carry)."""
    if rate_per_s is not None and not 0 < rate_per_s <= MAX_REDRIVE_RATE_PER_S:
        raise errors.InvalidInput(
            f"rate_per_s: give a number of letters per second above 0, at most "
            f"{MAX_REDRIVE_RATE_PER_S:g} (not {rate_per_s!r})"
        )
    return rate_per_s


def redrive_matching(
    filters: SearchFilters,
    include_redriven: bool,
    every: bool,
    spec: str | None,
    rate_per_s: float | None,
) -> Operation[SearchRedriveOut]:
    body = {
        **filters.params(),
        "all": every,
        "include_redriven": include_redriven,
        "spec": spec,
        "rate_per_s": checked_rate(rate_per_s),
    }
    request = Request(
        method="POST", path="/v1/dead-letters/redrive", json_body=body, timeout=_REDRIVE_TIMEOUT_S
    )
    return Operation(request, one(SearchRedriveOut))


def dead_letter(letter_id: str) -> Operation[DeadLetterOut]:
    return _get(f"/v1/dead-letters/{letter_id}", one(DeadLetterOut))


def redrive(
    listener: str, ids: Iterable[str] | None, spec: str | None, rate_per_s: float | None
) -> Operation[RedriveOut]:
    body = {
        "ids": list(ids) if ids is not None else None,
        "spec": spec,
        "rate_per_s": checked_rate(rate_per_s),
    }
    request = Request(
        method="POST",
        path=f"/v1/listeners/{listener}/dead-letters/redrive",
        json_body=body,
        timeout=_REDRIVE_TIMEOUT_S,
    )
    return Operation(request, one(RedriveOut))


def nodes(gone: bool) -> Operation[list[NodeOut]]:
    return _get("/v1/nodes", many(NodeOut), gone="true" if gone else "false")


def metrics() -> Operation[str]:
    return Operation(Request(method="GET", path="/metrics"), text_of)
