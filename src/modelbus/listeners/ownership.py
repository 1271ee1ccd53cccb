"""Which listeners this node may run.

Every node runs every enabled listener whose source can be shared: its replicas compete for
the messages. A listener whose source cannot be shared (``local://``, ``dir://``, MQTT with
``shared=false``: the connector says so, :func:`modelbus.connectors.is_shared_source`) runs
on one node at a time: the node holding its lease (:mod:`modelbus.store.leases`).

:class:`Ownership` is this node's side of those leases, driven by the
:class:`~modelbus.listeners.manager.ListenerManager`:

* :meth:`Ownership.may_run` (when the manager wants to run a listener) claims the lease of an
  unshareable listener, or renews it when this node holds it already; shared listeners
  need none;
* :meth:`Ownership.renew` (every ``renew_interval_s``) renews every lease held, in one
  statement, and returns those lost: taken by another node after this one failed to renew in
  time, or not renewed for ``ttl_s`` minus a margin by this node's own clock (the database
  unreachable), so that this node stops the listener before another may start it;
* :meth:`Ownership.vacant` says whether a listener this node wants has no live owner (the
  owner stopped or died and its lease expired), so the manager claims it;
* :meth:`Ownership.release` gives a lease up when the listener stops here (paused, deleted,
  changed to a shared source, the node stopping), so another node takes it at once.

**Failover.** A lease lasts ``ttl_s`` (default 15 s) from its last renewal. When its owner
dies, the lease expires within ``ttl_s`` and the other nodes, looking every
``renew_interval_s`` (default 5 s), claim it: the listener runs again on another node within
``ttl_s + renew_interval_s`` (20 s by default), plus its start. A lease held by a process
known to be dead (it stopped, or it is gone from this host: a server killed and started
again at once) is taken over at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from modelbus.connectors import is_shared_source
from modelbus.listeners.definition import ListenerDefinition
from modelbus.store.leases import LeaseStore
from modelbus.store.nodes import NodeStore

__all__ = ["Ownership"]

log = logging.getLogger(__name__)

DEFAULT_RENEW_INTERVAL_S = 5.0


class Ownership:
    """The leases node ``node_id`` holds (see the module docstring). ``nodes`` tells
    whether the holder of a lease is known to be dead. Use from one event loop."""

    def __init__(
        self,
        leases: LeaseStore,
        nodes: NodeStore,
        node_id: str,
        *,
        renew_interval_s: float = DEFAULT_RENEW_INTERVAL_S,
    ) -> None:
        if not 0 < renew_interval_s <= leases.ttl_s / 2:
            raise ValueError(
                f"renew_interval_s must be positive and at most half the lease ({leases.ttl_s:g} s)"
            )
        self._leases = leases
        self._nodes = nodes
        self.node_id = node_id
        self.renew_interval_s = renew_interval_s
        # name -> monotonic time after which the lease may have expired unrenewed
        self._held: dict[str, float] = {}
        self._wanted: set[str] = set()

    @property
    def ttl_s(self) -> float:
        return self._leases.ttl_s

    @property
    def held(self) -> frozenset[str]:
        """The unshareable listeners this node holds the lease of."""
        return frozenset(self._held)

    @property
    def wanted(self) -> frozenset[str]:
        """The unshareable listeners this node would run: held, or waiting for the lease."""
        return frozenset(self._wanted)

    def standby(self, name: str) -> bool:
        """Whether ``name`` is wanted here but another node holds its lease."""
        return name in self._wanted and name not in self._held

    async def may_run(self, definition: ListenerDefinition) -> bool:
        """Whether this node may run ``definition`` now: True for a shared source; for an
        unshareable one, whether this node holds its lease after claiming (or renewing) it.
        Raises what the database raises (nothing is held then that was not before)."""
        name = definition.name
        if is_shared_source(definition.source):
            await self.release(name)  # it may have been unshareable before
            return True
        self._wanted.add(name)
        started = time.monotonic()
        claimed = await self._leases.claim(name, self.node_id)
        if not claimed:
            claimed = await self._take_from_dead(name)
        if claimed:
            if name not in self._held:
                log.info("node %s owns listener %s now", self.node_id, name)
            self._held[name] = self._deadline(started)
        else:
            self._held.pop(name, None)
        return claimed

    async def _take_from_dead(self, name: str) -> bool:
        lease = (await self._leases.get([name])).get(name)
        if lease is None or not await self._nodes.dead(lease.owner):
            return False
        log.info("listener %s: its owner %s is dead, taking it over", name, lease.owner)
        return await self._leases.claim(name, self.node_id, replacing=lease.owner)

    async def renew(self) -> set[str]:
        """Renew every lease held; return the listeners whose lease is lost (no longer held
        from now on: stop them). A database error is logged, not raised: leases past their
        local deadline count as lost then."""
        if not self._held:
            return set()
        started = time.monotonic()
        try:
            kept = await self._leases.renew(set(self._held), self.node_id)
        except Exception as exc:
            lost = {name for name, deadline in self._held.items() if deadline <= started}
            log.warning("could not renew listener leases (%s); lost: %s", exc, sorted(lost))
        else:
            lost = set(self._held) - kept
            for name in kept:
                self._held[name] = self._deadline(started)
        for name in lost:
            self._held.pop(name, None)
            log.warning("node %s lost the lease of listener %s", self.node_id, name)
        return lost

    async def vacant(self) -> bool:
        """Whether a listener wanted here and not held has no live owner: never claimed,
        released, expired, or held by a dead process."""
        waiting = self._wanted - set(self._held)
        if not waiting:
            return False
        leases = await self._leases.get(waiting)
        for name in waiting:
            lease = leases.get(name)
            if lease is None or lease.expired or await self._nodes.dead(lease.owner):
                return True
        return False

    async def release(self, name: str) -> None:
        """This node does not want ``name`` any more: give its lease up if held."""
        self._wanted.discard(name)
        if self._held.pop(name, None) is not None:
            await self._leases.release(name, self.node_id)
            log.info("node %s released listener %s", self.node_id, name)

    async def forget(self, name: str) -> None:
        """Listener ``name`` was deleted: drop its lease, whoever holds it."""
        self._wanted.discard(name)
        self._held.pop(name, None)
        await self._leases.forget(name)

    async def keep_only(self, names: Collection[str]) -> None:
        """Release every lease and want of a listener not in ``names`` (deleted elsewhere)."""
        for name in (self._wanted | set(self._held)) - set(names):
            await self.release(name)

    async def release_all(self) -> None:
        """Give every lease up (the node stops). Errors are logged: the leases expire."""
        for name in list(self._wanted | set(self._held)):
            try:
                await self.release(name)
            except Exception as exc:
                log.warning("could not release the lease of listener %s: %s", name, exc)

    def _deadline(self, started: float) -> float:
        # The database stamped the lease after `started`: counting from `started`, minus a
        # margin for the stop to begin, this node gives up before anybody else may take it.
        margin = min(2.0, self.ttl_s / 5)
        return started + self.ttl_s - margin
