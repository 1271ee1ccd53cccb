"""Runs page: look up what happened to a broker message id, in every listener that got it.

Thin over :meth:`modelbus.store.runs.RunStore.get_runs`, as ``GET /v1/runs/{message_id}``; any
logged-in key may look, as on the API.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from modelbus.web.api.context import services
from modelbus.web.console.auth import Viewing
from modelbus.web.console.web import PREFIX, ConsoleRoute, render

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)


@router.get("/runs")
async def runs_page(
    request: Request, viewer: Viewing, message_id: str = "", listener: str = ""
) -> Response:
    message_id, listener = message_id.strip(), listener.strip()
    runs = None
    if message_id:
        store = services(request).listeners.runs
        runs = await store.get_runs(message_id, listener or None)
    return render(
        request,
        "runs.html",
        status_code=404 if runs == [] else 200,
        viewer=viewer,
        message_id=message_id,
        listener=listener,
        runs=runs,
    )
