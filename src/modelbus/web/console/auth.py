"""Logging in to the console with an API key, and who is looking at a page.

``GET /console/login`` shows the form; ``POST /console/login`` verifies the key with the key
store (as the API does) and sets the session cookie (see
:mod:`modelbus.web.console.session`): HttpOnly, SameSite=Lax, Secure over https, for
:data:`~modelbus.web.console.session.SESSION_MAX_AGE_S`.
``POST /console/logout`` ends the session in the store (a saved copy of the cookie no
longer works) and removes the cookie; revoking the key ends its sessions too.

Pages depend on :data:`Viewing` (the verified key of the session) and form posts on
:data:`Posting`, which also checks the session's CSRF token in the ``csrf_token`` field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from modelbus.errors import Forbidden, ModelbusError, Unauthenticated
from modelbus.store.keys import KeyInfo
from modelbus.web.api.context import services
from modelbus.web.console.session import Session, SessionCodec, csrf_matches, load_secret
from modelbus.web.console.web import PREFIX, ConsoleRoute, read_form, render, see_other

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

SESSION_COOKIE = "modelbus_session"
LOGIN_COOKIE = "modelbus_login"
MAX_LOGIN_FORM_BYTES = 16 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class Viewer:
    """The verified API key behind a page, and its session (for the CSRF token)."""

    key: KeyInfo
    session: Session

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token

    def allows(self, scope: str) -> bool:
        """Whether the key grants ``scope`` (the API's rule, :meth:`KeyInfo.allows`)."""
        return self.key.allows(scope)


@dataclass(frozen=True, kw_only=True, slots=True)
class Posted:
    """A form post whose CSRF token matched its session."""

    viewer: Viewer
    form: FormData

    def text(self, name: str) -> str:
        """A text field, stripped ('' when missing or a file)."""
        value = self.form.get(name)
        return value.strip() if isinstance(value, str) else ""


def codec(request: Request) -> SessionCodec:
    """This app's session codec (its secret is read or created once, then kept)."""
    state = request.app.state
    found: SessionCodec | None = getattr(state, "console_sessions", None)
    if found is None:
        settings = services(request).settings
        found = SessionCodec(load_secret(settings.data_dir, settings.secret_key))
        state.console_sessions = found
    return found


async def current_viewer(request: Request) -> Viewer:
    """The session's key, verified now; raises :class:`Unauthenticated` (-> login form)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise Unauthenticated("not logged in")
    session = codec(request).open(cookie)
    if not await services(request).sessions.live(session.id):
        raise Unauthenticated("your session ended: log in again")
    key = await services(request).keys.verify(session.api_key)
    viewer = Viewer(key=key, session=session)
    request.state.viewer = viewer
    return viewer


Viewing = Annotated[Viewer, Depends(current_viewer)]


async def posted_form(request: Request, viewer: Viewing) -> Posted:
    """The posted form, once its CSRF token matched the session's; raises Forbidden."""
    form = await read_form(request, services(request).settings.max_body_bytes)
    token = form.get("csrf_token")
    if not csrf_matches(viewer.session, token if isinstance(token, str) else None):
        await form.close()
        raise Forbidden(
            "this form is out of date or came from another site: reload the page and try again"
        )
    return Posted(viewer=viewer, form=form)


Posting = Annotated[Posted, Depends(posted_form)]


def _safe_next(target: str | None) -> str:
    """Only a console path is a place to come back to (no open redirects)."""
    if target and target.startswith(PREFIX) and not target.startswith("//"):
        return target
    return PREFIX + "/models"


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    return _login_page(request, next=_safe_next(next))


def _login_page(
    request: Request, *, next: str, error: str | None = None, status_code: int = 200
) -> Response:
    cookie, token = codec(request).login_token()
    response = render(
        request,
        "login.html",
        status_code=status_code,
        viewer=None,
        next=next,
        login_token=token,
        error=error,
    )
    _set_cookie(request, response, LOGIN_COOKIE, cookie, max_age_s=3600)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request, MAX_LOGIN_FORM_BYTES)
    next_page = _safe_next(_field(form, "next"))
    sessions = codec(request)
    if not sessions.login_token_matches(
        request.cookies.get(LOGIN_COOKIE), _field(form, "login_token")
    ):
        return _login_page(
            request,
            next=next_page,
            error="The login form expired or came from another site: try again.",
            status_code=403,
        )
    api_key = _field(form, "api_key").strip()
    try:
        key = await services(request).keys.verify(api_key)
    except ModelbusError as exc:
        return _login_page(request, next=next_page, error=exc.message, status_code=401)
    session_id = await services(request).sessions.start(key.id, sessions.max_age_s)
    cookie, _ = sessions.issue(api_key, session_id)
    response = see_other(next_page)
    _set_cookie(request, response, SESSION_COOKIE, cookie, max_age_s=sessions.max_age_s)
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request, posted: Posting) -> Response:
    await services(request).sessions.end(posted.viewer.session.id)
    response = see_other(PREFIX + "/login")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _set_cookie(
    request: Request, response: Response, name: str, value: str, *, max_age_s: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
