"""The KEDA triggers of ``modelbus deploy keda`` against real brokers: a listener's source is
opened (so its group, durable consumer or queue exists as the connector makes it), messages
are published, and the broker is then asked for the backlog the way the KEDA scaler asks
it, using only what the trigger (and the Secret it documents) says. The figure must follow
the listener's messages, and another listener's must not.

Kafka (no broker here short of the tansu binary, whose group joins take seconds) and SQS
(the queue is the URL's, there is no default to derive) are covered by the naming tests of
test_keda.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest

from modelbus.client.schemas import ListenerFields
from modelbus.connectors import ConnectorContext, OutMessage, make_sink, make_source
from modelbus.listeners.scaling import KedaOptions, KedaPlan, keda_plan
from tests.brokers.amqp.conftest import HOST as AMQP_HOST
from tests.brokers.amqp.conftest import PORT as AMQP_PORT
from tests.brokers.amqp.conftest import delete_queues
from tests.brokers.redis.kit import REDIS_ADDRESS, drop_stream, redis_url
from tests.brokers.servers import NatsServer, free_port
from tests.connectors.kit_postgres import DATABASE_URL

OPTIONS = KedaOptions()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def plan_for(name: str, source: str, options: KedaOptions = OPTIONS) -> KedaPlan:
    return keda_plan([ListenerFields(name=name, source=source, model="acme/ocr@1.*")], options)


def metadata_of(plan: KedaPlan) -> dict[str, str]:
    (trigger,) = plan.resources[-1]["spec"]["triggers"]
    metadata: dict[str, str] = trigger["metadata"]
    return metadata


def secret_value(plan: KedaPlan, key: str, password: str) -> str:
    """What the operator puts in the Secret: the documented value, *** filled in."""
    (secret,) = plan.secrets
    return secret.keys[key].split(" (")[0].replace("***", password)


def messages(count: int) -> list[OutMessage]:
    return [OutMessage(id=uuid.uuid4().hex, body=b'{"n": %d}' % i) for i in range(count)]


def context(name: str, tmp_path: Path) -> ConnectorContext:
    return ConnectorContext(listener=name, data_dir=tmp_path)


async def test_redis_trigger_reads_its_own_groups_lag(tmp_path: Path) -> None:
    from redis.asyncio import Redis

    stream = unique("mbtest-keda")
    url = redis_url(stream, create=True)
    first, second = unique("orders"), unique("audit")
    sources = [make_source(url, context(n, tmp_path)) for n in (first, second)]
    sink = make_sink(url, context(first, tmp_path))
    host, port = REDIS_ADDRESS.split(":")
    client = Redis(host=host, port=int(port))
    try:
        for source in sources:
            await source.open()
        await sink.open()
        await sink.publish(messages(5))
        await sources[1].receive(5, 1.0)  # the second listener takes everything it has

        async def lag(name: str) -> int:
            metadata = metadata_of(plan_for(name, url))
            assert metadata["address"] == REDIS_ADDRESS
            db = Redis(host=host, port=int(port), db=int(metadata["databaseIndex"]))
            try:  # what KEDA's lagCount reads: XINFO GROUPS, the group's lag
                groups = await db.xinfo_groups(metadata["stream"])
            finally:
                await db.aclose()
            return {g["name"].decode(): g["lag"] for g in groups}[metadata["consumerGroup"]]

        assert await lag(first) == 5
        assert await lag(second) == 0
        await sources[0].receive(2, 1.0)
        assert await lag(first) == 3
    finally:
        for part in (*sources, sink):
            await part.close()
        await client.aclose()
        await drop_stream(stream)


class MonitoredNats(NatsServer):
    """A private nats-server with its HTTP monitoring endpoint on (the shared one has none)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.monitor_port = free_port()

    def command(self) -> list[str]:
        return [*super().command(), "-m", str(self.monitor_port)]


def jetstream_pending(endpoint: str, metadata: dict[str, str]) -> int:
    """The figure KEDA's nats-jetstream scaler computes: /jsz of the account, the stream,
    the consumer, ``num_pending + num_ack_pending``."""
    query = f"acc={metadata['account']}&consumers=true&config=true"
    with urlopen(f"http://{endpoint}/jsz?{query}", timeout=10) as response:
        jsz = json.load(response)
    for account in jsz.get("account_details") or []:
        if metadata["account"] not in (account.get("name"), account.get("id")):
            continue
        for stream in account.get("stream_detail") or []:
            if stream["name"] != metadata["stream"]:
                continue
            for consumer in stream.get("consumer_detail") or []:
                if consumer["name"] == metadata["consumer"]:
                    return int(consumer["num_pending"]) + int(consumer["num_ack_pending"])
    raise AssertionError(f"no consumer {metadata['consumer']!r} in {metadata['stream']!r}")


async def pending_becomes(endpoint: str, metadata: dict[str, str], wanted: int) -> int:
    """``jetstream_pending`` once it reads ``wanted``, or its last reading after 5 s."""
    deadline = asyncio.get_running_loop().time() + 5
    while (found := jetstream_pending(endpoint, metadata)) != wanted:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    return found


async def test_nats_trigger_reads_its_durable_through_the_monitoring_endpoint(
    tmp_path: Path,
) -> None:
    with MonitoredNats(tmp_path / "nats") as server:
        stream = unique("KEDA").replace("-", "_")
        url = server.url(stream=stream, subject=f"{stream}.in", create="true")
        first, second = unique("orders.eu"), unique("audit")
        sources = [make_source(url, context(n, tmp_path)) for n in (first, second)]
        sink = make_sink(url, context(first, tmp_path))
        try:
            for source in sources:
                await source.open()
            await sink.open()
            await sink.publish(messages(4))
            taken = await sources[1].receive(4, 2.0)
            await sources[1].ack(taken)
            # the default endpoint is the source's host on port 8222; this server's differs
            default = metadata_of(plan_for(first, url))["natsServerMonitoringEndpoint"]
            assert default == "127.0.0.1:8222"
            endpoint = f"127.0.0.1:{server.monitor_port}"
            options = KedaOptions(nats_monitoring=endpoint)
            mine = metadata_of(plan_for(first, url, options))
            theirs = metadata_of(plan_for(second, url, options))
            assert jetstream_pending(endpoint, mine) == 4
            assert jetstream_pending(endpoint, theirs) == 0
            held = await sources[0].receive(1, 2.0)
            assert jetstream_pending(endpoint, mine) == 4  # in flight still counts
            await sources[0].ack(held)
            # a JetStream ack is a publish the server applies a moment later
            assert await pending_becomes(endpoint, mine, 3) == 3
        finally:
            for part in (*sources, sink):
                await part.close()


async def test_rabbitmq_trigger_reads_the_listeners_queue_with_the_documented_host(
    tmp_path: Path,
) -> None:
    import aio_pika

    exchange = unique("mbtest-amqp-keda")
    base = f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/"
    source_url = f"{base}?exchange={exchange}&create=true"
    sink_url = f"{base}?exchange={exchange}&routing_key=orders.new"
    name = unique("mbtest-amqp-keda-orders")
    source = make_source(source_url, context(name, tmp_path))
    sink = make_sink(sink_url, context(name, tmp_path))
    try:
        await source.open()  # declares the listener's queue, bound to the exchange
        await sink.open()
        await sink.publish(messages(3))
        plan = plan_for(name, source_url)
        metadata = metadata_of(plan)
        assert metadata["queueName"] == f"modelbus.{name}"
        # what KEDA's amqp protocol does: connect to the Secret's host, passive declare
        connection = await aio_pika.connect(secret_value(plan, "host", "guest"), timeout=10)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(metadata["queueName"], passive=True)
            assert queue.declaration_result.message_count == 3
    finally:
        await source.close()
        await sink.close()
        await delete_queues(name)
        await delete_queues(exchange)


@pytest.mark.postgres
async def test_postgresql_trigger_counts_the_outbox_rows_available(tmp_path: Path) -> None:
    import asyncpg

    table = unique("keda_outbox").replace("-", "_")
    url = f"{DATABASE_URL}?table={table}&create=true&lease_s=60"
    name = unique("orders")
    sink = make_sink(url, context(name, tmp_path))
    source = make_source(url, context(name, tmp_path))
    plan = plan_for(name, url)
    metadata = metadata_of(plan)
    connection: Any = None
    try:
        await sink.open()
        await source.open()
        await sink.publish(messages(5))
        connection = await asyncpg.connect(secret_value(plan, "connection", ""), timeout=10)

        async def backlog() -> int:
            return int(await connection.fetchval(metadata["query"]))

        assert await backlog() == 5
        first, second = await source.receive(2, 2.0)
        assert await backlog() == 5  # leased rows are in flight: still counted
        await source.release(first, 600)  # waiting out a backoff: not counted
        await source.ack([second])
        assert await backlog() == 3
    finally:
        await source.close()
        await sink.close()
        if connection is not None:
            await connection.execute(f'DROP TABLE IF EXISTS "{table}"')
            await connection.close()
