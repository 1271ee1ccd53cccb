"""Hostile HTTP input against a real server: bodies over the limit are refused before any
authentication or parsing, odd charsets and deeply nested JSON are 400s, and webhooks
verify their HMAC signature and refuse replays and malformed signature headers with 401."""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelbus.connectors.webhook import sign
from tests.support.fixtures import MODELS_DIR
from tests.support.server import ModelbusServer

LIMIT = 4096
SECRET = "hook-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelbusServer]:
    """A server with a 4 KiB body limit and the echo model behind a webhook listener."""
    data = tmp_path_factory.mktemp("limits") / "data"
    with ModelbusServer.start(data, env={"MODELBUS_MAX_BODY_BYTES": str(LIMIT)}) as server:
        with server.client() as client:
            client.push(MODELS_DIR / "echo", version="1.0.0")
        with server.http() as http:
            listener = {
                "name": "hooked",
                "source": f"webhook://inbox?secret={SECRET}&tolerance_s=60",
                "model": "test/echo@1.0.0",
                "outputs": ["local://hooked-out"],
            }
            created = http.put("/v1/listeners/hooked", json=listener)
            assert created.status_code in (200, 201), created.text
        yield server


def _post(server: ModelbusServer, path: str, body: Any, **headers: Any) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        return http.post(path, content=body, headers=headers)


def _chunks(total: int, size: int = 1024) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


# Route -> the answer to a chunked body over the limit: 413 where something reads the body
# before authentication (FastAPI parses JSON models first), else the answer the route gives
# without reading the body at all (no key: 401; a GET route: 405).
UNAUTHENTICATED_ROUTES = {
    "/v1/keys": 413,
    "/v1/listeners": 413,
    "/v1/models/test/echo/invoke": 401,
    "/health": 405,
}


@pytest.mark.parametrize(("path", "streamed_status"), sorted(UNAUTHENTICATED_ROUTES.items()))
def test_a_body_over_the_limit_is_413_before_authentication(
    small: ModelbusServer, path: str, streamed_status: int
) -> None:
    declared = _post(
        small, path, b"{" + b" " * LIMIT + b"}", **{"content-type": "application/json"}
    )
    assert declared.status_code == 413, declared.text
    assert declared.json()["error"]["code"] == "PayloadTooLarge"
    # Without Content-Length (chunked), the body is cut off as soon as it passes the limit.
    streamed = _post(small, path, _chunks(2 * LIMIT), **{"content-type": "application/json"})
    assert streamed.status_code == streamed_status, streamed.text
    assert streamed.json()["error"]["message"]
    # The same requests under the limit get the usual answer.
    small_answer = _post(small, path, b"{}", **{"content-type": "application/json"})
    assert small_answer.status_code == (405 if path == "/health" else 401)


def test_only_the_push_route_takes_more_and_only_with_a_key(
    small: ModelbusServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("big-model")
    for file in (MODELS_DIR / "echo").iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    (folder / "weights.bin").write_bytes(os.urandom(3 * LIMIT))  # incompressible
    archive = _tar_gz(folder)
    assert len(archive) > LIMIT
    route = "/v1/models/test/echo/versions?version=2.0.0"
    headers = {"content-type": "application/gzip"}
    assert _post(small, route, archive, **headers).status_code == 401
    pushed = _post(small, route, archive, Authorization=f"Bearer {small.admin_key}", **headers)
    assert pushed.status_code == 201, pushed.text
    # The larger allowance is the push route's own: invoking is still limited.
    invoked = _post(
        small, "/v1/models/test/echo/invoke", archive, Authorization=f"Bearer {small.admin_key}"
    )
    assert invoked.status_code == 413


def _tar_gz(folder: Any) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    return out.getvalue()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain; charset=utf-7", b"+2AA-"),  # decodes to a lone surrogate
        ("text/plain; charset=utf-8", b"\xff\xfe"),
        ("text/plain; charset=idna", b"\xff" * 80),
        ("application/json; charset=utf-16", b"\x00"),
        ("application/json", b"[" * 50_000 + b"]" * 50_000),
        ("application/json", b'{"a":' * 3000 + b"1" + b"}" * 3000),
    ],
    ids=["utf-7 surrogate", "bad utf-8", "idna", "odd utf-16", "deep array", "deep object"],
)
def test_undecodable_bodies_are_400(small: ModelbusServer, content_type: str, body: bytes) -> None:
    logged = len(small.log())
    with httpx.Client(base_url=small.url, timeout=30.0) as http:
        for route in ("/v1/models/test/echo/invoke", "/v1/algo/test/echo"):
            answer = http.post(
                route,
                content=body[:LIMIT],
                headers={
                    "Authorization": f"Bearer {small.admin_key}",
                    "content-type": content_type,
                },
            )
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["message"]
    assert "unexpected error" not in small.log()[logged:]


def test_deep_json_with_no_content_type_is_not_json(small: ModelbusServer) -> None:
    body = b"[" * 3000  # unbalanced, and deeper than the parser's recursion limit
    with small.http() as http:
        answer = http.post("/v1/models/test/echo/invoke", content=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["metadata"]["content_type"] == "text"


# --- webhooks -------------------------------------------------------------------------------


def _hook(small: ModelbusServer, body: bytes, signature: str | None) -> httpx.Response:
    headers: dict[str, Any] = {"content-type": "application/json"}
    if signature is not None:  # as UTF-8 bytes: a client may send any octets
        headers["X-Modelbus-Signature"] = signature.encode("utf-8")
    return _post(small, "/v1/hooks/inbox", body, **headers)


def test_a_signed_webhook_is_accepted(small: ModelbusServer) -> None:
    body = b'{"hello": "hook"}'
    answer = _hook(small, body, sign(SECRET, body))
    assert answer.status_code == 202, answer.text
    assert answer.json()["listeners"] == ["hooked"]


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "garbage",
        "t=,v1=",
        "t=\u0661\u0662,v1=" + "0" * 64,  # non-ASCII digits
        "t=\u00b2,v1=" + "0" * 64,
        "t=1,v1=\u00e9\u00e9",  # non-ASCII signature: compare_digest refuses to compare it
        "t=" + "9" * 5000 + ",v1=" + "0" * 64,
        "v1=" + "0" * 64,
        "t=1" + ",v1=x" * 10_000,
        "t=12,t=13,v1=" + "A" * 64,
    ],
    ids=lambda s: repr(s)[:30],
)
def test_missing_or_malformed_signatures_are_401_not_500(
    small: ModelbusServer, signature: str | None
) -> None:
    logged = len(small.log())
    answer = _hook(small, b"{}", signature)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "Unauthenticated"
    assert "unexpected error" not in small.log()[logged:]


def test_wrong_secret_tampered_body_and_replays_are_401(small: ModelbusServer) -> None:
    body = b'{"n": 1}'
    assert _hook(small, body, sign("another-secret-0123456789", body)).status_code == 401
    assert _hook(small, b'{"n": 2}', sign(SECRET, body)).status_code == 401  # body changed
    now = int(time.time())
    old = _hook(small, body, sign(SECRET, body, timestamp=now - 120))  # tolerance is 60 s
    assert old.status_code == 401
    assert "replays are refused" in old.json()["error"]["message"]
    early = _hook(small, body, sign(SECRET, body, timestamp=now + 120))
    assert early.status_code == 401
    assert _hook(small, body, sign(SECRET, body, timestamp=now - 30)).status_code == 202


def test_a_body_over_the_limit_under_v2_is_413_in_the_protocols_shape(
    small: ModelbusServer,
) -> None:
    path = "/v2/models/test/echo/infer"
    auth = {"Authorization": f"Bearer {small.admin_key}"}
    declared = _post(small, path, b"{" + b" " * LIMIT + b"}", **auth)
    streamed = _post(small, path, _chunks(2 * LIMIT), **auth)
    for answer in (declared, streamed):
        assert answer.status_code == 413, answer.text
        assert answer.json() == {"error": f"request body is larger than the limit of {LIMIT} bytes"}


# --- text that is no Unicode -----------------------------------------------------------------

LONE = '"\\ud800"'  # a JSON escape naming half of a surrogate pair: no character at all
SURROGATE_REQUESTS = {
    "invoke": ("POST", "/v1/models/test/echo/invoke", f'{{"name":{LONE}}}'),
    "algorithmia": ("POST", "/v1/algo/test/echo", f'{{"name":{LONE}}}'),
    "key": ("POST", "/v1/keys", f'{{"name":{LONE},"scopes":["call:*"]}}'),
    "listener source": (
        "PUT",
        "/v1/listeners/odd",
        '{"name":"odd","source":"memory://x\\udc00","model":"test/echo@1.0.0"}',
    ),
}


@pytest.mark.parametrize("case", sorted(SURROGATE_REQUESTS))
def test_a_lone_surrogate_is_invalid_input_never_an_internal_error(
    small: ModelbusServer, case: str
) -> None:
    method, path, body = SURROGATE_REQUESTS[case]
    logged = len(small.log())
    with small.http(**{"content-type": "application/json"}) as http:
        answer = http.request(method, path, content=body.encode())
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] in ("InvalidInput", "DefinitionError"), error
    assert error["error_type"] == error["code"], error
    assert "surrogate" in error["message"], error
    assert "UnicodeEncodeError" not in answer.text and "Internal" not in answer.text
    assert "unexpected error" not in small.log()[logged:]
