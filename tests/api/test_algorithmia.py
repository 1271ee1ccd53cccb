"""The Algorithmia-compatible surface: raw HTTP envelopes, query options, read routes, and
the official ``algorithmia`` 2.0.5 client talking to a real server."""

from __future__ import annotations

import base64
import warnings

import httpx
import pytest

from tests.support.fixtures import Published
from tests.support.jobs import wait_job
from tests.support.server import ModelbusServer

with warnings.catch_warnings():  # its generated API client has invalid escape sequences
    warnings.simplefilter("ignore", DeprecationWarning)
    import Algorithmia
    from Algorithmia.algorithm import OutputType
    from Algorithmia.async_response import AsyncResponse
    from Algorithmia.errors import AlgorithmException


def algo(server: ModelbusServer, path: str, **kwargs: object) -> httpx.Response:
    with server.http() as http:
        return http.post(f"/v1/algo/{path}", **kwargs)  # type: ignore[arg-type]


# --- raw HTTP -------------------------------------------------------------------------------


def test_envelopes_for_the_three_content_types(server: ModelbusServer) -> None:
    as_json = algo(server, "test/echo/1.0.0", json={"a": [1, 2]}).json()
    assert as_json["result"] == {"a": [1, 2]}
    assert as_json["metadata"]["content_type"] == "json"
    assert isinstance(as_json["metadata"]["duration"], float)
    as_text = algo(
        server, "test/echo/1.0.0", content="HAL 9000", headers={"Content-Type": "text/plain"}
    ).json()
    assert as_text == {**as_text, "result": "HAL 9000"}
    assert as_text["metadata"]["content_type"] == "text"
    as_binary = algo(
        server,
        "test/echo/1.0.0",
        content=b"\x89PNG\x00",
        headers={"Content-Type": "application/octet-stream"},
    ).json()
    assert as_binary["metadata"]["content_type"] == "binary"
    assert base64.b64decode(as_binary["result"]) == b"\x89PNG\x00"


def test_application_text_is_text(server: ModelbusServer) -> None:
    body = algo(
        server, "test/echo/1.0.0", content="x", headers={"Content-Type": "application/text"}
    ).json()
    assert body["metadata"]["content_type"] == "text"


@pytest.mark.parametrize(
    ("path", "greeting"),
    [
        ("test/echo", "two"),
        ("test/echo/latest", "two"),
        ("test/echo/1.0.0", "one"),
        ("test/echo/1.*", "one-one"),
        ("test/echo/1.0.*", "one"),
        ("test/echo/1", "one-one"),  # Algorithmia's short forms
        ("test/echo/1.0", "one"),
    ],
)
def test_version_segments(server: ModelbusServer, path: str, greeting: str) -> None:
    response = algo(server, path, json={"whoami": True})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["greeting"] == greeting


def test_build_hash_segment(server: ModelbusServer, published: Published) -> None:
    response = algo(server, f"test/echo/{published.unpublished_build}", json={"whoami": True})
    assert response.json()["result"]["greeting"] == "unpublished"


def test_model_error_is_a_200_error_envelope(server: ModelbusServer) -> None:
    """Algorithmia: a well-formed request answers 200 with `result` or `error`."""
    response = algo(server, "test/echo/1.0.0", json={"fail": "no such page"})
    assert response.status_code == 200
    body = response.json()
    assert "result" not in body
    assert "no such page" in body["error"]["message"]
    assert body["error"]["error_type"] == "ValueError"
    assert "Traceback" in body["error"]["stacktrace"]
    assert body["error"]["stack_trace"] == body["error"]["stacktrace"]
    assert body["metadata"]["duration"] >= 0


def test_timeout_option_in_default_mode(server: ModelbusServer) -> None:
    body = algo(server, "test/echo/1.0.0", json={"sleep": 20}, params={"timeout": "1"}).json()
    assert body["error"]["code"] == "InvocationTimeout"


def test_raw_output_and_raw_errors(server: ModelbusServer) -> None:
    raw = algo(server, "test/echo/1.0.0", json={"k": "v"}, params={"output": "raw"})
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.json() == {"k": "v"}
    text = algo(
        server,
        "test/echo/1.0.0",
        content="plain",
        headers={"Content-Type": "text/plain"},
        params={"output": "raw"},
    )
    assert text.text == "plain"
    assert text.headers["content-type"].startswith("text/plain")
    binary = algo(
        server,
        "test/echo/1.0.0",
        content=b"\x00\x01",
        headers={"Content-Type": "application/octet-stream"},
        params={"output": "raw"},
    )
    assert binary.content == b"\x00\x01"
    failed = algo(server, "test/echo/1.0.0", json={"fail": "raw boom"}, params={"output": "raw"})
    assert failed.status_code == 400
    assert "raw boom" in failed.json()["error"]["message"]
    slow = algo(
        server, "test/echo/1.0.0", json={"sleep": 20}, params={"output": "raw", "timeout": 1}
    )
    assert slow.status_code == 504


def test_void_output_answers_at_once_with_a_request_id(server: ModelbusServer) -> None:
    response = algo(server, "test/echo/1.0.0", json={"sleep": 1}, params={"output": "void"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"async", "request_id"}
    with server.http() as http:
        job = wait_job(http, body["request_id"])
    assert job["status"] == "succeeded"
    assert job["result"]["result"] == {"sleep": 1}


def test_stdout_option(server: ModelbusServer) -> None:
    body = algo(
        server, "test/echo/1.0.0", json={"print": "to stdout"}, params={"stdout": "true"}
    ).json()
    assert "to stdout" in body["metadata"]["stdout"]


def test_request_errors_keep_their_status(server: ModelbusServer) -> None:
    assert algo(server, "test/nothing", json=1).status_code == 404
    assert algo(server, "test/echo/7.7.7", json=1).status_code == 404
    assert algo(server, "test/echo/not.a.version", json=1).status_code == 400
    assert algo(server, "test/echo", data={"form": "x"}).status_code == 415
    unauthenticated = httpx.post(f"{server.url}/v1/algo/test/echo", json=1)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["message"]


def test_algorithm_read_routes(server: ModelbusServer, published: Published) -> None:
    with server.http() as http:
        algorithm = http.get("/v1/algorithms/test/echo").json()
        assert algorithm["name"] == "echo"
        assert algorithm["resource_type"] == "algorithm"
        assert algorithm["version_info"]["semantic_version"] == "2.0.0"
        assert algorithm["build"]["status"] == "succeeded"
        versions = http.get("/v1/algorithms/test/echo/versions", params={"limit": 2}).json()
        assert [v["version_info"]["semantic_version"] for v in versions["results"]] == [
            "2.0.0",
            "1.1.0",
        ]
        assert versions["marker"]
        rest = http.get(
            "/v1/algorithms/test/echo/versions", params={"limit": 10, "marker": versions["marker"]}
        ).json()
        assert rest["marker"] is None
        semantic = [v["version_info"]["semantic_version"] for v in rest["results"]]
        assert semantic == ["1.0.0", None]  # then the build without a version
        only_published = http.get(
            "/v1/algorithms/test/echo/versions", params={"published": "true", "limit": 10}
        ).json()
        assert len(only_published["results"]) == 3
        one = http.get("/v1/algorithms/test/echo/versions/1.1.0").json()
        assert one["version_info"]["git_hash"] == published.echo_builds["1.1.0"]
        builds = http.get("/v1/algorithms/test/echo/builds").json()["results"]
        assert len(builds) == 4
        build_id = published.echo_builds["1.0.0"]
        build = http.get(f"/v1/algorithms/test/echo/builds/{build_id}").json()
        assert build["version_info"] == {"semantic_version": "1.0.0"}
        logs = http.get(f"/v1/algorithms/test/echo/builds/{build_id}/logs").json()
        assert "build of test/echo" in logs["logs"]
        assert http.get("/v1/algorithms/test/nothing").status_code == 404


# --- the official client --------------------------------------------------------------------


@pytest.fixture
def client(server: ModelbusServer) -> Algorithmia.client.Client:
    return Algorithmia.client(server.admin_key, server.url)


def test_official_client_json_text_and_bytes(client: Algorithmia.client.Client) -> None:
    echo = client.algo("test/echo/1.0.0")
    as_json = echo.pipe({"numbers": [1, 2, 3]})
    assert as_json.result == {"numbers": [1, 2, 3]}
    assert as_json.metadata.content_type == "json"
    as_text = echo.pipe("HAL 9000")
    assert as_text.result == "HAL 9000"
    assert as_text.metadata.content_type == "text"
    as_bytes = echo.pipe(bytearray(b"\x00\xffbinary"))
    assert as_bytes.result == b"\x00\xffbinary"
    assert as_bytes.metadata.content_type == "binary"


def test_official_client_error_is_an_algorithm_exception(
    client: Algorithmia.client.Client,
) -> None:
    with pytest.raises(AlgorithmException) as raised:
        client.algo("test/echo/1.0.0").pipe({"fail": "the model broke"})
    assert "the model broke" in raised.value.message
    assert raised.value.error_type == "ValueError"
    assert "Traceback" in raised.value.stack_trace


def test_official_client_options(client: Algorithmia.client.Client) -> None:
    echo = client.algo("test/echo/1.*")
    with_stdout = echo.set_options(timeout=60, stdout=True).pipe({"print": "seen"})
    assert "seen" in with_stdout.metadata.stdout
    raw = client.algo("test/echo/1.0.0").set_options(output=OutputType.raw).pipe("bare")
    assert raw == "bare"
    void = client.algo("test/echo/1.0.0").set_options(output=OutputType.void).pipe({"a": 1})
    assert isinstance(void, AsyncResponse)
    assert void.request_id


def test_official_client_management_reads(client: Algorithmia.client.Client) -> None:
    echo = client.algo("test/echo")
    assert echo.exists()
    assert not client.algo("test/nothing").exists()
    versions = echo.versions(published=True)
    assert versions["results"][0]["version_info"]["semantic_version"] == "2.0.0"
    assert echo.info()["results"]
    assert echo.get_builds()["results"]
