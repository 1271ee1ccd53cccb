"""Leases longer than a broker keeps one, renewed in the background (Redis Streams, NATS)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from modelbus.connectors.base import Delivery
from modelbus.errors import ConnectorError

__all__ = ["Holds"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Hold:
    deliveries: list[Delivery]
    until: float  # time.monotonic() the deliveries are to stay hidden until
    covered: float  # ... the broker hides them until, as last renewed


class Holds:
    """Leases asked for longer than the broker keeps one (``extend`` past the URL's
    ``lease_s``, or NATS's ack wait): a task of the source renews them every third of a
    lease until they are due, settled, or the source closes. If the process dies, they
    lapse one lease later."""

    def __init__(
        self,
        lease_s: float,
        renew: Callable[[Sequence[Delivery], float], Awaitable[float]],
        what: str,
    ) -> None:
        self._lease_s = lease_s
        self._renew = renew  # (deliveries, seconds wanted) -> seconds covered
        self._what = what
        self._holds: dict[str, _Hold] = {}  # message id -> its hold
        self._task: asyncio.Task[None] | None = None

    def hold(self, deliveries: Sequence[Delivery], *, until: float, covered: float) -> None:
        hold = _Hold(list(deliveries), until, covered)
        for delivery in deliveries:
            self._holds[delivery.message_id] = hold
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"leases:{self._what}")

    def forget(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            self._holds.pop(delivery.message_id, None)

    async def close(self) -> None:
        self._holds.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while self._holds:
            await asyncio.sleep(self._lease_s / 3)
            for hold in {id(h): h for h in self._holds.values()}.values():
                await self._renew_one(hold)

    async def _renew_one(self, hold: _Hold) -> None:
        live = [d for d in hold.deliveries if self._holds.get(d.message_id) is hold]
        now = time.monotonic()
        if not live or hold.covered >= hold.until:
            self.forget(live)
            return
        try:
            hold.covered = now + await self._renew(live, hold.until - now)
        except ConnectorError:
            log.warning("%s: renewing a lease failed", self._what, exc_info=True)
