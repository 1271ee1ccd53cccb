"""``POST /v1/hooks/{name}``: webhooks in, for listeners whose source is ``webhook://NAME``.

No API key: the ``X-Modelbus-Signature`` header (HMAC-SHA256 over timestamp and body with
the listener's secret, see :mod:`modelbus.connectors.webhook`) authenticates the sender.
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
from modelbus.connectors import OutMessage, scheme_of
from modelbus.connectors.webhook import (
    SIGNATURE_HEADER,
    WebhookOptions,
    hook_attributes,
    hook_message_id,
    verify,
)
from modelbus.errors import DefinitionError, NotFound, Unauthenticated
from modelbus.listeners.manager import ListenerManager
from modelbus.web.api.context import services
from modelbus.web.api.payloads import read_body

router = APIRouter(tags=["webhooks"])


class HookAccepted(Schema):
    id: str = Field(description="The event's message id (its Idempotency-Key when given).")
    listeners: list[str] = Field(description="The listeners it was queued for.")


async def hook_listeners(manager: ListenerManager, hook: str) -> list[tuple[str, WebhookOptions]]:
    """The listeners whose source is ``webhook://HOOK``, with their options."""
    found = []
    for info in await manager.list():
        source = info.definition.source
        if scheme_of(source) != "webhook":
            continue
        try:
            options = WebhookOptions.from_url(source)
        except DefinitionError:
            continue
        if options.name == hook:
            found.append((info.name, options))
    return found


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
    targets = await hook_listeners(running.listeners, name)
    if not targets:
        raise NotFound(f"no listener receives webhook {name!r}")
    body = await read_body(request, running.settings.max_body_bytes)
    header = request.headers.get(SIGNATURE_HEADER)
    matched, signature, refusal = [], "", None
    for listener, options in targets:
        try:
            signature = verify(options.secret, header, body, tolerance_s=options.tolerance_s)
        except Unauthenticated as exc:
            refusal = exc
            continue
        matched.append(listener)
    if not matched:
        assert refusal is not None
        raise refusal
    message = OutMessage(
        id=hook_message_id(request.headers, signature),
        body=body,
        attributes=hook_attributes(request.headers),
    )
    for listener in matched:
        await running.hooks.publish(listener, message)
    accepted = HookAccepted(id=message.id, listeners=matched)
    return JSONResponse(accepted.model_dump(), status_code=202)
