"""Listener leases: which node runs a listener whose source cannot be shared.

A ``listener_leases`` row names the listener, its owner (a node id) and until when the
owner holds it, on the database's clock (:meth:`Database.clock`). Every operation is one
statement, so two nodes never both hold a lease:

* :meth:`LeaseStore.claim` takes the lease if it is free, expired or already the caller's,
  and extends it: ``INSERT ... ON CONFLICT (listener) DO UPDATE ... WHERE expires_at < now
  OR owner = me`` (the same statement on PostgreSQL and SQLite);
* :meth:`LeaseStore.renew` extends every lease the caller still holds, in one statement,
  and says which those are (a lease another node took after it expired is not renewed);
* :meth:`LeaseStore.release` gives a lease up (a graceful stop: another node takes it at
  its next look instead of waiting for it to expire).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import case, delete, or_, select, update

from modelbus.store import schema
from modelbus.store.database import Database

__all__ = ["Lease", "LeaseStore"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Lease:
    """A listener's lease as stored; ``expired`` on the database's clock at reading."""

    listener: str
    owner: str
    acquired_at: float
    expires_at: float
    expired: bool


class LeaseStore:
    """The ``listener_leases`` table; each lease lasts ``ttl_s`` from its last claim or
    renewal."""

    def __init__(self, db: Database, *, ttl_s: float = 15.0) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.db = db
        self.ttl_s = ttl_s

    async def claim(self, listener: str, owner: str, *, replacing: str | None = None) -> bool:
        """Take or extend the lease of ``listener`` for ``owner``; True if ``owner`` holds
        it now, False if another owner's lease has not expired. ``replacing``: an owner
        known to be dead (its process is gone), whose lease is taken even if it has not
        expired yet. Atomic."""
        leases = schema.listener_leases
        now = self.db.clock()
        insert = self.db.insert(leases).values(
            listener=listener, owner=owner, acquired_at=now, expires_at=now + self.ttl_s
        )
        taken = insert.excluded
        statement = insert.on_conflict_do_update(
            index_elements=[leases.c.listener],
            set_={
                "owner": taken.owner,
                "expires_at": taken.expires_at,
                # renewed by its owner, a lease keeps the time it was acquired
                "acquired_at": case(
                    (leases.c.owner == taken.owner, leases.c.acquired_at),
                    else_=taken.acquired_at,
                ),
            },
            where=or_(
                leases.c.expires_at < now,
                leases.c.owner == owner,
                *([leases.c.owner == replacing] if replacing else []),
            ),
        ).returning(leases.c.owner)
        async with self.db.write() as conn:
            row = (await conn.execute(statement)).first()
        return row is not None and row.owner == owner

    async def renew(self, listeners: Collection[str], owner: str) -> set[str]:
        """Extend ``owner``'s leases of ``listeners``; returns those it still held (and now
        holds for ``ttl_s`` more). Atomic."""
        if not listeners:
            return set()
        c = schema.listener_leases.c
        statement = (
            update(schema.listener_leases)
            .where(c.listener.in_(list(listeners)), c.owner == owner)
            .values(expires_at=self.db.clock() + self.ttl_s)
            .returning(c.listener)
        )
        async with self.db.write() as conn:
            return {row.listener for row in (await conn.execute(statement)).all()}

    async def release(self, listener: str, owner: str) -> None:
        """Give up ``owner``'s lease of ``listener`` (nothing if another owner holds it)."""
        c = schema.listener_leases.c
        async with self.db.write() as conn:
            await conn.execute(
                delete(schema.listener_leases).where(c.listener == listener, c.owner == owner)
            )

    async def forget(self, listener: str) -> None:
        """Drop the lease of a deleted listener, whoever holds it."""
        async with self.db.write() as conn:
            await conn.execute(
                delete(schema.listener_leases).where(schema.listener_leases.c.listener == listener)
            )

    async def get(self, listeners: Collection[str]) -> dict[str, Lease]:
        """The stored leases of ``listeners`` (a listener never claimed has none)."""
        if not listeners:
            return {}
        c = schema.listener_leases.c
        expired = (c.expires_at < self.db.clock()).label("expired")
        query = select(schema.listener_leases, expired).where(c.listener.in_(list(listeners)))
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return {
            row.listener: Lease(
                listener=row.listener,
                owner=row.owner,
                acquired_at=row.acquired_at,
                expires_at=row.expires_at,
                expired=bool(row.expired),
            )
            for row in rows
        }
