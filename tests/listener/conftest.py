from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from modelbus.connectors import ConnectorContext, Delivery, OutMessage, make_sink, make_source
from modelbus.connectors.local import LocalOptions, SqliteQueue
from modelbus.connectors.memory import BROKER
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.lifecycle import ListenerRuntime, RuntimeOptions
from modelbus.listeners.metrics import Metrics
from modelbus.listeners.records import RunWriter
from modelbus.listeners.retry import RetryPolicy
from modelbus.store.database import Database
from modelbus.store.runs import RunStore
from modelbus.testing import FunctionInvoker

FAST = RuntimeOptions(
    receive_wait_s=0.2,
    op_timeout_s=5,
    publish_timeout_s=5,
    open_timeout_s=5,
    stop_deadline_s=5,
    reconnect=RetryPolicy(max_attempts=1000, initial_backoff_s=0.05, max_backoff_s=0.3, jitter=0),
)


async def eventually(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]], timeout_s: float = 10.0
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """The store as the server opens it: a migrated SQLite file."""
    database = await Database.open(f"sqlite:///{tmp_path / 'store.sqlite'}")
    await database.migrate()
    yield database.engine
    await database.close()


@pytest.fixture
async def runs(engine: AsyncEngine) -> AsyncIterator[RunStore]:
    store = RunStore(engine)
    yield store
    await store.close()


@dataclass
class Env:
    """One broker kind (memory or local) plus everything a listener needs."""

    kind: str
    data_dir: Path
    runs: RunStore
    writer: RunWriter = field(init=False)
    invoker: FunctionInvoker = field(default_factory=FunctionInvoker)
    metrics: Metrics = field(default_factory=lambda: Metrics(CollectorRegistry()))
    started: list[ListenerRuntime] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.writer = RunWriter(self.runs)

    @property
    def ctx(self) -> ConnectorContext:
        return ConnectorContext(listener="test-harness", data_dir=self.data_dir)

    def url(self, role: str, **options: object) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        if self.kind == "local":
            query = "&".join(filter(None, [query, "poll_ms=20"]))
        name = f"{role}-{uuid.uuid4().hex[:10]}"
        return f"{self.kind}://{name}" + (f"?{query}" if query else "")

    def definition(self, **fields: Any) -> ListenerDefinition:
        fields.setdefault("name", f"l-{uuid.uuid4().hex[:8]}")
        fields.setdefault("model", "acme/echo@1.*")
        return ListenerDefinition(**fields)

    async def start(
        self, definition: ListenerDefinition, options: RuntimeOptions = FAST
    ) -> ListenerRuntime:
        listener = ListenerRuntime(
            definition,
            invoker=self.invoker,
            runs=self.writer,
            metrics=self.metrics.listener(definition.name),
            data_dir=self.data_dir,
            options=options,
        )
        await listener.start()
        self.started.append(listener)
        return listener

    async def publish(
        self,
        url: str,
        body: bytes,
        *,
        attributes: Mapping[str, str] | None = None,
        id: str | None = None,
    ) -> str:
        message_id = id or f"in-{uuid.uuid4().hex}"
        sink = make_sink(url.split("?")[0], self.ctx)
        await sink.open()
        try:
            await sink.publish([OutMessage(id=message_id, body=body, attributes=attributes or {})])
        finally:
            await sink.close()
        return message_id

    async def collect(self, url: str, count: int, timeout_s: float = 10.0) -> list[Delivery]:
        """Receive and ack ``count`` messages from ``url`` (fails if fewer arrive)."""
        source = make_source(url, self.ctx)
        await source.open()
        got: list[Delivery] = []
        try:
            deadline = time.monotonic() + timeout_s
            while len(got) < count and time.monotonic() < deadline:
                batch = await source.receive(count - len(got), 0.2)
                await source.ack(batch) if batch else None
                got += batch
        finally:
            await source.close()
        assert len(got) == count, f"expected {count} messages on {url}, got {len(got)}"
        return got

    async def counts(self, url: str) -> tuple[int, int]:
        """(messages in the queue, of which leased or delayed) right now."""
        if self.kind == "memory":
            return BROKER.queue(url.split("://")[1].split("?")[0]).counts()
        queue = SqliteQueue(LocalOptions.from_url(url).path(self.data_dir))
        await queue.open()
        try:
            return await queue.counts()
        finally:
            await queue.close()


@pytest.fixture(params=["memory", "local"])
def queue_kind(request: pytest.FixtureRequest) -> str:
    """Which queues the test's listeners use; a module overrides it to pin one."""
    return str(request.param)


@pytest.fixture
async def env(queue_kind: str, tmp_path: Path, runs: RunStore) -> AsyncIterator[Env]:
    environment = Env(kind=queue_kind, data_dir=tmp_path / "data", runs=runs)
    yield environment
    for listener in environment.started:
        await listener.stop(deadline_s=1)
