"""The batching benchmark: a listener on a model with ``apply_batch`` (examples/digits),
with the default listener definition beside the same listener at ``batch.max_batch_size = 1``
(one model call per input: the baseline), measured in the same run.

    .venv/bin/python bench/bench_batching.py            # 20,000 inputs; latency at 10 msg/s
    .venv/bin/python bench/bench_batching.py --messages 5000 --data-dir /tmp/bench-digits

The node is opened as ``modelbus serve`` opens it (tests/e2e/node.py) and examples/digits is
pushed to it, which builds its environment (scikit-learn) on first use: pass ``--data-dir``
to keep it between runs. For each of the two listener definitions, on fresh ``local://``
queues:

1. **drain**: ``--messages`` inputs (8x8 images from examples/digits/samples.json, in turn)
   are preloaded, the listener is created, and the clock runs from its first delivery until
   it has acked the last one; then the results on the output queue are counted (a listener
   that published fewer than one per input is reported as having lost them);
2. **latency**: ``--latency-messages`` inputs are sent one at a time at ``--latency-rate``
   msg/s (default 10); a result's latency is its arrival on the output minus its input's
   enqueue time (found through the result's ``sourcemessageid``), p50 and p99.

Every measure has a deadline (``--deadline-min-s`` plus one second per ``--deadline-rate``
inputs, plus the sending time); past it the measure is reported ``stalled`` with how far it
got, and the script goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_drain import Stop, cell, start_listener, stop_within
from drain_kits import Progress, ctx, tag
from tests.e2e.node import EXAMPLES, Node, open_node

from modelbus.client.refs import ModelRef
from modelbus.connectors import OutMessage, make_sink, make_source
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.manager import ManagerOptions
from modelbus.runtime.invocation import CallOptions, Payload

DIGITS = EXAMPLES / "digits"
MODEL = "examples/digits@1.*"
BASELINE = "max_batch_size=1"
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},  # the listener definition's defaults, whatever they are in this build
    BASELINE: {"batch": {"max_batch_size": 1}},
}


@dataclass
class Figures:
    config: str
    messages: int
    status: str = "ok"  # ok, stalled, lost, failed
    msg_per_s: float | None = None
    acked: int = 0
    results: int | None = None
    batch: str = ""
    latencies_ms: list[float] = field(default_factory=list)
    latency_status: str = ""
    detail: str = ""

    def percentile(self, q: float) -> float | None:
        if self.latency_status != "ok" or not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def samples() -> list[bytes]:
    return [
        json.dumps(s["pixels"]).encode() for s in json.loads((DIGITS / "samples.json").read_text())
    ]


def deadline_s(args: argparse.Namespace, messages: int, sending_s: float = 0.0) -> float:
    return float(args.deadline_min_s + messages / args.deadline_rate + sending_s)


def definition(config: str, source: str, output: str) -> ListenerDefinition:
    fields: dict[str, Any] = {
        "name": f"bench-batching-{tag()}",
        "source": source,
        "model": MODEL,
        "outputs": [output],
    }
    return ListenerDefinition.model_validate(fields | CONFIGS[config])


def count_queue(data_dir: Path, url: str) -> int:
    path = data_dir / "queues" / f"{url.split('://')[1]}.sqlite"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])


async def preload(data_dir: Path, url: str, bodies: list[bytes]) -> None:
    sink = make_sink(url, ctx(data_dir))
    await sink.open()
    try:
        for start in range(0, len(bodies), 500):
            chunk = bodies[start : start + 500]
            await sink.publish([OutMessage(id=uuid.uuid4().hex, body=b) for b in chunk])
    finally:
        await sink.close()


async def drain(node: Node, config: str, args: argparse.Namespace) -> Figures:
    t = tag()
    source, output = f"local://batching-in-{t}", f"local://batching-out-{t}"
    images = samples()
    figures = Figures(config, args.messages)
    listener = definition(config, source, output)
    figures.batch = f"{listener.batch.max_batch_size}/{listener.batch.max_wait_ms} ms"
    await preload(node.data_dir, source, [images[n % len(images)] for n in range(args.messages)])
    progress = Progress()
    stops: list[Stop] = []
    deadline = deadline_s(args, args.messages)
    try:
        async with asyncio.timeout(deadline):
            await start_listener(node, listener, progress, stops)
            await progress.wait_for(args.messages)
            ended = asyncio.get_running_loop().time()
        assert progress.first_at is not None
        figures.msg_per_s = args.messages / (ended - progress.first_at)
    except TimeoutError:
        figures.status, figures.detail = "stalled", f"deadline {deadline:.0f} s"
    except Exception as exc:
        figures.status, figures.detail = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        stopped = await stop_within(stops)
        if stopped:
            figures.detail = "; ".join(filter(None, (figures.detail, stopped)))
    figures.acked = progress.done
    figures.results = await asyncio.to_thread(count_queue, node.data_dir, output)
    if figures.status == "ok" and figures.results < args.messages:
        figures.status = "lost"
        figures.detail = f"{args.messages - figures.results:,} missing"
        figures.msg_per_s = None
    _say(
        {
            "config": config,
            "measure": "drain",
            "batch": figures.batch,
            "status": figures.status,
            "messages": args.messages,
            "acked": figures.acked,
            "results": figures.results,
            "drain_msg_per_s": None if figures.msg_per_s is None else round(figures.msg_per_s, 1),
        }
        | ({"detail": figures.detail} if figures.detail else {})
    )
    return figures


async def latency(node: Node, config: str, figures: Figures, args: argparse.Namespace) -> None:
    t = tag()
    source, output = f"local://batching-lin-{t}", f"local://batching-lout-{t}"
    images = samples()
    count, rate = args.latency_messages, args.latency_rate
    sent: dict[str, float] = {}
    latencies: dict[str, float] = {}
    deadline = deadline_s(args, count, sending_s=count / rate)
    reader = make_source(output, ctx(node.data_dir, f"reader-{t}"))
    sender = make_sink(source, ctx(node.data_dir))
    try:
        async with AsyncExitStack() as stack:
            await reader.open()
            stack.push_async_callback(reader.close)
            await sender.open()
            stack.push_async_callback(sender.close)
            reading = asyncio.create_task(_read(reader, sent, latencies))
            stack.callback(reading.cancel)
            async with asyncio.timeout(deadline):
                stops = []
                stack.push_async_callback(stop_within, stops)
                await start_listener(node, definition(config, source, output), Progress(), stops)
                started = time.perf_counter()
                for n in range(count):
                    message_id = uuid.uuid4().hex
                    sent[message_id] = time.time()
                    body = images[n % len(images)]
                    await sender.publish([OutMessage(id=message_id, body=body)])
                    await asyncio.sleep(max(0.0, started + (n + 1) / rate - time.perf_counter()))
                while len(latencies) < count:
                    if reading.done():
                        reading.result()
                        raise RuntimeError("the result reader stopped")
                    await asyncio.sleep(0.01)
        figures.latency_status = "ok"
    except TimeoutError:
        figures.latency_status = "stalled"
        figures.detail = f"latency: {len(latencies)}/{count} results by {deadline:.0f} s"
    except Exception as exc:
        figures.latency_status = "failed"
        figures.detail = f"latency: {type(exc).__name__}: {exc}"
    figures.latencies_ms = list(latencies.values())
    p50, p99 = figures.percentile(0.50), figures.percentile(0.99)
    _say(
        {
            "config": config,
            "measure": "latency",
            "status": figures.latency_status,
            "rate_per_s": rate,
            "results": len(latencies),
            "p50_ms": None if p50 is None else round(p50, 2),
            "p99_ms": None if p99 is None else round(p99, 2),
        }
    )


async def _read(reader: Any, sent: dict[str, float], latencies: dict[str, float]) -> None:
    while True:
        deliveries = await reader.receive(100, 0.5)
        now = time.time()
        for delivery in deliveries:
            source_id = delivery.attributes.get("sourcemessageid")
            if source_id is None:
                source_id = json.loads(delivery.body).get("sourcemessageid")
            if source_id in sent and source_id not in latencies:
                latencies[source_id] = (now - sent[source_id]) * 1000
        if deliveries:
            await reader.ack(deliveries)


def _say(line: dict[str, object]) -> None:
    print(json.dumps(line), flush=True)


def table(rows: list[Figures]) -> str:
    head = (
        f"{'listener':18}{'batch max/wait':>15}{'messages':>9}{'msg/s':>9}{'ratio':>7}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'results':>9}  status"
    )
    lines = [head, "-" * len(head)]
    base = next((r.msg_per_s for r in rows if r.config == BASELINE), None)
    for row in rows:
        ratio = row.msg_per_s / base if row.msg_per_s and base else None
        status = row.status if not row.detail else f"{row.status} ({row.detail})"
        results = "?" if row.results is None else f"{row.results:,}"
        lines.append(
            f"{row.config:18}{row.batch:>15}{row.messages:9,}{cell(row.msg_per_s, ',.0f', 9)}"
            f"{cell(ratio, '.2f', 7)}{cell(row.percentile(0.5), '.1f', 8)}"
            f"{cell(row.percentile(0.99), '.1f', 8)}{results:>9}  {status}"
        )
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def data_dir_of(args: argparse.Namespace) -> AsyncIterator[Path]:
    if args.data_dir:
        yield Path(args.data_dir)
        return
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as tmp:
        yield Path(tmp) / "data"


async def main(args: argparse.Namespace) -> None:
    rows: list[Figures] = []
    async with data_dir_of(args) as data_dir:
        options = ManagerOptions(sync_interval_s=None)
        async with open_node(data_dir, options=options) as node:
            print("pushing examples/digits (its environment is built on first use)", flush=True)
            await node.push(DIGITS, version="1.0.0")
            warm = [Payload(b, "json") for b in samples()]  # start the runners before any clock
            await node.service.invoke_batch(ModelRef.parse(MODEL), warm, CallOptions())
            for config in CONFIGS:
                figures = await drain(node, config, args)
                if args.latency_messages > 0:
                    await latency(node, config, figures, args)
                rows.append(figures)
    print()
    print(
        f"examples/digits on local://, {args.messages:,} inputs per drain, "
        f"{args.latency_messages} latency inputs at {args.latency_rate:g} msg/s; "
        f"ratio: msg/s over the {BASELINE} baseline"
    )
    print(table(rows))
    rates = [r.msg_per_s for r in rows if r.msg_per_s]
    if len(rates) == len(rows):
        print(f"default / {BASELINE}: {rates[0] / rates[1]:.2f}x")
    else:
        print(f"default / {BASELINE}: - (a drain did not complete)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="See docs/benchmarks.md."
    )
    p.add_argument("--messages", type=int, default=20_000, help="drain size (default 20000)")
    p.add_argument(
        "--latency-messages", type=int, default=100, help="(default 100; 0: no latency runs)"
    )
    p.add_argument(
        "--latency-rate", type=float, default=10.0, help="latency send rate, msg/s (default 10)"
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="the node's data directory (default a temporary one); reuse it to skip "
        "rebuilding the model's environment",
    )
    p.add_argument(
        "--deadline-min-s",
        type=float,
        default=60.0,
        help="every measure's deadline: this many seconds (default 60) ...",
    )
    p.add_argument(
        "--deadline-rate",
        type=float,
        default=200.0,
        help="... plus one second per this many inputs (default 200)",
    )
    return p


if __name__ == "__main__":
    asyncio.run(main(parser().parse_args()))
