"""``GET /health``: the one route without authentication, for load balancers and probes."""

from __future__ import annotations

from fastapi import APIRouter

from modelbus import __version__
from modelbus.client.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness probe (no authentication)", response_model=Health)
async def health() -> Health:
    return Health(version=__version__)
