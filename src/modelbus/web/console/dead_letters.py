"""Dead letters page: search the letters of every listener (by listener, time, broker
message id, or the file / object a notification announced), inspect each (body, attributes,
error, trace), and redrive the selected ones, or every one the search matches (after a
confirmation page), to the listener's own version spec or a chosen version.

Thin over the run store and :meth:`modelbus.listeners.manager.ListenerManager.redrive` /
:meth:`~modelbus.listeners.manager.ListenerManager.redrive_matching`, as the ``/v1``
dead-letter routes: any logged-in key sees the list and the errors; the original bodies and
redriving need ``listeners:manage`` (and, per listener, the call scope on its model, as on
the API), and the versions offered for a redrive are shown only to keys that may read the
model (when the search is narrowed to one listener).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response

from modelbus.client.refs import ModelRef
from modelbus.errors import Forbidden, InvalidInput, ModelbusError
from modelbus.listeners.manager import RedriveResult
from modelbus.runtime import jsondoc
from modelbus.store.keys import LISTENERS_MANAGE
from modelbus.store.runs import DeadLetter
from modelbus.web.api.auth import can_read_model
from modelbus.web.api.context import services
from modelbus.web.api.listeners import managed
from modelbus.web.console.auth import Posting, Viewer, Viewing
from modelbus.web.console.models import version_choices
from modelbus.web.console.search import SearchForm
from modelbus.web.console.web import PREFIX, ConsoleRoute, render
from modelbus.web.server import Services

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 50
BODY_PREVIEW_BYTES = 64 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class ListenerLetters:
    """A listener and how many of its dead letters wait for a redrive."""

    name: str
    model: str
    waiting: int


@dataclass(frozen=True, kw_only=True, slots=True)
class LetterView:
    """A dead letter as the page shows it; ``body`` is None when the key may not see it."""

    letter: DeadLetter
    body: str | None
    body_kind: str


def body_view(body: bytes) -> tuple[str, str]:
    """``(text, kind)``: JSON pretty-printed, UTF-8 text as is, anything else as hex."""
    head = body[:BODY_PREVIEW_BYTES]
    more = f"\n… ({len(body) - len(head)} more bytes)" if len(body) > len(head) else ""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return hexdump(head) + more, "binary, shown as hex"
    try:
        return json.dumps(jsondoc.loads(text), indent=2, ensure_ascii=False), "JSON"
    except (ValueError, RecursionError):  # pretty-printing recurses deeper than parsing
        return text + more, "text"


def hexdump(data: bytes, width: int = 16) -> str:
    """Offset, hex bytes and printable ASCII, ``width`` bytes a line."""
    lines = []
    for at in range(0, len(data), width):
        chunk = data[at : at + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{at:08x}  {chunk.hex(' '):<{width * 3 - 1}}  {text}")
    return "\n".join(lines)


def letter_view(letter: DeadLetter, viewer: Viewer) -> LetterView:
    if not viewer.allows(LISTENERS_MANAGE):
        return LetterView(letter=letter, body=None, body_kind="")
    text, kind = body_view(letter.body)
    return LetterView(letter=letter, body=text, body_kind=kind)


@router.get("/dead-letters")
async def dead_letters_page(
    request: Request, viewer: Viewing, cursor: str | None = None
) -> Response:
    form = SearchForm.of(request.query_params)
    return await _page(request, viewer, form, cursor=cursor)


@router.get("/listeners/{name}/dead-letters")
async def listener_dead_letters(
    request: Request, name: str, viewer: Viewing, cursor: str | None = None, all: bool = False
) -> Response:
    """The page searched for one listener's letters (``all``: redriven ones too)."""
    await services(request).listeners.get(name)  # a missing listener is a 404 page
    form = SearchForm(listener=name, include_redriven=all)
    return await _page(request, viewer, form, cursor=cursor)


@router.post("/dead-letters/redrive")
async def redrive_selected(request: Request, posted: Posting) -> Response:
    """Redrive the ticked letters (``ids``), listener by listener, then show the search."""
    viewer = posted.viewer
    viewer.key.require(LISTENERS_MANAGE)
    running = services(request)
    form = SearchForm.of(posted.form)
    ids = [i for i in posted.form.getlist("ids") if isinstance(i, str) and i]
    by_listener: dict[str, list[str]] = {}
    for letter_id in ids:  # a missing letter or a refused listener: its page, not a redrive
        letter = await running.listeners.runs.get_dead_letter(letter_id)
        by_listener.setdefault(letter.listener, []).append(letter_id)
    for name in by_listener:
        await managed(running, viewer.key, name)
    results: dict[str, RedriveResult] = {}
    error = None
    try:
        if not ids:
            raise InvalidInput("select the dead letters to redrive first")
        spec = posted.text("spec") or None
        for name, chosen in by_listener.items():
            results[name] = await running.listeners.redrive(name, ids=chosen, spec=spec)
    except ModelbusError as exc:
        error = running.credentials.redact(exc.message)
    return await _page(request, viewer, form, cursor=None, results=results, error=error)


@router.get("/dead-letters/redrive-all")
async def confirm_redrive_all(request: Request, viewer: Viewing) -> Response:
    """What a redrive of every letter the search matches would run, to confirm."""
    viewer.key.require(LISTENERS_MANAGE)
    running = services(request)
    form = SearchForm.of(request.query_params)
    found = await running.listeners.runs.matching_dead_letters(
        form.search(), include_redriven=form.include_redriven
    )
    return render(
        request,
        "dead_letters_redrive.html",
        viewer=viewer,
        form=form,
        found={name: len(ids) for name, ids in found.items()},
        total=sum(len(ids) for ids in found.values()),
        choices=await _choices_for(running, viewer, form),
    )


@router.post("/dead-letters/redrive-all")
async def redrive_all(request: Request, posted: Posting) -> Response:
    """Redrive every letter the posted search matches, then show the search."""
    viewer = posted.viewer
    viewer.key.require(LISTENERS_MANAGE)
    running = services(request)
    form = SearchForm.of(posted.form)
    results: dict[str, RedriveResult] = {}
    error = None
    try:
        _, results = await running.listeners.redrive_matching(
            form.search(),
            include_redriven=form.include_redriven,
            spec=posted.text("spec") or None,
            every=True,  # the confirmation page said what the search spans
            check=lambda name: managed(running, viewer.key, name),
        )
        if not results:
            raise InvalidInput("no dead letter matches this search any more: nothing redriven")
    except Forbidden:
        raise  # the "Not allowed" page
    except ModelbusError as exc:
        error = running.credentials.redact(exc.message)
    return await _page(request, viewer, form, cursor=None, results=results, error=error)


async def _page(
    request: Request,
    viewer: Viewer,
    form: SearchForm,
    *,
    cursor: str | None,
    results: dict[str, RedriveResult] | None = None,
    error: str | None = None,
) -> Response:
    running = services(request)
    store = running.listeners.runs
    infos = await running.listeners.list()
    letters: list[DeadLetter] = []
    next_cursor = None
    try:
        page = await store.list_dead_letters(
            search=form.search(),
            limit=PAGE_SIZE,
            cursor=cursor or None,
            include_redriven=form.include_redriven,
        )
        letters, next_cursor = page.items, page.next_cursor
    except InvalidInput as exc:
        error = exc.message
    waiting = [
        ListenerLetters(
            name=info.name,
            model=info.definition.model,
            waiting=len(await store.dead_letter_ids(info.name)),
        )
        for info in infos
    ]
    redact = running.credentials.redact
    return render(
        request,
        "dead_letters.html",
        status_code=400 if error else 200,
        viewer=viewer,
        form=form,
        listeners=[info.name for info in infos],
        statuses=(),  # dead letters have none to search by
        waiting=waiting,
        letters=[letter_view(letter, viewer) for letter in letters],
        cursor=cursor,
        next_cursor=next_cursor,
        choices=await _choices_for(running, viewer, form),
        can_manage=viewer.allows(LISTENERS_MANAGE),
        results=results or {},
        failed={
            name: {k: redact(v) for k, v in r.failed.items()} for name, r in (results or {}).items()
        },
        error=error,
    )


async def _choices_for(
    running: Services, viewer: Viewer, form: SearchForm
) -> list[tuple[str, str]]:
    """The versions offered for a redrive: those of the model of the one listener the
    search is narrowed to (none when it spans several: each runs on its own spec)."""
    if not form.listener:
        return []
    try:
        info = await running.listeners.get(form.listener)
    except ModelbusError:
        return []
    return await _redrive_choices(running, viewer, info.definition.ref)


async def _redrive_choices(
    running: Services, viewer: Viewer, ref: ModelRef
) -> list[tuple[str, str]]:
    """The versions letters may be redriven to. They are the model's metadata, so only a key
    that may read the model sees them (as ``GET /v1/models/.../versions``); for any other,
    and when the model is gone, the listener's own spec is the only choice shown."""
    if not can_read_model(viewer.key, ref.owner, ref.name):
        return []
    try:
        model = await running.registry.get_model(ref.owner, ref.name)
        versions = await running.registry.list_versions(ref.owner, ref.name)
        builds = await running.registry.list_builds(ref.owner, ref.name)
    except ModelbusError:
        return []
    return version_choices(model, versions, builds)
