"""This node among the nodes of its store: joining, the heartbeat, the sum over nodes.

Every ``modelbus serve`` on one database is a node (:mod:`modelbus.store.nodes`).
:class:`Cluster` is this node's membership:

* :meth:`Cluster.join` refuses to start a node that cannot work with the others
  (:class:`~modelbus.errors.NodeRefused`): a secret key that cannot decrypt the stored
  broker credentials (:func:`check_credentials`: the other nodes use another key), or a
  second node on a SQLite store (SQLite serves one node; PostgreSQL several); then registers
  the node;
* :meth:`Cluster.start` writes the node's heartbeat every ``heartbeat_interval_s`` with what
  the listener manager reports (each listener's state here and counters since this process
  started, credentials masked); :meth:`Cluster.stop` marks the node stopped;
* :meth:`Cluster.summed` makes a listener's status over every live node: counters summed
  (``oldest_in_flight_age_s``: the largest), the state the best there is (``degraded`` if a
  node is degraded, else ``running`` if one runs it, else ``starting``, else ``stopped``;
  ``paused`` when disabled), the reason and problems of every node, and a per-node
  breakdown (:class:`NodeListenerStatus`). Other nodes' figures are as of their last
  heartbeat (at most ``heartbeat_interval_s`` old). The backlog is not summed: every node
  reads the same broker figure of a shared source, so the freshest reading is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from modelbus.errors import DefinitionError, NodeRefused
from modelbus.listeners.credentials import Credentials
from modelbus.listeners.lifecycle import ListenerStatus, State
from modelbus.store.database import Database
from modelbus.store.nodes import Node, NodeIdentity, NodeStore
from modelbus.store.schema import listeners as listeners_table

__all__ = [
    "Cluster",
    "ClusterStatus",
    "NodeListenerStatus",
    "Report",
    "check_credentials",
]

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
# Figures that are the largest over nodes, not their sum.
LARGEST_FIGURES = frozenset({"oldest_in_flight_age_s"})
# A node's state of a listener: the runtime's states, plus `standby` (an unshareable listener
# whose lease another node holds).
ACTIVE_STATES: tuple[State, ...] = ("degraded", "running", "starting")

Report = dict[str, dict[str, Any]]  # listener name -> {state, counters, reason, ...}


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeListenerStatus:
    """One node's part of a listener's status."""

    node: str
    address: str
    state: str  # starting | running | degraded | paused | stopped | standby
    counters: dict[str, float]
    reason: str | None = None
    reason_at: float | None = None
    backlog: int | None = None
    backlog_at: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterStatus(ListenerStatus):
    """A listener's status over every live node (see the module docstring); ``nodes`` is
    the per-node breakdown, this node first."""

    nodes: tuple[NodeListenerStatus, ...] = field(default=())


async def check_credentials(db: Database, credentials: Credentials, *, key_source: str) -> None:
    """Refuse (:class:`NodeRefused`) a node whose secret key cannot decrypt the broker
    credentials stored with the listeners: the other nodes (or an earlier start) used
    another key. ``key_source`` says where this node's key comes from, for the message."""
    query = select(listeners_table.c.name, listeners_table.c.definition)
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    refused = []
    for row in rows:
        if not (row.definition or {}).get("sealed"):
            continue
        try:
            credentials.open(row.definition, name=row.name)
        except DefinitionError:
            refused.append(row.name)
    if refused:
        names = ", ".join(sorted(refused)[:5]) + (" ..." if len(refused) > 5 else "")
        raise NodeRefused(
            f"this node's secret key ({key_source}) cannot decrypt the broker credentials "
            f"stored with {len(refused)} listener(s) ({names}): they were encrypted with "
            "another key, the one the other nodes of this store use. Give every node the same "
            "MODELBUS_SECRET_KEY (to rotate: MODELBUS_SECRET_KEY=NEW,OLD)"
        )


class Cluster:
    """This node's membership (see the module docstring). ``identity`` is this node;
    ``exclusive``: the store serves one node (SQLite)."""

    def __init__(
        self,
        nodes: NodeStore,
        identity: NodeIdentity,
        *,
        credentials: Credentials,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        exclusive: bool = False,
    ) -> None:
        if not 0 < heartbeat_interval_s < nodes.gone_after_s:
            raise ValueError(
                f"the heartbeat interval ({heartbeat_interval_s:g} s) must be positive and "
                f"shorter than the time after which a node is gone ({nodes.gone_after_s:g} s)"
            )
        self.nodes = nodes
        self.identity = identity
        self.heartbeat_interval_s = heartbeat_interval_s
        self._credentials = credentials
        self._exclusive = exclusive
        self._task: asyncio.Task[None] | None = None
        self._peers: tuple[float, list[Node]] = (-1e9, [])
        self._joined = False

    @property
    def node_id(self) -> str:
        return self.identity.id

    async def check(self, *, key_source: str | None) -> None:
        """The checks of :meth:`join`, without joining: raises :class:`NodeRefused`."""
        if key_source is not None:
            await check_credentials(self.nodes.db, self._credentials, key_source=key_source)
        if self._exclusive:
            await self.nodes.check_alone(self.identity)

    async def join(self, *, key_source: str | None) -> None:
        """Check that this node can work with the others, then register it. Raises
        :class:`NodeRefused` saying why not (``key_source``: where the secret key comes
        from; None: do not check the stored credentials)."""
        if key_source is not None:
            await check_credentials(self.nodes.db, self._credentials, key_source=key_source)
        await self.nodes.join(self.identity, exclusive=self._exclusive)
        self._joined = True
        log.info("node %s joined (%s, %s)", self.node_id, self.identity.address, self.nodes.db.url)

    async def start(self, report: Callable[[], Awaitable[Report]]) -> None:
        """Write a heartbeat now, then every ``heartbeat_interval_s``, with ``report()``."""
        await self._beat(report)
        self._task = asyncio.create_task(self._loop(report), name="node-heartbeat")

    async def stop(self) -> None:
        """Stop the heartbeat and mark the node stopped (errors logged: it goes gone)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._joined:
            try:
                await self.nodes.leave(self.node_id)
            except Exception as exc:
                log.warning("could not mark node %s stopped: %s", self.node_id, exc)
            self._joined = False

    async def _loop(self, report: Callable[[], Awaitable[Report]]) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            try:
                await self._beat(report)
            except Exception as exc:
                log.warning("node heartbeat failed: %s", exc)

    async def _beat(self, report: Callable[[], Awaitable[Report]]) -> None:
        await self.nodes.beat(self.identity, self._masked(await report()))

    def _masked(self, report: Report) -> Report:
        redact = self._credentials.redact
        masked: Report = {}
        for name, entry in report.items():
            entry = dict(entry)
            if entry.get("reason"):
                entry["reason"] = redact(entry["reason"])
            entry["problems"] = {k: redact(v) for k, v in (entry.get("problems") or {}).items()}
            masked[name] = entry
        return masked

    async def peers(self) -> list[Node]:
        """The other live nodes (read at most every half heartbeat interval)."""
        at, cached = self._peers
        if time.monotonic() - at < min(1.0, self.heartbeat_interval_s / 2):
            return cached
        peers = [n for n in await self.nodes.live() if n.id != self.node_id]
        self._peers = (time.monotonic(), peers)
        return peers

    def summed(
        self, local: ListenerStatus, local_state: str, peers: Sequence[Node]
    ) -> ClusterStatus:
        """``local`` (this node's status of a listener, its state here ``local_state``)
        summed with what the live ``peers`` reported of the same listener."""
        mine = NodeListenerStatus(
            node=self.node_id,
            address=self.identity.address,
            state=local_state,
            counters=dict(local.counters),
            reason=local.last_error,
            reason_at=local.last_error_at,
            backlog=local.backlog,
            backlog_at=local.backlog_at,
        )
        parts = [mine]
        problems = dict(local.problems)
        for node in peers:
            entry = node.listeners.get(local.name)
            if not isinstance(entry, Mapping):
                continue
            parts.append(_part(node, entry))
            for part, why in (entry.get("problems") or {}).items():
                problems[f"{part} (node {node.id[:8]})"] = str(why)
        reason, reason_at = _latest_reason(parts)
        backlog, backlog_at = _freshest_backlog(parts)
        return ClusterStatus(
            name=local.name,
            state="paused" if local.state == "paused" else _overall(p.state for p in parts),
            last_error=reason,
            last_error_at=reason_at,
            problems=problems,
            counters=_sum(p.counters for p in parts),
            backlog=backlog,
            backlog_at=backlog_at,
            nodes=tuple(parts),
        )


def _part(node: Node, entry: Mapping[str, Any]) -> NodeListenerStatus:
    counters = entry.get("counters") or {}
    return NodeListenerStatus(
        node=node.id,
        address=node.address,
        state=str(entry.get("state", "stopped")),
        counters={k: float(v) for k, v in counters.items() if isinstance(v, int | float)},
        reason=entry.get("reason"),
        reason_at=entry.get("reason_at"),
        backlog=_number(entry.get("backlog"), int),
        backlog_at=_number(entry.get("backlog_at"), float),
    )


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    """``value`` as ``kind`` if a heartbeat carried a number there, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return kind(value)
    return None


def _freshest_backlog(parts: Sequence[NodeListenerStatus]) -> tuple[int | None, float | None]:
    """The most recent reading of the nodes that have one (a shared source's backlog is the
    same broker figure seen from every node: summing it would count it once per node)."""
    read = [p for p in parts if p.backlog_at is not None]
    if not read:
        return None, None
    freshest = max(read, key=lambda p: p.backlog_at or 0.0)
    return freshest.backlog, freshest.backlog_at


def _overall(states: Iterable[str]) -> State:
    present = set(states)
    return next((s for s in ACTIVE_STATES if s in present), "stopped")


def _latest_reason(parts: Sequence[NodeListenerStatus]) -> tuple[str | None, float | None]:
    if parts[0].reason:  # this node's own, as before
        return parts[0].reason, parts[0].reason_at
    others = [p for p in parts[1:] if p.reason]
    if not others:
        return None, None
    latest = max(others, key=lambda p: p.reason_at or 0.0)
    return f"node {latest.node[:8]}: {latest.reason}", latest.reason_at


def _sum(all_counters: Iterable[Mapping[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for counters in all_counters:
        for name, value in counters.items():
            if name in LARGEST_FIGURES:
                total[name] = max(total.get(name, 0.0), value)
            else:
                total[name] = total.get(name, 0.0) + value
    return total
