"""API keys page (``admin`` keys only): list, create with scopes, revoke.

The same key store the ``/v1/keys`` routes call (:class:`modelbus.store.keys.KeyStore`):
the list never holds a secret; a new key's secret is on the answer to the create form
only (not stored, not in a URL, the page not cached); revoking a key also ends its
console sessions. A key without ``admin`` gets a 403 page naming the scope.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, Request
from fastapi.responses import Response

from modelbus.errors import Forbidden, InvalidInput, ModelbusError, NotFound
from modelbus.store.keys import (
    ADMIN,
    CALL_ANY,
    FIXED_SCOPES,
    LISTENERS_MANAGE,
    MODELS_MANAGE,
    KeyInfo,
)
from modelbus.web.api.context import services
from modelbus.web.console.auth import Posting, Viewer, Viewing
from modelbus.web.console.web import PREFIX, ConsoleRoute, render, see_other

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

SCOPE_HELP = {
    CALL_ANY: "call every model",
    MODELS_MANAGE: "push, publish and delete models",
    LISTENERS_MANAGE: "create, change and delete event listeners (with call on their model)",
    ADMIN: "everything, API keys included",
}
MAX_NAME_CHARS = 200


def _admin(viewer: Viewer) -> None:
    if not viewer.allows(ADMIN):
        key = viewer.key
        raise Forbidden(
            f"API keys are managed with an admin key: this key ({key.name or key.id}) has "
            f"{', '.join(key.scopes)}, not {ADMIN!r}. Log in with an admin key to list, "
            "create or revoke keys."
        )


@router.get("/keys")
async def keys_page(request: Request, viewer: Viewing, revoked: str | None = None) -> Response:
    _admin(viewer)
    return await _keys_page(request, viewer, revoked=revoked)


async def _keys_page(
    request: Request,
    viewer: Viewer,
    *,
    revoked: str | None = None,
    error: str | None = None,
    form: Mapping[str, object] | None = None,
    status_code: int = 200,
) -> Response:
    keys = await services(request).keys.list()
    return render(
        request,
        "keys.html",
        status_code=status_code,
        viewer=viewer,
        keys=keys,
        scope_help=SCOPE_HELP,
        fixed_scopes=FIXED_SCOPES,
        revoked=next((k for k in keys if k.id == revoked), None),
        error=error,
        form=form or {"name": "", "scopes": [], "call_models": ""},
    )


@router.post("/keys")
async def create_key(request: Request, posted: Posting) -> Response:
    viewer = posted.viewer
    _admin(viewer)
    name = posted.text("name")[:MAX_NAME_CHARS]
    chosen = [s for s in posted.form.getlist("scopes") if isinstance(s, str)]
    call_models = posted.text("call_models")
    scopes = chosen + [f"call:{m.strip()}" for m in call_models.replace(",", " ").split()]
    form = {"name": name, "scopes": chosen, "call_models": call_models}
    try:
        if not name:
            raise InvalidInput("give the key a name (who or what uses it)")
        plaintext, info = await services(request).keys.create(name, scopes)
    except ModelbusError as exc:
        return await _keys_page(request, viewer, error=exc.message, form=form, status_code=400)
    return render(
        request, "key_created.html", status_code=201, viewer=viewer, key=info, secret=plaintext
    )


@router.get("/keys/{key_id}/revoke")
async def revoke_form(request: Request, key_id: str, viewer: Viewing) -> Response:
    _admin(viewer)
    found = await _find(request, key_id)
    return render(
        request, "key_revoke.html", viewer=viewer, key=found, is_self=found.id == viewer.key.id
    )


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, posted: Posting) -> Response:
    _admin(posted.viewer)
    await services(request).keys.revoke(key_id)
    if key_id == posted.viewer.key.id:  # this session ended with its key
        return see_other(PREFIX + "/login")
    return see_other(f"{PREFIX}/keys?revoked={key_id}")


async def _find(request: Request, key_id: str) -> KeyInfo:
    for k in await services(request).keys.list():
        if k.id == key_id:
            return k
    raise NotFound(f"no API key with id {key_id!r}")
