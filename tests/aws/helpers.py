"""Small helpers shared by the AWS tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from modelbus.connectors.base import Delivery, Sink, Source


@asynccontextmanager
async def opened(*connectors: Source | Sink) -> AsyncIterator[None]:
    """Open the connectors, close them all on exit."""
    done: list[Source | Sink] = []
    try:
        for connector in connectors:
            await connector.open()
            done.append(connector)
        yield
    finally:
        for connector in reversed(done):
            await connector.close()


async def receive_n(
    source: Source, count: int, *, within_s: float = 20.0, max_messages: int = 10
) -> list[Delivery]:
    """Receive until ``count`` deliveries arrived or ``within_s`` passed (then return what
    came: the test's assertion says what was missing)."""
    deliveries: list[Delivery] = []
    deadline = time.monotonic() + within_s
    while len(deliveries) < count and time.monotonic() < deadline:
        deliveries += await source.receive(min(max_messages, count - len(deliveries)), 1)
    return deliveries


async def receive_nothing(source: Source, *, wait_s: float = 1.0) -> list[Delivery]:
    """One receive that is expected to come back empty."""
    return await source.receive(10, wait_s)


async def wait_until_receivable(source: Source, *, within_s: float = 20.0) -> list[Delivery]:
    """Poll until something arrives (for messages that become visible later)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        got = await source.receive(10, 1)
        if got:
            return got
        await asyncio.sleep(0.1)
    return []


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:us-east-1:123456789012:{name}"


async def raw_receive(sqs: Any, queue_url: str, *, count: int, within_s: float = 20.0) -> list[Any]:
    """Receive ``count`` messages with a plain client, all attributes, without deleting."""
    messages: list[Any] = []
    deadline = time.monotonic() + within_s
    while len(messages) < count and time.monotonic() < deadline:
        answer = await sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        messages += answer.get("Messages", [])
    return messages
