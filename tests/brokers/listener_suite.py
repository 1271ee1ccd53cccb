"""The listener runtime over a broker process of the test's own (written once; a broker's
test module subclasses it). The runtime's outcomes over every broker (success, retry, dead
letter) are tests/connectors/test_listener_over_kits.py, which uses :class:`Harness` too.

    class TestRedisListener(ListenerOverBroker):
        def private_server(self, directory: Path) -> BrokerServer: ...  # unstarted, own data
        def private_url(self, server: BrokerServer, role: str) -> str: ...  # lease_s=1

The broker unreachable when the listener starts: degraded, then it starts working when the
broker comes up. The broker killed and restarted mid-run: the listener resumes and every
message gets its result.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from modelbus.connectors import (
    ConnectorContext,
    Delivery,
    OutMessage,
    Source,
    make_sink,
    make_source,
)
from modelbus.errors import ConnectorError
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.lifecycle import ListenerRuntime, RuntimeOptions
from modelbus.listeners.metrics import Metrics
from modelbus.listeners.records import RunWriter
from modelbus.listeners.retry import RetryPolicy
from modelbus.store.database import Database
from modelbus.store.runs import RunStore
from modelbus.testing import FunctionInvoker

from .servers import BrokerServer

FAST = RuntimeOptions(
    receive_wait_s=0.2,
    op_timeout_s=5,
    publish_timeout_s=5,
    open_timeout_s=5,
    stop_deadline_s=5,
    reconnect=RetryPolicy(max_attempts=1000, initial_backoff_s=0.05, max_backoff_s=0.3, jitter=0),
)


class ListenerOverBroker:
    """Subclass with ``private_server`` and ``private_url``."""

    def private_server(self, directory: Path) -> BrokerServer:
        """An unstarted broker process of the test's own, keeping its data over restarts."""
        raise NotImplementedError

    def private_url(self, server: BrokerServer, role: str) -> str:
        """A queue (``lease_s=1``) on ``server``, created by whichever end opens first."""
        raise NotImplementedError

    @pytest.fixture
    async def harness(self, tmp_path: Path) -> AsyncIterator[Harness]:
        async with opened_harness(tmp_path) as harness:
            yield harness

    async def test_a_broker_down_at_start_degrades_then_the_listener_starts(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        harness.invoker.register("acme/echo", lambda v: v)
        server = self.private_server(tmp_path / "broker")
        source, out = self.private_url(server, "in"), self.private_url(server, "out")
        try:
            listener = await harness.start(source=source, outputs=[out], model="acme/echo")
            await listener.wait_for_state("degraded")
            assert "source" in listener.status().problems
            server.start()
            await listener.wait_for_state("running", timeout_s=20)
            await harness.publish(source, b'{"n": 1}', peek=False)
            (result,) = await harness.collect(out, 1)
            assert json.loads(result.body)["data"] == {"n": 1}
            await listener.stop(deadline_s=1)
            harness.started.remove(listener)
        finally:
            server.kill()

    async def test_the_listener_resumes_after_a_broker_restart_and_loses_nothing(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        harness.invoker.register("acme/echo", lambda v: v)
        server = self.private_server(tmp_path / "broker")
        server.start()
        source, out = self.private_url(server, "in"), self.private_url(server, "out")
        try:
            listener = await harness.start(source=source, outputs=[out], model="acme/echo")
            await listener.wait_for_state("running")
            await harness.publish_many(source, range(0, 20))
            await harness.eventually(lambda: listener.status().counters["succeeded"] >= 5)
            server.kill()  # mid-run: some done, some in flight, some waiting
            await listener.wait_for_state("degraded", timeout_s=20)
            server.start()
            await harness.publish_many(source, range(20, 40))
            results = await harness.collect_until(out, {n: True for n in range(40)})
        finally:
            server.kill()
        assert sorted(results) == list(range(40))


@asynccontextmanager
async def opened_harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """A :class:`Harness` on a fresh SQLite run store; its listeners stopped at the end."""
    database = await Database.open(f"sqlite:///{tmp_path / 'store.sqlite'}")
    await database.migrate()
    runs = RunStore(database.engine)
    harness = Harness(runs=runs, data_dir=tmp_path / "data")
    try:
        yield harness
    finally:
        for listener in harness.started:
            await listener.stop(deadline_s=1)
        await runs.close()
        await database.close()


async def read_acked(
    source: Source, count: int, *, timeout_s: float, what: str = "the source"
) -> list[Delivery]:
    """Receive and ack exactly ``count`` messages of an opened ``source``, or fail."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        batch = await source.receive(count - len(got), 0.3)
        if batch:
            await source.ack(batch)
        got += batch
    assert len(got) == count, f"expected {count} messages on {what}, got {len(got)}"
    return got


async def _open_retrying(source: Any, deadline: float) -> None:
    while True:
        try:
            return await source.open()
        except ConnectorError:
            assert time.monotonic() < deadline, "the broker did not come back"
            await asyncio.sleep(0.2)


class Harness:
    """A listener runtime's surroundings: run store, invoker, metrics, a data directory."""

    def __init__(self, *, runs: RunStore, data_dir: Path) -> None:
        self.runs = runs
        self.writer = RunWriter(runs)
        self.data_dir = data_dir
        self.invoker = FunctionInvoker()
        self.metrics = Metrics(CollectorRegistry())
        self.started: list[ListenerRuntime] = []
        self.ctx = ConnectorContext(listener="harness", data_dir=data_dir)

    async def start(self, **fields: Any) -> ListenerRuntime:
        definition = ListenerDefinition(name=f"l-{uuid.uuid4().hex[:8]}", **fields)
        listener = ListenerRuntime(
            definition,
            invoker=self.invoker,
            runs=self.writer,
            metrics=self.metrics.listener(definition.name),
            data_dir=self.data_dir,
            options=FAST,
        )
        await listener.start()
        self.started.append(listener)
        return listener

    async def publish(
        self,
        url: str,
        body: bytes,
        *,
        attributes: dict[str, str] | None = None,
        peek: bool = True,
    ) -> str:
        """Publish one message; returns the source message id the runtime will see (read
        back by a consumer of its own) unless ``peek`` is off."""
        message = OutMessage(id=uuid.uuid4().hex, body=body, attributes=attributes or {})
        await self._publish(url, [message])
        return await self._peek_id(url) if peek else ""

    async def publish_many(self, url: str, numbers: range) -> None:
        """``{"n": N}`` for every N, retrying while the broker is coming back."""
        batch = [OutMessage(id=f"n{n}", body=json.dumps({"n": n}).encode()) for n in numbers]
        deadline = time.monotonic() + 30
        while True:
            try:
                return await self._publish(url, batch)
            except ConnectorError:
                assert time.monotonic() < deadline, "the broker did not come back"
                await asyncio.sleep(0.2)

    async def _publish(self, url: str, messages: list[OutMessage]) -> None:
        sink = make_sink(url, self.ctx)
        await sink.open()
        try:
            await sink.publish(messages)
        finally:
            await sink.close()

    async def collect_until(
        self, url: str, wanted: dict[int, bool], *, timeout_s: float = 60.0
    ) -> set[int]:
        """The ``data.n`` of results on ``url`` until every wanted one came (duplicates, which
        a restart may cause, count once)."""
        source = make_source(url, ConnectorContext(listener="collector", data_dir=self.data_dir))
        seen: set[int] = set()
        deadline = time.monotonic() + timeout_s
        await _open_retrying(source, deadline)
        try:
            while not set(wanted) <= seen and time.monotonic() < deadline:
                try:
                    batch = await source.receive(10, 0.3)
                    await source.ack(batch)
                except ConnectorError:
                    await asyncio.sleep(0.2)
                    continue
                seen |= {json.loads(d.body)["data"]["n"] for d in batch}
        finally:
            await source.close()
        return seen

    async def _peek_id(self, url: str) -> str:
        # The broker assigns the message id (stream entry id / sequence): read it back
        # through a consumer of our own, which leaves the listener's copy untouched.
        (delivery,) = await self.collect(url, 1, listener="peek")
        return delivery.message_id

    async def collect(
        self, url: str, count: int, *, timeout_s: float = 15.0, listener: str = "collector"
    ) -> list[Delivery]:
        """Receive and ack ``count`` messages of ``url`` as a listener of its own."""
        source = make_source(url, ConnectorContext(listener=listener, data_dir=self.data_dir))
        await source.open()
        try:
            return await read_acked(source, count, timeout_s=timeout_s, what=url)
        finally:
            await source.close()

    async def eventually(self, check: Any, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.02)

    async def assert_settled(self, url: str, listener: ListenerRuntime) -> None:
        """Stop the listener; a consumer of its own then finds nothing left on ``url`` for
        longer than a lease (queue URLs are made with ``lease_s=1``)."""
        await listener.stop(deadline_s=1)
        self.started.remove(listener)
        ctx = ConnectorContext(listener=listener.name, data_dir=self.data_dir)
        source = make_source(url, ctx)
        await source.open()
        try:
            leftovers = await source.receive(10, 2.0)
        finally:
            await source.close()
        assert leftovers == []
