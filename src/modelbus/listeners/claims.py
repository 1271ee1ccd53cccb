"""Run claims: a message runs in one place at a time, across the nodes and processes of a
cluster (DESIGN.md, delivery contract 4 and 5).

A broker hands a message out again when its lease lapses (a slow model with
``extend_lease`` off, a node that stalled), possibly to another replica of the listener.
Within one replica :class:`~modelbus.listeners.receive.InFlight` notices; across replicas
the run store decides: before invoking, :meth:`RunClaims.claim` claims the batch's messages
in one statement (:meth:`~modelbus.store.runs.RunStore.claim`). A delivery whose message
another live replica has claimed is not run: it is :class:`~modelbus.listeners.outcomes.Busy`,
released to come again after a backoff, by which time that run has settled (its run record
ends the claim) or its replica died (the claim expired).

A replica that died on this machine does not make its messages wait for its claims to
expire: a claimant id names its host, its process id and what makes that id mean one
process (the machine's boot and the process's pid namespace: containers may share a host
name, never both). When a claim misses, :meth:`RunClaims.claim` asks who holds it; claims
held by a process of this machine that no longer exists are ended and claimed again at
once. A process id in use again, or a zombie, counts as alive: such claims expire.

While deliveries run, :meth:`RunClaims.run` renews their claims every third of ``ttl_s``
(one statement for all of them, only for those claimed or renewed at least a sixth ago); a replica
that dies stops renewing, and its claims expire ``ttl_s`` later. A stop that hands
deliveries back unfinished ends their claims at once (:meth:`RunClaims.end`).

If the store cannot be reached the deliveries run unclaimed (settling, which needs the
store too, will notice), as the dedupe check does.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence

from modelbus.listeners.health import Health
from modelbus.listeners.leases import Flight
from modelbus.store.runs import RunStore

__all__ = ["DEFAULT_CLAIM_TTL_S", "RunClaims", "claimant_gone", "claimant_id"]

log = logging.getLogger(__name__)

DEFAULT_CLAIM_TTL_S = 15.0
UNKNOWN_SCOPE = "-"  # where a process id's meaning cannot be told: its claims always expire


@functools.cache
def process_scope() -> str:
    """What makes a process id on this host mean one process: a digest of the machine's
    boot id and this process's pid namespace; :data:`UNKNOWN_SCOPE` where /proc has neither."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            parts = (boot.read().strip(), os.readlink("/proc/self/ns/pid"))
    except OSError:
        return UNKNOWN_SCOPE
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def claimant_id() -> str:
    """A name for one listener replica: ``HOST/SCOPE/PID/RANDOM``, its host, process (see
    :func:`process_scope`) and a random part (unique per runtime, so two processes or two
    runtimes of one node never share a claim)."""
    host = socket.gethostname()[:60].replace("/", "_")
    return f"{host}/{process_scope()}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


def claimant_gone(claimant: str) -> bool:
    """Whether ``claimant`` is a process of this host, boot and pid namespace that no longer
    exists. False when that cannot be told (another machine, an older id, a process id in
    use again, a zombie): such claims are left to expire."""
    parts = claimant.split("/")
    if len(parts) != 4 or not parts[2].isdigit():
        return False
    host, scope, pid = parts[0], parts[1], int(parts[2])
    mine = socket.gethostname()[:60].replace("/", "_")
    if host != mine or scope != process_scope() or scope == UNKNOWN_SCOPE or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: alive
        return False
    return False


class RunClaims:
    """The claims of one listener replica ``claimant`` on ``store`` (module docstring)."""

    def __init__(
        self,
        listener: str,
        store: RunStore,
        health: Health,
        *,
        flights: Iterable[Flight],
        ttl_s: float = DEFAULT_CLAIM_TTL_S,
        claimant: str | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.claimant = claimant or claimant_id()
        self.ttl_s = ttl_s
        self._listener = listener
        self._store = store
        self._health = health
        self._flights = flights

    async def claim(self, flights: Sequence[Flight]) -> list[bool]:
        """Claim the messages of ``flights`` (one statement); per flight, whether it may
        run (claimed, or the store could not say). Claimed flights are marked ``claimed``."""
        if not flights:
            return []
        attempts = {f.delivery.message_id: f.delivery.attempt for f in flights}
        try:
            claimed = await self._store.claim(
                self._listener, self.claimant, attempts, ttl_s=self.ttl_s
            )
            missed = [m for m in attempts if m not in claimed]
            if missed:
                claimed |= await self._take_from_the_gone(missed, attempts)
        except Exception as exc:  # the store is down: run them; settling will notice
            self._health.error("store", f"run claim failed: {exc}")
            return [True] * len(flights)
        now = time.monotonic()
        runnable = []
        for flight in flights:
            ok = flight.delivery.message_id in claimed
            if ok:
                flight.claimed_at = now
            runnable.append(ok)
        return runnable

    async def _take_from_the_gone(
        self, missed: Sequence[str], attempts: Mapping[str, int]
    ) -> set[str]:
        """End the claims of ``missed`` that processes gone from this machine hold, and claim
        those messages; returns the ids claimed."""
        holders = await self._store.claimants(self._listener, missed)
        gone: dict[str, list[str]] = {}
        for message_id, holder in holders.items():
            if holder != self.claimant and claimant_gone(holder):
                gone.setdefault(holder, []).append(message_id)
        if not gone:
            return set()
        for holder, ids in gone.items():
            await self._store.unclaim(self._listener, holder, ids)
            log.info(
                "listener %s: %d claim(s) of %s ended, its process is gone",
                self._listener,
                len(ids),
                holder,
            )
        freed = {m: attempts[m] for ids in gone.values() for m in ids}
        return await self._store.claim(self._listener, self.claimant, freed, ttl_s=self.ttl_s)

    async def run(self) -> None:
        """Renew the claims of the flights that still run, until cancelled."""
        interval_s = self.ttl_s / 3
        while True:
            await asyncio.sleep(interval_s)
            await self.renew(time.monotonic() - interval_s / 2)

    async def renew(self, claimed_before: float) -> None:
        """Renew the claims made or renewed before ``claimed_before`` (monotonic) of the
        flights that still run."""
        due = [
            f
            for f in self._flights
            if f.claimed_at is not None and not f.final and f.claimed_at <= claimed_before
        ]
        if not due:
            return
        now = time.monotonic()
        ids = [f.delivery.message_id for f in due]
        try:
            held = await self._store.renew_claims(
                self._listener, self.claimant, ids, ttl_s=self.ttl_s
            )
        except Exception as exc:  # tried again at the next tick; the claims last ttl_s
            self._health.error("store", f"run claim renewal failed: {exc}")
            return
        for flight in due:
            if flight.delivery.message_id in held:
                flight.claimed_at = now

    async def end(self, flights: Sequence[Flight]) -> None:
        """End the claims of ``flights``, handed back unfinished; never raises (unended,
        they expire)."""
        ids = [f.delivery.message_id for f in flights if f.claimed_at is not None]
        if not ids:
            return
        try:
            await self._store.unclaim(self._listener, self.claimant, ids)
        except Exception as exc:
            self._health.error("store", f"run claims not ended (they expire): {exc}")
