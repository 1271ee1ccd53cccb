"""The nodes of a store: every ``modelbus serve`` process sharing one database.

A node joins at start (:meth:`NodeStore.join`: one row, a new id every process start),
writes a heartbeat every few seconds (:meth:`NodeStore.beat`, carrying what it reports:
the status and counters of its listeners), and marks its row stopped when it stops
gracefully (:meth:`NodeStore.leave`). A node is **live** while its last heartbeat is less
than ``gone_after_s`` old and it has not stopped; otherwise it is **gone** (stopped, killed,
or cut off from the database). Gone rows are kept ``forget_after_s`` for the listing, then
deleted by the heartbeats of the others.

Times are the database server's clock (:meth:`Database.clock`), never a node's own: nodes
whose clocks differ still agree on who is live.

**One node on SQLite.** A SQLite store serves one node: :meth:`NodeStore.join` with
``exclusive=True`` refuses (:class:`~modelbus.errors.NodeRefused`) a node when another
live node uses the store. Worker processes of one node register with ``parent`` set to it
and are allowed. A row whose process is known dead (same host, no such pid) does not count,
so a server killed and started again at once is not refused.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Row, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from modelbus.errors import NodeRefused
from modelbus.store import schema
from modelbus.store.database import Database

__all__ = ["Node", "NodeIdentity", "NodeState", "NodeStore"]

NodeState = Literal["live", "gone"]

DEFAULT_GONE_AFTER_S = 15.0
DEFAULT_FORGET_AFTER_S = 3600.0


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeIdentity:
    """What a node says about itself when it joins. Build with :meth:`of_this_process`.

    ``address``: the URL it serves the API on; ``workers``: its listener worker processes;
    ``parent``: for a worker process, the id of the node that started it.
    """

    id: str
    host: str
    pid: int
    address: str
    version: str
    workers: int = 1
    parent: str | None = None

    @classmethod
    def of_this_process(
        cls, *, address: str, version: str, workers: int = 1, parent: str | None = None
    ) -> NodeIdentity:
        """A new identity (new random id) for this process on this host."""
        return cls(
            id=uuid.uuid4().hex,
            host=socket.gethostname(),
            pid=os.getpid(),
            address=address,
            version=version,
            workers=workers,
            parent=parent,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Node:
    """A node as stored, with its state now. ``listeners`` is what its last heartbeat
    reported (listener name -> status); ``heartbeat_age_s`` is measured on the database's
    clock."""

    id: str
    parent: str | None
    host: str
    pid: int
    address: str
    version: str
    workers: int
    started_at: float
    heartbeat_at: float
    heartbeat_age_s: float
    stopped_at: float | None
    state: NodeState
    listeners: dict[str, Any] = field(default_factory=dict)


class NodeStore:
    """The ``nodes`` table. ``gone_after_s``: how old a heartbeat may be for its node to
    count as live; ``forget_after_s``: how long gone nodes stay listed."""

    def __init__(
        self,
        db: Database,
        *,
        gone_after_s: float = DEFAULT_GONE_AFTER_S,
        forget_after_s: float = DEFAULT_FORGET_AFTER_S,
    ) -> None:
        if gone_after_s <= 0:
            raise ValueError("gone_after_s must be positive")
        self.db = db
        self.gone_after_s = gone_after_s
        self.forget_after_s = forget_after_s

    async def join(self, node: NodeIdentity, *, exclusive: bool = False) -> None:
        """Register ``node`` (live from now). With ``exclusive`` (a SQLite store), first
        check in the same write transaction that no other live node uses the store but
        ``node``'s parent and siblings; raises :class:`NodeRefused` saying so."""
        async with self.db.write() as conn:
            if exclusive:
                await self._check_alone(conn, node)
            now = self.db.clock()
            await conn.execute(
                schema.nodes.insert().values(
                    id=node.id,
                    parent=node.parent,
                    host=node.host,
                    pid=node.pid,
                    address=node.address,
                    version=node.version,
                    workers=node.workers,
                    started_at=now,
                    heartbeat_at=now,
                    stopped_at=None,
                    listeners={},
                )
            )

    async def check_alone(self, node: NodeIdentity) -> None:
        """Raise :class:`NodeRefused` if ``node`` could not join an exclusive store now
        (the check :meth:`join` makes, without joining)."""
        async with self.db.read() as conn:
            await self._check_alone(conn, node)

    async def _check_alone(self, conn: AsyncConnection, node: NodeIdentity) -> None:
        rivals = [n for n in await self._live(conn) if _rival(node, n)]
        if rivals:
            raise NodeRefused(_sqlite_refusal(rivals[0]))

    async def beat(self, node: NodeIdentity, listeners: Mapping[str, Any]) -> None:
        """Write ``node``'s heartbeat with what it reports, and forget nodes gone longer
        than ``forget_after_s``. A node whose row was forgotten meanwhile (cut off from the
        database for that long) is registered again. Idempotent."""
        n = schema.nodes.c
        async with self.db.write() as conn:
            result = await conn.execute(
                update(schema.nodes)
                .where(n.id == node.id)
                .values(heartbeat_at=self.db.clock(), stopped_at=None, listeners=dict(listeners))
            )
            if result.rowcount == 0:
                await conn.execute(
                    schema.nodes.insert().values(
                        id=node.id,
                        parent=node.parent,
                        host=node.host,
                        pid=node.pid,
                        address=node.address,
                        version=node.version,
                        workers=node.workers,
                        started_at=self.db.clock(),
                        heartbeat_at=self.db.clock(),
                        listeners=dict(listeners),
                    )
                )
            await conn.execute(
                delete(schema.nodes).where(n.heartbeat_at < self.db.clock() - self.forget_after_s)
            )

    async def leave(self, node_id: str) -> None:
        """Mark the node and its worker processes stopped (gone at once, listed until
        forgotten). Idempotent."""
        n = schema.nodes.c
        async with self.db.write() as conn:
            await conn.execute(
                update(schema.nodes)
                .where((n.id == node_id) | (n.parent == node_id), n.stopped_at.is_(None))
                .values(stopped_at=self.db.clock())
            )

    async def nodes(self, *, include_gone: bool = True) -> list[Node]:
        """Live nodes, then (with ``include_gone``) the gone ones not forgotten yet; each
        group by start time."""
        async with self.db.read() as conn:
            nodes = await self._all(conn)
        live = [n for n in nodes if n.state == "live"]
        gone = [n for n in nodes if n.state == "gone"] if include_gone else []
        return live + gone

    async def dead(self, node_id: str) -> bool:
        """Whether node ``node_id`` is known to be dead now: it stopped, or its process is
        gone from this host. (A node on another host that stopped beating may be dead or cut
        off: only its heartbeat's age tells, see :attr:`gone_after_s`.)"""
        n = schema.nodes.c
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(n.host, n.pid, n.stopped_at).where(n.id == node_id))
            ).first()
        if row is None:
            return False
        return row.stopped_at is not None or (
            row.host == socket.gethostname() and not _alive(row.pid)
        )

    async def live(self) -> list[Node]:
        """The live nodes, by start time."""
        async with self.db.read() as conn:
            return await self._live(conn)

    async def _live(self, conn: AsyncConnection) -> list[Node]:
        return [n for n in await self._all(conn) if n.state == "live"]

    async def _all(self, conn: AsyncConnection) -> list[Node]:
        age = (self.db.clock() - schema.nodes.c.heartbeat_at).label("age_s")
        query = select(schema.nodes, age).order_by(schema.nodes.c.started_at, schema.nodes.c.id)
        return [self._node(row) for row in (await conn.execute(query)).all()]

    def _node(self, row: Row[Any]) -> Node:
        age = max(0.0, float(row.age_s))
        live = row.stopped_at is None and age < self.gone_after_s
        return Node(
            id=row.id,
            parent=row.parent,
            host=row.host,
            pid=row.pid,
            address=row.address,
            version=row.version,
            workers=row.workers,
            started_at=row.started_at,
            heartbeat_at=row.heartbeat_at,
            heartbeat_age_s=age,
            stopped_at=row.stopped_at,
            state="live" if live else "gone",
            listeners=dict(row.listeners or {}),
        )


def _rival(me: NodeIdentity, other: Node) -> bool:
    """Whether live ``other`` keeps ``me`` off a one-node (SQLite) store: any node but my
    parent, my children and my siblings, unless its process is known to be dead."""
    if other.id == me.id or other.id == me.parent or other.parent == me.id:
        return False
    if me.parent is not None and other.parent == me.parent:
        return False
    return not (other.host == me.host and not _alive(other.pid))


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _sqlite_refusal(other: Node) -> str:
    return (
        f"another modelbus serve uses this SQLite store: node {other.id} (pid {other.pid} on "
        f"{other.host}, {other.address}, last heartbeat {other.heartbeat_age_s:.0f} s ago). "
        "A SQLite store serves one node: stop the other one, or put the store in PostgreSQL "
        "(--database-url postgresql://USER@HOST/DB, MODELBUS_DATABASE_URL) to run several "
        "nodes"
    )
