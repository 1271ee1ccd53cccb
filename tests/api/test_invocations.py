"""Native invocations over real HTTP: content types, version specs, every error status, and
asynchronous jobs."""

from __future__ import annotations

import base64
import socket
import time
from typing import Any

import httpx
import pytest

from tests.support.fixtures import Published
from tests.support.jobs import wait_job
from tests.support.server import ModelbusServer

MiB = 1024 * 1024


def invoke(server: ModelbusServer, spec: str | None, **kwargs: Any) -> httpx.Response:
    path = "/v1/models/test/echo" + (f"/versions/{spec}" if spec else "") + "/invoke"
    with server.http() as http:
        return http.post(path, **kwargs)


def test_json_round_trip_with_metadata(server: ModelbusServer) -> None:
    response = invoke(server, "1.0.0", json={"x": [1, 2, {"y": None}]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] == {"x": [1, 2, {"y": None}]}
    assert body["metadata"]["content_type"] == "json"
    assert body["metadata"]["version"] == "1.0.0"
    assert body["metadata"]["duration"] >= 0


def test_text_round_trip_and_charset(server: ModelbusServer) -> None:
    utf8 = invoke(server, "1.0.0", content="héllo", headers={"Content-Type": "text/plain"})
    assert utf8.json()["result"] == "héllo"
    assert utf8.json()["metadata"]["content_type"] == "text"
    latin = invoke(
        server,
        "1.0.0",
        content="héllo".encode("latin-1"),
        headers={"Content-Type": "text/plain; charset=latin-1"},
    )
    assert latin.json()["result"] == "héllo"


def test_binary_round_trip_is_base64(server: ModelbusServer) -> None:
    data = bytes(range(256))
    response = invoke(
        server, "1.0.0", content=data, headers={"Content-Type": "application/octet-stream"}
    )
    body = response.json()
    assert body["metadata"]["content_type"] == "binary"
    assert base64.b64decode(body["result"]) == data


def test_model_sees_content_type(server: ModelbusServer) -> None:
    response = invoke(server, "1.0.0", json={"whoami": True})
    assert response.json()["result"] == {"greeting": "one", "content_type": "json"}


@pytest.mark.parametrize(
    ("spec", "greeting", "version"),
    [
        (None, "two", "2.0.0"),
        ("latest", "two", "2.0.0"),
        ("1.*", "one-one", "1.1.0"),
        ("1.0.*", "one", "1.0.0"),
        ("1.1.0", "one-one", "1.1.0"),
        ("2.0.0", "two", "2.0.0"),
    ],
)
def test_version_specs(
    server: ModelbusServer, spec: str | None, greeting: str, version: str
) -> None:
    response = invoke(server, spec, json={"whoami": True})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["greeting"] == greeting
    assert response.json()["metadata"]["version"] == version


def test_build_hash_and_prefix_reach_unpublished_builds(
    server: ModelbusServer, published: Published
) -> None:
    full = published.unpublished_build
    for spec in (full, full.removeprefix("sha256:")[:12]):
        response = invoke(server, spec, json={"whoami": True})
        assert response.status_code == 200, response.text
        assert response.json()["result"]["greeting"] == "unpublished"


def test_unpublished_build_is_not_latest(server: ModelbusServer) -> None:
    response = invoke(server, None, json={"whoami": True})
    assert response.json()["result"]["greeting"] != "unpublished"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/models/test/echo/versions/1.x.foo/invoke", 400, "VersionSpecError"),
        ("/v1/models/test/echo/versions/3.*/invoke", 404, "VersionNotFound"),
        ("/v1/models/test/echo/versions/9.9.9/invoke", 404, "VersionNotFound"),
        ("/v1/models/test/nothing/invoke", 404, "ModelNotFound"),
        ("/v1/models/test/echo/versions/sha256:" + "0" * 64 + "/invoke", 404, None),
    ],
)
def test_resolution_errors(
    server: ModelbusServer, path: str, status: int, code: str | None
) -> None:
    with server.http() as http:
        response = http.post(path, json=1)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code


def test_model_error_is_400_with_stacktrace_and_version(server: ModelbusServer) -> None:
    response = invoke(server, "1.1.0", json={"fail": "boom at line 3"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "ModelError"
    assert error["error_type"] == "ValueError"
    assert "boom at line 3" in error["message"]
    assert "ValueError" in error["stacktrace"]
    assert "model.py" in error["stacktrace"]
    assert error["version"] == "1.1.0"
    assert error["permanent"] is False


def test_model_can_mark_errors_permanent(server: ModelbusServer) -> None:
    response = invoke(server, "1.0.0", json={"fail_permanent": "bad document"})
    assert response.status_code == 400
    assert response.json()["error"]["permanent"] is True


def test_input_schema_rejects_naming_the_field(server: ModelbusServer) -> None:
    with server.http() as http:
        missing = http.post("/v1/models/test/strict/invoke", json={"txt": "hi"})
        wrong_type = http.post("/v1/models/test/strict/invoke", json={"text": 5})
        good = http.post("/v1/models/test/strict/invoke", json={"text": "hi"})
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "InputRejected"
    assert "'text' is a required property" in missing.json()["error"]["message"]
    assert missing.json()["error"]["permanent"] is True
    assert wrong_type.status_code == 400
    assert "at text" in wrong_type.json()["error"]["message"]
    assert good.json()["result"] == {"text": "HI"}


def test_output_schema_violation_is_a_model_error(server: ModelbusServer) -> None:
    with server.http() as http:
        response = http.post(
            "/v1/models/test/strict/invoke", json={"text": "x", "break_output": True}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["error_type"]) == ("ModelError", "OutputRejected")
    assert "'text' is a required property" in error["message"]
    assert error["version"] == "1.0.0"


def test_timeout_is_504_and_the_pool_recovers(server: ModelbusServer) -> None:
    response = invoke(server, "1.0.0", json={"sleep": 20}, params={"timeout": 1})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "InvocationTimeout"
    again = invoke(server, "1.0.0", json="after")
    assert again.status_code == 200
    assert again.json()["result"] == "after"


def test_runner_crash_is_502_and_the_pool_recovers(server: ModelbusServer) -> None:
    response = invoke(server, "1.0.0", json={"crash": True})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "RunnerCrashed"
    assert response.json()["error"]["permanent"] is False
    assert invoke(server, "1.0.0", json="alive").json()["result"] == "alive"


def test_stdout_is_returned_only_when_asked(server: ModelbusServer) -> None:
    asked = invoke(server, "1.0.0", json={"print": "hello stdout"}, params={"stdout": "true"})
    assert "hello stdout" in asked.json()["metadata"]["stdout"]
    not_asked = invoke(server, "1.0.0", json={"print": "hello stdout"})
    assert "stdout" not in not_asked.json()["metadata"]


def test_invalid_json_is_400(server: ModelbusServer) -> None:
    response = invoke(
        server, "1.0.0", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidInput"


def test_form_body_is_415(server: ModelbusServer) -> None:
    response = invoke(server, "1.0.0", data={"a": "b"})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "UnsupportedContentType"


def test_bad_query_parameter_is_422_in_the_error_shape(server: ModelbusServer) -> None:
    response = invoke(server, "1.0.0", json=1, params={"timeout": "soon"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "ValidationError"
    assert "timeout" in response.json()["error"]["message"]


def test_body_over_limit_by_content_length_is_413(server: ModelbusServer) -> None:
    data = b"x" * (10 * MiB + 1)
    response = invoke(
        server, "1.0.0", content=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PayloadTooLarge"


def test_endless_chunked_body_is_refused_while_streaming(server: ModelbusServer) -> None:
    """The body never ends: a server that buffered it all would never answer."""
    head = (
        "POST /v1/models/test/echo/versions/1.0.0/invoke HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {server.admin_key}\r\n"
        "Content-Type: application/octet-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n" % MiB + b"x" * MiB + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for _ in range(11):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close as soon as it answered
        reply = _read_reply(sock)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"PayloadTooLarge" in reply


def _read_reply(sock: socket.socket) -> bytes:
    reply = b""
    deadline = time.monotonic() + 30
    while b"}}" not in reply and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        reply += data
    return reply


def test_job_runs_in_the_background(server: ModelbusServer) -> None:
    with server.http() as http:
        submitted = http.post("/v1/models/test/echo/versions/1.*/jobs", json={"sleep": 0.5})
        assert submitted.status_code == 202, submitted.text
        job = submitted.json()
        assert job["status"] in ("queued", "running")
        assert job["spec"] == "1.*"
        done = wait_job(http, job["id"])
    assert done["status"] == "succeeded"
    assert done["result"]["result"] == {"sleep": 0.5}
    assert done["result"]["metadata"]["version"] == "1.1.0"


def test_failed_job_keeps_the_error(server: ModelbusServer) -> None:
    with server.http() as http:
        job = http.post("/v1/models/test/echo/jobs", json={"fail": "later"}).json()
        done = wait_job(http, job["id"])
    assert done["status"] == "failed"
    assert done["error"]["error_type"] == "ValueError"
    assert done["error"]["code"] == "ModelError"
    assert "later" in done["error"]["message"]
    assert done["error"]["stacktrace"]


def test_job_submission_checks_the_reference_at_once(server: ModelbusServer) -> None:
    with server.http() as http:
        assert http.post("/v1/models/test/nothing/jobs", json=1).status_code == 404
        assert http.post("/v1/models/test/echo/versions/x.y/jobs", json=1).status_code == 400
        assert http.get("/v1/jobs/does-not-exist").status_code == 404


def test_jobs_are_private_to_their_key(server: ModelbusServer) -> None:
    with server.http() as admin:
        key = admin.post("/v1/keys", json={"name": "j", "scopes": ["call:test/echo"]}).json()
        other = admin.post("/v1/keys", json={"name": "k", "scopes": ["call:test/echo"]}).json()
    with server.http(key["key"]) as owner:
        job = owner.post("/v1/models/test/echo/jobs", json=1).json()
        assert owner.get(f"/v1/jobs/{job['id']}").status_code == 200
    with server.http(other["key"]) as stranger:
        assert stranger.get(f"/v1/jobs/{job['id']}").status_code == 404
    with server.http() as admin:
        assert admin.get(f"/v1/jobs/{job['id']}").status_code == 200
