"""Group commit: many concurrent submitters, one flush.

:class:`Coalescer` hands items submitted concurrently to one ``flush`` call: the listener
runtime uses it for run-record writes (:mod:`modelbus.listeners.records`), acks and
publishes, so that many deliveries cost one broker call or one transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Hands items submitted concurrently to ``flush`` together (group commit).

    The first item is flushed at once; items submitted while a flush runs wait for the next
    one, which takes them all (up to ``max_items``). ``flush`` raises to fail the whole
    batch, or returns one outcome per item (None = done, or that item's exception), or None
    when all are done. Used for run-record writes and for the listener's acks and publishes.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[Exception | None] | None]],
        *,
        max_items: int = 500,
    ) -> None:
        self._flush = flush
        self._max_items = max_items
        self._pending: list[tuple[T, asyncio.Future[None] | None]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Return once the flush that includes ``item`` succeeded; raise its error otherwise.
        Cancelling the caller does not withdraw the item."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._start()
        await asyncio.shield(future)

    def submit_nowait(self, item: T) -> None:
        """Queue ``item`` for the next flush without waiting (its errors are logged)."""
        self._pending.append((item, None))
        self._start()

    async def drain(self) -> None:
        """Wait until everything submitted so far is flushed."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_items]
            del self._pending[: self._max_items]
            try:
                outcomes = await self._flush([item for item, _ in batch])
            except Exception as exc:
                outcomes = [exc] * len(batch)
            for (_, future), outcome in zip(batch, outcomes or [None] * len(batch), strict=True):
                _resolve(future, outcome)


def _resolve(future: asyncio.Future[None] | None, outcome: Exception | None) -> None:
    if future is None:
        if outcome is not None:
            log.warning("write-behind flush failed: %s", outcome)
    elif future.done():
        pass
    elif outcome is None:
        future.set_result(None)
    else:
        future.set_exception(outcome)
