"""Listener routes: create, apply, inspect, pause, resume and delete event listeners.

Thin over :class:`~modelbus.listeners.manager.ListenerManager`. Scopes: any valid API key may read
(definitions, status); changing anything needs ``listeners:manage`` (or ``admin``).

Every source, output and error-sink URL is a secret. A key that may manage the listener
(``listeners:manage`` and ``call`` on its model) is answered the definition whole: it edits
it. Any other key sees every URL by its shape, ``scheme://host:port/***?name=***``
(:func:`~modelbus.connectors.redact_url`). A definition sent back with ``***`` in a URL
keeps the stored values there (so what any view shows can be edited and ``PUT`` back); a
``***`` no stored URL of the same scheme and host can fill is refused. A definition that is
refused answers ``400`` with a message saying what to change (``DefinitionError``), the same
message a listener file gets from ``modelbus listeners apply``.

``?check=true`` (the default) checks that the model reference resolves to a version and
opens the listener's connectors before storing it, so a misspelt model or spec, a wrong
URL, a missing queue or bad credentials are refused at once; ``check=false`` stores it
anyway (its status then shows why it cannot run, and it retries).

``GET /v1/asyncapi.json`` describes every listener as an AsyncAPI 3.0 document (any valid
key; see :mod:`modelbus.listeners.asyncapi`).

Algorithmia's event-listener API (``/v1/users/{user}/event-listeners``) is in
:mod:`modelbus.web.api.event_listeners`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from modelbus import __version__
from modelbus.client.schemas import (
    ApplyOut,
    ListenerStatusOut,
    NodeListenerOut,
    NodeListenerState,
)
from modelbus.errors import DefinitionError, ModelbusError
from modelbus.listeners import asyncapi
from modelbus.listeners.cluster import ClusterStatus, NodeListenerStatus
from modelbus.listeners.credentials import redact_definition, restore_masked
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.manager import ListenerInfo
from modelbus.store.keys import KeyInfo
from modelbus.web.api.auth import (
    Key,
    ListenerManagerKey,
    can_manage_listener,
    require_listener_model,
)
from modelbus.web.api.context import services
from modelbus.web.api.errors import responses
from modelbus.web.api.schemas import ApplyRequest, ListenerOut
from modelbus.web.server import Services

Check = Annotated[
    bool,
    Query(
        description="Check that the model reference resolves to a version and open the "
        "listener's connectors first; refuse it if either fails."
    ),
]


class DefinitionRoute(APIRoute):
    """A route whose body is a listener definition (or a list of them): a body that does
    not validate is answered ``400 DefinitionError`` with the message listener files get,
    instead of FastAPI's generic ``422``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                refused = await definition_error(request, exc)
                if refused is None:
                    raise
                raise refused from None

        return route


async def definition_error(request: Request, exc: RequestValidationError) -> Exception | None:
    """The DefinitionError explaining why the body was refused, or None when the body is
    not what failed."""
    if not any(tuple(e.get("loc", ()))[:1] == ("body",) for e in exc.errors()):
        return None
    try:
        body = await request.json()
    except ValueError:
        return DefinitionError("the body is not JSON: send a listener definition as an object")
    bulk = isinstance(body, dict) and isinstance(body.get("listeners"), list)
    entries = body["listeners"] if bulk else [body]
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            return DefinitionError(f"listeners[{i}]: a listener definition is a JSON object")
        services(request).credentials.remember_definition(entry)
        try:
            ListenerDefinition.from_mapping(entry, where=f"listeners[{i}]" if bulk else "")
        except DefinitionError as refused:
            return refused
    return None


router = APIRouter(tags=["listeners"], route_class=DefinitionRoute)


async def status_out(running: Services, definition: ListenerDefinition) -> ListenerStatusOut:
    """The live status of a listener over every live node, with the per-node breakdown and
    its model spec resolved now."""
    status = await running.listeners.status(definition.name)
    redact = running.credentials.redact
    version, version_error = None, None
    try:
        version = (await running.models.resolve(definition.ref)).label
    except ModelbusError as exc:
        version_error = exc.message
    return ListenerStatusOut(
        name=status.name,
        state=status.state,
        reason=redact(status.last_error) if status.last_error else None,
        reason_at=status.last_error_at,
        problems={part: redact(why) for part, why in status.problems.items()},
        counters=status.counters,
        totals=await running.listeners.totals(definition.name),
        backlog=status.backlog,
        backlog_at=status.backlog_at,
        nodes=[
            node_listener_out(running, part)
            for part in (status.nodes if isinstance(status, ClusterStatus) else ())
        ],
        version=version,
        version_error=version_error,
    )


def node_listener_out(running: Services, part: NodeListenerStatus) -> NodeListenerOut:
    """One node's part of a listener's status, credentials masked."""
    return NodeListenerOut(
        node=part.node,
        address=part.address,
        # a state this version does not know (a newer node's) is shown as `stopped`
        state=part.state if part.state in get_args(NodeListenerState) else "stopped",
        counters=part.counters,
        reason=running.credentials.redact(part.reason) if part.reason else None,
        reason_at=part.reason_at,
        backlog=part.backlog,
        backlog_at=part.backlog_at,
    )


def shown_definition(key: KeyInfo, definition: ListenerDefinition) -> ListenerDefinition:
    """``definition`` as ``key`` may see it: whole for a key that may manage it, every URL
    by its shape for any other."""
    if can_manage_listener(key, definition.model):
        return definition
    return redact_definition(definition)


async def listener_out(running: Services, info: ListenerInfo, key: KeyInfo) -> ListenerOut:
    """A stored listener as ``key`` may see it (:func:`shown_definition`), with its status."""
    return ListenerOut(
        name=info.name,
        definition=shown_definition(key, info.definition),
        status=await status_out(running, info.definition),
        created_at=info.created_at,
        updated_at=info.updated_at,
    )


async def _prepared(
    running: Services, definitions: list[ListenerDefinition]
) -> list[ListenerDefinition]:
    """``definitions`` with masked credentials restored from the stored ones, remembered
    for masking in errors and logs."""
    stored = {info.name: info.definition for info in await running.listeners.list()}
    prepared = [restore_masked(d, stored.get(d.name)) for d in definitions]
    for definition in prepared:
        running.credentials.remember_definition(definition)
    return prepared


async def managed(running: Services, key: KeyInfo, name: str) -> ListenerInfo:
    """The stored listener ``name``, which ``key`` may manage: it must be allowed to call
    the listener's model (raises ``ListenerNotFound`` or ``Forbidden``)."""
    info = await running.listeners.get(name)
    require_listener_model(key, name, info.definition.model)
    return info


async def require_models(
    running: Services, key: KeyInfo, definitions: list[ListenerDefinition], *, prune: bool
) -> None:
    """``key`` may call the model of every definition, of the stored listeners they
    replace, and (``prune``) of the stored listeners that would be deleted."""
    stored = {info.name: info.definition for info in await running.listeners.list()}
    given = {d.name for d in definitions}
    for definition in definitions:
        require_listener_model(key, definition.name, definition.model)
        if definition.name in stored:
            require_listener_model(key, definition.name, stored[definition.name].model)
    for name, old in stored.items():
        if prune and name not in given:
            require_listener_model(key, name, old.model)


@router.get(
    "/v1/listeners",
    summary="List listeners with their status",
    response_model=list[ListenerOut],
    responses=responses(),
)
async def list_listeners(request: Request, key: Key) -> list[ListenerOut]:
    running = services(request)
    return [await listener_out(running, info, key) for info in await running.listeners.list()]


@router.post(
    "/v1/listeners",
    summary="Create a listener (it starts at once if enabled)",
    status_code=201,
    response_model=ListenerOut,
    responses=responses(400, 409),
)
async def create_listener(
    request: Request, definition: ListenerDefinition, key: ListenerManagerKey, check: Check = True
) -> ListenerOut:
    running = services(request)
    await require_models(running, key, [definition], prune=False)
    [definition] = await _prepared(running, [definition])
    info = await running.listeners.create(definition, check=check)
    return await listener_out(running, info, key)


@router.put(
    "/v1/listeners",
    summary="Create or update several listeners at once (a listener file)",
    response_model=ApplyOut,
    responses=responses(400),
)
async def apply_listeners(
    request: Request, body: ApplyRequest, key: ListenerManagerKey, check: Check = True
) -> ApplyOut:
    running = services(request)
    await require_models(running, key, body.listeners, prune=body.prune)
    definitions = await _prepared(running, body.listeners)
    result = await running.listeners.apply(definitions, prune=body.prune, check=check)
    return ApplyOut(
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
        deleted=result.deleted,
    )


@router.get(
    "/v1/listeners/{name}",
    summary="Get a listener: its definition (URLs redacted unless the key may manage it) "
    "and status",
    response_model=ListenerOut,
    responses=responses(404),
)
async def get_listener(request: Request, name: str, key: Key) -> ListenerOut:
    running = services(request)
    return await listener_out(running, await running.listeners.get(name), key)


@router.put(
    "/v1/listeners/{name}",
    summary="Create or replace a listener (restarted only if its definition changed)",
    response_model=ListenerOut,
    responses={**responses(400), 201: {"description": "Created", "model": ListenerOut}},
)
async def put_listener(
    request: Request,
    name: str,
    definition: ListenerDefinition,
    response: Response,
    key: ListenerManagerKey,
    check: Check = True,
) -> ListenerOut:
    if definition.name != name:
        raise DefinitionError(
            f"the body defines listener {definition.name!r} but the URL names {name!r}: "
            "make them the same"
        )
    running = services(request)
    await require_models(running, key, [definition], prune=False)
    result = await running.listeners.apply(await _prepared(running, [definition]), check=check)
    if result.created:
        response.status_code = 201
    return await listener_out(running, await running.listeners.get(name), key)


@router.delete(
    "/v1/listeners/{name}",
    summary="Stop and delete a listener (its run records and dead letters are kept)",
    status_code=204,
    response_class=Response,
    responses=responses(404),
)
async def delete_listener(request: Request, name: str, key: ListenerManagerKey) -> Response:
    await managed(services(request), key, name)
    await services(request).listeners.delete(name)
    return Response(status_code=204)


@router.post(
    "/v1/listeners/{name}/pause",
    summary="Pause a listener: it stops gracefully and stays stopped across restarts",
    response_model=ListenerOut,
    responses=responses(404),
)
async def pause_listener(request: Request, name: str, key: ListenerManagerKey) -> ListenerOut:
    running = services(request)
    await managed(running, key, name)
    return await listener_out(running, await running.listeners.pause(name), key)


@router.post(
    "/v1/listeners/{name}/resume",
    summary="Resume a paused listener",
    response_model=ListenerOut,
    responses=responses(404),
)
async def resume_listener(request: Request, name: str, key: ListenerManagerKey) -> ListenerOut:
    running = services(request)
    await managed(running, key, name)
    return await listener_out(running, await running.listeners.resume(name), key)


@router.get(
    "/v1/listeners/{name}/status",
    summary="A listener's state, last error, counters and resolved version",
    response_model=ListenerStatusOut,
    responses=responses(404),
)
async def listener_status(request: Request, name: str, key: Key) -> ListenerStatusOut:
    running = services(request)
    return await status_out(running, (await running.listeners.get(name)).definition)


@router.get(
    "/v1/asyncapi.json",
    summary="Every listener as an AsyncAPI 3.0 document (channels, messages, bindings)",
    response_class=JSONResponse,
    responses={**responses(), 200: {"content": {"application/json": {}}}},
)
async def asyncapi_document(request: Request, key: Key) -> JSONResponse:
    running = services(request)
    definitions = [shown_definition(key, i.definition) for i in await running.listeners.list()]
    schemas = await asyncapi.model_schemas(
        (d.ref for d in definitions), running.registry.manifest_of
    )
    document = asyncapi.document(
        definitions, schemas, api_url=str(request.base_url), version=__version__
    )
    return JSONResponse(document)
