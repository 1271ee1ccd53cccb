"""The connector contract (connectors/base.py), written once, run against every broker kit.

Each test takes a fresh queue from the kit; ``kit.capabilities`` says what the broker
promises (ordering, message size, a consumer in another process).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from modelbus.connectors import Delivery, OutMessage, Sink, Source, make_sink, make_source

from .consumer_process import joined
from .kits import BrokerKit, QueueUrls

CONSUMER = Path(__file__).with_name("consumer_process.py")


@asynccontextmanager
async def opened_queue(
    kit: BrokerKit, *, lease_s: float | None = None
) -> AsyncIterator[tuple[Source, Sink, QueueUrls]]:
    lease = max(lease_s or 1.0, kit.capabilities.min_lease_s)
    urls = await kit.new_queue(lease_s=lease)
    source = make_source(urls.source_url, kit.ctx)
    sink = make_sink(urls.sink_url, kit.ctx)
    await sink.open()
    await source.open()
    try:
        yield source, sink, urls
    finally:
        await source.close()
        await sink.close()


def messages(count: int, prefix: str = "m") -> list[OutMessage]:
    return [
        OutMessage(
            id=f"{prefix}-{i}-{time.time_ns()}",
            body=json.dumps({"n": i}).encode(),
            attributes={"n": str(i)},
        )
        for i in range(count)
    ]


async def receive_until(source: Source, count: int, timeout_s: float = 10.0) -> list[Delivery]:
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += await source.receive(count - len(got), 0.5)
    return got


async def nothing_within(source: Source, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await source.receive(10, min(0.3, max(0.0, deadline - time.monotonic()))):
            return False
    return True


def n_of(delivery: Delivery) -> int:
    return int(json.loads(delivery.body)["n"])


async def backlog_becomes(source: Source, wanted: int, timeout_s: float = 15.0) -> int | None:
    """The backlog once it reads ``wanted``, else the last reading after ``timeout_s``
    (SQS's figure is approximate and a little late)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await source.backlog()
        if value == wanted or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(0.2)


async def test_backlog_counts_the_messages_waiting(kit: BrokerKit) -> None:
    async with opened_queue(kit, lease_s=30.0) as (source, sink, _):
        if not kit.capabilities.counts_backlog:
            await sink.publish(messages(2))
            assert await source.backlog() is None
            return
        assert await backlog_becomes(source, 0) == 0
        # One publish each: tansu (the Kafka broker here) answers ListOffsets for a batch of
        # records with the batch's first offset + 1, so a batch would read as one record.
        for message in messages(5):
            await sink.publish([message])
        assert await backlog_becomes(source, 5) == 5
        got = await receive_until(source, 2)
        assert len(got) == 2
        await source.ack(got)
        left = await backlog_becomes(source, 3)
        if kit.capabilities.pushes_ahead:  # the prefetch window took some more already
            assert left is not None and left <= 3
        else:
            assert left == 3
        rest = await receive_until(source, 3)
        await source.ack(rest)
        assert await backlog_becomes(source, 0) == 0


async def test_published_messages_arrive_once_with_body_and_attributes(kit: BrokerKit) -> None:
    async with opened_queue(kit) as (source, sink, _):
        sent = messages(3)
        await sink.publish(sent)
        got = await receive_until(source, 3)
        assert sorted(n_of(d) for d in got) == [0, 1, 2]
        for delivery in got:
            assert dict(delivery.attributes).get("n") == str(n_of(delivery))
            assert delivery.attempt == 1
        assert len({d.message_id for d in got}) == 3
        await source.ack(got)
        assert await nothing_within(source, 0.5)


async def test_acked_message_is_not_redelivered_after_its_lease(kit: BrokerKit) -> None:
    async with opened_queue(kit, lease_s=1.0) as (source, sink, _):
        await sink.publish(messages(2))
        got = await receive_until(source, 2)
        await source.ack(got[:1])
        if not kit.capabilities.leases:
            # Held, not leased: the unsettled one stays with us however long we keep it.
            assert await nothing_within(source, 2.0)
            await source.ack(got[1:])
            assert await nothing_within(source, 1.0)
            return
        await asyncio.sleep(source.lease_s or 1.0)
        again = await receive_until(source, 1, timeout_s=3)
        assert [d.message_id for d in again] == [got[1].message_id]
        assert again[0].attempt == 2
        await source.ack(again)
        assert await nothing_within(source, (source.lease_s or 1.0) + 0.5)


async def test_release_with_delay_hides_then_redelivers_with_next_attempt(kit: BrokerKit) -> None:
    async with opened_queue(kit, lease_s=5.0) as (source, sink, _):
        await sink.publish(messages(1))
        (first,) = await receive_until(source, 1)
        await source.release(first, 1.5)
        assert await nothing_within(source, 0.8)
        (again,) = await receive_until(source, 1, timeout_s=5)
        assert again.message_id == first.message_id
        assert again.body == first.body
        assert again.attempt == first.attempt + 1
        await source.ack([again])


async def test_release_without_delay_redelivers_at_once(kit: BrokerKit) -> None:
    async with opened_queue(kit, lease_s=30.0) as (source, sink, _):
        await sink.publish(messages(1))
        (first,) = await receive_until(source, 1)
        await source.release(first, 0)
        (again,) = await receive_until(source, 1, timeout_s=3)
        assert again.message_id == first.message_id
        assert again.attempt == 2
        await source.ack([again])


async def test_lease_expiry_redelivers_with_next_attempt(kit: BrokerKit) -> None:
    async with opened_queue(kit, lease_s=1.0) as (source, sink, _):
        if not kit.capabilities.leases:
            assert source.lease_s is None, "a broker without leases reports lease_s None"
            await sink.publish(messages(1))
            (first,) = await receive_until(source, 1)
            assert await nothing_within(source, 2.5)  # held: never handed out twice
            await source.ack([first])
            return
        await sink.publish(messages(1))
        (first,) = await receive_until(source, 1)
        assert await nothing_within(source, (source.lease_s or 1.0) * 0.5)
        (again,) = await receive_until(source, 1, timeout_s=5)
        assert (again.message_id, again.attempt) == (first.message_id, 2)
        # Acking the stale first delivery is not an error, and does not disturb the new one.
        await source.ack([first])
        await source.ack([again])
        assert await nothing_within(source, (source.lease_s or 1.0) + 0.5)


async def test_extend_keeps_a_delivery_hidden(kit: BrokerKit) -> None:
    async with opened_queue(kit, lease_s=1.0) as (source, sink, _):
        lease_s = source.lease_s or 1.0
        await sink.publish(messages(1))
        (first,) = await receive_until(source, 1)
        await asyncio.sleep(lease_s / 2)
        await source.extend([first], lease_s * 3)  # accepted by every broker
        assert await nothing_within(source, lease_s * 1.5)
        if not kit.capabilities.leases:
            # Nothing to extend: still held after the would-be lease, settled by the ack.
            assert await nothing_within(source, lease_s * 1.5)
            await source.ack([first])
            assert await nothing_within(source, 0.5)
            return
        (again,) = await receive_until(source, 1, timeout_s=lease_s * 3 + 3)
        assert again.message_id == first.message_id
        await source.ack([again])


async def test_batch_receive_returns_several_and_never_more_than_asked(kit: BrokerKit) -> None:
    async with opened_queue(kit, lease_s=30.0) as (source, sink, _):
        await sink.publish(messages(8))
        await asyncio.sleep(0.2)
        batches: list[list[Delivery]] = []
        deadline = time.monotonic() + 10
        while sum(len(b) for b in batches) < 8 and time.monotonic() < deadline:
            batch = await source.receive(5, 0.5)
            assert len(batch) <= 5
            if batch:
                batches.append(batch)
                # Settled as they come, as the runtime does: a broker with flow control
                # (RabbitMQ's prefetch) hands a consumer no more than it asked to hold.
                await source.ack(batch)
        assert sorted(n_of(d) for b in batches for d in b) == list(range(8))
        assert max(len(b) for b in batches) > 1


async def test_fifo_order_where_promised(kit: BrokerKit) -> None:
    if not kit.capabilities.fifo:
        pytest.skip(f"{kit.name} does not promise ordering")
    async with opened_queue(kit, lease_s=30.0) as (source, sink, _):
        await sink.publish(messages(20))
        got = await receive_until(source, 20)
        assert [n_of(d) for d in got] == list(range(20))
        await source.ack(got)


async def test_large_message_round_trips_intact(kit: BrokerKit) -> None:
    size = min(1024 * 1024, kit.capabilities.max_message_bytes)
    body = os.urandom(size // 2).hex().encode()[:size]
    async with opened_queue(kit, lease_s=30.0) as (source, sink, _):
        await sink.publish([OutMessage(id=f"big-{time.time_ns()}", body=body)])
        (got,) = await receive_until(source, 1)
        assert got.body == body
        await source.ack([got])


async def test_each_listener_gets_every_message_where_the_broker_fans_out(kit: BrokerKit) -> None:
    if not kit.capabilities.fan_out:
        pytest.skip(f"{kit.name} is a queue: its consumers compete")
    async with opened_queue(kit, lease_s=30.0) as (source, sink, urls):
        other_ctx = replace(kit.ctx, listener=f"{kit.ctx.listener}-other")
        other = make_source(urls.source_url, other_ctx)
        await other.open()
        try:
            await sink.publish(messages(5))
            mine, theirs = await receive_until(source, 5), await receive_until(other, 5)
            assert (
                sorted(n_of(d) for d in mine) == sorted(n_of(d) for d in theirs) == list(range(5))
            )
            await source.ack(mine)
            await other.ack(theirs)
        finally:
            await other.close()


async def test_unacked_deliveries_of_a_dead_consumer_are_redelivered(kit: BrokerKit) -> None:
    """A consumer takes three deliveries and dies without settling them; a consumer started
    afterwards gets all three. It is a fresh source of the same listener, which is what
    resumes the dead one's work whatever the broker: a lease expires (SQS, Redis, NATS,
    PostgreSQL, local), the connection's unacked messages return (RabbitMQ), the group
    hands the dead member's partitions over (Kafka), the session resumes (MQTT)."""
    capabilities = kit.capabilities
    urls = await kit.new_queue(lease_s=max(1.0, capabilities.min_lease_s))
    sink = make_sink(urls.sink_url, kit.ctx)
    await sink.open()
    try:
        if capabilities.cross_process:
            taken = await _held_by_killed_process(kit, urls, sink, 3)
        else:
            abandoned = make_source(urls.source_url, kit.ctx)  # never acks, never closes
            await abandoned.open()
            await sink.publish(messages(3))
            taken = [d.message_id for d in await receive_until(abandoned, 3)]
        assert len(taken) == 3
        source = make_source(urls.source_url, kit.ctx)
        await source.open()
        try:
            got = await receive_until(source, 3, timeout_s=(source.lease_s or 1.0) + 15)
            assert sorted(d.message_id for d in got) == sorted(taken)
            assert all(d.attempt >= (2 if capabilities.counts_redeliveries else 1) for d in got)
            await source.ack(got)
            assert await nothing_within(source, 0.5)
        finally:
            await source.close()
    finally:
        await sink.close()


async def _held_by_killed_process(
    kit: BrokerKit, urls: QueueUrls, sink: Sink, count: int
) -> list[str]:
    """Start a consumer process, publish ``count`` messages once it is subscribed, wait
    until it holds them all, then SIGKILL it; the ids it held."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CONSUMER),
        "hold",
        urls.source_url,
        str(kit.data_dir),
        kit.ctx.listener,
        str(count),
        stdout=subprocess.PIPE,
        env=kit.subprocess_env(),
    )
    try:
        assert process.stdout is not None
        ready = await asyncio.wait_for(process.stdout.readline(), 60)
        assert ready.strip() == b"ready"
        await sink.publish(messages(count))
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        taken: list[str] = json.loads(line)
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    return taken


async def test_competing_consumers_share_work_and_settle_each_message_once(
    kit: BrokerKit,
) -> None:
    total = 30
    async with opened_queue(kit, lease_s=30.0) as (source, sink, urls):
        other = _OtherConsumer(kit, urls)
        await other.start()  # "ready" once it owns partitions, where the broker has groups
        try:
            await joined(source)
            await sink.publish(messages(total))
            mine = await _drain(source, work_s=0.01, idle_s=1.5)
            theirs = await other.finish()
        finally:
            await other.kill()
        assert not set(mine) & set(theirs), "a message was settled by both consumers"
        assert len(mine) == len(set(mine)) and len(theirs) == len(set(theirs))
        assert len(mine) + len(theirs) == total
        assert mine and theirs, "one consumer got all the work"


async def _drain(source: Source, *, work_s: float, idle_s: float) -> list[str]:
    done: list[str] = []
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < idle_s:
        for delivery in await source.receive(1, 0.2):
            await asyncio.sleep(work_s)
            await source.ack([delivery])
            done.append(delivery.message_id)
            idle_since = time.monotonic()
    return done


class _OtherConsumer:
    """A second consumer: another OS process where the broker allows it, else a task."""

    def __init__(self, kit: BrokerKit, urls: QueueUrls) -> None:
        self._kit, self._urls = kit, urls
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[list[str]] | None = None

    async def start(self) -> None:
        if not self._kit.capabilities.cross_process:
            source = make_source(self._urls.source_url, self._kit.ctx)
            await source.open()
            self._task = asyncio.create_task(self._in_process(source))
            return
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CONSUMER),
            "drain",
            self._urls.source_url,
            str(self._kit.data_dir),
            self._kit.ctx.listener,
            "10",
            "1.5",
            stdout=subprocess.PIPE,
            env=self._kit.subprocess_env(),
        )
        assert self._process.stdout is not None
        ready = await asyncio.wait_for(self._process.stdout.readline(), 60)
        assert ready.strip() == b"ready"

    async def _in_process(self, source: Source) -> list[str]:
        try:
            return await _drain(source, work_s=0.01, idle_s=1.5)
        finally:
            await source.close()

    async def finish(self) -> list[str]:
        if self._task is not None:
            return await self._task
        assert self._process is not None and self._process.stdout is not None
        output, _ = await asyncio.wait_for(self._process.communicate(), 60)
        lines = output.decode().split()
        assert lines[-1] == "done"
        return lines[:-1]

    async def kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
