"""Dead letters: list, inspect and redrive what a listener could not process.

Listing (any valid API key) shows each letter's error and metadata: ``GET /v1/dead-letters``
searches every listener's (by listener, time range, message id or object key, as
``GET /v1/runs``), ``GET /v1/listeners/{name}/dead-letters`` pages through one listener's.
The original body is on ``GET /v1/dead-letters/{id}`` only, which needs ``listeners:manage``
since it is the message's content. ``POST /v1/listeners/{name}/dead-letters/redrive``
(``listeners:manage``) runs letters again through the listener's stages, on its own version
spec or another (``spec``), at most ``rate_per_s`` a second, and answers once they have all
been tried; ``POST /v1/dead-letters/redrive`` does so for every letter a search matches.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query, Request

from modelbus.client.schemas import (
    DeadLetterOut,
    DeadLetterPage,
    RedriveOut,
    RedriveRequest,
    SearchRedriveOut,
    SearchRedriveRequest,
)
from modelbus.listeners.manager import RedriveResult
from modelbus.store.runs import DeadLetter, Page
from modelbus.web.api.auth import Key, ListenerManagerKey
from modelbus.web.api.context import services
from modelbus.web.api.errors import responses
from modelbus.web.api.listeners import managed
from modelbus.web.api.search import Cursor, Limit, SearchQuery, search_of
from modelbus.web.server import Services

router = APIRouter(tags=["dead letters"])

IncludeRedriven = Annotated[
    bool, Query(description="Also list letters that were redriven already.")
]


def dead_letter_out(letter: DeadLetter, *, with_body: bool) -> DeadLetterOut:
    return DeadLetterOut(
        id=letter.id,
        listener=letter.listener,
        message_id=letter.message_id,
        body_base64=base64.b64encode(letter.body).decode("ascii") if with_body else None,
        body_size=len(letter.body),
        attributes=dict(letter.attributes),
        error_type=letter.error_type,
        error_message=letter.error_message,
        stacktrace=letter.stacktrace,
        permanent=letter.permanent,
        attempts=letter.attempts,
        model=letter.model,
        version=letter.version,
        created_at=letter.created_at,
        redriven_at=letter.redriven_at,
        redriven_to=letter.redriven_to,
        object_key=letter.object_key,
    )


def dead_letter_page(page: Page[DeadLetter]) -> DeadLetterPage:
    """A page of letters, without their bodies."""
    return DeadLetterPage(
        items=[dead_letter_out(d, with_body=False) for d in page.items],
        next_cursor=page.next_cursor,
    )


def redrive_out(running: Services, result: RedriveResult) -> RedriveOut:
    redact = running.credentials.redact
    return RedriveOut(
        model=result.model,
        redriven=result.redriven,
        failed={i: redact(why) for i, why in result.failed.items()},
    )


@router.get(
    "/v1/dead-letters",
    summary="Dead letters of every listener, newest first (without bodies), searched",
    response_model=DeadLetterPage,
    responses=responses(400),
)
async def search_dead_letters(
    request: Request,
    key: Key,
    search: SearchQuery,
    include_redriven: IncludeRedriven = True,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DeadLetterPage:
    page = await services(request).listeners.runs.list_dead_letters(
        search=search, limit=limit, cursor=cursor, include_redriven=include_redriven
    )
    return dead_letter_page(page)


@router.post(
    "/v1/dead-letters/redrive",
    summary="Run again every dead letter a search matches, listener by listener",
    response_model=SearchRedriveOut,
    responses=responses(400, 404),
)
async def redrive_matching(
    request: Request, body: SearchRedriveRequest, key: ListenerManagerKey
) -> SearchRedriveOut:
    running = services(request)
    search = search_of(body.listener, body.message_id, body.object_key, body.since, body.until)
    matched, results = await running.listeners.redrive_matching(
        search,
        include_redriven=body.include_redriven,
        spec=body.spec,
        rate_per_s=body.rate_per_s,
        every=body.all,
        check=lambda name: managed(running, key, name),
    )
    return SearchRedriveOut(
        matched=matched,
        listeners={name: redrive_out(running, r) for name, r in results.items()},
    )


@router.get(
    "/v1/listeners/{name}/dead-letters",
    summary="A listener's dead letters, newest first (without bodies)",
    response_model=DeadLetterPage,
    responses=responses(400),
)
async def list_dead_letters(
    request: Request,
    name: str,
    key: Key,
    include_redriven: IncludeRedriven = True,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DeadLetterPage:
    page = await services(request).listeners.runs.list_dead_letters(
        name, limit=limit, cursor=cursor, include_redriven=include_redriven
    )
    return dead_letter_page(page)


@router.get(
    "/v1/dead-letters/{letter_id}",
    summary="One dead letter with its original body (base64), attributes, error and trace",
    response_model=DeadLetterOut,
    responses=responses(404),
)
async def get_dead_letter(
    request: Request, letter_id: str, key: ListenerManagerKey
) -> DeadLetterOut:
    letter = await services(request).listeners.runs.get_dead_letter(letter_id)
    return dead_letter_out(letter, with_body=True)


@router.post(
    "/v1/listeners/{name}/dead-letters/redrive",
    summary="Run dead letters again, on the listener's version spec or another",
    response_model=RedriveOut,
    responses=responses(400, 404),
)
async def redrive(
    request: Request, name: str, body: RedriveRequest, key: ListenerManagerKey
) -> RedriveOut:
    await managed(services(request), key, name)
    result = await services(request).listeners.redrive(
        name, ids=body.ids, spec=body.spec, rate_per_s=body.rate_per_s
    )
    return redrive_out(services(request), result)
