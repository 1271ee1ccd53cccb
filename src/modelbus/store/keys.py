"""API keys: ``mb_<id>_<secret>``, stored hashed, with scopes.

The ``id`` (16 hex digits) is public: it names the key in listings and logs. The ``secret``
is 32 random bytes, URL-safe base64; only its SHA-256 is stored. Scopes:

=====================  ====================================================
``call:*``             call any model
``call:OWNER/NAME``    call that model
``models:manage``      push, publish, inspect builds
``listeners:manage``   create, change, redrive listeners and dead letters
``admin``              everything, including managing keys
=====================  ====================================================

Every :meth:`KeyStore.verify` reads the store, so a revoked key stops working at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from modelbus.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from modelbus.store import schema
from modelbus.store.database import Database

CALL_ANY = "call:*"
MODELS_MANAGE = "models:manage"
LISTENERS_MANAGE = "listeners:manage"
ADMIN = "admin"
FIXED_SCOPES = (CALL_ANY, MODELS_MANAGE, LISTENERS_MANAGE, ADMIN)

_NAME = r"[a-zA-Z0-9][\w.-]*"
_CALL_SCOPE = re.compile(rf"^call:{_NAME}/{_NAME}$")
_KEY = re.compile(r"^mb_([0-9a-f]{16})_([A-Za-z0-9_-]{43,})$")
SCOPE_FORMS = "call:*, call:OWNER/NAME, models:manage, listeners:manage, admin"
# Refresh last_used_at at most this often, so verifying a key is not a write per request.
LAST_USED_RESOLUTION_S = 60.0


def call_scope(owner: str, name: str) -> str:
    """The scope allowing calls of ``owner/name``."""
    return f"call:{owner}/{name}"


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes, validated and de-duplicated in order; raises :class:`InvalidInput`."""
    out: list[str] = []
    for scope in scopes:
        if scope not in FIXED_SCOPES and not _CALL_SCOPE.match(scope):
            raise InvalidInput(f"not a key scope: {scope!r} (expected {SCOPE_FORMS})")
        if scope not in out:
            out.append(scope)
    if not out:
        raise InvalidInput(f"a key needs at least one scope ({SCOPE_FORMS})")
    return tuple(out)


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyInfo:
    """A key as listed: never its secret."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: float
    last_used_at: float | None
    revoked_at: float | None

    def allows(self, scope: str) -> bool:
        """Whether the key grants ``scope`` (``admin`` grants all, ``call:*`` every call)."""
        if ADMIN in self.scopes or scope in self.scopes:
            return True
        return scope.startswith("call:") and CALL_ANY in self.scopes

    def can_call(self, owner: str, name: str) -> bool:
        """Whether the key may call ``owner/name``."""
        return self.allows(call_scope(owner, name))

    def require(self, scope: str) -> None:
        """Raise :class:`Forbidden` naming ``scope`` unless the key grants it."""
        if not self.allows(scope):
            raise Forbidden(f"API key {self.id} ({self.name or 'unnamed'}) lacks scope {scope!r}")


def _hash_secret(secret: str) -> str:
    # A plain SHA-256 is enough: the secret is 256 random bits, not a password, so there is
    # no dictionary to try and brute force is hopeless; a slow KDF would only slow requests.
    return hashlib.sha256(secret.encode()).hexdigest()


def _key_info(row: Row[Any]) -> KeyInfo:
    return KeyInfo(
        id=row.id,
        name=row.name,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


class KeyStore:
    """API keys in the store's ``api_keys`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, name: str, scopes: Iterable[str]) -> tuple[str, KeyInfo]:
        """Create a key; returns ``(plaintext, info)``. The plaintext is never stored or shown
        again. Raises :class:`InvalidInput` for an unknown scope."""
        async with self.db.write() as conn:
            return await self._insert(conn, name, check_scopes(scopes))

    async def verify(self, plaintext: str) -> KeyInfo:
        """The key's info if ``plaintext`` is a valid, unrevoked key.

        Raises :class:`Unauthenticated` for a malformed, unknown or revoked key (one message
        for all, so callers learn nothing about which).
        """
        m = _KEY.match(plaintext.strip())
        if not m:
            raise Unauthenticated("invalid API key (expected mb_<id>_<secret>)")
        key_id, secret = m[1], m[2]
        async with self.db.read() as conn:
            row = (
                await conn.execute(schema.api_keys.select().where(schema.api_keys.c.id == key_id))
            ).first()
        if (
            row is None
            or row.revoked_at is not None
            or not hmac.compare_digest(row.secret_hash, _hash_secret(secret))
        ):
            raise Unauthenticated("invalid or revoked API key")
        info = _key_info(row)
        return await self._touch(info)

    async def list(self) -> list[KeyInfo]:
        """Every key, revoked ones included, oldest first."""
        async with self.db.read() as conn:
            query = schema.api_keys.select().order_by(schema.api_keys.c.created_at)
            return [_key_info(r) for r in (await conn.execute(query)).all()]

    async def revoke(self, key_id: str) -> KeyInfo:
        """Revoke a key, and end its console sessions; effective for the next request.
        Idempotent.

        Raises :class:`NotFound` for an unknown id, :class:`Conflict` for the last unrevoked
        ``admin`` key: without one no key could be made or revoked again, and a store that
        has keys never makes a bootstrap key.
        """
        k, s = schema.api_keys.c, schema.console_sessions.c
        now = time.time()
        async with self.db.write() as conn:
            # Locked (PostgreSQL; SQLite's write transaction is alone): two admins revoking
            # the two last admin keys at once must not both see the other one left.
            active = select(k.id, k.scopes).where(k.revoked_at.is_(None)).with_for_update()
            admins = {r.id for r in (await conn.execute(active)).all() if ADMIN in r.scopes}
            if admins == {key_id}:
                raise Conflict(
                    f"API key {key_id} is the last admin key: create another admin key "
                    "first (with none, no key could be made or revoked again)"
                )
            await conn.execute(
                update(schema.api_keys)
                .where(k.id == key_id, k.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            # Its console sessions end with it (store/sessions.py).
            await conn.execute(
                update(schema.console_sessions)
                .where(s.key_id == key_id, s.ended_at.is_(None))
                .values(ended_at=now)
            )
            row = (await conn.execute(schema.api_keys.select().where(k.id == key_id))).first()
        if row is None:
            raise NotFound(f"no API key with id {key_id!r}")
        return _key_info(row)

    async def bootstrap_admin(self) -> str | None:
        """On a store with no keys at all, create an admin key and return its plaintext.

        Returns ``None`` otherwise (also when another node bootstrapped concurrently), so a
        first start prints the key once and later starts print nothing.
        """
        async with self.db.write() as conn:
            await self.db.lock(conn, "modelbus:bootstrap-admin")
            count = (
                await conn.execute(select(func.count()).select_from(schema.api_keys))
            ).scalar_one()
            if count:
                return None
            plaintext, _ = await self._insert(conn, "bootstrap admin", (ADMIN,))
            return plaintext

    async def _insert(
        self, conn: AsyncConnection, name: str, scopes: tuple[str, ...]
    ) -> tuple[str, KeyInfo]:
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        info = KeyInfo(
            id=key_id,
            name=name,
            scopes=scopes,
            created_at=time.time(),
            last_used_at=None,
            revoked_at=None,
        )
        await conn.execute(
            schema.api_keys.insert().values(
                id=key_id,
                name=name,
                secret_hash=_hash_secret(secret),
                scopes=list(scopes),
                created_at=info.created_at,
            )
        )
        return f"mb_{key_id}_{secret}", info

    async def _touch(self, info: KeyInfo) -> KeyInfo:
        now = time.time()
        if info.last_used_at is not None and now - info.last_used_at < LAST_USED_RESOLUTION_S:
            return info
        async with self.db.write() as conn:
            await conn.execute(
                update(schema.api_keys)
                .where(schema.api_keys.c.id == info.id)
                .values(last_used_at=now)
            )
        return replace(info, last_used_at=now)
