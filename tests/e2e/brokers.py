"""The two brokers the end-to-end tests run every contract point on: ``local://`` and SQS
(on a real moto_server), behind one small interface.

A test asks its broker for queues (``await broker.queue("in")`` gives a listener URL), sends
inputs as a foreign producer would (``send`` returns the broker's message id, the id run
records are keyed by), drains results and dead letters (``drain``), looks at a queue's depth
without taking anything (``depth``), and takes a sink away for a while (``outage``):

* local: another process-like SQLite connection holds the queue file's write lock, as a
  stuck writer would; publishing waits and times out.
* SQS: sinks that must be breakable are reached through a TCP proxy (``queue(...,
  breakable=True)``); an outage closes it and drops its connections (connection refused),
  as a network partition between modelbus and SQS would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from modelbus.connectors import ConnectorContext, make_source
from modelbus.connectors.base import OutMessage
from modelbus.connectors.local import LocalOptions, SqliteQueue
from tests.support.proxy import TcpProxy

__all__ = ["Broker", "Depth", "LocalBroker", "Message", "SqsBroker", "TcpProxy", "drain_url"]

REGION = "us-east-1"


@dataclass(frozen=True, kw_only=True)
class Message:
    """A message taken from a queue (acked)."""

    message_id: str
    body: bytes
    attributes: Mapping[str, str]
    attempt: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, kw_only=True)
class Depth:
    """Messages in a queue: ``visible`` (receivable now) and ``hidden`` (leased or delayed)."""

    visible: int
    hidden: int

    @property
    def total(self) -> int:
        return self.visible + self.hidden


class Broker(Protocol):
    kind: str
    ctx: ConnectorContext

    async def queue(
        self, role: str, *, lease_s: int | None = None, breakable: bool = False
    ) -> str: ...

    async def send(
        self, url: str, body: bytes | Any, attributes: Mapping[str, str] | None = None
    ) -> str: ...

    async def send_many(self, url: str, bodies: list[bytes]) -> list[str]: ...

    async def drain(self, url: str, count: int, *, within_s: float = 20.0) -> list[Message]: ...

    async def depth(self, url: str) -> Depth: ...

    def outage(self, url: str) -> AbstractAsyncContextManager[None]: ...


def _bytes(body: bytes | Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


async def drain_url(
    url: str, ctx: ConnectorContext, count: int, *, within_s: float, wait_s: float
) -> list[Message]:
    """Receive and ack until ``count`` messages came or ``within_s`` passed."""
    source = make_source(url, ctx)
    await source.open()
    got: list[Message] = []
    try:
        deadline = time.monotonic() + within_s
        while len(got) < count and time.monotonic() < deadline:
            batch = await source.receive(min(10, count - len(got)), wait_s)
            if batch:
                await source.ack(batch)
            got += [
                Message(
                    message_id=d.message_id,
                    body=d.body,
                    attributes=dict(d.attributes),
                    attempt=d.attempt,
                )
                for d in batch
            ]
    finally:
        await source.close()
    return got


class LocalBroker:
    """``local://`` queues under ``data_dir/queues``."""

    kind = "local"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ctx = ConnectorContext(listener="e2e-test", data_dir=data_dir)

    async def queue(self, role: str, *, lease_s: int | None = None, breakable: bool = False) -> str:
        query = {"poll_ms": "20", **({"lease_s": str(lease_s)} if lease_s else {})}
        url = f"local://{role}-{uuid.uuid4().hex[:10]}?{urlencode(query)}"
        queue = self._queue(url)
        await queue.open()  # the file exists from now on (an outage locks it)
        await queue.close()
        return url

    def _queue(self, url: str) -> SqliteQueue:
        return SqliteQueue(LocalOptions.from_url(url).path(self.data_dir))

    async def send(
        self, url: str, body: bytes | Any, attributes: Mapping[str, str] | None = None
    ) -> str:
        message_id = f"in-{uuid.uuid4().hex}"
        queue = self._queue(url)
        await queue.open()
        try:
            await queue.publish(
                [OutMessage(id=message_id, body=_bytes(body), attributes=attributes or {})]
            )
        finally:
            await queue.close()
        return message_id

    async def send_many(self, url: str, bodies: list[bytes]) -> list[str]:
        """Queue many messages in one transaction; returns their ids in order."""
        ids = [f"in-{uuid.uuid4().hex}" for _ in bodies]
        queue = self._queue(url)
        await queue.open()
        try:
            await queue.publish(
                [OutMessage(id=i, body=b) for i, b in zip(ids, bodies, strict=True)]
            )
        finally:
            await queue.close()
        return ids

    async def drain(self, url: str, count: int, *, within_s: float = 20.0) -> list[Message]:
        return await drain_url(url, self.ctx, count, within_s=within_s, wait_s=0.2)

    async def depth(self, url: str) -> Depth:
        queue = self._queue(url)
        await queue.open()
        try:
            total, hidden = await queue.counts()
        finally:
            await queue.close()
        return Depth(visible=total - hidden, hidden=hidden)

    @contextlib.asynccontextmanager
    async def outage(self, url: str) -> AsyncIterator[None]:
        """Hold the queue file's write lock (as a stuck writer in another process would)."""
        path = LocalOptions.from_url(url).path(self.data_dir)
        db = await asyncio.to_thread(
            sqlite3.connect, path, timeout=10, isolation_level=None, check_same_thread=False
        )
        try:
            await asyncio.to_thread(db.execute, "BEGIN EXCLUSIVE")
            try:
                yield
            finally:
                await asyncio.to_thread(db.execute, "ROLLBACK")
        finally:
            await asyncio.to_thread(db.close)


class SqsBroker:
    """SQS queues on a moto_server, created by the test (a plain client: what a producer
    outside modelbus would do); results are drained with modelbus's SQS source."""

    kind = "sqs"

    def __init__(self, endpoint_url: str, sqs: Any, data_dir: Path) -> None:
        self.endpoint_url = endpoint_url
        self.sqs = sqs
        self.ctx = ConnectorContext(listener="e2e-test", data_dir=data_dir)
        parts = urlsplit(endpoint_url)
        self.proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 80)
        self._queue_urls: dict[str, str] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, endpoint_url: str, data_dir: Path) -> AsyncIterator[SqsBroker]:
        from aiobotocore.session import get_session

        session = get_session()
        async with session.create_client(
            "sqs", region_name=REGION, endpoint_url=endpoint_url
        ) as sqs:
            broker = cls(endpoint_url, sqs, data_dir)
            await broker.proxy.start()
            try:
                yield broker
            finally:
                await broker.proxy.close()

    def url(self, name: str, *, endpoint_url: str | None = None) -> str:
        query = {"endpoint_url": endpoint_url or self.endpoint_url, "region": REGION, "wait_s": 1}
        return f"sqs://{name}?{urlencode(query)}"

    async def queue(self, role: str, *, lease_s: int | None = None, breakable: bool = False) -> str:
        name = f"{role}-{uuid.uuid4().hex[:12]}"
        attributes = {"VisibilityTimeout": str(lease_s)} if lease_s else {}
        answer = await self.sqs.create_queue(QueueName=name, Attributes=attributes)
        self._queue_urls[name] = answer["QueueUrl"]
        proxied = f"http://127.0.0.1:{self.proxy.port}" if breakable else None
        return self.url(name, endpoint_url=proxied)

    def queue_url(self, url: str) -> str:
        """The SQS QueueUrl behind a listener URL."""
        return self._queue_urls[urlsplit(url).netloc]

    async def send(
        self, url: str, body: bytes | Any, attributes: Mapping[str, str] | None = None
    ) -> str:
        request: dict[str, Any] = {
            "QueueUrl": self.queue_url(url),
            "MessageBody": _bytes(body).decode(),
        }
        if attributes:
            request["MessageAttributes"] = {
                k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
            }
        answer = await self.sqs.send_message(**request)
        return str(answer["MessageId"])

    async def send_many(self, url: str, bodies: list[bytes]) -> list[str]:
        """Send in batches of 10; returns the message ids in order."""
        ids: list[str] = []
        for start in range(0, len(bodies), 10):
            chunk = bodies[start : start + 10]
            entries = [{"Id": str(i), "MessageBody": b.decode()} for i, b in enumerate(chunk)]
            answer = await self.sqs.send_message_batch(
                QueueUrl=self.queue_url(url), Entries=entries
            )
            assert not answer.get("Failed"), answer
            by_entry = {int(s["Id"]): s["MessageId"] for s in answer["Successful"]}
            ids += [by_entry[i] for i in range(len(chunk))]
        return ids

    async def drain(self, url: str, count: int, *, within_s: float = 20.0) -> list[Message]:
        return await drain_url(
            self.url(urlsplit(url).netloc), self.ctx, count, within_s=within_s, wait_s=1
        )

    async def depth(self, url: str) -> Depth:
        answer = await self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url(url),
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
        found = answer["Attributes"]
        hidden = int(found["ApproximateNumberOfMessagesNotVisible"]) + int(
            found["ApproximateNumberOfMessagesDelayed"]
        )
        return Depth(visible=int(found["ApproximateNumberOfMessages"]), hidden=hidden)

    @contextlib.asynccontextmanager
    async def outage(self, url: str) -> AsyncIterator[None]:
        """Cut the proxy every ``breakable`` queue is reached through."""
        assert f"127.0.0.1%3A{self.proxy.port}" in url, f"{url} was not made breakable"
        await self.proxy.cut()
        try:
            yield
        finally:
            await self.proxy.restore()
