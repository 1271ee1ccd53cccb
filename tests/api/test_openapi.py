"""The OpenAPI document describes every route, with summaries, schemas and security."""

from __future__ import annotations

import httpx

from tests.support.server import ModelbusServer


def test_openapi_lists_every_route_with_a_summary(server: ModelbusServer) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
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
