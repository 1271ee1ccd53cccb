"""Dead letters pages: per listener, inspect each letter (body, attributes, error, trace)
and redrive the selected ones to the listener's own version spec or a chosen version.

Thin over the run store and :meth:`modelbus.listeners.manager.ListenerManager.redrive`, as the
``/v1`` dead-letter routes: any logged-in key sees the list and the errors; the original
bodies and redriving need ``listeners:manage``, and the versions offered for a redrive are
shown only to keys that may read the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response

from modelbus.client.refs import ModelRef
from modelbus.errors import InvalidInput, ModelbusError
from modelbus.listeners.manager import RedriveResult
from modelbus.runtime import jsondoc
from modelbus.store.keys import LISTENERS_MANAGE
from modelbus.store.runs import DeadLetter
from modelbus.web.api.auth import can_read_model
from modelbus.web.api.context import services
from modelbus.web.api.listeners import managed
from modelbus.web.console.auth import Posting, Viewer, Viewing
from modelbus.web.console.models import version_choices
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
async def dead_letters_index(request: Request, viewer: Viewing) -> Response:
    manager = services(request).listeners
    rows = [
        ListenerLetters(
            name=info.name,
            model=info.definition.model,
            waiting=len(await manager.runs.dead_letter_ids(info.name)),
        )
        for info in await manager.list()
    ]
    return render(request, "dead_letters_index.html", viewer=viewer, listeners=rows)


@router.get("/listeners/{name}/dead-letters")
async def dead_letters_page(
    request: Request, name: str, viewer: Viewing, cursor: str | None = None, all: bool = False
) -> Response:
    return await _page(request, viewer, name, cursor=cursor, include_redriven=all)


@router.post("/listeners/{name}/dead-letters/redrive")
async def redrive(request: Request, name: str, posted: Posting) -> Response:
    viewer = posted.viewer
    viewer.key.require(LISTENERS_MANAGE)
    await managed(services(request), viewer.key, name)
    ids = [i for i in posted.form.getlist("ids") if isinstance(i, str) and i]
    spec = posted.text("spec") or None
    result: RedriveResult | None = None
    error = None
    try:
        if not ids:
            raise InvalidInput("select the dead letters to redrive first")
        result = await services(request).listeners.redrive(name, ids=ids, spec=spec)
    except ModelbusError as exc:
        error = services(request).credentials.redact(exc.message)
    return await _page(
        request, viewer, name, cursor=None, include_redriven=True, result=result, error=error
    )


async def _page(
    request: Request,
    viewer: Viewer,
    name: str,
    *,
    cursor: str | None,
    include_redriven: bool,
    result: RedriveResult | None = None,
    error: str | None = None,
) -> Response:
    running = services(request)
    info = await running.listeners.get(name)
    page = await running.listeners.runs.list_dead_letters(
        name, limit=PAGE_SIZE, cursor=cursor, include_redriven=include_redriven
    )
    failed = {
        k: running.credentials.redact(v) for k, v in (result.failed if result else {}).items()
    }
    return render(
        request,
        "dead_letters.html",
        status_code=400 if error else 200,
        viewer=viewer,
        listener=info.definition,
        letters=[letter_view(letter, viewer) for letter in page.items],
        next_cursor=page.next_cursor,
        include_redriven=include_redriven,
        choices=await _redrive_choices(running, viewer, info.definition.ref),
        can_manage=viewer.allows(LISTENERS_MANAGE),
        result=result,
        failed=failed,
        error=error,
    )


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
