"""Careful hand-written consumer loops for Redis Streams and NATS JetStream (the
"traditional implementation"), beside the same loop written on modelbus's connectors.

    .venv/bin/python bench/bench_broker_loops.py --messages 20000 --runs 3

For each broker and each loop, a run preloads ``--messages`` JSON messages of about 200
bytes into a fresh input stream, then drains it: receive -> a trivial function on every
body -> publish the result to an output stream -> only then ack the input (ack after the
result is published, as the listener does). It prints one JSON line per run and a table of
median msg/s. Loops:

* ``one``: one message at a time, by hand with the client library;
* ``batched``: ``--batch`` at a time by hand (Redis: ``XREADGROUP COUNT``, a pipelined
  ``XADD`` per batch, one ``XACK``; NATS: ``fetch(batch)``, concurrent publishes awaiting
  their PubAcks, then the acks);
* ``connectors``: batched, through modelbus's ``RedisSource``/``RedisSink`` and
  ``NatsSource``/``NatsSink`` (no listener runtime, no runner process: this measures what
  the connectors add or save against the hand-written batched loop).

The hand-written NATS loops ack with a plain ``msg.ack()`` (fire-and-forget, what most code
does); the NatsSource waits for every ack to be confirmed (double ack, see
``modelbus.connectors.nats``). Uses the shared servers (Redis 127.0.0.1:6379, NATS
127.0.0.1:4222) unless told otherwise, and deletes what it creates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import nats
from redis.asyncio import Redis

from modelbus.connectors.base import ConnectorContext, OutMessage
from modelbus.connectors.nats import make_sink as nats_sink
from modelbus.connectors.nats import make_source as nats_source
from modelbus.connectors.redis import make_sink as redis_sink
from modelbus.connectors.redis import make_source as redis_source

TEXT = "the quick brown fox jumps over the lazy dog " * 4


def body(n: int) -> bytes:
    """About 200 bytes of JSON."""
    return json.dumps({"n": n, "text": TEXT[:150], "tags": ["a", "b"]}).encode()


def trivial(data: bytes) -> bytes:
    """The 'model': parse, add a field, serialise."""
    document = json.loads(data)
    document["length"] = len(document["text"])
    return json.dumps(document).encode()


# ------------------------------------------------------------------------------------ Redis


class RedisBench:
    def __init__(self, address: str) -> None:
        host, port = address.split(":")
        self.address = address
        self.client = Redis(host=host, port=int(port))

    async def prepare(self, count: int) -> tuple[str, str]:
        name = f"bench-{uuid.uuid4().hex[:10]}"
        source, out = f"{name}-in", f"{name}-out"
        await self.client.xgroup_create(source, "g", id="0", mkstream=True)
        for start in range(0, count, 1000):
            async with self.client.pipeline(transaction=False) as pipe:
                for n in range(start, min(count, start + 1000)):
                    pipe.xadd(source, {"body": body(n)})
                await pipe.execute()
        return source, out

    async def cleanup(self, names: tuple[str, str]) -> None:
        keys = [k async for k in self.client.scan_iter(match=f"{names[0][:-3]}*")]
        if keys:
            await self.client.delete(*keys)

    async def one(self, names: tuple[str, str], count: int, batch: int) -> None:
        source, out = names
        done = 0
        while done < count:
            answer = await self.client.xreadgroup("g", "c", {source: ">"}, count=1, block=1000)
            for _stream, entries in answer:
                for entry_id, fields in entries:
                    await self.client.xadd(out, {"body": trivial(fields[b"body"])})
                    await self.client.xack(source, "g", entry_id)
                    done += 1

    async def batched(self, names: tuple[str, str], count: int, batch: int) -> None:
        source, out = names
        done = 0
        while done < count:
            answer = await self.client.xreadgroup("g", "c", {source: ">"}, count=batch, block=1000)
            for _stream, entries in answer:
                async with self.client.pipeline(transaction=False) as pipe:
                    for _entry_id, fields in entries:
                        pipe.xadd(out, {"body": trivial(fields[b"body"])})
                    await pipe.execute()
                await self.client.xack(source, "g", *[entry_id for entry_id, _ in entries])
                done += len(entries)

    async def connectors(self, names: tuple[str, str], count: int, batch: int) -> None:
        source_name, out = names
        ctx = ConnectorContext(listener="bench", data_dir=Path("."))
        source = redis_source(f"redis://{self.address}/0?stream={source_name}&group=g", ctx)
        sink = redis_sink(f"redis://{self.address}/0?stream={out}&create=true", ctx)
        await source.open()
        await sink.open()
        try:
            await _connector_loop(source, sink, count, batch)
        finally:
            await source.close()
            await sink.close()

    async def close(self) -> None:
        await self.client.aclose()


# ------------------------------------------------------------------------------------- NATS


class NatsBench:
    def __init__(self, address: str) -> None:
        self.address = address
        self.client: Any = None

    async def start(self) -> None:
        self.client = await nats.connect(f"nats://{self.address}")
        self.js = self.client.jetstream()

    async def prepare(self, count: int) -> tuple[str, str]:
        name = f"bench-{uuid.uuid4().hex[:10]}"
        await self.js.add_stream(name=name, subjects=[f"{name}.in", f"{name}.out"])
        await self.js.add_consumer(name, durable_name="d", filter_subject=f"{name}.in")
        for start in range(0, count, 500):
            futures = [
                await self.js.publish_async(f"{name}.in", body(n))
                for n in range(start, min(count, start + 500))
            ]
            await asyncio.gather(*futures)
        return name, f"{name}.out"

    async def cleanup(self, names: tuple[str, str]) -> None:
        await self.js.delete_stream(names[0])

    async def one(self, names: tuple[str, str], count: int, batch: int) -> None:
        stream, out = names
        subscription = await self.js.pull_subscribe_bind(durable="d", stream=stream)
        done = 0
        while done < count:
            try:
                messages = await subscription.fetch(1, timeout=1)
            except TimeoutError:
                continue
            for message in messages:
                await self.js.publish(out, trivial(message.data))
                await message.ack()
                done += 1
        await subscription.unsubscribe()

    async def batched(self, names: tuple[str, str], count: int, batch: int) -> None:
        stream, out = names
        subscription = await self.js.pull_subscribe_bind(durable="d", stream=stream)
        done = 0
        while done < count:
            try:
                messages = await subscription.fetch(batch, timeout=1)
            except TimeoutError:
                continue
            await asyncio.gather(*(self.js.publish(out, trivial(m.data)) for m in messages))
            await asyncio.gather(*(m.ack() for m in messages))
            done += len(messages)
        await subscription.unsubscribe()

    async def connectors(self, names: tuple[str, str], count: int, batch: int) -> None:
        stream, out = names
        ctx = ConnectorContext(listener="bench", data_dir=Path("."))
        source = nats_source(f"nats://{self.address}?stream={stream}&durable=d", ctx)
        sink = nats_sink(f"nats://{self.address}?stream={stream}&subject={out}", ctx)
        await source.open()
        await sink.open()
        try:
            await _connector_loop(source, sink, count, batch)
        finally:
            await source.close()
            await sink.close()

    async def close(self) -> None:
        await self.client.close()


async def _connector_loop(source: Any, sink: Any, count: int, batch: int) -> None:
    done = 0
    while done < count:
        deliveries = await source.receive(batch, 1.0)
        results = [OutMessage(id=f"out-{d.message_id}", body=trivial(d.body)) for d in deliveries]
        await sink.publish(results)
        await source.ack(deliveries)
        done += len(deliveries)


# ------------------------------------------------------------------------------------- main


async def run(bench: Any, loop: str, count: int, batch: int) -> float:
    names = await bench.prepare(count)
    try:
        drain: Callable[..., Awaitable[None]] = getattr(bench, loop)
        started = time.perf_counter()
        await drain(names, count, batch)
        return count / (time.perf_counter() - started)
    finally:
        await bench.cleanup(names)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--brokers", default="redis,nats")
    parser.add_argument("--loops", default="one,batched,connectors")
    parser.add_argument("--redis", default="127.0.0.1:6379")
    parser.add_argument("--nats", default="127.0.0.1:4222")
    args = parser.parse_args()

    table: list[tuple[str, str, float]] = []
    for broker in args.brokers.split(","):
        bench: Any = RedisBench(args.redis) if broker == "redis" else NatsBench(args.nats)
        if broker == "nats":
            await bench.start()
        try:
            for loop in args.loops.split(","):
                rates = [
                    await run(bench, loop, args.messages, args.batch) for _ in range(args.runs)
                ]
                for rate in rates:
                    print(json.dumps({"broker": broker, "loop": loop, "msg_per_s": round(rate)}))
                table.append((broker, loop, statistics.median(rates)))
        finally:
            await bench.close()
    print(f"\n{'broker':<8}{'loop':<12}{'median msg/s':>14}")
    for broker, loop, rate in table:
        print(f"{broker:<8}{loop:<12}{rate:>14,.0f}")


if __name__ == "__main__":
    asyncio.run(main())
