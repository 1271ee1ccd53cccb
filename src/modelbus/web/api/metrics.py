"""``GET /metrics``: Prometheus text exposition of the server's figures.

Listener families (``modelbus_listener_*``, see :mod:`modelbus.listeners.metrics`) and, per model
version, the figures of its runner pool (``modelbus_version_*``, see
:mod:`modelbus.runtime.metrics`).

Authentication: by default any valid API key, whatever its scopes (scrapers send it as
``Authorization: Bearer KEY``); ``modelbus serve --metrics-public`` drops the requirement
(for a scraper inside a private network).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelbus.web.api.auth import AuthorizationHeader, key_from_header
from modelbus.web.api.context import services

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (any valid API key, or none with --metrics-public)",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        401: {"description": "No API key, or an unknown or revoked one"},
    },
)
async def metrics(request: Request, authorization: AuthorizationHeader) -> Response:
    running = services(request)
    if not running.settings.metrics_public:
        await running.keys.verify(key_from_header(authorization))
    await running.version_metrics.refresh()
    return Response(generate_latest(running.metrics), media_type=CONTENT_TYPE_LATEST)
