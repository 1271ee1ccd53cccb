"""``tracked://NAME``: a ``memory://NAME`` source that counts itself, so a test can tell that
every consumer of a queue it saw made was closed again (:func:`unclosed`)."""

from __future__ import annotations

from collections import Counter

from modelbus.connectors import memory
from modelbus.connectors.base import ConnectorContext

UNCLOSED: Counter[str] = Counter()  # queue name -> sources made and not closed yet


class TrackedSource(memory.MemorySource):
    def __init__(self, queue: memory.MemoryQueue, *, lease_s: float) -> None:
        super().__init__(queue, lease_s=lease_s)
        self._closed = False
        UNCLOSED[queue.name] += 1

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            UNCLOSED[self.queue.name] -= 1


def make_source(url: str, ctx: ConnectorContext) -> TrackedSource:
    plain = memory.make_source(url.replace("tracked://", "memory://", 1), ctx)
    return TrackedSource(plain.queue, lease_s=plain.lease_s)


def unclosed(url: str) -> int:
    """How many sources made on ``url``'s queue are not closed (0 once every one is)."""
    return UNCLOSED[url.split("://", 1)[1].split("?")[0]]


def make_sink(url: str, ctx: ConnectorContext) -> memory.MemorySink:
    return memory.make_sink(url.replace("tracked://", "memory://", 1), ctx)
