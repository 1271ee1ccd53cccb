"""Fixtures for the serve tests: the shared real server (tests.support) and ways to reach
its embedded queues from the test process, as any other process on the machine can."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from modelbus.connectors.base import Delivery, OutMessage
from modelbus.connectors.local import SqliteQueue
from tests.support.fixtures import admin, modelbus_server, published, server

__all__ = [
    "admin",
    "eventually",
    "modelbus_server",
    "publish",
    "published",
    "receive_all",
    "server",
    "unique",
]

T = TypeVar("T")


def unique(prefix: str) -> str:
    """A name no other test (or test run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def eventually(check: Callable[[], T], timeout_s: float = 30.0, poll_s: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:
            last = exc
        else:
            if value:
                return value
        time.sleep(poll_s)
    raise AssertionError(f"condition not met within {timeout_s} s (last error: {last!r})")


def _queue(data_dir: Path, name: str) -> SqliteQueue:
    return SqliteQueue(data_dir / "queues" / f"{name}.sqlite")


async def _publish(queue: SqliteQueue, messages: Sequence[OutMessage]) -> None:
    await queue.open()
    try:
        await queue.publish(messages)
    finally:
        await queue.close()


def publish(data_dir: Path, name: str, *bodies: tuple[str, bytes], **attrs: str) -> None:
    """Put ``(message id, body)`` messages on the server's ``local://NAME`` queue."""
    messages = [OutMessage(id=i, body=b, attributes=attrs) for i, b in bodies]
    asyncio.run(_publish(_queue(data_dir, name), messages))


async def _receive(queue: SqliteQueue) -> list[Delivery]:
    await queue.open()
    try:
        found, _ = await queue.receive(1000, 60.0)
        await queue.ack([d.handle for d in found])
        return found
    finally:
        await queue.close()


def receive_all(data_dir: Path, name: str) -> list[Delivery]:
    """Take (and ack) every message now visible on ``local://NAME``."""
    return asyncio.run(_receive(_queue(data_dir, name)))


def json_of(delivery: Delivery) -> Any:
    import json

    return json.loads(delivery.body)
