"""What the broker connector tests share: names, message factories, receive loops, consumers
in other OS processes, free ports."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar

from modelbus.connectors import Delivery, OutMessage, Sink, Source
from modelbus.errors import ConnectorError

T = TypeVar("T")

HOLDER = Path(__file__).with_name("holder.py")
CONSUMER = Path(__file__).with_name("consumer.py")


def unique(prefix: str) -> str:
    """A topic, group or table name no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def messages(count: int, prefix: str = "m", *, key: str | None = None) -> list[OutMessage]:
    """``count`` JSON messages ``{"n": i}`` with attribute ``n`` and unique ids."""
    return [
        OutMessage(
            id=f"{prefix}-{i}-{uuid.uuid4().hex[:8]}",
            body=json.dumps({"n": i}).encode(),
            attributes={"n": str(i)},
            key=key,
        )
        for i in range(count)
    ]


def n_of(delivery: Delivery) -> int:
    return int(json.loads(delivery.body)["n"])


async def receive_until(
    source: Source, count: int, timeout_s: float = 15.0, *, batch: int | None = None
) -> list[Delivery]:
    """Receive until ``count`` deliveries arrived or ``timeout_s`` passed (no acks)."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += await source.receive(batch or count - len(got), 0.3)
    return got


async def nothing_within(source: Source, wait_s: float) -> bool:
    """True if ``source`` hands out nothing for ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while (left_s := deadline - time.monotonic()) > 0:
        if await source.receive(10, min(0.3, left_s)):
            return False
    return True


async def drain(source: Source, *, idle_s: float, work_s: float = 0.005) -> list[str]:
    """Receive one at a time, "work", ack, until idle for ``idle_s``; the ids settled."""
    done: list[str] = []
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < idle_s:
        for delivery in await source.receive(1, 0.2):
            await asyncio.sleep(work_s)
            await source.ack([delivery])
            done.append(delivery.message_id)
            idle_since = time.monotonic()
    return done


async def held_by_killed_process(url: str, count: int, *, wait_s: float = 60) -> list[str]:
    """Start :mod:`holder` on ``url``, let it take ``count`` deliveries, SIGKILL it, and
    return the ids it held."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(HOLDER), url, str(count), str(wait_s), stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), wait_s + 30)
        taken: list[str] = json.loads(line)
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    return taken


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ConsumerProcess:
    """``consumer.py`` in another OS process (see its docstring)."""

    def __init__(self, *args: str) -> None:
        self._args = args
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, str(CONSUMER), *self._args, stdout=asyncio.subprocess.PIPE
        )

    async def line(self, timeout_s: float = 30.0) -> str:
        assert self.process is not None and self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        return raw.decode().strip()

    async def output(self, timeout_s: float = 60.0) -> list[str]:
        assert self.process is not None
        out, _ = await asyncio.wait_for(self.process.communicate(), timeout_s)
        return out.decode().split()

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


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


def numbers(deliveries: list[Delivery]) -> list[int]:
    """The ``n`` attribute of each delivery (see :func:`messages`)."""
    return [int(d.attributes["n"]) for d in deliveries]


async def receive_n(
    source: Source, count: int, *, within_s: float = 15.0, max_messages: int = 10
) -> list[Delivery]:
    """Receive (at most ``max_messages`` a call) until ``count`` deliveries arrived or
    ``within_s`` passed (no acks)."""
    deliveries: list[Delivery] = []
    deadline = time.monotonic() + within_s
    while len(deliveries) < count and time.monotonic() < deadline:
        wanted = min(max_messages, count - len(deliveries))
        deliveries += await source.receive(wanted, 0.5)
    return deliveries


async def receive_for(source: Source, seconds: float) -> list[Delivery]:
    """Everything ``source`` hands out in ``seconds`` (no acks)."""
    deliveries: list[Delivery] = []
    deadline = time.monotonic() + seconds
    while (left_s := deadline - time.monotonic()) > 0:
        deliveries += await source.receive(10, min(left_s, 0.5))
    return deliveries


async def retry_until(
    action: Callable[[], Awaitable[T]], *, within_s: float = 20.0, pause_s: float = 0.2
) -> T:
    """Run ``action`` until it stops raising a transient ConnectorError (what the listener
    runtime does, with backoff); the last error if it never does."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await action()
        except ConnectorError as exc:
            if exc.permanent or time.monotonic() > deadline:
                raise
            await asyncio.sleep(pause_s)


async def drain_through_outages(
    source: Source, *, quiet_s: float, within_s: float = 30.0
) -> list[Delivery]:
    """Receive and ack, retrying transient errors, until nothing came for ``quiet_s``."""
    got: list[Delivery] = []
    deadline = time.monotonic() + within_s
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_s:
        batch = await retry_until(partial(source.receive, 10, 0.5))
        if batch:
            await retry_until(partial(source.ack, batch))
            got += batch
            quiet_since = time.monotonic()
    return got
