"""API reference page: every route of the HTTP API, from the app's own OpenAPI document.

The document needs a key like every API route (``GET /openapi.json``); a logged-in browser
reads it here, rendered by the server (no third-party Swagger assets, which the console's
content security policy would refuse), and downloads it from ``/console/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from modelbus.web.console.auth import Viewing
from modelbus.web.console.web import PREFIX, ConsoleRoute, render

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

METHODS = ("get", "post", "put", "patch", "delete")


@router.get("/api")
async def reference_page(request: Request, viewer: Viewing) -> Response:
    document = request.app.openapi()
    groups: dict[str, list[dict[str, Any]]] = {}
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            tag = (operation.get("tags") or ["other"])[0]
            groups.setdefault(tag, []).append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                }
            )
    return render(
        request,
        "reference.html",
        viewer=viewer,
        title=document["info"]["title"],
        version=document["info"]["version"],
        groups=sorted(groups.items()),
    )


@router.get("/openapi.json")
async def reference_document(request: Request, viewer: Viewing) -> JSONResponse:
    return JSONResponse(request.app.openapi())
