"""Leases: a long-running delivery keeps its lock on the broker (DESIGN.md, delivery contract 5).

A :class:`Flight` is one delivery between receive and settle, with the moment its lease
lapses. :class:`LeaseExtender` runs beside the receive loop: every third of the source's
lease it extends, in one call, the leases of the flights that would lapse within the next
two thirds, and never those already acked or released (``final``). A failed extension is
recorded as the listener's last error and tried again at the next tick; the broker hands a
lapsed delivery out again, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from modelbus.connectors.base import Delivery, Source
from modelbus.listeners.health import Health
from modelbus.runtime.telemetry import DeliveryTrace

__all__ = ["Flight", "LeaseExtender"]


@dataclass(eq=False, kw_only=True, slots=True)
class Flight:
    """One delivery in flight: its working task, then its settling task."""

    delivery: Delivery
    received_at: float  # epoch s
    lease_until: float  # monotonic
    task: asyncio.Task[None] | None = None
    settling: asyncio.Task[None] | None = None
    final: bool = False  # ack/release issued: no more lease extensions
    trace: DeliveryTrace | None = None  # its spans, when tracing is on
    concurrent: bool = False  # another flight held the same message when it was received
    claimed_at: float | None = None  # monotonic: when its run was claimed (listeners.claims)

    @property
    def born_at(self) -> float:
        return self.delivery.enqueued_at or self.received_at


class LeaseExtender:
    """Extends the leases of ``flights`` on ``source`` until cancelled (see the module
    docstring); does nothing if the source has no lease or ``enabled`` is false."""

    def __init__(
        self,
        source: Source,
        flights: Iterable[Flight],
        health: Health,
        *,
        enabled: bool,
        op_timeout_s: float,
    ) -> None:
        self._source = source
        self._flights = flights
        self._health = health
        self._enabled = enabled
        self._op_timeout_s = op_timeout_s

    async def run(self) -> None:
        """Extend leases until cancelled. Start it once the source is open: its ``lease_s`` is
        read here, once."""
        lease_s = self._source.lease_s
        if lease_s is None or not self._enabled:
            return
        interval_s = lease_s / 3
        while True:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            due = [
                f for f in self._flights if not f.final and f.lease_until - now <= 2 * interval_s
            ]
            if not due:
                continue
            try:
                await asyncio.wait_for(
                    self._source.extend([f.delivery for f in due], lease_s), self._op_timeout_s
                )
            except Exception as exc:
                self._health.error("source", f"lease extension failed: {exc}")
                continue
            for flight in due:
                flight.lease_until = now + lease_s
