"""Who is calling, and may they: the API key dependencies every route but ``/health`` uses.

A key arrives as ``Authorization: Simple KEY`` (Algorithmia's scheme), ``Bearer KEY``, or the
bare key (what the official Algorithmia clients actually send). Each request is checked
against the key store, so a revoked key stops working at once.

Scopes are those of :mod:`modelbus.store.keys` (``KeyInfo.allows`` decides): ``call:*`` or
``call:OWNER/NAME`` to call models, ``models:manage`` to push and inspect them,
``listeners:manage``, and ``admin`` which allows everything. Managing a listener (creating,
changing, pausing, resuming, deleting it, redriving its dead letters) also needs ``call`` on
its model (:func:`require_listener_model`): a key cannot bind a listener to, or drive one
of, a model it may not call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from modelbus.client.refs import ModelRef
from modelbus.errors import Forbidden, Unauthenticated
from modelbus.store.keys import ADMIN, LISTENERS_MANAGE, MODELS_MANAGE, KeyInfo, call_scope
from modelbus.web.api.context import services

# Declared so the OpenAPI document shows how to authenticate; parsing is ours (three forms).
_header = APIKeyHeader(
    name="Authorization",
    auto_error=False,
    description="`Simple KEY` or `Bearer KEY` (a bare key is accepted too).",
)


def key_from_header(header: str | None) -> str:
    """The key inside an ``Authorization`` header; raises :class:`Unauthenticated`."""
    if not header or not header.strip():
        raise Unauthenticated("no API key: send 'Authorization: Simple KEY' or 'Bearer KEY'")
    scheme, _, token = header.strip().partition(" ")
    if not token:
        return scheme
    if scheme.lower() not in ("simple", "bearer"):
        raise Unauthenticated(f"unsupported authorization scheme {scheme!r}: use Simple or Bearer")
    return token.strip()


async def authenticate(
    request: Request, authorization: Annotated[str | None, Depends(_header)]
) -> KeyInfo:
    """The verified key of this request; raises :class:`Unauthenticated` (HTTP 401)."""
    return await services(request).keys.verify(key_from_header(authorization))


Key = Annotated[KeyInfo, Depends(authenticate)]
# The raw header, for routes that decide themselves whether a key is needed (/metrics).
AuthorizationHeader = Annotated[str | None, Depends(_header)]


def can_read_model(key: KeyInfo, owner: str, name: str) -> bool:
    """Model metadata is visible to model managers and to keys that may call the model."""
    return key.allows(MODELS_MANAGE) or key.can_call(owner, name)


def require(scope: str) -> Callable[[KeyInfo], Awaitable[KeyInfo]]:
    """A dependency: the request's key, which must hold ``scope``."""

    async def dependency(key: Key) -> KeyInfo:
        key.require(scope)
        return key

    return dependency


def can_manage_listener(key: KeyInfo, model: str) -> bool:
    """Whether ``key`` may manage a listener of ``model`` (``OWNER/NAME@SPEC``): it holds
    ``listeners:manage`` and may call the model. Such a key sees the listener's URLs whole."""
    ref = ModelRef.parse(model)
    return key.allows(LISTENERS_MANAGE) and key.allows(call_scope(ref.owner, ref.name))


def require_listener_model(key: KeyInfo, listener: str, model: str) -> None:
    """Raise :class:`Forbidden` naming the missing scope unless ``key`` may call the model
    (``OWNER/NAME@SPEC``) of ``listener``: managing a listener needs that as well."""
    ref = ModelRef.parse(model)
    scope = call_scope(ref.owner, ref.name)
    if not key.allows(scope):
        raise Forbidden(
            f"API key {key.id} ({key.name or 'unnamed'}) lacks scope {scope!r}: managing "
            f"listener {listener!r} also needs calling its model {ref.owner}/{ref.name}"
        )


async def caller_of_model(owner: str, name: str, key: Key) -> KeyInfo:
    """Dependency for invocation routes: the key must be allowed to call ``owner/name``."""
    key.require(call_scope(owner, name))
    return key


async def reader_of_model(owner: str, name: str, key: Key) -> KeyInfo:
    """Dependency for model metadata routes (see :func:`can_read_model`)."""
    if not can_read_model(key, owner, name):
        raise Forbidden(f"this API key may neither manage models nor call {owner}/{name}")
    return key


Caller = Annotated[KeyInfo, Depends(caller_of_model)]
Reader = Annotated[KeyInfo, Depends(reader_of_model)]
Admin = Annotated[KeyInfo, Depends(require(ADMIN))]
Manager = Annotated[KeyInfo, Depends(require(MODELS_MANAGE))]
ListenerManagerKey = Annotated[KeyInfo, Depends(require(LISTENERS_MANAGE))]
