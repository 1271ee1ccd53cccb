"""Listener throughput and latency beside a hand-written consumer loop, in the same run, on
the same broker, calling the same model in the same runner processes.

    .venv/bin/python bench/bench_listener.py                      # local:// and SQS (moto)
    .venv/bin/python bench/bench_listener.py --brokers local --messages 5000 --runs 3

Both sides call the e2e test model (tests/e2e/models/behave: it echoes a JSON input) through
one node's model service, i.e. its pool of up to 4 runner processes, warmed before timing:

* **listener**: a modelbus listener (``--max-in-flight``, default 16 like a listener's;
  results as CloudEvents; a run record made durable per message before its ack: group
  committed, so a larger ``max_in_flight`` commits more records at once), created through
  the listener manager.
* **loop**: the careful hand-written loop: receive up to 10 -> call the model on them
  (``invoke_batch``, spread over the runners) -> publish the results -> only then ack /
  delete the inputs. On SQS it is ``bench_sqs_loop.worker`` with the model call in place of
  its trivial function; on ``local://`` the same steps over the queue's own client.

Two measures per side:

* **msg/s**: ``--messages`` JSON messages of about 200 bytes preloaded, then drained; the
  clock runs from the consumer's start until every result is on the output queue.
* **latency**: ``--latency-messages`` sent one by one at ``--rate`` msg/s (well below
  capacity) while a consumer takes the results; end-to-end latency is the result's arrival
  minus its input's send time (p50 and p99, ms).

moto says nothing about real SQS speed (NOTES.md): compare numbers from one run only.
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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sqs_loop import preload, worker
from tests.aws.motoserver import MotoServer, fake_credentials
from tests.e2e.node import BEHAVE, Node, open_node

from modelbus.connectors import ConnectorContext
from modelbus.connectors.base import OutMessage
from modelbus.connectors.local import LocalOptions, LocalSink, LocalSource, SqliteQueue
from modelbus.definition import ListenerDefinition
from modelbus.invocation import CallOptions, ModelRef, Payload, Result
from modelbus.listeners import ManagerOptions

REF = ModelRef.parse("e2e/behave@1.*")
REGION = "us-east-1"
BATCH = 10
MANAGER = ManagerOptions(sync_interval_s=None)


def body(n: int) -> bytes:
    return json.dumps({"n": n, "text": "x" * 170}).encode()


def n_of(result: bytes | str) -> int:
    """The input number a result answers (a listener's CloudEvent or the bare output)."""
    document = json.loads(result)
    data = document.get("data")
    return int(data["n"] if isinstance(data, dict) else document["n"])


async def call_model(node: Node, bodies: list[bytes]) -> list[bytes]:
    """The model on a batch of inputs, in the node's runner processes."""
    payloads = [Payload(b, "json") for b in bodies]
    outcomes = await node.service.invoke_batch(REF, payloads, CallOptions())
    outputs = []
    for outcome in outcomes:
        if not isinstance(outcome, Result):
            raise outcome
        outputs.append(outcome.output.data)
    return outputs


async def warm(node: Node) -> None:
    await call_model(node, [body(-1)] * 8)


@dataclass(frozen=True)
class Figures:
    msg_per_s: float
    p50_ms: float
    p99_ms: float


class Broker(Protocol):
    """What the benchmark needs of a broker."""

    kind: str

    async def new_queue(self, role: str) -> str: ...
    async def open_sink(self, url: str) -> None: ...
    async def preload(self, url: str, count: int) -> None: ...
    async def send(self, url: str, data: bytes) -> None: ...
    async def depth(self, url: str) -> int: ...
    def results(self, url: str) -> AsyncIterator[list[bytes]]: ...
    async def hand_loop(self, node: Node, in_url: str, out_url: str, total: int) -> None: ...


# --- local:// ----------------------------------------------------------------------------------


class Local:
    kind = "local"

    def __init__(self, data_dir: Path) -> None:
        self.ctx = ConnectorContext(listener="bench", data_dir=data_dir)
        self._sinks: dict[str, LocalSink] = {}

    def _queue(self, url: str) -> SqliteQueue:
        return SqliteQueue(LocalOptions.from_url(url).path(self.ctx.data_dir))

    async def new_queue(self, role: str) -> str:
        return f"local://{role}-{uuid.uuid4().hex[:8]}?poll_ms=20"

    async def preload(self, url: str, count: int) -> None:
        queue = self._queue(url)
        await queue.open()
        for start in range(0, count, 500):
            end = min(count, start + 500)
            await queue.publish(
                [OutMessage(id=uuid.uuid4().hex, body=body(n)) for n in range(start, end)]
            )
        await queue.close()

    async def open_sink(self, url: str) -> None:
        sink = LocalSink(self._queue(url))
        await sink.open()
        self._sinks[url] = sink

    async def send(self, url: str, data: bytes) -> None:
        await self._sinks[url].publish([OutMessage(id=uuid.uuid4().hex, body=data)])

    async def depth(self, url: str) -> int:
        queue = self._queue(url)
        await queue.open()
        try:
            return (await queue.counts())[0]
        finally:
            await queue.close()

    async def results(self, url: str) -> AsyncIterator[list[bytes]]:
        source = self._source(url)
        await source.open()
        try:
            while True:
                batch = await source.receive(BATCH, 1.0)
                if batch:
                    await source.ack(batch)
                    yield [d.body for d in batch]
        finally:
            await source.close()

    def _source(self, url: str) -> LocalSource:
        options = LocalOptions.from_url(url)
        return LocalSource(self._queue(url), lease_s=options.lease_s, poll_ms=options.poll_ms)

    async def hand_loop(self, node: Node, in_url: str, out_url: str, total: int) -> None:
        """receive -> call -> publish -> ack, over the queue's own client."""
        source, sink = self._source(in_url), LocalSink(self._queue(out_url))
        await source.open()
        await sink.open()
        try:
            done = 0
            while done < total:
                deliveries = await source.receive(BATCH, 1.0)
                if not deliveries:
                    continue
                outputs = await call_model(node, [d.body for d in deliveries])
                await sink.publish([OutMessage(id=uuid.uuid4().hex, body=o) for o in outputs])
                await source.ack(deliveries)
                done += len(deliveries)
        finally:
            await source.close()
            await sink.close()


# --- SQS (moto) --------------------------------------------------------------------------------


class Sqs:
    kind = "sqs"

    def __init__(self, endpoint_url: str, sqs: Any) -> None:
        self.endpoint_url = endpoint_url
        self.sqs = sqs
        self.urls: dict[str, str] = {}

    async def new_queue(self, role: str) -> str:
        name = f"bench-{role}-{uuid.uuid4().hex[:8]}"
        self.urls[name] = (await self.sqs.create_queue(QueueName=name))["QueueUrl"]
        return f"sqs://{name}?endpoint_url={self.endpoint_url}&region={REGION}&wait_s=1"

    def _url(self, url: str) -> str:
        return self.urls[url.split("://", 1)[1].split("?", 1)[0]]

    async def preload(self, url: str, count: int) -> None:
        await preload(self.sqs, self._url(url), count)

    async def send(self, url: str, data: bytes) -> None:
        await self.sqs.send_message(QueueUrl=self._url(url), MessageBody=data.decode())

    async def open_sink(self, url: str) -> None:
        pass

    async def depth(self, url: str) -> int:
        answer = await self.sqs.get_queue_attributes(
            QueueUrl=self._url(url), AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(answer["Attributes"]["ApproximateNumberOfMessages"])

    async def results(self, url: str) -> AsyncIterator[list[bytes]]:
        queue_url = self._url(url)
        while True:
            answer = await asyncio.wait_for(
                self.sqs.receive_message(
                    QueueUrl=queue_url, MaxNumberOfMessages=BATCH, WaitTimeSeconds=1
                ),
                30,
            )
            messages = answer.get("Messages", [])
            if messages:
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ]
                await self.sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
                yield [m["Body"].encode() for m in messages]

    async def hand_loop(self, node: Node, in_url: str, out_url: str, total: int) -> None:
        """bench_sqs_loop's worker, with the model call in place of its trivial function."""

        async def transform(bodies: list[str]) -> list[str]:
            outputs = await call_model(node, [b.encode() for b in bodies])
            return [o.decode() for o in outputs]

        await worker(self.sqs, self._url(in_url), self._url(out_url), BATCH, [], total, transform)


# --- the measures ------------------------------------------------------------------------------


async def listener_consumer(
    node: Node, in_url: str, out_url: str, max_in_flight: int
) -> Callable[[], Awaitable[None]]:
    """Start a listener; returns how to stop (and forget) it."""
    definition = ListenerDefinition(
        name=f"bench-{uuid.uuid4().hex[:8]}",
        source=in_url,
        model=str(REF),
        outputs=[out_url],
        max_in_flight=max_in_flight,
    )
    await node.manager.create(definition, check=False)

    async def stop() -> None:
        await node.manager.delete(definition.name)

    return stop


async def loop_consumer(
    broker: Broker, node: Node, in_url: str, out_url: str, total: int
) -> Callable[[], Awaitable[None]]:
    task = asyncio.create_task(broker.hand_loop(node, in_url, out_url, total))

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return stop


async def throughput(
    broker: Broker, node: Node, side: str, count: int, *, max_in_flight: int
) -> float:
    in_url, out_url = await broker.new_queue("in"), await broker.new_queue("out")
    await broker.preload(in_url, count)
    await warm(node)
    poll_s = 0.02 if broker.kind == "local" else 0.2
    started = time.perf_counter()
    stop = await _start(broker, node, side, in_url, out_url, count, max_in_flight)
    try:
        while await broker.depth(out_url) < count:  # noqa: ASYNC110 (another process may fill it)
            await asyncio.sleep(poll_s)
        return count / (time.perf_counter() - started)
    finally:
        await stop()


async def _start(
    broker: Broker,
    node: Node,
    side: str,
    in_url: str,
    out_url: str,
    count: int,
    max_in_flight: int,
) -> Callable[[], Awaitable[None]]:
    if side == "listener":
        return await listener_consumer(node, in_url, out_url, max_in_flight)
    return await loop_consumer(broker, node, in_url, out_url, count)


async def latency(
    broker: Broker, node: Node, side: str, count: int, rate: float, *, max_in_flight: int
) -> list[float]:
    in_url, out_url = await broker.new_queue("in"), await broker.new_queue("out")
    await broker.open_sink(in_url)
    await warm(node)
    sent_at: dict[int, float] = {}
    latencies_ms: list[float] = []
    stop = await _start(broker, node, side, in_url, out_url, count, max_in_flight)

    async def take() -> None:
        async for batch in broker.results(out_url):
            now = time.perf_counter()
            latencies_ms.extend((now - sent_at[n_of(b)]) * 1000 for b in batch)
            if len(latencies_ms) >= count:
                return

    taking = asyncio.create_task(take())
    try:
        for n in range(count):
            sent_at[n] = time.perf_counter()
            await broker.send(in_url, body(n))
            await asyncio.sleep(1 / rate)
        await asyncio.wait_for(taking, 120)
    finally:
        taking.cancel()
        await stop()
    return latencies_ms


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(broker: Broker, node: Node, args: argparse.Namespace) -> dict[str, Figures]:
    count = args.messages if broker.kind == "local" else args.sqs_messages
    rate = args.rate if broker.kind == "local" else args.sqs_rate
    figures: dict[str, Figures] = {}
    rates: dict[str, list[float]] = {"listener": [], "loop": []}
    for _ in range(args.runs):
        for side in ("loop", "listener"):
            rate_per_s = await throughput(
                broker, node, side, count, max_in_flight=args.max_in_flight
            )
            rates[side].append(rate_per_s)
    for side in ("loop", "listener"):
        lat = await latency(
            broker, node, side, args.latency_messages, rate, max_in_flight=args.max_in_flight
        )
        figures[side] = Figures(
            msg_per_s=statistics.median(rates[side]),
            p50_ms=percentile(lat, 0.50),
            p99_ms=percentile(lat, 0.99),
        )
        print(
            json.dumps(
                {
                    "broker": broker.kind,
                    "side": side,
                    **({"max_in_flight": args.max_in_flight} if side == "listener" else {}),
                    "messages": count,
                    "runs_msg_per_s": [round(r, 1) for r in rates[side]],
                    "latency_messages": args.latency_messages,
                    "rate_per_s": rate,
                    **{k: round(v, 1) for k, v in figures[side].__dict__.items()},
                }
            ),
            flush=True,
        )
    return figures


@asynccontextmanager
async def brokers(names: list[str], data_dir: Path) -> AsyncIterator[list[Broker]]:
    async with AsyncExitStack() as stack:
        found: list[Broker] = []
        for name in names:
            if name == "local":
                found.append(Local(data_dir))
            else:
                stack.enter_context(fake_credentials())
                moto = stack.enter_context(MotoServer())
                from aiobotocore.session import get_session

                sqs = await stack.enter_async_context(
                    get_session().create_client(
                        "sqs", region_name=REGION, endpoint_url=moto.endpoint_url
                    )
                )
                found.append(Sqs(moto.endpoint_url, sqs))
        yield found


def report(results: dict[str, dict[str, Figures]]) -> None:
    print()
    print(f"{'broker':8} {'side':9} {'msg/s':>9} {'p50 ms':>9} {'p99 ms':>9}")
    for kind, figures in results.items():
        for side, f in figures.items():
            print(f"{kind:8} {side:9} {f.msg_per_s:9.1f} {f.p50_ms:9.1f} {f.p99_ms:9.1f}")
        ratio = figures["listener"].msg_per_s / figures["loop"].msg_per_s
        print(f"{kind:8} listener/loop throughput ratio: {ratio:.2f}")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-listener-") as tmp:
        data_dir = Path(tmp) / "data"
        async with (
            open_node(data_dir, options=MANAGER) as node,
            brokers(args.brokers, data_dir) as found,
        ):
            await node.push(BEHAVE, version="1.0.0")
            results = {broker.kind: await measure(broker, node, args) for broker in found}
    report(results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", nargs="+", default=["local", "sqs"], choices=["local", "sqs"])
    parser.add_argument("--messages", type=int, default=2000, help="local:// drain size")
    parser.add_argument("--sqs-messages", type=int, default=300, help="SQS drain size")
    parser.add_argument("--latency-messages", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0, help="local:// latency send rate")
    parser.add_argument("--sqs-rate", type=float, default=10.0, help="SQS latency send rate")
    parser.add_argument(
        "--max-in-flight", type=int, default=16, help="the listener's (16 is its default)"
    )
    parser.add_argument("--runs", type=int, default=1, help="drains per side (median)")
    asyncio.run(main(parser.parse_args()))
