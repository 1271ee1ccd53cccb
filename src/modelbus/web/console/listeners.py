"""Event listener pages: the table with live figures, one listener, create, edit, pause,
resume and delete.

Thin over the services the ``/v1/listeners`` routes call, with the routes' own helpers: the
status a page shows is :func:`modelbus.web.api.listeners.status_out` (state, reason with
credentials masked, counters, the spec resolved now), definitions are shown with every URL
by its shape (to every key: the console never shows a URL whole), and a definition posted
back with ``***`` in a URL keeps the stored values there. Any logged-in key may look;
changing anything needs ``listeners:manage``, as on the API.

``GET /console/listeners/live`` answers the same statuses as JSON for the page's script,
which polls it to keep the figures live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from modelbus.client.schemas import ListenerStatusOut
from modelbus.errors import Forbidden, ModelbusError
from modelbus.listeners.credentials import redact_definition, restore_masked
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.manager import ListenerInfo
from modelbus.store.keys import LISTENERS_MANAGE
from modelbus.web.api.context import services
from modelbus.web.api.errors import status_for
from modelbus.web.api.listeners import managed, require_models, status_out
from modelbus.web.console.auth import Posted, Posting, Viewer, Viewing
from modelbus.web.console.listener_form import OUTPUT_MODES, ListenerForm
from modelbus.web.console.web import PREFIX, ConsoleRoute, render, see_other
from modelbus.web.server import Services

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

RECENT_RUNS = 20
NOTICES = {
    "created": "Listener {name} was created.",
    "updated": "Listener {name} was saved.",
    "paused": "Listener {name} is paused: it stopped receiving and stays stopped.",
    "resumed": "Listener {name} was resumed.",
    "deleted": "Listener {name} was deleted (its run records and dead letters are kept).",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class ListenerView:
    """A listener as the pages show it: masked definition and live status."""

    definition: ListenerDefinition
    status: ListenerStatusOut
    created_at: float
    updated_at: float

    @property
    def name(self) -> str:
        return self.definition.name


async def listener_view(running: Services, info: ListenerInfo) -> ListenerView:
    """``info`` with its live status (as the API computes it), its URLs by their shape."""
    return ListenerView(
        definition=redact_definition(info.definition),
        status=await status_out(running, info.definition),
        created_at=info.created_at,
        updated_at=info.updated_at,
    )


def notice(request: Request) -> str | None:
    """The message of a ``?done=ACTION&name=NAME`` redirect after a change."""
    template = NOTICES.get(request.query_params.get("done", ""))
    return template.format(name=request.query_params.get("name", "")) if template else None


def _after(action: str, name: str, page: str | None = None) -> Response:
    target = page or f"{PREFIX}/listeners/{name}"
    return see_other(f"{target}?{urlencode({'done': action, 'name': name})}")


@router.get("/listeners")
async def listeners_page(request: Request, viewer: Viewing) -> Response:
    running = services(request)
    views = [await listener_view(running, info) for info in await running.listeners.list()]
    return render(
        request,
        "listeners.html",
        viewer=viewer,
        listeners=views,
        can_manage=viewer.allows(LISTENERS_MANAGE),
        notice=notice(request),
    )


@router.get("/listeners/live")
async def live_figures(request: Request, viewer: Viewing) -> JSONResponse:
    running = services(request)
    statuses = [
        (await status_out(running, info.definition)).model_dump()
        for info in await running.listeners.list()
    ]
    return JSONResponse({"at": time.time(), "listeners": statuses})


@router.get("/listeners/new")
async def new_listener(request: Request, viewer: Viewing) -> Response:
    viewer.key.require(LISTENERS_MANAGE)
    return _form_page(request, viewer, ListenerForm.blank(), editing=None)


@router.post("/listeners/new")
async def create_listener(request: Request, posted: Posting) -> Response:
    posted.viewer.key.require(LISTENERS_MANAGE)
    form = ListenerForm.posted(posted)
    running = services(request)
    try:
        definition = restore_masked(form.definition(), None)  # refuses a *** left in a URL
        await require_models(running, posted.viewer.key, [definition], prune=False)
        running.credentials.remember_definition(definition)
        await running.listeners.create(definition, check=_check(posted))
    except ModelbusError as exc:
        return _refused(request, posted, form, exc, editing=None)
    return _after("created", definition.name)


@router.get("/listeners/{name}")
async def listener_page(request: Request, name: str, viewer: Viewing) -> Response:
    running = services(request)
    view = await listener_view(running, await running.listeners.get(name))
    runs = await running.listeners.runs.list_runs(name, limit=RECENT_RUNS)
    return render(
        request,
        "listener.html",
        viewer=viewer,
        listener=view,
        runs=runs.items,
        can_manage=viewer.allows(LISTENERS_MANAGE),
        notice=notice(request),
    )


@router.get("/listeners/{name}/edit")
async def edit_listener(request: Request, name: str, viewer: Viewing) -> Response:
    viewer.key.require(LISTENERS_MANAGE)
    info = await services(request).listeners.get(name)
    form = ListenerForm.of(redact_definition(info.definition))
    return _form_page(request, viewer, form, editing=name)


@router.post("/listeners/{name}/edit")
async def save_listener(request: Request, name: str, posted: Posting) -> Response:
    posted.viewer.key.require(LISTENERS_MANAGE)
    running = services(request)
    stored = (await running.listeners.get(name)).definition
    form = ListenerForm.posted(posted)
    form = ListenerForm(**{**_fields(form), "name": name})  # the name is not editable
    try:
        definition = restore_masked(form.definition(), stored)
        await require_models(running, posted.viewer.key, [definition], prune=False)
        running.credentials.remember_definition(definition)
        await running.listeners.apply([definition], check=_check(posted))
    except ModelbusError as exc:
        return _refused(request, posted, form, exc, editing=name)
    return _after("updated", name)


@router.post("/listeners/{name}/pause")
async def pause_listener(request: Request, name: str, posted: Posting) -> Response:
    posted.viewer.key.require(LISTENERS_MANAGE)
    await managed(services(request), posted.viewer.key, name)
    await services(request).listeners.pause(name)
    return _after("paused", name, _back(posted))


@router.post("/listeners/{name}/resume")
async def resume_listener(request: Request, name: str, posted: Posting) -> Response:
    posted.viewer.key.require(LISTENERS_MANAGE)
    await managed(services(request), posted.viewer.key, name)
    await services(request).listeners.resume(name)
    return _after("resumed", name, _back(posted))


@router.get("/listeners/{name}/delete")
async def confirm_delete(request: Request, name: str, viewer: Viewing) -> Response:
    viewer.key.require(LISTENERS_MANAGE)
    info = await services(request).listeners.get(name)
    return render(request, "listener_delete.html", viewer=viewer, name=info.name)


@router.post("/listeners/{name}/delete")
async def delete_listener(request: Request, name: str, posted: Posting) -> Response:
    posted.viewer.key.require(LISTENERS_MANAGE)
    await managed(services(request), posted.viewer.key, name)
    await services(request).listeners.delete(name)
    return _after("deleted", name, f"{PREFIX}/listeners")


def _check(posted: Posted) -> bool:
    """The API's ``?check=``: open the connectors before storing (on unless unticked)."""
    return posted.form.get("check") is not None


def _back(posted: Posted) -> str | None:
    """Where an action on the listeners table returns (the table itself), if it says so."""
    return f"{PREFIX}/listeners" if posted.text("back") == "list" else None


def _fields(form: ListenerForm) -> dict[str, Any]:
    return {name: getattr(form, name) for name in form.__dataclass_fields__}


def _form_page(
    request: Request,
    viewer: Viewer,
    form: ListenerForm,
    *,
    editing: str | None,
    error: str | None = None,
    check: bool = True,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "listener_form.html",
        status_code=status_code,
        viewer=viewer,
        form=form,
        editing=editing,
        error=error,
        check=check,
        output_modes=OUTPUT_MODES,
    )


def _refused(
    request: Request, posted: Posted, form: ListenerForm, exc: ModelbusError, *, editing: str | None
) -> Response:
    """The form again, with the values as typed and the API's message for them; a
    refusal of the key (``Forbidden``) is the "Not allowed" page, as on every route."""
    if isinstance(exc, Forbidden):
        raise exc
    message = services(request).credentials.redact(exc.message)
    return _form_page(
        request,
        posted.viewer,
        form,
        editing=editing,
        error=message,
        check=_check(posted),
        status_code=status_for(exc),
    )
