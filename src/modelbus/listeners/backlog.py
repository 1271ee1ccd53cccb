"""The backlog of a listener: how many messages wait at its source, read from the broker.

:class:`BacklogReader` asks the source (:meth:`~modelbus.connectors.base.Source.backlog`)
every ``interval_s`` (:data:`DEFAULT_INTERVAL_S`, 5 s) in a background task of the
listener, never on the message path. A read that fails or takes longer than
``timeout_s`` keeps the last value and its time (so its age shows how stale it is) and is
logged once per failing spell; it never touches deliveries or the listener's health.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

__all__ = ["DEFAULT_INTERVAL_S", "BacklogReader"]

DEFAULT_INTERVAL_S = 5.0

log = logging.getLogger(__name__)


class BacklogReader:
    """Reads ``read()`` every ``interval_s``; :attr:`value` and :attr:`read_at` (epoch s)
    are the last successful reading (None before the first, or while the source cannot
    say)."""

    def __init__(
        self,
        listener: str,
        read: Callable[[], Awaitable[int | None]],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        timeout_s: float = 10.0,
    ) -> None:
        self._listener = listener
        self._read = read
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self.value: int | None = None
        self.read_at: float | None = None
        self._failing = False

    def gauge(self) -> float:
        """The last reading for a Prometheus gauge: NaN while there is none."""
        return float("nan") if self.value is None else float(self.value)

    async def run(self) -> None:
        """Read now, then every ``interval_s``, until cancelled."""
        while True:
            await self.read_once()
            await asyncio.sleep(self._interval_s)

    async def read_once(self) -> None:
        """One reading; a failure keeps the last value."""
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the read completes, and the reader would then
            # outlive the listener's stop.
            async with asyncio.timeout(self._timeout_s):
                value = await self._read()
        except Exception as exc:
            if not self._failing:
                log.warning("listener %s: cannot read the backlog: %s", self._listener, exc)
            self._failing = True
            return
        self._failing = False
        self.value = None if value is None else max(0, int(value))
        self.read_at = time.time()
