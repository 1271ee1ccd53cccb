"""Request bodies in, results out: the HTTP side of :class:`~modelbus.runtime.invocation.Payload`.

A body is read with a size limit enforced chunk by chunk, so an endless upload is refused as
soon as it passes the limit rather than after it was buffered. Its ``Content-Type`` names the
input's kind, as on Algorithmia: ``application/json`` (and ``*+json``) is JSON,
``text/*`` and ``application/text`` are text, any other type is binary (kept as its MIME
type). Form encodings are refused (415): they are a browser's way to send fields, not an input.
A request without a ``Content-Type`` is sniffed: JSON if it parses, else text, else binary.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import Request

from modelbus.errors import InvalidInput, PayloadTooLarge, UnsupportedContentType
from modelbus.runtime import jsondoc
from modelbus.runtime.invocation import Payload, Result
from modelbus.web.api.context import services

_UTF8 = {"utf-8", "utf8", "us-ascii", "ascii"}
_FORMS = ("application/x-www-form-urlencoded", "multipart/")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, or :class:`PayloadTooLarge` once more than ``max_bytes`` arrived
    (at once when ``Content-Length`` already says so)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    return bytes(body)


async def read_payload(request: Request) -> Payload:
    """The request's body as a model input, within the server's body size limit."""
    data = await read_body(request, services(request).settings.max_body_bytes)
    return payload_from_body(request.headers.get("content-type"), data)


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")


def parse_media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """``"text/plain; charset=latin-1"`` -> ``("text/plain", {"charset": "latin-1"})``."""
    if not header:
        return "", {}
    media, *params = header.split(";")
    parsed = {}
    for param in params:
        key, _, value = param.partition("=")
        parsed[key.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), parsed


def payload_from_body(content_type: str | None, data: bytes) -> Payload:
    """Turn a body and its ``Content-Type`` header into a Payload.

    Raises :class:`InvalidInput` for JSON that does not parse or text that does not decode,
    and :class:`UnsupportedContentType` for form encodings.
    """
    media, params = parse_media_type(content_type)
    if not media:
        return Payload.sniff(data)
    if media == "application/json" or media.endswith("+json"):
        return _json_payload(data, params.get("charset", "utf-8"))
    if media.startswith("text/") or media == "application/text":
        return Payload(_as_utf8(data, params.get("charset", "utf-8")), "text")
    if media.startswith(_FORMS):
        raise UnsupportedContentType(
            f"{media} is not accepted here: send application/json, text/plain "
            "or application/octet-stream"
        )
    return Payload(data, "binary", None if media == "application/octet-stream" else media)


def _json_payload(data: bytes, charset: str) -> Payload:
    data = _as_utf8(data, charset)
    try:
        jsondoc.loads(data)
    except ValueError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from exc
    return Payload(data, "json")


def _as_utf8(data: bytes, charset: str) -> bytes:
    """``data`` as UTF-8, transcoded from ``charset`` when it is another encoding."""
    try:
        text = data.decode(charset)
        # Some codecs (utf-7, unicode_escape...) decode to lone surrogates, which are not text.
        return data if charset.lower() in _UTF8 else text.encode("utf-8")
    except LookupError as exc:
        raise UnsupportedContentType(f"unknown charset {charset!r}") from exc
    except ValueError as exc:  # UnicodeError is a ValueError; so is a NUL in the name
        raise InvalidInput(f"the body is not valid {charset} text: {exc}") from exc


def result_value(output: Payload) -> Any:
    """The value as it goes in a JSON envelope: binary as base64 text, as Algorithmia does."""
    if output.content_type == "binary":
        return base64.b64encode(output.data).decode("ascii")
    return output.value()


def result_metadata(result: Result, *, stdout: bool) -> dict[str, Any]:
    """Algorithmia's metadata (``content_type``, ``duration`` in seconds) plus the resolved
    ``version``, the binary ``mime`` when known, and ``stdout`` when it was asked for."""
    metadata: dict[str, Any] = {
        "content_type": result.output.content_type,
        "duration": result.duration_ms / 1000.0,
        "version": result.version,
    }
    if result.output.mime:
        metadata["mime"] = result.output.mime
    if stdout:
        metadata["stdout"] = result.stdout or ""
    return metadata


def result_envelope(result: Result, *, stdout: bool) -> dict[str, Any]:
    """``{"result": ..., "metadata": {...}}`` for a successful call."""
    return {
        "result": result_value(result.output),
        "metadata": result_metadata(result, stdout=stdout),
    }


def raw_media_type(output: Payload) -> str:
    """The ``Content-Type`` of a bare result body (``output=raw``)."""
    if output.content_type == "json":
        return "application/json"
    if output.content_type == "text":
        return "text/plain; charset=utf-8"
    return output.mime or "application/octet-stream"


# The request body of every invocation route, for the OpenAPI document (routes read it raw).
INPUT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The model input; its Content-Type says whether it is JSON, text or binary.",
        "content": {
            "application/json": {"schema": {}},
            "text/plain": {"schema": {"type": "string"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
