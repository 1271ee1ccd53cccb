"""The API's pure parts, without a server: body parsing, header parsing, status mapping,
Algorithmia version segments, and the SDK's error mapping (its inverse)."""

from __future__ import annotations

import json

import pytest

from modelbus import errors
from modelbus.client import encode_input, error_from_response
from modelbus.web.api.algorithmia import algorithmia_spec
from modelbus.web.api.auth import key_from_header
from modelbus.web.api.errors import error_detail, job_error_code, status_for
from modelbus.web.api.payloads import payload_from_body


@pytest.mark.parametrize(
    ("header", "body", "kind", "data", "mime"),
    [
        ("application/json", b'{"a": 1}', "json", b'{"a": 1}', None),
        ("application/cloudevents+json", b"[1]", "json", b"[1]", None),
        ("application/json; charset=utf-16", '"é"'.encode("utf-16"), "json", '"é"'.encode(), None),
        ("text/plain", "é".encode(), "text", "é".encode(), None),
        ("text/csv; charset=latin-1", "é".encode("latin-1"), "text", "é".encode(), None),
        ("application/text", b"x", "text", b"x", None),
        ("application/octet-stream", b"\x00", "binary", b"\x00", None),
        ("image/png", b"\x89PNG", "binary", b"\x89PNG", "image/png"),
        (None, b'{"sniffed": true}', "json", b'{"sniffed": true}', None),
        (None, b"plain", "text", b"plain", None),
        (None, b"\xff\xfe\x00", "binary", b"\xff\xfe\x00", None),
    ],
)
def test_payload_from_body(
    header: str | None, body: bytes, kind: str, data: bytes, mime: str | None
) -> None:
    payload = payload_from_body(header, body)
    assert (payload.content_type, payload.data, payload.mime) == (kind, data, mime)


@pytest.mark.parametrize(
    ("header", "body", "error"),
    [
        ("application/json", b"{", errors.InvalidInput),
        ("text/plain", b"\xff", errors.InvalidInput),
        ("text/plain; charset=klingon", b"x", errors.UnsupportedContentType),
        ("application/x-www-form-urlencoded", b"a=b", errors.UnsupportedContentType),
        ("multipart/form-data; boundary=x", b"", errors.UnsupportedContentType),
    ],
)
def test_payload_errors(header: str, body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        payload_from_body(header, body)


@pytest.mark.parametrize(
    ("header", "key"),
    [("Simple abc", "abc"), ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("abc", "abc")],
)
def test_key_from_header(header: str, key: str) -> None:
    assert key_from_header(header) == key


@pytest.mark.parametrize("header", [None, "", "  ", "Basic abc", "Token abc"])
def test_key_from_header_refuses(header: str | None) -> None:
    with pytest.raises(errors.Unauthenticated):
        key_from_header(header)


@pytest.mark.parametrize(
    ("segment", "spec"),
    [
        ("1", "1.*"),
        ("1.2", "1.2.*"),
        ("1.2.3", "1.2.3"),
        ("1.*", "1.*"),
        ("latest", "latest"),
        ("12345678", "12345678"),  # as long as a hash prefix: left to mean one
        ("sha256:ab", "sha256:ab"),
    ],
)
def test_algorithmia_version_segments(segment: str, spec: str) -> None:
    assert algorithmia_spec(segment) == spec


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.VersionSpecError("x"), 400),
        (errors.ArchiveError("x"), 400),
        (errors.PayloadTooLarge("x"), 413),
        (errors.UnsupportedContentType("x"), 415),
        (errors.VersionNotFound("x"), 404),
        (errors.JobNotFound("x"), 404),
        (errors.VersionConflict("x"), 409),
        (errors.Unauthenticated("x"), 401),
        (errors.Forbidden("x"), 403),
        (errors.BuildError("x", log="l"), 422),
        (errors.ModelError("x"), 400),
        (errors.InputRejected("x"), 400),
        (errors.InvocationTimeout("x"), 504),
        (errors.RunnerCrashed("x"), 502),
        (errors.Overloaded("x"), 503),
        (errors.InvocationError("x"), 500),
        (errors.ModelbusError("x"), 500),
    ],
)
def test_status_and_round_trip_through_the_sdk(exc: errors.ModelbusError, status: int) -> None:
    assert status_for(exc) == status
    again = error_from_response(status, json.dumps({"error": error_detail(exc)}).encode())
    assert type(again) is type(exc)
    assert again.message == exc.message


def test_invocation_error_details_survive_the_round_trip() -> None:
    exc = errors.ModelError("bad", error_type="KeyError", stacktrace="Traceback...", permanent=True)
    exc.version = "1.2.3"
    again = error_from_response(400, json.dumps({"error": error_detail(exc)}).encode())
    assert isinstance(again, errors.ModelError)
    assert (again.error_type, again.stacktrace, again.permanent, again.version) == (
        "KeyError",
        "Traceback...",
        True,
        "1.2.3",
    )


def test_foreign_error_bodies_map_by_status() -> None:
    assert isinstance(error_from_response(404, b"<html>nope</html>"), errors.NotFound)
    assert isinstance(error_from_response(504, b""), errors.InvocationTimeout)
    assert isinstance(error_from_response(418, b"teapot"), errors.ModelbusError)


def test_job_error_codes() -> None:
    assert job_error_code("InvocationTimeout") == "InvocationTimeout"
    assert job_error_code("ValueError") == "ModelError"


@pytest.mark.parametrize(
    ("data", "content_type", "body", "media"),
    [
        ({"a": 1}, None, b'{"a": 1}', "application/json"),
        ("hi", None, b"hi", "text/plain; charset=utf-8"),
        (b"\x00", None, b"\x00", "application/octet-stream"),
        ("hi", "json", b'"hi"', "application/json"),
        (b"[1]", "json", b"[1]", "application/json"),
        (b"\x89PNG", "image/png", b"\x89PNG", "image/png"),
    ],
)
def test_encode_input(data: object, content_type: str | None, body: bytes, media: str) -> None:
    assert encode_input(data, content_type) == (body, media)
