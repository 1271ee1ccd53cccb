"""The receive stage: what a listener holds, and how received deliveries are admitted.

:class:`InFlight` is the back-pressure of DESIGN.md's delivery contract (6): the receive loop
asks the source for at most :meth:`InFlight.free` deliveries and waits for a slot when there is
none, so a listener never holds more than ``max_in_flight``. :class:`Admission` takes what one
receive returned: counts it, checks it against the run store for deliveries that already
succeeded (within the dedupe window; those settle at once as ``duplicate``), and starts one task
per delivery. A dedupe check that fails (store down) lets the deliveries run: settling, which
needs the store too, will notice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Literal

from modelbus.connectors.base import Delivery, Source
from modelbus.listeners.health import Health
from modelbus.listeners.leases import Flight
from modelbus.listeners.metrics import ListenerMetrics
from modelbus.listeners.records import RunWriter
from modelbus.runtime import telemetry

__all__ = ["Admission", "InFlight"]


class InFlight:
    """The deliveries received and not yet settled, at most ``max_in_flight`` of them."""

    __slots__ = ("_flights", "_ids", "_max", "_slot_freed")

    def __init__(self, max_in_flight: int) -> None:
        self._max = max_in_flight
        self._flights: set[Flight] = set()
        self._ids: dict[str, int] = {}  # message id -> flights holding it
        self._slot_freed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._flights)

    def __iter__(self) -> Iterator[Flight]:
        return iter(self._flights)

    def free(self) -> int:
        """How many more deliveries may be received now (0 or less: none)."""
        return self._max - len(self._flights)

    def wait_for_slot(self) -> Coroutine[Any, Any, Literal[True]]:
        """Await it: done when a delivery leaves, or on :meth:`wake`."""
        self._slot_freed.clear()
        return self._slot_freed.wait()

    def wake(self) -> None:
        """End a wait for a slot at once (the listener is stopping)."""
        self._slot_freed.set()

    def add(self, flight: Flight) -> bool:
        """Hold ``flight``; whether another flight holds the same message already (the
        broker handed it out again while it runs)."""
        self._flights.add(flight)
        message_id = flight.delivery.message_id
        held = self._ids.get(message_id, 0)
        self._ids[message_id] = held + 1
        return held > 0

    def remove(self, flight: Flight) -> None:
        """``flight`` is settled (or left to its lease): its slot is free."""
        if flight in self._flights:
            self._flights.discard(flight)
            self._drop_id(flight)
        self._slot_freed.set()

    def forget(self, flights: list[Flight]) -> None:
        """Drop ``flights`` (released while stopping) without waking anyone."""
        for flight in flights:
            if flight in self._flights:
                self._flights.discard(flight)
                self._drop_id(flight)

    def _drop_id(self, flight: Flight) -> None:
        message_id = flight.delivery.message_id
        left = self._ids.get(message_id, 1) - 1
        if left > 0:
            self._ids[message_id] = left
        else:
            self._ids.pop(message_id, None)

    def oldest_age_s(self) -> float:
        """Seconds since the oldest delivery held was enqueued (or received); 0 if none."""
        if not self._flights:
            return 0.0
        return max(0.0, time.time() - min(f.born_at for f in self._flights))


class Admission:
    """Admits received deliveries into ``in_flight``: one task per received batch runs
    ``handle`` on all of them (it checks for duplicates first: :meth:`duplicates`)."""

    def __init__(
        self,
        listener: str,
        *,
        source: Source,
        in_flight: InFlight,
        runs: RunWriter,
        metrics: ListenerMetrics,
        health: Health,
        handle: Callable[[list[Flight]], Coroutine[Any, Any, None]],
        system: str = "modelbus",
    ) -> None:
        self._listener = listener
        self._source_scheme = system  # the broker, as traces name it (messaging.system)
        self._source = source
        self._in_flight = in_flight
        self._runs = runs
        self._metrics = metrics
        self._health = health
        self._handle = handle

    def admit(self, deliveries: list[Delivery], asked_ns: int | None = None) -> None:
        """Start working on ``deliveries`` (received by a call made at ``asked_ns``): one
        task for the batch, shared by its flights."""
        self._metrics.received(len(deliveries))
        now, lease_s = time.time(), self._source.lease_s or 0.0
        lease_until = time.monotonic() + lease_s
        flights = [
            Flight(delivery=delivery, received_at=now, lease_until=lease_until)
            for delivery in deliveries
        ]
        if telemetry.enabled:
            self._trace(flights, asked_ns or time.time_ns())
        task = asyncio.create_task(self._handle(flights))
        for flight in flights:
            flight.task = task
            flight.concurrent = self._in_flight.add(flight)

    def _trace(self, flights: list[Flight], asked_ns: int) -> None:
        """Open each flight's ``process`` span; its ``receive`` stage is the receive call,
        from when its message was enqueued if that came later (the call waits for one)."""
        received_ns = time.time_ns()
        system = self._source_scheme
        for flight in flights:
            delivery = flight.delivery
            enqueued = delivery.enqueued_at
            start = max(asked_ns, int(enqueued * 1e9)) if enqueued else asked_ns
            trace = telemetry.start_delivery(
                listener=self._listener,
                system=system,
                message_id=delivery.message_id,
                attempt=delivery.attempt,
                attributes=delivery.attributes,
                received_ns=min(start, received_ns),
            )
            trace.mark("receive", min(start, received_ns), received_ns)
            flight.trace = trace
            telemetry.remember(delivery, trace)

    async def duplicates(self, flights: list[Flight]) -> set[str]:
        """The message ids among ``flights`` that already succeeded (within the dedupe
        window); none if the store cannot say (settling, which needs it too, will notice)."""
        try:
            ids = [f.delivery.message_id for f in flights]
            return await self._runs.store.succeeded(self._listener, ids)
        except Exception as exc:  # the store is down: run them; settling will notice
            self._health.error("store", f"dedupe check failed: {exc}")
            return set()
