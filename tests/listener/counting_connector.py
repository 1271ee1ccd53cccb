"""``counting://NAME``: a ``memory://NAME`` queue whose sources and sinks log every ack and
publish call with its size, so a test can tell how a listener grouped its broker calls."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from modelbus.connectors import memory
from modelbus.connectors.base import ConnectorContext, Delivery, OutMessage

ACKS: defaultdict[str, list[int]] = defaultdict(list)  # queue name -> size of each ack call
PUBLISHES: defaultdict[str, list[int]] = defaultdict(list)  # queue name -> size of each publish


class CountingSource(memory.MemorySource):
    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        ACKS[self.queue.name].append(len(deliveries))
        await super().ack(deliveries)


class CountingSink(memory.MemorySink):
    async def publish(self, messages: Sequence[OutMessage]) -> None:
        PUBLISHES[self.queue.name].append(len(messages))
        await super().publish(messages)


def _plain(url: str) -> str:
    return url.replace("counting://", "memory://", 1)


def make_source(url: str, ctx: ConnectorContext) -> CountingSource:
    plain = memory.make_source(_plain(url), ctx)
    return CountingSource(plain.queue, lease_s=plain.lease_s)


def make_sink(url: str, ctx: ConnectorContext) -> CountingSink:
    return CountingSink(memory.make_sink(_plain(url), ctx).queue)


def name(url: str) -> str:
    return url.split("://", 1)[1].split("?")[0]
