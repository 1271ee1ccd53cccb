"""A sink for tests that refuses, for good, every message whose body contains b"refuse"
(as a broker refuses a message over its size limit) and keeps the rest in memory."""

from __future__ import annotations

from collections.abc import Sequence

from modelbus.connectors.base import ConnectorContext, OutMessage
from modelbus.errors import ConnectorError

ACCEPTED: dict[str, list[OutMessage]] = {}


class RefusingSink:
    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        return None

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        if any(b"refuse" in m.body for m in messages):
            raise ConnectorError("message too large for this sink", permanent=True)
        ACCEPTED.setdefault(self.url, []).extend(messages)

    async def close(self) -> None:
        return None


def make_sink(url: str, ctx: ConnectorContext) -> RefusingSink:
    return RefusingSink(url)
