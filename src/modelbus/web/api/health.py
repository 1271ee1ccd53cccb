"""``GET /health``: the one route without authentication, for load balancers and probes.

It answers 200 while the node serves, with ``status: degraded`` when the artifact store cannot
be reached (checked at most every few seconds): the node still serves every version it has
fetched, so taking it out of a load balancer would not help.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from modelbus import __version__
from modelbus.client.schemas import Health, StoreHealth
from modelbus.web.api.context import services

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness probe (no authentication)", response_model=Health)
async def health(request: Request) -> Health:
    found = await services(request).registry.artifact_status()
    store = StoreHealth(
        ok=found.ok, store=found.store, error=found.error, checked_at=found.checked_at
    )
    return Health(status="ok" if found.ok else "degraded", version=__version__, artifacts=store)
