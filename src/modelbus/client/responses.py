"""Reading the server's answers: a response's JSON, or the exception it stands for.

An error response's body is ``{"error": ErrorDetail}``; :func:`error_from_detail` turns it back
into the :mod:`modelbus.errors` class the server raised (by its ``code``, else by the HTTP
status), so callers catch :class:`~modelbus.errors.VersionNotFound`, not HTTP 404. The parsers
here (:func:`json_of`, :func:`one`, :func:`many`, ...) raise that exception for an error
response and read a successful one; a push's NDJSON progress is read a line at a time by
:func:`push_event`. Nothing here does I/O: both clients use these on what they received.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from modelbus import errors
from modelbus.client.schemas import ErrorDetail, PushEvent, PushInfo

__all__ = [
    "error_from_detail",
    "error_from_response",
    "json_of",
    "many",
    "no_result",
    "nothing",
    "one",
    "push_event",
    "text_of",
]

S = TypeVar("S", bound=BaseModel)


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


def _check(response: httpx.Response) -> None:
    if response.is_error:
        raise error_from_response(response.status_code, response.content)


def json_of(response: httpx.Response) -> Any:
    """The body's JSON value; raises the error an error response stands for."""
    _check(response)
    return response.json()


def nothing(response: httpx.Response) -> None:
    """Nothing (a ``204``); raises the error an error response stands for."""
    _check(response)


def text_of(response: httpx.Response) -> str:
    """The body as text; raises the error an error response stands for."""
    _check(response)
    return response.text


def one(schema: type[S]) -> Callable[[httpx.Response], S]:
    """A parser reading the body as one ``schema``."""

    def parse(response: httpx.Response) -> S:
        return schema.model_validate(json_of(response))

    return parse


def many(schema: type[S]) -> Callable[[httpx.Response], list[S]]:
    """A parser reading the body as a JSON list of ``schema``."""

    def parse(response: httpx.Response) -> list[S]:
        return [schema.model_validate(item) for item in json_of(response)]

    return parse


def push_event(line: str, on_log: Callable[[str], None] | None) -> PushInfo | None:
    """Handle one NDJSON progress line (blank ones are skipped); the PushInfo once the final
    line arrives. An ``error`` line raises the error it describes."""
    if not line.strip():
        return None
    event = PushEvent.model_validate_json(line)
    if event.event == "log" and on_log is not None:
        on_log(event.line or "")
    if event.event == "error" and event.error is not None:
        raise error_from_detail(event.error, 422)
    return event.result


def no_result() -> errors.ModelbusError:
    """The error for a push stream that ended before its result line."""
    return errors.ModelbusError("the push stream ended without a result")
