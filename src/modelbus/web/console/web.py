"""How console pages are answered: templates, errors as pages, headers, bounded forms.

Every console route uses :class:`ConsoleRoute`: a modelbus error raised by a page (a missing
model, a key without the scope, a refused definition...) is shown as a page with the API's
status and message; an unauthenticated request is sent to the login form and comes back
afterwards. Every answer carries headers that keep the console out of frames and limit it
to its own scripts and styles.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.types import Message

from modelbus.errors import ModelbusError, Unauthenticated
from modelbus.web.api.errors import status_for, validation_message
from modelbus.web.api.payloads import read_body

PREFIX = "/console"
TEMPLATES_DIR = Path(__file__).parent / "templates"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _when(epoch_s: float | None) -> str:
    if epoch_s is None:
        return "—"
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["pretty_json"] = _pretty_json
    env.filters["short_hash"] = lambda h: str(h).removeprefix("sha256:")[:12]
    env.filters["urlpart"] = lambda text: quote(str(text), safe="")
    return env


TEMPLATES = _environment()


def render(
    request: Request, template: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """The page ``template`` rendered with ``context`` (plus ``request`` and ``path``)."""
    path = request.url.path
    html = TEMPLATES.get_template(template).render(
        request=request, path=path, section=section_of(path), **context
    )
    return HTMLResponse(html, status_code=status_code)


def section_of(path: str) -> str:
    """The console section a path belongs to (the navigation marks it as current)."""
    if "/dead-letters" in path:
        return "dead-letters"
    for section in ("listeners", "flow", "runs", "keys"):
        if path.startswith(f"{PREFIX}/{section}"):
            return section
    return "models"


def see_other(location: str) -> RedirectResponse:
    """Post/redirect/get: 303 to ``location`` (a console path)."""
    return RedirectResponse(location, status_code=303)


def login_location(request: Request) -> str:
    """The login form, asked to come back to this page afterwards (GETs only)."""
    back = request.url.path
    if request.url.query:
        back += "?" + request.url.query
    if request.method != "GET":
        back = PREFIX
    return f"{PREFIX}/login?next={quote(back, safe='')}"


def error_page(request: Request, exc: ModelbusError) -> HTMLResponse:
    """A modelbus error as a page, with the status the API gives it."""
    return _error_page(request, status_for(exc), exc.message)


def _error_page(request: Request, status: int, message: str) -> HTMLResponse:
    viewer = getattr(request.state, "viewer", None)
    return render(
        request,
        "error.html",
        status_code=status,
        status=status,
        title=_ERROR_TITLES.get(status, "Something went wrong"),
        message=message,
        viewer=viewer,
    )


_ERROR_TITLES = {
    400: "That was not accepted",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported content",
    422: "Not accepted",
}


class ConsoleRoute(APIRoute):
    """An APIRoute whose errors answer as pages (or a redirect to the login form)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except Unauthenticated:
                response = see_other(login_location(request))
            except ModelbusError as exc:
                response = error_page(request, exc)
            except RequestValidationError as exc:  # a bad query parameter: a page too
                response = _error_page(request, 422, validation_message(exc))
            response.headers.update(SECURITY_HEADERS)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return handle


async def read_form(request: Request, max_bytes: int) -> FormData:
    """The posted form (urlencoded or multipart), refusing a body over ``max_bytes`` as it
    arrives (:class:`~modelbus.errors.PayloadTooLarge`). Close it when done (files)."""
    body = await read_body(request, max_bytes)

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return await Request(request.scope, replay).form(max_part_size=max_bytes)
