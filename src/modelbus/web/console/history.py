"""The charts' data: the JSON the listener and model pages' charts poll.

The same answers as ``GET /v1/listeners/{name}/history`` and ``GET
/v1/models/{owner}/{name}/history`` (:mod:`modelbus.web.api.history`), for the session's key
under the same rules (any key for a listener; a key that may see the model for a model).
``?window_s=`` (60 to 3600 s, default the hour: the page's "show the last" choice) picks
the window; the step follows from it (:meth:`History.step_for`: 10 s for the hour).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from modelbus.errors import Forbidden
from modelbus.web.api.auth import can_read_model
from modelbus.web.api.context import services
from modelbus.web.api.history import grid_of, listener_history_out, model_history_out
from modelbus.web.console.auth import Viewing
from modelbus.web.console.web import PREFIX, ConsoleRoute
from modelbus.web.history import History
from modelbus.web.series import Grid

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

Window = Annotated[int, Query(ge=60, le=3600)]


def _grid(history: History, window_s: float) -> Grid:
    return grid_of(history, window_s, history.step_for(window_s))


@router.get("/listeners/{name}/history")
async def listener_history(
    request: Request, name: str, viewer: Viewing, window_s: Window = 3600
) -> JSONResponse:
    running = services(request)
    info = await running.listeners.get(name)
    grid = _grid(running.history, window_s)
    found = await running.history.listener(info.name, grid)
    return JSONResponse(listener_history_out(info.name, found).model_dump())


@router.get("/models/{owner}/{name}/history")
async def model_history(
    request: Request, owner: str, name: str, viewer: Viewing, window_s: Window = 3600
) -> JSONResponse:
    if not can_read_model(viewer.key, owner, name):
        raise Forbidden(f"this API key may neither manage models nor call {owner}/{name}")
    running = services(request)
    model = await running.registry.get_model(owner, name)
    full = f"{model.owner}/{model.name}"
    grid = _grid(running.history, window_s)
    return JSONResponse(
        model_history_out(full, await running.history.model(full, grid)).model_dump()
    )
