"""Console sessions in the store's ``console_sessions`` table.

A login starts a session: a random id (in the console's sealed cookie) whose SHA-256 is
stored with its key and expiry. Every console request checks it here, so a session ends
everywhere at once: at logout (:meth:`SessionStore.end`), when its key is revoked
(:meth:`modelbus.store.keys.KeyStore.revoke` ends the key's sessions), or at expiry.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import delete, update

from modelbus.store import schema
from modelbus.store.database import Database

__all__ = ["SessionStore"]


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Starts, checks and ends console sessions. Every method is one short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def start(self, key_id: str, ttl_s: float) -> str:
        """A new session of key ``key_id`` lasting ``ttl_s``; returns its id (a secret: only
        its hash is stored). Sessions expired for a day are forgotten meanwhile."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        s = schema.console_sessions.c
        async with self.db.write() as conn:
            await conn.execute(delete(schema.console_sessions).where(s.expires_at < now - 86400))
            await conn.execute(
                schema.console_sessions.insert().values(
                    id=_digest(session_id), key_id=key_id, created_at=now, expires_at=now + ttl_s
                )
            )
        return session_id

    async def live(self, session_id: str) -> bool:
        """Whether the session exists, has not ended and has not expired."""
        if not session_id:
            return False
        s = schema.console_sessions.c
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    schema.console_sessions.select().where(s.id == _digest(session_id))
                )
            ).first()
        return row is not None and row.ended_at is None and row.expires_at > time.time()

    async def end(self, session_id: str) -> None:
        """End the session (logout). Idempotent."""
        s = schema.console_sessions.c
        async with self.db.write() as conn:
            await conn.execute(
                update(schema.console_sessions)
                .where(s.id == _digest(session_id), s.ended_at.is_(None))
                .values(ended_at=time.time())
            )
