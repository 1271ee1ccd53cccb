"""The FastAPI application: :func:`create_app` wires routes, errors and the lifespan;
:func:`run` serves it with uvicorn.

The lifespan opens the server's services (database, registry, key store, pools, model
service; see :mod:`modelbus.web.server`) when the app starts and closes them when it stops, so
the same app object runs under uvicorn, in tests, or behind any ASGI server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from modelbus import __version__
from modelbus.config import Settings
from modelbus.runtime import telemetry
from modelbus.web.api import errors, routers
from modelbus.web.api.auth import Key
from modelbus.web.api.limits import BodyLimit
from modelbus.web.server import Services, open_services

ServicesFactory = Callable[[Settings], AbstractAsyncContextManager[Services]]

# uvicorn's own wait for open HTTP connections at stop, before the lifespan shutdown.
HTTP_GRACE_S = 10

DESCRIPTION = """\
Every model version gets an HTTP API the moment it is published.

* **Native API** under `/v1/`: models, versions, builds, invocations (sync, and async jobs),
  API keys.
* **Algorithmia-compatible API**: `POST /v1/algo/{owner}/{name}[/{version}]` and the
  `/v1/algorithms/...` read routes, so existing Algorithmia clients keep working.
* **Open Inference Protocol v2** under `/v2/` (KServe, Triton, MLServer, Seldon clients):
  health, server and model metadata, readiness and `infer`, with model name `OWNER/NAME`
  and any version spec.

Authenticate with `Authorization: Simple KEY` or `Authorization: Bearer KEY` on every route
but `GET /health` (this document too: `GET /openapi.json`; in a browser, log in to the
console and open `/console/api`). Every error is
`{"error": {"message", "error_type", "code", ...}}` with a meaningful HTTP status
(under `/v2/`, the protocol's own `{"error": "<message>"}`).
"""


def create_app(settings: Settings, *, services: ServicesFactory = open_services) -> FastAPI:
    """The modelbus API for ``settings``; ``services`` opens what the routes use."""

    tracing = telemetry.setup()  # on when OTEL_EXPORTER_OTLP_*ENDPOINT is set

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with services(settings) as running:
                app.state.services = running
                yield
        finally:
            if tracing:
                telemetry.shutdown()  # export what is still buffered

    app = FastAPI(
        title="modelbus",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # The API's description needs a key too (GET /openapi.json below); browsers read it
        # in the console (/console/api), not through Swagger UI's public /docs and /redoc.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    telemetry.instrument_app(app)
    errors.install(app)
    # Before routing, authentication and FastAPI's own body parsing (see api/limits.py).
    app.add_middleware(BodyLimit, default_bytes=settings.max_body_bytes, routes=lambda: app.routes)
    for router in routers():
        app.include_router(router)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(key: Key) -> JSONResponse:
        """The OpenAPI document of this API (any valid key)."""
        return JSONResponse(app.openapi())

    return app


def configure_logging() -> None:
    """One log format for modelbus's own loggers (uvicorn keeps its own handlers)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def run(settings: Settings, *, app: FastAPI | None = None) -> None:
    """Serve ``app`` (default: the API for ``settings``) on ``settings.host:settings.port``
    until SIGINT/SIGTERM, then stop gracefully (see :mod:`modelbus.web.server`). Blocks."""
    import uvicorn

    config = uvicorn.Config(
        app or create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=HTTP_GRACE_S,
    )
    configure_logging()
    uvicorn.Server(config).run()
