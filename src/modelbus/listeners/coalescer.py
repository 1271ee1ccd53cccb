"""Group commit: many concurrent submitters, one flush.

:class:`Coalescer` hands items submitted concurrently to one ``flush`` call: the listener
runtime uses it for run-record writes (:mod:`modelbus.listeners.records`), acks and
publishes, so that many deliveries, and many concurrent batches of them, cost one broker call
or one transaction. A batch submits its items as one group (:meth:`Coalescer.submit_all`):
one future per group, not per item.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

log = logging.getLogger(__name__)

T = TypeVar("T")

Outcomes = list[Exception | None]


class Coalescer(Generic[T]):
    """Hands items submitted concurrently to ``flush`` together (group commit).

    The first group is flushed at once; groups submitted while a flush runs wait for the next
    one, which takes them all (whole groups, up to about ``max_items`` items). ``flush``
    raises to fail the whole flush, or returns one outcome per item (None = done, or that
    item's exception), or None when all are done.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[Exception | None] | None]],
        *,
        max_items: int = 500,
    ) -> None:
        self._flush = flush
        self._max_items = max_items
        self._pending: list[tuple[Sequence[T], asyncio.Future[Outcomes] | None]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Return once the flush that includes ``item`` succeeded; raise its error otherwise.
        Cancelling the caller does not withdraw the item."""
        (outcome,) = await self.submit_all([item])
        if outcome is not None:
            raise outcome

    async def submit_all(self, items: Sequence[T]) -> Outcomes:
        """Flush ``items`` (with whatever else is submitted meanwhile) and return one outcome
        per item, in order: None if done, else its exception. Never raises for a failed
        flush; cancelling the caller does not withdraw the items."""
        if not items:
            return []
        future: asyncio.Future[Outcomes] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        self._start()
        return await asyncio.shield(future)

    def submit_nowait(self, item: T) -> None:
        """Queue ``item`` for the next flush without waiting (its errors are logged)."""
        self._pending.append(((item,), None))
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
            groups = self._take()
            items = [item for group, _ in groups for item in group]
            try:
                outcomes: Sequence[Exception | None] = await self._flush(items) or [None] * len(
                    items
                )
            except Exception as exc:
                outcomes = [exc] * len(items)
            start = 0
            for group, future in groups:
                end = start + len(group)
                _resolve(future, list(outcomes[start:end]))
                start = end

    def _take(self) -> list[tuple[Sequence[T], asyncio.Future[Outcomes] | None]]:
        """Whole groups from the head of the queue, about ``max_items`` items (at least one
        group however large)."""
        count, total = 0, 0
        for group, _ in self._pending:
            if count and total + len(group) > self._max_items:
                break
            count += 1
            total += len(group)
        taken = self._pending[:count]
        del self._pending[:count]
        return taken


def _resolve(future: asyncio.Future[Outcomes] | None, outcomes: Outcomes) -> None:
    if future is None:
        for outcome in outcomes:
            if outcome is not None:
                log.warning("write-behind flush failed: %s", outcome)
    elif not future.done():
        future.set_result(outcomes)
