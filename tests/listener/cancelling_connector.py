"""``cancelling://NAME``: a ``memory://NAME`` source whose ``close`` raises CancelledError
from inside, as aiokafka's consumer ``stop()`` does when it cancels its own coordination
task: the listener must take that as a failed close, not as its own cancellation."""

from __future__ import annotations

import asyncio

from modelbus.connectors import memory
from modelbus.connectors.base import ConnectorContext

CLOSES: list[str] = []  # queue names, one per close


class CancellingSource(memory.MemorySource):
    async def close(self) -> None:
        CLOSES.append(self.queue.name)
        await super().close()
        raise asyncio.CancelledError


def make_source(url: str, ctx: ConnectorContext) -> CancellingSource:
    plain = memory.make_source(url.replace("cancelling://", "memory://", 1), ctx)
    return CancellingSource(plain.queue, lease_s=plain.lease_s)


def make_sink(url: str, ctx: ConnectorContext) -> memory.MemorySink:
    return memory.make_sink(url.replace("cancelling://", "memory://", 1), ctx)
