"""Runs page: search the run records of every listener (by listener, status, time range,
broker message id, or the object / file a notification announced), newest first, a page at
a time.

Thin over :meth:`modelbus.store.runs.RunStore.list_runs`, as ``GET /v1/runs``; any logged-in
key may look, as on the API.
"""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Request
from fastapi.responses import Response

from modelbus.errors import InvalidInput
from modelbus.store.runs import RunStatus
from modelbus.web.api.context import services
from modelbus.web.console.auth import Viewing
from modelbus.web.console.search import STATUSES, SearchForm
from modelbus.web.console.web import PREFIX, ConsoleRoute, render

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 50


@router.get("/runs")
async def runs_page(request: Request, viewer: Viewing, cursor: str | None = None) -> Response:
    form = SearchForm.of(request.query_params)
    manager = services(request).listeners
    runs, next_cursor, error = [], None, None
    try:
        page = await manager.runs.list_runs(
            status=cast(RunStatus, form.status) if form.status else None,
            search=form.search(),
            limit=PAGE_SIZE,
            cursor=cursor or None,
        )
        runs, next_cursor = page.items, page.next_cursor
    except InvalidInput as exc:
        error = exc.message
    return render(
        request,
        "runs.html",
        status_code=400 if error else 200,
        viewer=viewer,
        form=form,
        listeners=[info.name for info in await manager.list()],
        statuses=STATUSES,
        runs=runs,
        cursor=cursor,
        next_cursor=next_cursor,
        error=error,
    )
