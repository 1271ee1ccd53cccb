"""The RabbitMQ connector against the real server on 127.0.0.1:5672: every verb, as the
connector contract (connectors/base.py) defines it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from modelbus.connectors import ConnectorContext, OutMessage, make_sink, make_source
from modelbus.connectors.amqp import AmqpSettings, AmqpSink, AmqpSource, delay_bucket_ms
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError

from ..helpers import (
    ConsumerProcess,
    drain,
    free_port,
    messages,
    n_of,
    nothing_within,
    receive_until,
    unique,
)
from .conftest import PREFIX, PrivateRabbitMQ, amqp_url

QUEUE_TYPES = ["classic", "quorum"]


async def opened(url: str, ctx: ConnectorContext) -> tuple[AmqpSource, AmqpSink]:
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    assert isinstance(source, AmqpSource) and isinstance(sink, AmqpSink)
    await sink.open()
    await source.open()
    return source, sink


async def close(*ends: Any) -> None:
    for end in ends:
        await end.close()


# --- URLs -----------------------------------------------------------------------------------


def test_url_options_are_parsed() -> None:
    settings = AmqpSettings.from_url(
        "amqps://bob:p%40ss@rabbit.example:5999/prod%2Feu?queue=q&queue_type=quorum&prefetch=7"
    )
    assert (settings.host, settings.port, settings.tls) == ("rabbit.example", 5999, True)
    assert (settings.user, settings.password, settings.vhost) == ("bob", "p@ss", "prod/eu")
    assert (settings.queue, settings.queue_type, settings.prefetch) == ("q", "quorum", 7)
    default = AmqpSettings.from_url("amqp://localhost?exchange=events")
    assert (default.vhost, default.user, default.port, default.binding_key) == (
        "/",
        "guest",
        5672,
        "#",
    )


@pytest.mark.parametrize(
    "url",
    [
        "amqp://localhost/?queue=q&colour=blue",
        "amqp://localhost/?queue=q&queue_type=stream",
        "amqp://localhost/?queue=q&prefetch=0",
        "amqp://localhost:notaport/?queue=q",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(DefinitionError):
        AmqpSettings.from_url(url)


def test_a_sink_needs_a_destination(ctx: ConnectorContext) -> None:
    with pytest.raises(DefinitionError, match="queue=NAME or exchange=NAME"):
        make_sink("amqp://localhost/", ctx)


@pytest.mark.parametrize(
    ("delay_s", "bucket_ms"),
    [(0, 0), (-1, 0), (0.0004, 1), (0.095, 95), (1.234, 1300), (15.678, 16000)],
)
def test_delays_round_up_to_two_significant_digits(delay_s: float, bucket_ms: int) -> None:
    assert delay_bucket_ms(delay_s) == bucket_ms


# --- receiving and settling -----------------------------------------------------------------


@pytest.mark.parametrize("queue_type", QUEUE_TYPES)
async def test_published_messages_arrive_with_body_id_and_attributes(
    rabbitmq: None, ctx: ConnectorContext, queue_name: str, queue_type: str
) -> None:
    url = amqp_url(queue=queue_name, create=True, queue_type=queue_type)
    source, sink = await opened(url, ctx)
    try:
        sent = messages(3)
        await sink.publish(sent)
        got = await receive_until(source, 3)
        assert [d.message_id for d in got] == [m.id for m in sent]
        assert [d.body for d in got] == [m.body for m in sent]
        for delivery in got:
            assert delivery.attributes["n"] == str(n_of(delivery))
            assert delivery.attributes["amqp-routing-key"] == queue_name
            assert delivery.attempt == 1
            assert delivery.enqueued_at is not None and abs(delivery.enqueued_at - time.time()) < 60
        assert source.lease_s is None
        await source.ack(got)
        await source.ack(got)  # idempotent
    finally:
        await close(source, sink)
    # Acked for good: a new consumer of the queue gets nothing.
    again = make_source(url, ctx)
    await again.open()
    try:
        assert await nothing_within(again, 0.5)
    finally:
        await again.close()


async def test_unacked_deliveries_return_when_the_source_closes(
    rabbitmq: None, ctx: ConnectorContext, queue_name: str
) -> None:
    url = amqp_url(queue=queue_name, create=True)
    source, sink = await opened(url, ctx)
    await sink.publish(messages(2))
    got = await receive_until(source, 2)
    await source.ack(got[:1])
    await source.close()
    await source.open()
    try:
        (again,) = await receive_until(source, 1)
        assert (again.message_id, again.attempt) == (got[1].message_id, 2)
        await source.ack([got[1]])  # from the closed connection: skipped, not an error
        await source.ack([again])
        assert await nothing_within(source, 0.5)
    finally:
        await close(source, sink)


async def test_extend_is_a_no_op_because_rabbitmq_holds_deliveries_until_ack(
    rabbitmq: None, ctx: ConnectorContext, queue_name: str
) -> None:
    url = amqp_url(queue=queue_name, create=True)
    source, sink = await opened(url, ctx)
    other = make_source(url, ctx)
    await other.open()
    try:
        await sink.publish(messages(1))
        (held,) = await receive_until(source, 1)
        await source.extend([held], 1.0)
        assert await nothing_within(other, 1.5)  # nobody else gets it meanwhile
        await source.ack([held])
    finally:
        await close(other, source, sink)


# --- release --------------------------------------------------------------------------------


@pytest.mark.parametrize("queue_type", QUEUE_TYPES)
async def test_release_with_delay_hides_then_redelivers_with_the_next_attempt(
    rabbitmq: None, ctx: ConnectorContext, queue_name: str, queue_type: str
) -> None:
    url = amqp_url(queue=queue_name, create=True, queue_type=queue_type)
    source, sink = await opened(url, ctx)
    try:
        await sink.publish(
            [OutMessage(id="keep-me", body=b"\x00\xffbinary", attributes={"k": "v"})]
        )
        (first,) = await receive_until(source, 1)
        released_at = time.monotonic()
        await source.release(first, 1.5)
        assert await nothing_within(source, 1.2)
        (again,) = await receive_until(source, 1, timeout_s=10)
        assert time.monotonic() - released_at >= 1.5
        assert (again.message_id, again.body, again.attempt) == ("keep-me", first.body, 2)
        assert again.attributes["k"] == "v"
        await source.release(again, 0.2)
        (third,) = await receive_until(source, 1, timeout_s=10)
        assert (third.message_id, third.attempt) == ("keep-me", 3)
        await source.ack([third])
        assert await nothing_within(source, 0.5)
    finally:
        await close(source, sink)


async def test_release_without_delay_redelivers_at_once(
    rabbitmq: None, ctx: ConnectorContext, queue_name: str
) -> None:
    source, sink = await opened(amqp_url(queue=queue_name, create=True), ctx)
    try:
        await sink.publish(messages(1))
        (first,) = await receive_until(source, 1)
        await source.release(first, 0)
        (again,) = await receive_until(source, 1, timeout_s=3)
        assert (again.message_id, again.attempt) == (first.message_id, 2)
        await source.ack([again])
    finally:
        await close(source, sink)


async def test_a_released_message_comes_back_to_another_replica(
    rabbitmq: None, ctx: ConnectorContext, queue_name: str
) -> None:
    url = amqp_url(queue=queue_name, create=True)
    source, sink = await opened(url, ctx)
    await sink.publish(messages(1))
    (first,) = await receive_until(source, 1)
    await source.release(first, 0.5)
    await source.close()  # this replica goes away; the delayed copy is RabbitMQ's
    other = make_source(url, ctx)
    await other.open()
    try:
        (again,) = await receive_until(other, 1, timeout_s=10)
        assert (again.message_id, again.attempt) == (first.message_id, 2)
        await other.ack([again])
    finally:
        await close(other, sink)


# --- redelivery, batches, order, size ---------------------------------------------------------


@pytest.mark.parametrize("queue_type", QUEUE_TYPES)
async def test_deliveries_of_a_killed_consumer_are_redelivered(
    rabbitmq: None, ctx: ConnectorContext, queue_name: str, queue_type: str
) -> None:
    url = amqp_url(queue=queue_name, create=True, queue_type=queue_type)
    source, sink = await opened(url, ctx)
    holder = ConsumerProcess("hold", url, ctx.listener, str(ctx.data_dir), "3")
    try:
        await sink.publish(messages(3))
        await holder.start()
        assert await holder.line() == "ready"
        taken = json.loads(await holder.line())
        assert len(taken) == 3
        assert await nothing_within(source, 0.5)  # held by the other process
        await holder.kill()
        got = await receive_until(source, 3, timeout_s=10)
        assert sorted(d.message_id for d in got) == sorted(taken)
        assert all(d.attempt == 2 for d in got)
        await source.ack(got)
    finally:
        await holder.kill()
        await close(source, sink)


async def test_batch_receive_returns_several_and_never_more_than_asked(
    rabbitmq: None, ctx: ConnectorContext, queue_name: str
) -> None:
    source, sink = await opened(amqp_url(queue=queue_name, create=True), ctx)
    try:
        await sink.publish(messages(12))
        batches = []
        while sum(map(len, batches)) < 12:
            batch = await source.receive(5, 2.0)
            assert 0 < len(batch) <= 5
            batches.append(batch)
            await source.ack(batch)  # the prefetch (5, from the first call) holds no more
        assert sorted(n_of(d) for b in batches for d in b) == list(range(12))
        assert max(map(len, batches)) > 1
    finally:
        await close(source, sink)


async def test_one_consumer_receives_in_publish_order(
    rabbitmq: None, ctx: ConnectorContext, queue_name: str
) -> None:
    source, sink = await opened(amqp_url(queue=queue_name, create=True), ctx)
    try:
        await sink.publish(messages(50))
        got = await receive_until(source, 50)
        assert [n_of(d) for d in got] == list(range(50))
        await source.ack(got)
    finally:
        await close(source, sink)


async def test_a_one_mebibyte_message_round_trips(
    rabbitmq: None, ctx: ConnectorContext, queue_name: str
) -> None:
    body = os.urandom(1024 * 1024)
    source, sink = await opened(amqp_url(queue=queue_name, create=True), ctx)
    try:
        await sink.publish([OutMessage(id="big", body=body)])
        (got,) = await receive_until(source, 1)
        assert got.body == body
        await source.release(got, 0.1)  # the copy is intact too
        (again,) = await receive_until(source, 1)
        assert again.body == body and again.attempt == 2
        await source.ack([again])
    finally:
        await close(source, sink)


# --- several consumers ----------------------------------------------------------------------


async def test_competing_consumers_share_the_work_and_settle_each_message_once(
    rabbitmq: None, ctx: ConnectorContext, queue_name: str
) -> None:
    url = amqp_url(queue=queue_name, create=True)
    source, sink = await opened(url, ctx)
    other = ConsumerProcess("drain", url, ctx.listener, str(ctx.data_dir), "1.5")
    try:
        await other.start()
        assert await other.line() == "ready"
        await sink.publish(messages(40))
        mine = await drain(source, idle_s=1.5, work_s=0.01)
        lines = await other.output()
        assert lines[-1] == "done"
        theirs = lines[:-1][::2]
    finally:
        await other.kill()
        await close(source, sink)
    assert not set(mine) & set(theirs), "a message was settled by both consumers"
    assert len(mine) + len(theirs) == 40 == len(set(mine) | set(theirs))
    assert mine and theirs, "one consumer got all the work"


async def test_two_listeners_on_one_exchange_each_receive_every_message(
    rabbitmq: None, admin: Any, tmp_path: Path
) -> None:
    exchange = unique(PREFIX)
    await admin.declare_exchange(exchange, "topic", durable=True)
    contexts = [
        ConnectorContext(listener=unique(f"{PREFIX}-l"), data_dir=tmp_path) for _ in range(2)
    ]
    source_url = amqp_url(exchange=exchange, binding_key="orders.#")
    sources = [make_source(source_url, c) for c in contexts]
    sink = make_sink(amqp_url(exchange=exchange, routing_key="orders.created"), contexts[0])
    try:
        for end in [*sources, sink]:
            await end.open()
        await sink.publish(messages(5))
        for source in sources:
            got = await receive_until(source, 5)
            assert sorted(n_of(d) for d in got) == list(range(5))
            assert {d.attributes["amqp-routing-key"] for d in got} == {"orders.created"}
            await source.release(got[0], 0.1)  # a retry goes to this listener only
            (again,) = await receive_until(source, 1)
            assert again.attributes["amqp-routing-key"] == "orders.created"
            await source.ack([*got[1:], again])
        for source in sources:
            assert await nothing_within(source, 0.3)
    finally:
        await close(*sources, sink)
    await admin.exchange_delete(exchange)


async def test_an_unroutable_message_fails_the_publish(
    rabbitmq: None, admin: Any, ctx: ConnectorContext
) -> None:
    exchange = unique(PREFIX)
    await admin.declare_exchange(exchange, "topic", durable=True)
    sink = make_sink(amqp_url(exchange=exchange, routing_key="nobody.listens"), ctx)
    await sink.open()
    try:
        with pytest.raises(ConnectorError, match=ctx.listener):
            await sink.publish(messages(2))
    finally:
        await sink.close()
    relaxed = make_sink(amqp_url(exchange=exchange, routing_key="x", mandatory=False), ctx)
    await relaxed.open()
    await relaxed.publish(messages(1))  # accepted: dropping it was asked for
    await relaxed.close()
    await admin.exchange_delete(exchange)


# --- errors ---------------------------------------------------------------------------------


async def test_a_missing_queue_is_a_configuration_error_naming_the_listener(
    rabbitmq: None, ctx: ConnectorContext, queue_name: str
) -> None:
    for end in (
        make_source(amqp_url(queue=queue_name), ctx),
        make_sink(amqp_url(queue=queue_name), ctx),
    ):
        with pytest.raises(ConnectorConfigError, match=ctx.listener) as caught:
            await end.open()
        assert queue_name in str(caught.value)
        await end.close()


async def test_a_missing_exchange_is_a_configuration_error(
    rabbitmq: None, ctx: ConnectorContext
) -> None:
    source = make_source(amqp_url(exchange=unique(PREFIX)), ctx)
    with pytest.raises(ConnectorConfigError, match=ctx.listener):
        await source.open()


@pytest.mark.parametrize(
    ("user", "vhost"),
    [("guest:wrong-password", ""), ("nobody:nothing", ""), ("guest:guest", "no-such-vhost")],
)
async def test_refused_credentials_or_vhost_are_configuration_errors(
    rabbitmq: None, ctx: ConnectorContext, queue_name: str, user: str, vhost: str
) -> None:
    source = make_source(amqp_url(user=user, vhost=vhost, queue=queue_name), ctx)
    with pytest.raises(ConnectorConfigError, match=ctx.listener) as caught:
        await source.open()
    assert "wrong-password" not in str(caught.value)


async def test_an_unreachable_broker_is_a_transient_error(ctx: ConnectorContext) -> None:
    source = make_source(amqp_url(port=free_port(), queue="q", timeout_s=2), ctx)
    with pytest.raises(ConnectorError, match=ctx.listener) as caught:
        await source.open()
    assert not caught.value.permanent


# --- connections closed by the server --------------------------------------------------------


def _close_connections_named(name: str) -> int:
    """Close (from the server side) the connections whose connection_name is ``name``; only
    this test's own connections, never the other helpers'."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    pids = [line.split("\t")[0] for line in listing.splitlines() if f'"{name}"' in line]
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "-q", "close_connection", pid, "test"], timeout=60, check=True
        )
    return len(pids)


async def test_a_connection_closed_by_the_server_fails_loudly_and_loses_nothing(
    rabbitmq: None, ctx: ConnectorContext, queue_name: str
) -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed")
    url = amqp_url(queue=queue_name, create=True)
    source, sink = await opened(url, ctx)
    try:
        sent = messages(4)
        all_ids = {m.id for m in sent}
        await sink.publish(sent)
        held = await receive_until(source, 2)
        await source.ack(held[:1])
        closing = asyncio.to_thread(_close_connections_named, f"modelbus {ctx.listener} source")
        assert await closing == 1
        with pytest.raises(ConnectorError, match=ctx.listener):
            for _ in range(20):  # what was buffered before the close may still come out
                await source.receive(10, 1.0)
        await source.ack(held[1:])  # stale: skipped, not an error
        await source.release(held[1], 5)  # stale: RabbitMQ requeued it already
        await source.open()
        got = await receive_until(source, 3)
        assert len(got) == 3
        assert {d.message_id for d in got} | {held[0].message_id} == all_ids
        assert [d.attempt for d in got if d.message_id == held[1].message_id] == [2]
        await source.ack(got)
        assert await nothing_within(source, 0.5)
        assert await closing_sink_then_reopen(sink, ctx)
    finally:
        await close(source, sink)


async def closing_sink_then_reopen(sink: AmqpSink, ctx: ConnectorContext) -> bool:
    assert await asyncio.to_thread(_close_connections_named, f"modelbus {ctx.listener} sink") == 1
    await asyncio.sleep(0.2)
    with pytest.raises(ConnectorError, match=ctx.listener):
        await sink.publish(messages(1))
    await sink.open()
    await sink.publish(messages(1))
    return True


# --- the broker restarted mid-run -------------------------------------------------------------


async def test_a_broker_restart_mid_run_loses_nothing(
    private_rabbitmq: PrivateRabbitMQ, ctx: ConnectorContext, queue_name: str
) -> None:
    broker = private_rabbitmq
    url = amqp_url(port=broker.port, queue=queue_name, create=True, timeout_s=3)
    sent = messages(300)
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    await sink.open()
    await source.open()
    seen: set[str] = set()
    consuming = asyncio.create_task(_consume_like_the_runtime(source, seen, len(sent)))
    try:
        await _publish_like_the_runtime(sink, sent[:150])
        await asyncio.sleep(0.2)
        await broker.stop()  # mid-run, with deliveries in flight and messages queued
        await broker.start()
        await _publish_like_the_runtime(sink, sent[150:])
        await asyncio.wait_for(consuming, 90)
    finally:
        consuming.cancel()
        await close(source, sink)
    assert seen == {m.id for m in sent}


async def _publish_like_the_runtime(sink: AmqpSink, sent: list[OutMessage]) -> None:
    """Publish in batches of 10; a failed batch is published again after reopening."""
    for start in range(0, len(sent), 10):
        while True:
            try:
                await sink.publish(sent[start : start + 10])
                break
            except ConnectorError:
                await asyncio.sleep(0.3)
                await _reopen(sink)


async def _consume_like_the_runtime(source: AmqpSource, seen: set[str], total: int) -> None:
    """Receive and ack; on a ConnectorError close and reopen (with a pause), as the
    listener runtime does. Returns once every id was seen."""
    while len(seen) < total:
        try:
            got = await source.receive(20, 0.5)
            await source.ack(got)
            seen.update(d.message_id for d in got)
        except ConnectorError:
            await asyncio.sleep(0.3)
            await _reopen(source)


async def _reopen(end: AmqpSource | AmqpSink) -> None:
    await end.close()
    with contextlib.suppress(ConnectorError):  # still down: the next call comes back here
        await end.open()
