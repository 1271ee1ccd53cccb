"""Every error leaves the API as JSON: ``{"error": {"message", "error_type", "code", ...}}``.

``code`` is the name of the class in :mod:`modelbus.errors` (``VersionNotFound``,
``InvocationTimeout``...), so a client can raise the same class again; ``error_type`` is the
short machine name a caller shows (for a model error, the model's own exception class).
The HTTP status follows from the class alone (:func:`status_for`).

Under ``/v2`` (the Open Inference Protocol, :mod:`modelbus.web.api.oip`) the same errors,
with the same statuses, take that protocol's shape: ``{"error": "<message>"}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelbus import errors
from modelbus.client.schemas import ErrorBody
from modelbus.listeners.credentials import redact_text

log = logging.getLogger("modelbus.web.api")

# Most specific first: the first class an exception is an instance of decides the status.
_STATUS: tuple[tuple[type[errors.ModelbusError], int], ...] = (
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedContentType, 415),
    (errors.InvalidInput, 400),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.Unauthenticated, 401),
    (errors.Forbidden, 403),
    (errors.BuildError, 422),
    (errors.ArtifactUnavailable, 503),
    (errors.ArtifactError, 500),  # missing or corrupt: the server lost data, not the caller
    (errors.InputRejected, 400),
    (errors.ModelError, 400),  # Algorithmia: "if the algorithm returned an error, HTTP 400"
    (errors.InvocationTimeout, 504),
    (errors.RunnerCrashed, 502),
    (errors.Overloaded, 503),
    (errors.InvocationError, 500),
    (errors.MissingExtra, 501),
    (errors.ConnectorConfigError, 400),
    (errors.ConnectorError, 502),
)

_NOT_UNICODE = (
    "the request holds text that is not valid Unicode (a lone surrogate such as \\ud800 "
    "in a JSON string): send valid UTF-8 text"
)
AUTHENTICATE_HEADER = 'Simple realm="modelbus", Bearer realm="modelbus"'
# When to try again after the artifact store could not be reached.
ARTIFACTS_RETRY_AFTER_S = 5


def status_for(exc: errors.ModelbusError) -> int:
    """The HTTP status for a modelbus error (500 for one this table does not know)."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_detail(exc: errors.ModelbusError) -> dict[str, Any]:
    """The inside of the ``error`` member for ``exc``: message, error_type, code, and
    ``stacktrace``/``version``/``permanent`` for invocation errors, ``log`` for build errors."""
    detail: dict[str, Any] = {
        "message": exc.message,
        "error_type": type(exc).__name__,
        "code": type(exc).__name__,
    }
    if isinstance(exc, errors.InvocationError):
        detail["error_type"] = exc.error_type
        detail["stacktrace"] = exc.stacktrace
        detail["permanent"] = exc.permanent
        if exc.version is not None:
            detail["version"] = exc.version
    if isinstance(exc, errors.BuildError):
        detail["log"] = exc.log
    return detail


def error_headers(exc: errors.ModelbusError) -> dict[str, str]:
    """Headers that go with an error response: how to authenticate, when to retry."""
    if isinstance(exc, errors.Unauthenticated):
        return {"WWW-Authenticate": AUTHENTICATE_HEADER}
    if isinstance(exc, errors.Overloaded):
        return {"Retry-After": "1"}
    if isinstance(exc, errors.ArtifactUnavailable):
        return {"Retry-After": str(ARTIFACTS_RETRY_AFTER_S)}
    return {}


OIP_PREFIX = "/v2"


def is_oip(path: str) -> bool:
    """Whether ``path`` is under the Open Inference Protocol's ``/v2``."""
    return path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/")


def _shaped(
    path: str, detail: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": detail["message"] if is_oip(path) else detail}
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(exc: errors.ModelbusError, *, path: str = "") -> JSONResponse:
    """The JSON response for a modelbus error on ``path``, with its status and headers."""
    return _shaped(path, error_detail(exc), status_for(exc), error_headers(exc))


def plain_error(status: int, message: str, code: str, *, path: str = "") -> JSONResponse:
    """An error response for a failure that has no modelbus class (routing, validation)."""
    detail = {"message": message, "error_type": code, "code": code}
    return _shaped(path, detail, status)


async def _on_modelbus_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ModelbusError)
    # Broker errors may quote a connector URL: never answer with a credential in it.
    running = getattr(request.app.state, "services", None)
    redact = running.credentials.redact if running is not None else redact_text
    detail = error_detail(exc)
    detail["message"] = redact(detail["message"])
    return _shaped(request.url.path, detail, status_for(exc), error_headers(exc))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    response = plain_error(exc.status_code, str(exc.detail), code, path=request.url.path)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # OIP answers every malformed request 400.
    status = 400 if is_oip(request.url.path) else 422
    return plain_error(status, validation_message(exc), "ValidationError", path=request.url.path)


def validation_message(exc: RequestValidationError) -> str:
    """``invalid request: query.all: Input should be a valid boolean; ...``."""
    return "invalid request: " + "; ".join(_describe(e) for e in exc.errors())


def _describe(problem: Any) -> str:
    where = ".".join(str(part) for part in problem.get("loc", ()))
    return f"{where}: {problem.get('msg', 'invalid')}"


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, UnicodeError):
        # Text that is no Unicode (a lone surrogate from a JSON escape, say) got past the
        # parsers into something that encodes it: the caller's input, not our failure.
        # (Never the exception's own name: no internal class reaches a client.)
        return await _on_modelbus_error(request, errors.InvalidInput(_NOT_UNICODE))
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return plain_error(500, "internal server error", "InternalError", path=request.url.path)


def install(app: FastAPI) -> None:
    """Make every error of ``app`` answer in the one JSON shape."""
    app.add_exception_handler(errors.ModelbusError, _on_modelbus_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)


_DESCRIPTIONS = {
    400: "Malformed request: bad version spec, invalid JSON, input rejected by the schema, "
    "or the model raised an error",
    401: "No API key, or an unknown or revoked one",
    403: "The API key lacks the scope",
    404: "Unknown model, version, build or job",
    409: "Conflicts with what is stored",
    413: "Body over the size limit",
    415: "Unsupported Content-Type",
    422: "Invalid parameters, or the build failed",
    500: "The version's archive is missing from the artifact store (ArtifactMissing) or "
    "does not match its content hash (ArtifactCorrupt); pushing the version again restores a "
    "missing one",
    502: "The runner process crashed during the call",
    503: "The model's pool is overloaded (Overloaded), or this node cannot reach the artifact "
    "store (ArtifactUnavailable); retry later",
    504: "The call ran past its timeout",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses, all in the one error shape."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in (401, 403, *statuses)}


def job_error_code(error_type: str) -> str:
    """The error class of a stored job error: its ``error_type`` when that names a modelbus
    error (timeouts, crashes, rejected inputs...), else ``ModelError`` (the model's own)."""
    found = getattr(errors, error_type, None)
    if isinstance(found, type) and issubclass(found, errors.ModelbusError):
        return error_type
    return "ModelError"
