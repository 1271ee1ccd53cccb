"""The drain benchmark: a real modelbus listener beside a careful hand-written batched
consumer loop, on every broker, in one run, calling the same model in the same runners.

    .venv/bin/python bench/bench_drain.py                         # every broker, 20,000 messages
    .venv/bin/python bench/bench_drain.py --brokers local,redis --messages 5000

For each broker (``--brokers``, default all: local, sqs, redis, amqp, nats, mqtt, kafka,
postgres) and each side, the harness

1. **drain**: preloads ``--messages`` JSON messages of about 200 bytes into a fresh input,
   starts the consumer, and times from its first delivery (connects and group joins are
   left out) until it has acked every message, each after its result was published;
2. **latency**: on a fresh input, sends ``--latency-messages`` messages one by one at
   ``--rate`` msg/s (at most half the slower side's drain rate, so nothing queues up) and
   reads the results from the output; the end-to-end latency of a message is the arrival of
   its result minus its enqueue time (p50 and p99).

The sides:

* **modelbus**: a listener created through the real ``ListenerManager`` of a node opened as
  ``modelbus serve`` opens it (SQLite store, registry, runner pools; tests/e2e/node.py),
  ``max_in_flight`` = ``--batch``, everything else default: results as CloudEvents to a sink
  on the same broker, a run record per message, the ack after both.
* **hand**: the kit's hand-written loop (bench/drain_kits.py): receive a batch of up to
  ``--batch`` -> call the model -> publish the results batched and wait until the broker
  has them -> ack batched. No run records, no dedupe, bare results.

Both call the same trivial model, tests/e2e/models/behave (it echoes its JSON input), in the
same pool of up to 4 runner processes (``ModelService.invoke`` per message for the listener,
``invoke_batch`` per batch for the hand loop; the model has no ``apply_batch``, so both make
one runner call per message). Servers: the shared Redis, RabbitMQ, NATS and PostgreSQL on
127.0.0.1; moto (SQS), tansu (Kafka) and a Mosquitto (MQTT) started on free ports.
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
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from drain_kits import KITS, Kit, Names, Progress, body, ctx
from tests.e2e.node import BEHAVE, Node, open_node

from modelbus.client.refs import ModelRef
from modelbus.connectors import OutMessage, make_sink, make_source
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.manager import ManagerOptions
from modelbus.runtime.invocation import CallOptions, Payload, Result

REF = ModelRef.parse("e2e/behave@1.*")
SIDES = ("hand", "modelbus")
WARMUP_MESSAGES = 5


@dataclass(frozen=True)
class Figures:
    messages: int
    msg_per_s: float
    p50_ms: float
    p99_ms: float
    runs: list[float]


# --- the model, as both sides call it -------------------------------------------------------


def model_of(node: Node) -> Callable[[list[bytes]], Awaitable[list[bytes]]]:
    async def call(bodies: list[bytes]) -> list[bytes]:
        payloads = [Payload(b, "json") for b in bodies]
        outcomes = await node.service.invoke_batch(REF, payloads, CallOptions())
        outputs = []
        for outcome in outcomes:
            if not isinstance(outcome, Result):
                raise outcome
            outputs.append(outcome.output.data)
        return outputs

    return call


# --- consumers --------------------------------------------------------------------------------


Stop = Callable[[], Awaitable[None]]


async def start_consumer(
    kit: Kit, node: Node, side: str, names: Names, batch: int, progress: Progress
) -> Stop:
    if side == "hand":
        task = asyncio.create_task(kit.hand_loop(names, model_of(node), batch, progress))

        async def stop_hand() -> None:
            # Again and again: redis-py swallows a cancellation that lands in a blocking read.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.2)
            await asyncio.gather(task, return_exceptions=True)

        return stop_hand
    definition = ListenerDefinition(
        name=f"bench-{kit.name}-{uuid.uuid4().hex[:8]}",
        source=kit.listener_source(names),
        model=str(REF),
        outputs=[names.out_url],
        max_in_flight=batch,
    )
    await node.manager.create(definition, check=False)
    watcher = asyncio.create_task(_watch(node, definition.name, progress))

    async def stop_listener() -> None:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await node.manager.delete(definition.name)

    return stop_listener


async def _watch(node: Node, name: str, progress: Progress) -> None:
    """The listener's own counters: received (its first delivery) and succeeded (acked after
    the result was published and the run record written)."""
    while True:
        counters = (await node.manager.status(name)).counters
        if counters["received"] > 0:
            progress.started()
        succeeded = int(counters["succeeded"])
        if succeeded > progress.done:
            progress.acked(succeeded - progress.done)
        await asyncio.sleep(0.005)


# --- the two measures -------------------------------------------------------------------------


async def drain(kit: Kit, node: Node, side: str, count: int, batch: int) -> float:
    """msg/s from the consumer's first delivery until it has acked ``count`` messages."""
    names = await kit.fresh()
    try:
        await kit.before_consumer(names, side)
        now = time.time()
        await kit.preload(names, [body(n, now) for n in range(count)])
        progress = Progress()
        stop = await start_consumer(kit, node, side, names, batch, progress)
        try:
            async with asyncio.timeout(max(300.0, count / 10)):
                while progress.done < count:
                    progress.changed.clear()
                    await progress.changed.wait()
            assert progress.first_at is not None
            return count / (asyncio.get_running_loop().time() - progress.first_at)
        finally:
            await stop()
    finally:
        await kit.cleanup(names)


async def latency(
    kit: Kit, node: Node, side: str, count: int, rate: float, batch: int
) -> list[float]:
    """End-to-end latencies (ms) of ``count`` messages sent at ``rate`` msg/s, after a few
    warm-up messages made sure the consumer and the reader are both connected."""
    names = await kit.fresh()
    reader = make_source(kit.reader_url(names), ctx(kit.data_dir, f"reader-{uuid.uuid4().hex[:6]}"))
    sender = make_sink(names.in_url, ctx(kit.data_dir))
    latencies: list[float] = []
    warm: list[float] = []
    async with AsyncExitStack() as stack:
        stack.push_async_callback(kit.cleanup, names)
        await kit.before_consumer(names, side)
        await reader.open()
        stack.push_async_callback(reader.close)
        await sender.open()
        stack.push_async_callback(sender.close)
        stop = await start_consumer(kit, node, side, names, batch, Progress())
        stack.push_async_callback(stop)
        reading = asyncio.create_task(_read(reader, latencies, warm))
        stack.callback(reading.cancel)

        async def send(n: int) -> None:
            await sender.publish([OutMessage(id=uuid.uuid4().hex, body=body(n, time.time()))])

        async with asyncio.timeout(120):
            for n in range(-WARMUP_MESSAGES, 0):
                await send(n)
            while len(warm) < WARMUP_MESSAGES:  # noqa: ASYNC110 (filled by the reader task)
                await asyncio.sleep(0.01)
            started = time.perf_counter()
            for n in range(count):
                await send(n)
                await asyncio.sleep(max(0.0, started + (n + 1) / rate - time.perf_counter()))
            while len(latencies) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    return latencies


async def _read(reader: object, latencies: list[float], warm: list[float]) -> None:
    seen: set[int] = set()
    while True:
        deliveries = await reader.receive(100, 0.5)  # type: ignore[attr-defined]
        now = time.time()
        for delivery in deliveries:
            document = json.loads(delivery.body)
            data = document["data"] if isinstance(document.get("data"), dict) else document
            if data["n"] in seen:
                continue  # a duplicate (at-least-once): the first arrival counts
            seen.add(data["n"])
            (warm if data["n"] < 0 else latencies).append((now - data["sent"]) * 1000)
        if deliveries:
            await reader.ack(deliveries)  # type: ignore[attr-defined]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- one broker ---------------------------------------------------------------------------------


def messages_for(kit: Kit, args: argparse.Namespace) -> int:
    return min(args.messages, args.sqs_messages) if kit.name == "sqs" else int(args.messages)


async def measure(kit: Kit, node: Node, args: argparse.Namespace) -> dict[str, Figures]:
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    count = messages_for(kit, args)
    for _ in range(args.runs):
        for side in SIDES:
            rates[side].append(await drain(kit, node, side, count, args.batch))
            _say({"broker": kit.name, "side": side, "drain_msg_per_s": round(rates[side][-1], 1)})
    rate = min(args.rate, 0.5 * min(statistics.median(r) for r in rates.values()))
    figures = {}
    for side in SIDES:
        lat = await latency(kit, node, side, args.latency_messages, rate, args.batch)
        figures[side] = Figures(
            messages=count,
            msg_per_s=statistics.median(rates[side]),
            p50_ms=percentile(lat, 0.50),
            p99_ms=percentile(lat, 0.99),
            runs=rates[side],
        )
        _say(
            {
                "broker": kit.name,
                "side": side,
                "messages": count,
                "batch": args.batch,
                "runs_msg_per_s": [round(r, 1) for r in rates[side]],
                "latency_rate_per_s": round(rate, 1),
                "p50_ms": round(figures[side].p50_ms, 1),
                "p99_ms": round(figures[side].p99_ms, 1),
            }
        )
    return figures


def _say(line: dict[str, object]) -> None:
    print(json.dumps(line), flush=True)


def table(results: dict[str, dict[str, Figures]], kits: dict[str, Kit]) -> str:
    head = (
        f"{'broker':9}{'messages':>9}{'modelbus msg/s':>15}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'hand msg/s':>12}{'p50 ms':>8}{'p99 ms':>8}{'ratio':>7}  client"
    )
    lines = [head, "-" * len(head)]
    for name, figures in results.items():
        ours, hand = figures["modelbus"], figures["hand"]
        lines.append(
            f"{name:9}{ours.messages:9,}{ours.msg_per_s:15,.0f}{ours.p50_ms:8.1f}{ours.p99_ms:8.1f}"
            f"{hand.msg_per_s:12,.0f}{hand.p50_ms:8.1f}{hand.p99_ms:8.1f}"
            f"{ours.msg_per_s / hand.msg_per_s:7.2f}  {kits[name].client}"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    names = args.brokers.split(",")
    unknown = [n for n in names if n not in KITS]
    if unknown:
        raise SystemExit(f"unknown broker(s) {unknown}; choose from {','.join(KITS)}")
    results: dict[str, dict[str, Figures]] = {}
    kits: dict[str, Kit] = {}
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        data_dir = Path(tmp) / "data"
        async with open_node(data_dir, options=ManagerOptions(sync_interval_s=None)) as node:
            await node.push(BEHAVE, version="1.0.0")
            await model_of(node)([body(-1, 0.0)] * 8)  # start the runners before any clock
            for name in names:
                kit = kits[name] = KITS[name](data_dir)
                async with AsyncExitStack() as stack:
                    await kit.start(stack)
                    results[name] = await measure(kit, node, args)
    print()
    print(
        f"JSON messages of ~200 B, batch / max_in_flight {args.batch}, "
        f"{args.latency_messages} latency messages, {args.runs} run(s)"
    )
    print(table(results, kits))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="See docs/benchmarks.md."
    )
    p.add_argument("--brokers", default=",".join(KITS), help="comma-separated (default all)")
    p.add_argument("--messages", type=int, default=20_000, help="drain size (default 20000)")
    p.add_argument(
        "--batch",
        type=int,
        default=100,
        help="hand loop batch and listener max_in_flight (default 100)",
    )
    p.add_argument(
        "--sqs-messages",
        type=int,
        default=1_000,
        help="drain size on SQS (moto drains ~30 msg/s; default 1000)",
    )
    p.add_argument("--runs", type=int, default=1, help="drains per side; the median is shown")
    p.add_argument("--latency-messages", type=int, default=200, help="(default 200)")
    p.add_argument(
        "--rate", type=float, default=100.0, help="latency send rate, msg/s (default 100)"
    )
    return p


if __name__ == "__main__":
    asyncio.run(main(parser().parse_args()))
