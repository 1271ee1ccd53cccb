"""The OpenAPI document describes every route, with summaries, schemas and security."""

from __future__ import annotations

import re

import httpx

from tests.support.server import ModelbusServer


def test_openapi_lists_every_route_with_a_summary(server: ModelbusServer) -> None:
    with server.http() as http:
        document = http.get("/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/health",
        "/v1/models",
        "/v1/models/{owner}/{name}",
        "/v1/models/{owner}/{name}/versions",
        "/v1/models/{owner}/{name}/builds",
        "/v1/models/{owner}/{name}/publish",
        "/v1/builds/{build}",
        "/v1/models/{owner}/{name}/invoke",
        "/v1/models/{owner}/{name}/versions/{spec}/invoke",
        "/v1/models/{owner}/{name}/jobs",
        "/v1/jobs/{job_id}",
        "/v1/keys",
        "/v1/keys/{key_id}",
        "/v1/algo/{owner}/{name}",
        "/v1/algo/{owner}/{name}/{version}",
        "/v1/algorithms/{owner}/{name}",
        "/v1/algorithms/{owner}/{name}/versions",
    ):
        assert path in paths, path
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
    invoke = paths["/v1/models/{owner}/{name}/invoke"]["post"]
    assert set(invoke["requestBody"]["content"]) >= {"application/json", "text/plain"}
    assert "504" in invoke["responses"]
    error = invoke["responses"]["404"]["content"]["application/json"]["schema"]
    assert error["$ref"].endswith("/ErrorBody")
    assert "APIKeyHeader" in document["components"]["securitySchemes"]


def test_the_description_needs_a_key_like_every_route_but_health(server: ModelbusServer) -> None:
    for path in ("/openapi.json", "/docs", "/redoc"):
        answer = httpx.get(f"{server.url}{path}")
        assert answer.status_code in (401, 404), path
    assert httpx.get(f"{server.url}/openapi.json").status_code == 401
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_the_console_shows_the_reference_to_a_logged_in_browser(server: ModelbusServer) -> None:
    with httpx.Client(base_url=server.url) as browser:
        assert browser.get("/console/api").status_code in (303, 307)  # to the login form
        form = browser.get("/console/login").text
        token = re.search(r'name="login_token" value="([^"]+)"', form)
        assert token is not None
        fields = {"api_key": server.admin_key, "login_token": token[1], "next": "/console/api"}
        assert browser.post("/console/login", data=fields).status_code == 303
        page = browser.get("/console/api", follow_redirects=True)
        assert page.status_code == 200
        assert "/v1/algo/{owner}/{name}" in page.text and "Algorithmia" in page.text
        document = browser.get("/console/openapi.json").json()
        assert "/v1/listeners" in document["paths"]
