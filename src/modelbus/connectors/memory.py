"""``memory://NAME``: in-process queues, the reference implementation of the connector contract.

Queues are named and shared by every Source and Sink of the process (one
:class:`MemoryBroker`, :data:`BROKER`, unless a test builds its own). They behave like the
real thing: a received delivery is leased for ``lease_s`` seconds and handed out again,
with its attempt number one higher, if it is neither acked nor extended; ``release`` delays
it; publishing an id that is still queued is a no-op (publish-side dedupe); messages are
handed out in publish order. Nothing survives the process: use ``local://`` for that.

URL options: ``memory://NAME?lease_s=30``.

:meth:`MemoryQueue.outage` makes every operation fail as if the broker were unreachable, so
tests can watch a listener degrade and recover.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from modelbus.connectors.base import ConnectorContext, Delivery, OutMessage
from modelbus.connectors.local import parse_query, queue_name
from modelbus.errors import ConnectorError

__all__ = ["BROKER", "MemoryBroker", "MemoryQueue", "MemorySink", "MemorySource"]

DEFAULT_LEASE_S = 30.0


@dataclass(kw_only=True, slots=True)
class _Message:
    id: str
    body: bytes
    attributes: dict[str, str]
    enqueued_at: float
    visible_at: float  # time.monotonic()
    receive_count: int = 0
    token: str | None = None


@dataclass(slots=True)
class MemoryQueue:
    """One named queue. Thread-safe; usable from any event loop."""

    name: str
    _messages: dict[str, _Message] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _waiters: set[asyncio.Future[None]] = field(default_factory=set)
    _outage: str | None = None

    def outage(self, reason: str | None) -> None:
        """Make every operation raise ConnectorError(reason) until called with None."""
        self._outage = reason

    def publish(self, messages: Sequence[OutMessage]) -> None:
        """Append ``messages``; an id already queued is not added twice."""
        self.check_available()
        now, wall = time.monotonic(), time.time()
        with self._lock:
            for m in messages:
                if m.id not in self._messages:
                    self._messages[m.id] = _Message(
                        id=m.id,
                        body=bytes(m.body),
                        attributes=dict(m.attributes),
                        enqueued_at=wall,
                        visible_at=now,
                    )
            waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            waiter.get_loop().call_soon_threadsafe(_wake, waiter)

    def take(self, max_messages: int, lease_s: float) -> list[Delivery]:
        """Lease up to ``max_messages`` visible messages, oldest first."""
        self.check_available()
        now = time.monotonic()
        token = uuid.uuid4().hex
        taken: list[Delivery] = []
        with self._lock:
            for m in self._messages.values():
                if len(taken) >= max_messages:
                    break
                if m.visible_at <= now:
                    m.visible_at, m.token = now + lease_s, token
                    m.receive_count += 1
                    taken.append(_delivery(m))
        return taken

    def settle(self, handles: Sequence[Any]) -> None:
        """Delete the messages behind ``handles`` (stale handles are ignored)."""
        self.check_available()
        with self._lock:
            for message_id, token in handles:
                m = self._messages.get(message_id)
                if m is not None and m.token == token:
                    del self._messages[message_id]

    def make_visible(self, handle: Any, delay_s: float) -> None:
        """Hand the message out again after ``delay_s`` (stale handles are ignored)."""
        self.set_lease([handle], delay_s, release=True)

    def set_lease(self, handles: Sequence[Any], lease_s: float, *, release: bool = False) -> None:
        """Hide the messages behind ``handles`` for ``lease_s`` from now."""
        self.check_available()
        until = time.monotonic() + lease_s
        with self._lock:
            for message_id, token in handles:
                m = self._messages.get(message_id)
                if m is not None and m.token == token:
                    m.visible_at = until
                    if release:
                        m.token = None

    def next_visible_in(self) -> float | None:
        """Seconds until the next message becomes visible (0 if one is), None if empty."""
        with self._lock:
            if not self._messages:
                return None
            soonest = min(m.visible_at for m in self._messages.values())
        return max(0.0, soonest - time.monotonic())

    def waiter(self) -> asyncio.Future[None]:
        """A future completed at the next publish."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiters.add(future)
        return future

    def forget(self, future: asyncio.Future[None]) -> None:
        with self._lock:
            self._waiters.discard(future)

    def counts(self) -> tuple[int, int]:
        """(messages queued in total, messages currently leased or delayed)."""
        now = time.monotonic()
        with self._lock:
            hidden = sum(1 for m in self._messages.values() if m.visible_at > now)
            return len(self._messages), hidden

    def check_available(self) -> None:
        """Raise ConnectorError while an :meth:`outage` is on."""
        if self._outage is not None:
            raise ConnectorError(f"memory://{self.name}: {self._outage}")


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _delivery(m: _Message) -> Delivery:
    return Delivery(
        message_id=m.id,
        body=m.body,
        attributes=dict(m.attributes),
        attempt=m.receive_count,
        enqueued_at=m.enqueued_at,
        handle=(m.id, m.token),
    )


class MemoryBroker:
    """A set of named queues (one per process by default: :data:`BROKER`)."""

    def __init__(self) -> None:
        self._queues: dict[str, MemoryQueue] = {}
        self._lock = threading.Lock()

    def queue(self, name: str) -> MemoryQueue:
        """The queue called ``name``, created on first use."""
        with self._lock:
            return self._queues.setdefault(name, MemoryQueue(name))

    def delete(self, name: str) -> None:
        """Forget a queue and its messages."""
        with self._lock:
            self._queues.pop(name, None)


BROKER = MemoryBroker()


class MemorySource:
    """A consumer of one memory queue (see the module docstring)."""

    def __init__(self, queue: MemoryQueue, *, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.queue = queue
        self._lease_s = lease_s

    @property
    def lease_s(self) -> float:
        return self._lease_s

    async def open(self) -> None:
        self.queue.check_available()

    async def receive(self, max_messages: int, wait_s: float) -> list[Delivery]:
        deadline = time.monotonic() + wait_s
        while True:
            waiter = self.queue.waiter()
            try:
                taken = self.queue.take(max_messages, self._lease_s)
                remaining = deadline - time.monotonic()
                if taken or remaining <= 0:
                    return taken
                due = self.queue.next_visible_in()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        waiter, min(remaining, due if due is not None else remaining)
                    )
            finally:
                self.queue.forget(waiter)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.queue.settle([d.handle for d in deliveries])

    async def release(self, delivery: Delivery, delay_s: float) -> None:
        self.queue.make_visible(delivery.handle, delay_s)

    async def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        self.queue.set_lease([d.handle for d in deliveries], lease_s)

    async def backlog(self) -> int:
        """The messages ready to be received now (leased ones and delayed retries not
        counted)."""
        self.queue.check_available()
        total, hidden = self.queue.counts()
        return total - hidden

    async def close(self) -> None:
        return None


class MemorySink:
    """A publisher to one memory queue."""

    def __init__(self, queue: MemoryQueue) -> None:
        self.queue = queue

    async def open(self) -> None:
        self.queue.check_available()

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        self.queue.publish(messages)

    async def close(self) -> None:
        return None


def _parse(url: str) -> tuple[str, float]:
    parts = urlsplit(url)
    name = queue_name(url, parts.netloc + parts.path.rstrip("/"))
    options = parse_query(url, {"lease_s": float})
    return name, float(options.get("lease_s", DEFAULT_LEASE_S))


def make_source(url: str, ctx: ConnectorContext) -> MemorySource:
    """A source on ``memory://NAME`` of :data:`BROKER`."""
    name, lease_s = _parse(url)
    return MemorySource(BROKER.queue(name), lease_s=lease_s)


def make_sink(url: str, ctx: ConnectorContext) -> MemorySink:
    """A sink on ``memory://NAME`` of :data:`BROKER`."""
    name, _ = _parse(url)
    return MemorySink(BROKER.queue(name))
