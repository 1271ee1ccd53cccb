"""Authentication and scopes against a real server: 401 vs 403, the three header forms, and
revocation taking effect on the very next request."""

from __future__ import annotations

import httpx
import pytest

from tests.support.server import ModelbusServer

ECHO = "/v1/models/test/echo/versions/1.0.0/invoke"


def _key(server: ModelbusServer, *scopes: str) -> str:
    with server.http() as http:
        response = http.post("/v1/keys", json={"name": "t", "scopes": list(scopes)})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def _call(server: ModelbusServer, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{server.url}{ECHO}", json={"a": 1}, headers=headers, timeout=60)


def test_health_needs_no_key(server: ModelbusServer) -> None:
    response = httpx.get(f"{server.url}/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}],
)
def test_no_usable_key_is_401_with_json_body(
    server: ModelbusServer, headers: dict[str, str]
) -> None:
    response = _call(server, headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "Unauthenticated"
    assert "Simple" in response.headers["www-authenticate"]


def test_unknown_key_is_401(server: ModelbusServer) -> None:
    fake = "mb_0123456789abcdef_" + "x" * 43
    response = _call(server, {"Authorization": f"Bearer {fake}"})
    assert response.status_code == 401


@pytest.mark.parametrize("scheme", ["Simple ", "Bearer ", "simple ", ""])
def test_simple_bearer_and_bare_keys_are_accepted(server: ModelbusServer, scheme: str) -> None:
    key = _key(server, "call:test/echo")
    response = _call(server, {"Authorization": f"{scheme}{key}"})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {"a": 1}


def test_call_scope_limits_which_models_may_be_called(server: ModelbusServer) -> None:
    key = _key(server, "call:test/strict")
    response = _call(server, {"Authorization": f"Simple {key}"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "Forbidden"
    strict = httpx.post(
        f"{server.url}/v1/algo/test/strict",
        json={"text": "ok"},
        headers={"Authorization": f"Simple {key}"},
        timeout=60,
    )
    assert strict.status_code == 200, strict.text


def test_call_star_calls_everything_but_manages_nothing(server: ModelbusServer) -> None:
    key = _key(server, "call:*")
    with server.http(key) as http:
        assert http.post(ECHO, json=1).status_code == 200
        assert http.get("/v1/keys").status_code == 403
        push = http.post("/v1/models/test/echo/versions", content=b"x")
        assert push.status_code == 403


def test_model_metadata_is_visible_to_callers_and_managers_only(server: ModelbusServer) -> None:
    caller, manager, other = (
        _key(server, "call:test/echo"),
        _key(server, "models:manage"),
        _key(server, "listeners:manage"),
    )
    with server.http(caller) as http:
        assert [m["name"] for m in http.get("/v1/models").json()] == ["echo"]
        assert http.get("/v1/models/test/echo/versions").status_code == 200
        assert http.get("/v1/models/test/strict").status_code == 403
    with server.http(manager) as http:
        assert {m["name"] for m in http.get("/v1/models").json()} >= {"echo", "strict"}
        assert http.get("/v1/models/test/strict/builds").status_code == 200
        assert http.post(ECHO, json=1).status_code == 403
    with server.http(other) as http:
        assert http.get("/v1/models").json() == []
        assert http.get("/v1/models/test/echo").status_code == 403


def test_revoked_key_stops_at_once(server: ModelbusServer) -> None:
    with server.http() as admin:
        created = admin.post("/v1/keys", json={"name": "short-lived", "scopes": ["call:*"]})
        key, key_id = created.json()["key"], created.json()["info"]["id"]
        assert _call(server, {"Authorization": f"Bearer {key}"}).status_code == 200
        revoked = admin.delete(f"/v1/keys/{key_id}")
        assert revoked.status_code == 200
        assert revoked.json()["revoked_at"] is not None
    response = _call(server, {"Authorization": f"Bearer {key}"})
    assert response.status_code == 401


def test_keys_admin_routes(server: ModelbusServer) -> None:
    with server.http() as admin:
        created = admin.post("/v1/keys", json={"name": "lister", "scopes": ["models:manage"]})
        assert created.status_code == 201
        secret = created.json()["key"]
        listed = admin.get("/v1/keys")
        assert listed.status_code == 200
        assert secret not in listed.text  # secrets are never listed
        names = {k["name"]: k for k in listed.json()}
        assert names["lister"]["scopes"] == ["models:manage"]
        assert admin.delete("/v1/keys/ffffffffffffffff").status_code == 404
        bad = admin.post("/v1/keys", json={"name": "x", "scopes": ["root"]})
        assert bad.status_code == 400
        assert "scope" in bad.json()["error"]["message"]
        missing = admin.post("/v1/keys", json={"name": "x"})
        assert missing.status_code == 422
        assert missing.json()["error"]["code"] == "ValidationError"
    with server.http(secret) as manager:
        assert manager.get("/v1/keys").status_code == 403
        me = manager.get("/v1/keys/self")
        assert me.status_code == 200
        assert me.json()["name"] == "lister"
