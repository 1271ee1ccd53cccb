"""The Algorithmia-compatible surface: raw HTTP envelopes, query options, read routes, and
the official ``algorithmia`` 2.0.5 client talking to a real server."""

from __future__ import annotations

import base64
import json
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelbus.client import Client
from tests.support.fixtures import Published, echo_as
from tests.support.jobs import wait_job
from tests.support.server import ModelbusServer

with warnings.catch_warnings():  # its generated API client has invalid escape sequences
    warnings.simplefilter("ignore", DeprecationWarning)
    import Algorithmia
    from Algorithmia.algorithm import OutputType
    from Algorithmia.async_response import AsyncResponse
    from Algorithmia.errors import AlgorithmException
    from algorithmia_api_client import Details, Settings, UpdateRequest
    from algorithmia_api_client.rest import ApiException


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


@pytest.mark.parametrize("timeout", ["inf", "1e308", "86401"])
def test_a_timeout_out_of_range_is_refused_and_the_model_still_answers(
    server: ModelbusServer, timeout: str
) -> None:
    # ?timeout=inf once reached the pool, whose dispatch then failed for every caller.
    with server.http() as http:
        refused = http.post(
            "/v1/algo/test/echo/1.1.0", json={"a": 1}, params={"timeout": timeout}, timeout=15
        )
        after = http.post("/v1/algo/test/echo/1.1.0", json={"a": 2}, timeout=15)
    assert refused.status_code == 400
    assert "at most 86400" in refused.json()["error"]["message"]
    assert after.json()["result"] == {"a": 2}


def test_a_version_with_thousands_of_digits_is_a_bad_spec(server: ModelbusServer) -> None:
    answer = algo(server, "test/echo/" + "9" * 5000 + ".0.0", json={})
    assert answer.status_code == 400
    assert "at most nine digits" in answer.json()["error"]["message"]


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


# --- management through the official client ----------------------------------------------


SETTINGS = {
    "language": "python3-1",
    "source_visibility": "closed",
    "license": "apl",
    "network_access": "full",
    "pipeline_enabled": True,
    "environment": "cpu",
}


def test_official_client_create_publish_versions_builds_delete(
    client: Algorithmia.client.Client, admin: Client, tmp_path: Path
) -> None:
    algo = client.algo("mgmt/tool")
    assert not algo.exists()
    created = algo.create(
        details={"label": "The Tool", "summary": "does things"},
        settings=SETTINGS,
        version_info={"sample_input": '{"x": 1}'},
    )
    assert created["name"] == "tool"
    assert created["details"]["label"] == "The Tool"
    assert created["settings"]["license"] == "apl"
    assert algo.exists()
    # algorithmia 2.0.5 drops the body of a failed POST: its exception shows the status only
    with pytest.raises(Exception, match=r"Response \[404\]"):
        algo.publish(version_info={"version_type": "minor"})
    nothing = publish_raw(client, "mgmt/tool", {"version_info": {"version_type": "minor"}})
    assert "mgmt/tool has no successful build" in nothing.json()["error"]["message"]

    admin.push(echo_as(tmp_path, "mgmt", "tool", "first"))  # a build, no version
    first = algo.publish(version_info={"version_type": "minor", "release_notes": "first one"})
    assert first["version_info"]["semantic_version"] == "0.1.0"
    assert first["version_info"]["release_notes"] == "first one"
    assert first["version_info"]["sample_input"] == '{"x": 1}'
    assert client.algo("mgmt/tool/0.1.0").pipe({"whoami": 1}).result["greeting"] == "first"

    admin.push(echo_as(tmp_path, "mgmt", "tool", "second"))
    major = algo.publish(version_info={"version_type": "major"})
    assert major["version_info"]["semantic_version"] == "1.0.0"
    admin.push(echo_as(tmp_path, "mgmt", "tool", "third"))
    patch = algo.publish(version_info={"version_type": "patch"})
    assert patch["version_info"]["semantic_version"] == "1.0.1"
    admin.push(echo_as(tmp_path, "mgmt", "tool", "fourth"))
    revision = algo.publish(version_info={"version_type": "revision"})
    assert revision["version_info"]["semantic_version"] == "1.0.2"
    assert client.algo("mgmt/tool").pipe({"whoami": 1}).result["greeting"] == "fourth"

    versions = algo.versions(published=True)["results"]
    assert [v["version_info"]["semantic_version"] for v in versions] == [
        "1.0.2",
        "1.0.1",
        "1.0.0",
        "0.1.0",
    ]
    builds = algo.get_builds()["results"]
    assert len(builds) == 4
    assert {b["status"] for b in builds} == {"succeeded"}
    assert algo.get_build_logs(builds[0]["build_id"])["logs"]

    client.manageApi.delete_algorithm("mgmt", "tool")
    assert not algo.exists()
    with pytest.raises(Exception, match=r"Response \[404\]"):
        client.algo("mgmt/tool/1.0.0").pipe({"whoami": 1})


def test_official_client_update(client: Algorithmia.client.Client) -> None:
    algo = client.algo("mgmt/updated")
    algo.create(details={"label": "Before"}, settings=SETTINGS)
    # algorithmia 2.0.5's update() form-encodes its dicts: only their keys reach the server,
    # which refuses them (the client shows the status only; the message is in the body)
    with pytest.raises(Exception, match=r"Response \[400\]"):
        algo.update(details={"label": "After"})
    form = client.requestSession.put(
        f"{client.apiAddress}/v1/algorithms/mgmt/updated",
        data={"details": {"label": "After"}},
        headers={"Authorization": client.apiKey},
    )
    assert form.status_code == 400
    assert "only their keys arrive" in form.json()["error"]["message"]
    assert client.getJsonHelper("/v1/algorithms/mgmt/updated")["details"]["label"] == "Before"
    # ...but JSON texts survive the form
    algo.update(details=json.dumps({"label": "After", "tagline": "new"}))
    seen = client.getJsonHelper("/v1/algorithms/mgmt/updated")
    assert (seen["details"]["label"], seen["details"]["tagline"]) == ("After", "new")
    # and its manageApi sends JSON
    request = UpdateRequest(details=Details(label="Again"), settings=Settings(license="mit"))
    client.manageApi.update_algorithm("mgmt", "updated", request)
    seen = client.getJsonHelper("/v1/algorithms/mgmt/updated")
    assert seen["details"]["label"] == "Again"
    assert seen["settings"]["license"] == "mit"
    assert seen["settings"]["language"] == "python3-1"  # kept from the create
    client.manageApi.delete_algorithm("mgmt", "updated")


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ({"settings": {**SETTINGS, "environment": "gpu"}}, "settings.environment 'gpu'"),
        ({"settings": {**SETTINGS, "network_access": "isolated"}}, "network_access 'isolated'"),
        ({"settings": {**SETTINGS, "language": "java"}}, "settings.language 'java'"),
        ({"settings": {**SETTINGS, "gpu_count": 2}}, "settings.gpu_count"),
        ({"source": {"scm": {"id": "github"}}}, "modelbus models push"),
        ({"details": {"label": "x", "color": "red"}}, "details.color"),
    ],
)
def test_unsupported_settings_are_refused_by_name(
    client: Algorithmia.client.Client, body: dict[str, Any], missing: str
) -> None:
    details = body.pop("details", {"label": "x"})
    settings = body.pop("settings", SETTINGS)
    with pytest.raises(Exception, match=r"Response \[400\]"):
        client.algo("mgmt/refused").create(details=details, settings=settings, **body)
    answer = client.requestSession.post(
        f"{client.apiAddress}/v1/algorithms/mgmt",
        json={"name": "refused", "details": details, "settings": settings, **body},
        headers={"Authorization": client.apiKey},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "InvalidInput"
    assert missing in answer.json()["error"]["message"]
    assert not client.algo("mgmt/refused").exists()


def publish_raw(client: Algorithmia.client.Client, path: str, body: dict[str, Any]) -> Any:
    return client.requestSession.post(
        f"{client.apiAddress}/v1/algorithms/{path}/versions",
        json=body,
        headers={"Authorization": client.apiKey},
    )


def test_publish_needs_a_version_type(server: ModelbusServer) -> None:
    with server.http() as http:
        answer = http.post("/v1/algorithms/test/echo/versions", json={"version_info": {}})
        insights = http.post(
            "/v1/algorithms/test/echo/versions",
            json={"version_info": {"version_type": "minor", "insights_enabled": True}},
        )
        taken = http.post("/v1/algorithms/test", json={"name": "echo", "details": {"label": "e"}})
    assert answer.status_code == 400
    assert "version_info.version_type is required" in answer.json()["error"]["message"]
    assert insights.status_code == 400
    assert "insights_enabled" in insights.json()["error"]["message"]
    assert taken.status_code == 409


def test_delete_is_refused_while_a_listener_calls_it(
    client: Algorithmia.client.Client, admin: Client, tmp_path: Path
) -> None:
    admin.push(echo_as(tmp_path, "mgmt", "listened", "x"), version="1.0.0")
    admin.create_listener(
        {
            "name": "calls-listened",
            "source": "memory://calls-listened",
            "model": "mgmt/listened@1.*",
            "outputs": ["memory://calls-listened-out"],
        }
    )
    with pytest.raises(ApiException) as raised:
        client.manageApi.delete_algorithm("mgmt", "listened")
    assert raised.value.status == 409
    assert "calls-listened" in raised.value.body
    admin.delete_listener("calls-listened")
    client.manageApi.delete_algorithm("mgmt", "listened")
    assert not client.algo("mgmt/listened").exists()
