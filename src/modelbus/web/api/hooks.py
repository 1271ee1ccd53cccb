"""``POST /v1/hooks/{name}``: webhooks in, for listeners whose source is ``webhook://NAME``.

No API key: the ``X-Modelbus-Signature`` header (HMAC-SHA256 over timestamp and body with
the listener's secret, see :mod:`modelbus.connectors.webhook`) authenticates the sender;
:mod:`modelbus.listeners.hooks` finds the listeners and queues the event.
The answer is ``202`` once the event is durably queued for every listener on that hook
whose secret the signature matches, ``401`` for a missing, wrong or stale signature
(outside the listener's ``tolerance_s``, 5 minutes by default), ``404`` when no listener
receives that hook, ``413`` for a body over the server's limit.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from modelbus.client.schemas import Schema
from modelbus.listeners.hooks import SIGNATURE_HEADER
from modelbus.web.api.context import services
from modelbus.web.api.payloads import read_body

router = APIRouter(tags=["webhooks"])


class HookAccepted(Schema):
    id: str = Field(description="The event's message id (its Idempotency-Key when given).")
    listeners: list[str] = Field(description="The listeners it was queued for.")


@router.post(
    "/v1/hooks/{name}",
    summary="Receive a signed webhook for the listeners on webhook://NAME (no API key)",
    status_code=202,
    response_model=HookAccepted,
    responses={
        401: {"description": "Missing, wrong or stale signature"},
        404: {"description": "No listener receives this hook"},
        413: {"description": "Body over the size limit"},
    },
    openapi_extra={
        "parameters": [
            {
                "name": SIGNATURE_HEADER,
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "t=UNIX_SECONDS,v1=HEX(HMAC-SHA256(secret, t + '.' + body))",
            },
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "The event's id: a repeated POST with it is queued once.",
            },
        ],
        "requestBody": {
            "required": True,
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
    },
)
async def receive_hook(request: Request, name: str) -> JSONResponse:
    running = services(request)
    targets = await running.hooks.targets(name)
    body = await read_body(request, running.settings.max_body_bytes)
    receipt = await running.hooks.accept(targets, request.headers, body)
    accepted = HookAccepted(id=receipt.id, listeners=receipt.listeners)
    return JSONResponse(accepted.model_dump(), status_code=202)
