"""The charts' data: the JSON the listener and model pages' charts poll.

The same answers as ``GET /v1/listeners/{name}/history`` and ``GET
/v1/models/{owner}/{name}/history`` (:mod:`modelbus.web.api.history`), last hour in steps
of 10 s, for the session's key under the same rules (any key for a listener; a key that may
see the model for a model).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from modelbus.errors import Forbidden
from modelbus.web.api.auth import can_read_model
from modelbus.web.api.context import services
from modelbus.web.api.history import grid_of, listener_history_out, model_history_out
from modelbus.web.console.auth import Viewing
from modelbus.web.console.web import PREFIX, ConsoleRoute
from modelbus.web.history import DEFAULT_STEP_S, HISTORY_WINDOW_S

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)


@router.get("/listeners/{name}/history")
async def listener_history(request: Request, name: str, viewer: Viewing) -> JSONResponse:
    running = services(request)
    info = await running.listeners.get(name)
    grid = grid_of(running.history, HISTORY_WINDOW_S, DEFAULT_STEP_S)
    found = await running.history.listener(info.name, grid)
    return JSONResponse(listener_history_out(info.name, found).model_dump())


@router.get("/models/{owner}/{name}/history")
async def model_history(request: Request, owner: str, name: str, viewer: Viewing) -> JSONResponse:
    if not can_read_model(viewer.key, owner, name):
        raise Forbidden(f"this API key may neither manage models nor call {owner}/{name}")
    running = services(request)
    model = await running.registry.get_model(owner, name)
    full = f"{model.owner}/{model.name}"
    grid = grid_of(running.history, HISTORY_WINDOW_S, DEFAULT_STEP_S)
    return JSONResponse(
        model_history_out(full, await running.history.model(full, grid)).model_dump()
    )
