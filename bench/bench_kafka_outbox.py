"""Drain benchmarks for Kafka (tansu) and PostgreSQL outbox tables: careful hand-written
consumer loops beside the same loop written on modelbus's connectors, in one run.

    .venv/bin/python bench/bench_kafka_outbox.py --broker kafka --messages 20000
    .venv/bin/python bench/bench_kafka_outbox.py --broker postgres --messages 20000

Each run preloads ``--messages`` JSON messages of about 200 bytes into a fresh input (topic
or outbox table), then drains it: receive -> a trivial function on every body -> publish the
results to an output (topic or outbox table) and wait until durable -> only then settle the
inputs (commit offsets / delete rows). Modes:

* ``hand-1`` / ``hand-batch``: the hand-written loop, one message at a time / batches of
  ``--batch``. Kafka: aiokafka getone/getmany, send_and_wait / send + gather, commit.
  PostgreSQL: one transaction per claim: SELECT ... FOR UPDATE SKIP LOCKED LIMIT n, INSERT
  the results, DELETE the inputs, COMMIT.
* ``connector-1`` / ``connector-batch``: the same drain on KafkaSource/KafkaSink or
  OutboxSource/OutboxSink: receive(n) -> publish -> ack (the listener runtime's path,
  without the runtime and the model runner).

Timing starts at the first delivery (consumer group joins are excluded). Prints one JSON
line per mode and run, then the median msg/s per mode. Kafka runs start
their own tansu (memory storage) on a free port; PostgreSQL uses ``--database-url``
(default the ``test`` database on 127.0.0.1:5432) and drops its tables afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelbus.connectors import ConnectorContext, OutMessage, make_sink, make_source

MODES = ("hand-1", "hand-batch", "connector-1", "connector-batch")


def trivial(body: bytes) -> bytes:
    """The 'model': parse, add a field, serialise."""
    document = json.loads(body)
    document["length"] = len(document["text"])
    return json.dumps(document).encode()


def bodies(count: int) -> list[bytes]:
    return [json.dumps({"n": i, "text": "x" * 180}).encode() for i in range(count)]


def ctx() -> ConnectorContext:
    return ConnectorContext(
        listener=f"bench-{uuid.uuid4().hex[:6]}", data_dir=Path(tempfile.gettempdir())
    )


async def connector_drain(in_url: str, out_url: str, count: int, batch: int) -> float:
    """receive(batch) -> trivial -> publish -> ack, until ``count`` are settled."""
    source, sink = make_source(in_url, ctx()), make_sink(out_url, ctx())
    await sink.open()
    await source.open()
    done = 0
    started = None
    while done < count:
        deliveries = await source.receive(batch, 1.0)
        if not deliveries:
            continue
        started = started or time.perf_counter()  # from the first delivery: joins excluded
        results = [OutMessage(id=d.message_id, body=trivial(d.body)) for d in deliveries]
        await sink.publish(results)
        await source.ack(deliveries)
        done += len(deliveries)
    assert started is not None
    elapsed = time.perf_counter() - started
    await source.close()
    await sink.close()
    return elapsed


# ---------------------------------------------------------------------------- kafka


async def kafka_preload(bootstrap: str, topic: str, count: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, body) for body in bodies(count)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def kafka_hand(bootstrap: str, topic: str, out: str, count: int, batch: int) -> float:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"hand-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    done = 0
    started = None
    try:
        while done < count:
            if batch == 1:
                record = await consumer.getone()
                started = started or time.perf_counter()
                await producer.send_and_wait(out, trivial(record.value))
                await consumer.commit()
                done += 1
                continue
            fetched = await consumer.getmany(timeout_ms=1000, max_records=batch)
            records = [r for rs in fetched.values() for r in rs]
            if records:
                started = started or time.perf_counter()
            futures = [await producer.send(out, trivial(r.value)) for r in records]
            await asyncio.gather(*futures)
            if records:
                await consumer.commit()
            done += len(records)
        assert started is not None
        return time.perf_counter() - started
    finally:
        await consumer.stop()
        await producer.stop()


async def kafka_run(bootstrap: str, mode: str, count: int, batch: int) -> float:
    topic, out = f"in-{uuid.uuid4().hex[:8]}", f"out-{uuid.uuid4().hex[:8]}"
    url = f"kafka://{bootstrap}/{topic}?create=true&partitions=4&session_timeout_s=2"
    out_url = f"kafka://{bootstrap}/{out}?create=true&partitions=4"
    for creating in (make_sink(url, ctx()), make_sink(out_url, ctx())):
        await creating.open()
        await creating.close()
    await kafka_preload(bootstrap, topic, count)
    size = 1 if mode.endswith("-1") else batch
    if mode.startswith("hand"):
        return await kafka_hand(bootstrap, topic, out, count, size)
    return await connector_drain(url + "&ordering=none", out_url, count, size)


# ---------------------------------------------------------------------------- postgres


async def pg_run(database_url: str, mode: str, count: int, batch: int) -> float:
    import asyncpg

    table, out = f"bench_in_{uuid.uuid4().hex[:8]}", f"bench_out_{uuid.uuid4().hex[:8]}"
    url, out_url = (
        f"{database_url}?table={table}&create=true",
        f"{database_url}?table={out}&create=true",
    )
    for creating in (make_sink(url, ctx()), make_sink(out_url, ctx())):
        await creating.open()
        await creating.close()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            f"INSERT INTO {table} (payload) SELECT * FROM unnest($1::bytea[])", bodies(count)
        )
        size = 1 if mode.endswith("-1") else batch
        if mode.startswith("hand"):
            return await pg_hand(conn, table, out, count, size)
        return await connector_drain(url + "&lease_s=60", out_url, count, size)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}; DROP TABLE IF EXISTS {out}")
        await conn.close()


async def pg_hand(conn: Any, table: str, out: str, count: int, batch: int) -> float:
    claim = f"SELECT id, payload FROM {table} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
    insert = f"INSERT INTO {out} (payload) SELECT * FROM unnest($1::bytea[])"
    delete = f"DELETE FROM {table} WHERE id = ANY($1::bigint[])"
    done = 0
    started = time.perf_counter()
    while done < count:
        async with conn.transaction():
            rows = await conn.fetch(claim, batch)
            await conn.execute(insert, [trivial(bytes(r["payload"])) for r in rows])
            await conn.execute(delete, [r["id"] for r in rows])
        done += len(rows)
    return time.perf_counter() - started


# ---------------------------------------------------------------------------- main


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("kafka", "postgres"), required=True)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {}
    broker = None
    if args.broker == "kafka":
        from tests.brokers.kafka.tansu import Tansu

        broker = Tansu()
        broker.start()
    try:
        for _ in range(args.runs):
            for mode in args.modes.split(","):
                if args.broker == "kafka":
                    assert broker is not None
                    elapsed = await kafka_run(broker.bootstrap, mode, args.messages, args.batch)
                else:
                    elapsed = await pg_run(args.database_url, mode, args.messages, args.batch)
                rate = args.messages / elapsed
                rates.setdefault(mode, []).append(rate)
                print(json.dumps({"broker": args.broker, "mode": mode, "msg_per_s": round(rate)}))
    finally:
        if broker is not None:
            broker.close()
    for mode, values in rates.items():
        print(f"{args.broker} {mode}: median {statistics.median(values):,.0f} msg/s")


if __name__ == "__main__":
    asyncio.run(main())
