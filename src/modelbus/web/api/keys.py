"""API key routes (admin): create (the secret is answered once), list, revoke.

``GET /v1/keys/self`` shows the calling key itself, whatever its scopes.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from modelbus.client.schemas import CreatedKey, KeyCreate, KeyInfoOut
from modelbus.store import keys as ks
from modelbus.web.api.auth import Admin, Key
from modelbus.web.api.context import services
from modelbus.web.api.errors import responses

router = APIRouter(tags=["keys"])


def key_out(k: ks.KeyInfo) -> KeyInfoOut:
    return KeyInfoOut(
        id=k.id,
        name=k.name,
        scopes=list(k.scopes),
        created_at=k.created_at,
        last_used_at=k.last_used_at,
        revoked_at=k.revoked_at,
    )


@router.post(
    "/v1/keys",
    summary="Create an API key (its secret is in this answer only)",
    status_code=201,
    response_model=CreatedKey,
    responses=responses(400),
)
async def create_key(request: Request, body: KeyCreate, key: Admin) -> CreatedKey:
    plaintext, info = await services(request).keys.create(body.name, body.scopes)
    return CreatedKey(key=plaintext, info=key_out(info))


@router.get(
    "/v1/keys", summary="List API keys (never their secrets)", response_model=list[KeyInfoOut]
)
async def list_keys(request: Request, key: Admin) -> list[KeyInfoOut]:
    return [key_out(k) for k in await services(request).keys.list()]


@router.get("/v1/keys/self", summary="The calling API key", response_model=KeyInfoOut)
async def this_key(key: Key) -> KeyInfoOut:
    return key_out(key)


@router.delete(
    "/v1/keys/{key_id}",
    summary="Revoke an API key; it stops working at once",
    response_model=KeyInfoOut,
    responses=responses(404),
)
async def revoke_key(request: Request, key_id: str, key: Admin) -> KeyInfoOut:
    return key_out(await services(request).keys.revoke(key_id))
