"""Run records: what happened to a broker message in each listener that received it.

``GET /v1/runs`` (any valid API key) pages through the records of every listener, most
recently updated first, narrowed by listener, status, time range, message id or the object
an S3 / folder notification announced (``object_key``: ``page-1.png`` finds
``/srv/inbox/page-1.png``). ``GET /v1/runs/{message_id}`` answers the records of one broker
message id (one per listener, or the one of ``?listener=``); ``GET /v1/listeners/{name}/runs``
pages through one listener's. Records outlive the listener.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from modelbus.client.schemas import RunOut, RunPage, RunStatus
from modelbus.errors import RunNotFound
from modelbus.listeners.credentials import redact_url
from modelbus.store.runs import Page, RunRecord
from modelbus.web.api.auth import Key
from modelbus.web.api.context import services
from modelbus.web.api.errors import responses
from modelbus.web.api.search import Cursor, Limit, SearchQuery

router = APIRouter(tags=["runs"])

StatusQuery = Annotated[RunStatus | None, Query(description="Only records in this state.")]


def run_out(record: RunRecord) -> RunOut:
    return RunOut(
        listener=record.listener,
        message_id=record.message_id,
        status=record.status,
        attempts=record.attempts,
        version=record.version,
        output_id=record.output_id,
        result_location=[redact_url(u) for u in record.result_location],
        error=dict(record.error) if record.error is not None else None,
        duration_ms=record.duration_ms,
        first_received_at=record.first_received_at,
        updated_at=record.updated_at,
        finished_at=record.finished_at,
        object_key=record.object_key,
    )


def run_page(page: Page[RunRecord]) -> RunPage:
    return RunPage(items=[run_out(r) for r in page.items], next_cursor=page.next_cursor)


@router.get(
    "/v1/runs",
    summary="Run records of every listener, most recently updated first, searched",
    response_model=RunPage,
    responses=responses(400),
)
async def search_runs(
    request: Request,
    key: Key,
    search: SearchQuery,
    status: StatusQuery = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> RunPage:
    page = await services(request).listeners.runs.list_runs(
        status=status, search=search, limit=limit, cursor=cursor
    )
    return run_page(page)


@router.get(
    "/v1/runs/{message_id:path}",
    summary="What happened to a broker message (one record per listener that received it)",
    response_model=list[RunOut],
    responses=responses(404),
)
async def get_runs(
    request: Request,
    message_id: str,
    key: Key,
    listener: Annotated[str | None, Query(description="Only this listener's record.")] = None,
) -> list[RunOut]:
    found = await services(request).listeners.runs.get_runs(message_id, listener)
    if not found:
        where = f" in listener {listener!r}" if listener else ""
        raise RunNotFound(f"no run record for message {message_id!r}{where}")
    return [run_out(r) for r in found]


@router.get(
    "/v1/listeners/{name}/runs",
    summary="A listener's run records, most recently updated first",
    response_model=RunPage,
    responses=responses(400),
)
async def list_runs(
    request: Request,
    name: str,
    key: Key,
    status: StatusQuery = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> RunPage:
    page = await services(request).listeners.runs.list_runs(
        name, status=status, limit=limit, cursor=cursor
    )
    return run_page(page)
