"""The drain benchmark: a real modelbus listener beside a careful hand-written batched
consumer loop and a FastStream app, on every broker, in one run.

    .venv/bin/python bench/bench_drain.py                         # every broker, 20,000 messages
    .venv/bin/python bench/bench_drain.py --brokers local,redis --messages 5000
    .venv/bin/python bench/bench_drain.py --brokers redis --latency-rate 500

For each broker (``--brokers``, default all: local, sqs, redis, amqp, nats, mqtt, kafka,
postgres) and each side (``--sides``), the harness

1. **drain**: preloads ``--messages`` JSON messages of about 200 bytes into a fresh input,
   starts the consumer, and times from its first delivery (connects and group joins are
   left out) until it has acked every message, each after its result was published; then
   counts the results on the output: a side that published fewer than one result per
   message is reported as having lost messages, not with a rate;
2. **latency** (hand and modelbus): on a fresh input, sends ``--latency-messages`` messages
   one by one at ``--rate`` msg/s (at most half the slower side's drain rate, so nothing
   queues up) or, with ``--latency-rate R``, at exactly R msg/s, and reads the results from
   the output; the end-to-end latency of a message is the arrival of its result minus its
   enqueue time (p50 and p99).

Every measure has a deadline (``--deadline-min-s`` plus one second per ``--deadline-rate``
messages, plus the sending time of a latency run); a measure past it is reported as
``stalled`` with the side and how far it got (acked, results counted), and the script goes
on with the next one.

The sides:

* **modelbus**: a listener created through the real ``ListenerManager`` of a node opened as
  ``modelbus serve`` opens it (SQLite store, registry, runner pools; tests/e2e/node.py),
  ``max_in_flight`` = ``--batch``, everything else default: results as CloudEvents to a sink
  on the same broker, a run record per message, the ack after both. Peak RSS of the server
  process and of its runner processes is sampled during its drains.
* **hand**: the kit's hand-written loop (bench/drain_kits.py): receive a batch of up to
  ``--batch`` -> call the model -> publish the results batched and wait until the broker
  has them -> ack batched. No run records, no dedupe, bare results.
* **faststream-each**, **faststream-batch** (redis, amqp, nats, kafka; needs the ``bench``
  extra): a FastStream app with the echo model in process (bench/faststream_peer.py).

The first two call the same trivial model, tests/e2e/models/behave (it echoes its JSON
input), in the same pool of up to 4 runner processes (``invoke_batch`` per received batch,
for both). Each drain also reports the CPU its side spent per message (the process and its
runners and workers, ``memory.cpu_seconds``). Servers: the shared Redis,
RabbitMQ, NATS and PostgreSQL on 127.0.0.1; moto (SQS), tansu (Kafka) and a Mosquitto (MQTT)
started on free ports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import faststream_peer
import memory
from drain_kits import KITS, Kit, Names, Progress, body, ctx, tag
from memory import PeakRss, RssSampler
from tests.e2e.node import BEHAVE, Node, open_node

from modelbus.client.refs import ModelRef
from modelbus.connectors import OutMessage, make_sink, make_source
from modelbus.errors import ListenerNotFound
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.lifecycle import RuntimeOptions
from modelbus.listeners.manager import ManagerOptions
from modelbus.runtime.invocation import CallOptions, Payload, Result

REF = ModelRef.parse("e2e/behave@1.*")
SIDES = ("hand", "modelbus", "faststream-each", "faststream-batch")
LATENCY_SIDES = ("hand", "modelbus")
WARMUP_MESSAGES = 5
STOP_TIMEOUT_S = 30.0
COUNT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Drain:
    """One drain of one side: ``status`` is ``ok``, ``stalled`` (the deadline passed),
    ``lost`` (fewer results than messages on the output), ``duplicates`` (more: each
    message still has its result; counted as done) or ``failed`` (the side raised)."""

    side: str
    status: str
    messages: int
    acked: int
    results: int | None
    msg_per_s: float | None = None
    rss: PeakRss | None = None
    cpu_us_per_msg: float | None = None
    detail: str = ""

    @property
    def done(self) -> bool:
        return self.status in ("ok", "duplicates")


@dataclass(frozen=True)
class Latency:
    status: str  # ok, stalled or failed
    rate: float  # the send rate asked for, msg/s
    sent_rate: float | None  # the send rate achieved
    latencies_ms: list[float] = field(default_factory=list)
    detail: str = ""

    def percentile(self, q: float) -> float | None:
        if self.status != "ok" or not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class Figures:
    """One side on one broker: its drains (``--runs``) and its latency run, if any."""

    side: str
    drains: list[Drain]
    latency: Latency | None = None

    @property
    def msg_per_s(self) -> float | None:
        rates = [d.msg_per_s for d in self.drains if d.done and d.msg_per_s]
        return statistics.median(rates) if rates else None

    @property
    def status(self) -> str:
        """The worst drain's, as a short line."""
        bad = [d for d in self.drains if not d.done]
        if bad:
            d = bad[0]
            where = f"{d.acked:,}/{d.messages:,} acked, {_count(d.results)} results"
            return f"{d.status.upper()}: {where}" + (f" ({d.detail})" if d.detail else "")
        dup = [d for d in self.drains if d.status == "duplicates"]
        return f"ok, {dup[0].detail}" if dup else "ok"

    @property
    def cpu_us_per_msg(self) -> float | None:
        # a 0 is a drain shorter than the clock's tick (10 ms): measured, and shown as 0
        costs = [d.cpu_us_per_msg for d in self.drains if d.done and d.cpu_us_per_msg is not None]
        return statistics.median(costs) if costs else None

    @property
    def rss(self) -> PeakRss | None:
        peaks = [d.rss for d in self.drains if d.rss is not None]
        if not peaks:
            return None
        return PeakRss(
            server_mb=max(p.server_mb for p in peaks),
            runners_sum_mb=max(p.runners_sum_mb for p in peaks),
            runners_max_mb=max(p.runners_max_mb for p in peaks),
            runners=max(p.runners for p in peaks),
        )


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


# --- the model, as the hand loop calls it ----------------------------------------------------


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


# --- the node ---------------------------------------------------------------------------------


def node_options(workers: int) -> dict[str, Any]:
    """The one place ``--workers`` reaches the node: ``open_node(..., workers=N)`` runs the
    listeners in this process and N-1 worker processes, as ``modelbus serve --workers N``
    (tests/e2e/node.py). Their counters arrive with their heartbeats (every 0.5 s), so a
    drain's end is seen up to that much later than with one process."""
    return {"workers": workers}


# --- consumers --------------------------------------------------------------------------------


Stop = Callable[[], Awaitable[None]]


def is_faststream(side: str) -> bool:
    return side.startswith("faststream-")


async def prepare(kit: Kit, side: str, names: Names, listener: str) -> None:
    if is_faststream(side):
        await faststream_peer.PEERS[kit.name](kit).prepare(names)
    else:
        await kit.prepare(names, side, listener)


async def preload(kit: Kit, side: str, names: Names, bodies: list[bytes]) -> None:
    if is_faststream(side):
        await faststream_peer.PEERS[kit.name](kit).preload(names, bodies)
    else:
        await kit.preload(names, bodies)


async def start_consumer(
    kit: Kit,
    node: Node,
    side: str,
    names: Names,
    listener: str,
    batch: int,
    progress: Progress,
    stops: list[Stop],
) -> None:
    """Start ``side``'s consumer; its stop is put in ``stops`` *before* anything is awaited,
    so that a start cut short by a deadline is stopped (and cleaned up) too."""
    if is_faststream(side):
        peer = faststream_peer.PEERS[kit.name](kit)
        await peer.start(names, side.removeprefix("faststream-"), batch, progress, stops)
        return
    if side == "hand":
        task = asyncio.create_task(kit.hand_loop(names, model_of(node), batch, progress))
        progress.watch(task)

        async def stop_hand() -> None:
            # Again and again: redis-py swallows a cancellation that lands in a blocking read.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.2)
            await asyncio.gather(task, return_exceptions=True)

        stops.append(stop_hand)
        return
    definition = ListenerDefinition(
        name=listener,
        source=kit.listener_source(names),
        model=str(REF),
        outputs=[names.out_url],
        max_in_flight=batch,
    )
    await start_listener(node, definition, progress, stops)


async def start_listener(
    node: Node, definition: ListenerDefinition, progress: Progress, stops: list[Stop]
) -> None:
    """Create the listener in the node's manager and follow its counters in ``progress``."""
    watcher: asyncio.Task[None] | None = None

    async def stop_listener() -> None:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        with contextlib.suppress(ListenerNotFound):  # its creation was cut short
            await node.manager.delete(definition.name)

    stops.append(stop_listener)
    await node.manager.create(definition, check=False)
    watcher = asyncio.create_task(watch_listener(node, definition.name, progress))


async def watch_listener(node: Node, name: str, progress: Progress) -> None:
    """The listener's own counters: received (its first delivery) and succeeded (acked after
    the result was published and the run record written)."""
    while True:
        counters = (await node.manager.status(name)).counters
        if counters["received"] > 0:
            progress.started()
        succeeded = int(counters["succeeded"])
        if succeeded > progress.done:
            progress.acked(succeeded - progress.done)
        # Every 20 ms: the end of a drain of seconds is seen at most that late, and reading
        # the status (a few hundred microseconds of the listener's own loop) stays cheap.
        await asyncio.sleep(0.02)


async def stop_within(stops: list[Stop]) -> str:
    """Run the stops (last first), each within STOP_TIMEOUT_S; what went wrong, if anything."""
    problems = []
    for stop in reversed(stops):
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await stop()
        except TimeoutError:
            problems.append(f"did not stop within {STOP_TIMEOUT_S:g} s")
        except Exception as exc:
            problems.append(f"stopping raised {type(exc).__name__}: {exc}")
    stops.clear()
    return "; ".join(problems)


async def _count_results(kit: Kit, names: Names) -> int | None:
    try:
        async with asyncio.timeout(COUNT_TIMEOUT_S):
            return await kit.count_results(names)
    except Exception as exc:
        _say({"broker": kit.name, "counting_results_failed": f"{type(exc).__name__}: {exc}"})
        return None


# --- deadlines --------------------------------------------------------------------------------


def deadline_s(args: argparse.Namespace, messages: int, sending_s: float = 0.0) -> float:
    """A measure's deadline: generous, and scaled to its messages (see --deadline-*)."""
    return float(args.deadline_min_s + messages / args.deadline_rate + sending_s)


# --- the two measures -------------------------------------------------------------------------


async def drain(
    kit: Kit, node: Node, side: str, count: int, args: argparse.Namespace, sample_rss: bool
) -> Drain:
    """Preload ``count`` messages, drain them with ``side``, count the results."""
    names = await kit.fresh()
    listener = f"bench-{kit.name}-{tag()}"
    progress = Progress()
    loop = asyncio.get_running_loop()
    stops: list[Stop] = []
    status, detail, rate, rss, cpu = "ok", "", None, None, None
    deadline = deadline_s(args, count)
    sampler = RssSampler() if sample_rss else None
    try:
        await prepare(kit, side, names, listener)
        await preload(kit, side, names, [body(n, time.time()) for n in range(count)])
        async with AsyncExitStack() as stack:
            if sampler is not None:
                await stack.enter_async_context(sampler)
            async with asyncio.timeout(deadline):
                cpu_before = memory.cpu_seconds()
                await start_consumer(kit, node, side, names, listener, args.batch, progress, stops)
                await progress.wait_for(count)
                ended = loop.time()
                cpu_after = memory.cpu_seconds()
        assert progress.first_at is not None
        rate = count / (ended - progress.first_at)
        if cpu_before is not None and cpu_after is not None:
            cpu = (cpu_after - cpu_before) / count * 1e6
    except TimeoutError:
        status, detail = "stalled", f"deadline {deadline:.0f} s"
    except Exception as exc:
        status, detail = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        stopped = await stop_within(stops)
        results = await _count_results(kit, names)
        with contextlib.suppress(Exception):
            await kit.cleanup(names)
    if sampler is not None:
        rss = sampler.peak()
    if status == "ok" and results is not None and results != count:
        status = "lost" if results < count else "duplicates"
        detail = f"{abs(results - count):,} " + ("missing" if results < count else "extra")
    if stopped:
        detail = f"{detail}; {stopped}" if detail else stopped
    outcome = Drain(
        side=side,
        status=status,
        messages=count,
        acked=progress.done,
        results=results,
        msg_per_s=rate if status in ("ok", "duplicates") else None,
        rss=rss,
        cpu_us_per_msg=cpu if status in ("ok", "duplicates") else None,
        detail=detail,
    )
    line: dict[str, Any] = {
        "broker": kit.name,
        "side": side,
        "measure": "drain",
        "status": status,
        "messages": count,
        "acked": outcome.acked,
        "results": results,
    }
    if outcome.msg_per_s is not None:
        line["drain_msg_per_s"] = round(outcome.msg_per_s, 1)
    if outcome.cpu_us_per_msg is not None:
        line["cpu_us_per_msg"] = round(outcome.cpu_us_per_msg, 1)
    if detail:
        line["detail"] = detail
    _say(line | memory.describe(rss))
    return outcome


async def latency(
    kit: Kit, node: Node, side: str, count: int, rate: float, args: argparse.Namespace
) -> Latency:
    """End-to-end latencies (ms) of ``count`` messages sent at ``rate`` msg/s, after a few
    warm-up messages made sure the consumer and the reader are both connected."""
    names = await kit.fresh()
    listener = f"bench-{kit.name}-{tag()}"
    reader = make_source(kit.reader_url(names), ctx(kit.data_dir, f"reader-{uuid.uuid4().hex[:6]}"))
    sender = make_sink(names.in_url, ctx(kit.data_dir))
    latencies: list[float] = []
    warm: list[float] = []
    status, detail, sent_rate = "ok", "", None
    deadline = deadline_s(args, count + WARMUP_MESSAGES, sending_s=count / rate)
    try:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(kit.cleanup, names)
            await kit.prepare(names, side, listener)
            await reader.open()
            stack.push_async_callback(reader.close)
            await sender.open()
            stack.push_async_callback(sender.close)
            reading = asyncio.create_task(_read(reader, latencies, warm))
            stack.callback(reading.cancel)

            async def send(n: int) -> None:
                await sender.publish([OutMessage(id=uuid.uuid4().hex, body=body(n, time.time()))])

            async with asyncio.timeout(deadline):
                stops: list[Stop] = []
                stack.push_async_callback(stop_within, stops)
                await start_consumer(
                    kit, node, side, names, listener, args.batch, Progress(), stops
                )
                for n in range(-WARMUP_MESSAGES, 0):
                    await send(n)
                await _until(lambda: len(warm) >= WARMUP_MESSAGES, reading)
                started = time.perf_counter()
                for n in range(count):
                    await send(n)
                    await asyncio.sleep(max(0.0, started + (n + 1) / rate - time.perf_counter()))
                sent_rate = count / (time.perf_counter() - started)
                await _until(lambda: len(latencies) >= count, reading)
    except TimeoutError:
        got = f"{len(latencies)}/{count} results"
        status, detail = "stalled", f"{got} by the deadline {deadline:.0f} s"
    except Exception as exc:
        status, detail = "failed", f"{type(exc).__name__}: {exc}"
    return Latency(status, rate, sent_rate, latencies, detail)


async def _until(condition: Callable[[], bool], reading: asyncio.Task[None]) -> None:
    while not condition():
        if reading.done():
            reading.result()  # the reader failed: say why
            raise RuntimeError("the result reader stopped")
        await asyncio.sleep(0.01)


async def _read(reader: Any, latencies: list[float], warm: list[float]) -> None:
    seen: set[int] = set()
    while True:
        deliveries = await reader.receive(100, 0.5)
        now = time.time()
        for delivery in deliveries:
            document = json.loads(delivery.body)
            data = document["data"] if isinstance(document.get("data"), dict) else document
            if data["n"] in seen:
                continue  # a duplicate (at-least-once): the first arrival counts
            seen.add(data["n"])
            (warm if data["n"] < 0 else latencies).append((now - data["sent"]) * 1000)
        if deliveries:
            await reader.ack(deliveries)


# --- one broker ---------------------------------------------------------------------------------


def messages_for(kit: Kit, args: argparse.Namespace) -> int:
    return min(args.messages, args.sqs_messages) if kit.name == "sqs" else int(args.messages)


def sides_for(kit: Kit, args: argparse.Namespace) -> list[str]:
    wanted = args.sides.split(",")
    sides = [s for s in ("hand", "modelbus") if s in wanted]
    if "faststream" in wanted and args.faststream_missing is None:
        sides += faststream_peer.sides(kit.name)
    return sides


async def measure(kit: Kit, node: Node, args: argparse.Namespace) -> dict[str, Figures]:
    count = messages_for(kit, args)
    sides = sides_for(kit, args)
    drains: dict[str, list[Drain]] = {side: [] for side in sides}
    for _ in range(args.runs):
        for side in sides:
            sample = side == "modelbus" and args.memory_missing is None
            drains[side].append(await drain(kit, node, side, count, args, sample))
    figures = {side: Figures(side, drains[side]) for side in sides}
    timed = [side for side in LATENCY_SIDES if side in sides]
    if args.latency_messages <= 0 or not timed:
        return figures
    if args.latency_rate:
        rate = float(args.latency_rate)
    else:
        drained = [r for side in timed if (r := figures[side].msg_per_s) is not None]
        rate = min([args.rate, *(0.5 * r for r in drained)])
    for side in timed:
        lat = await latency(kit, node, side, args.latency_messages, rate, args)
        figures[side] = Figures(side, drains[side], lat)
        line: dict[str, Any] = {
            "broker": kit.name,
            "side": side,
            "measure": "latency",
            "status": lat.status,
            "latency_rate_per_s": round(rate, 1),
            "sent_rate_per_s": None if lat.sent_rate is None else round(lat.sent_rate, 1),
            "results": len(lat.latencies_ms),
        }
        for name, q in (("p50_ms", 0.50), ("p99_ms", 0.99)):
            value = lat.percentile(q)
            line[name] = None if value is None else round(value, 2)
        if lat.detail:
            line["detail"] = lat.detail
        _say(line)
    return figures


def _say(line: dict[str, object]) -> None:
    print(json.dumps(line), flush=True)


# --- the table ----------------------------------------------------------------------------------


def cell(value: float | None, spec: str, width: int) -> str:
    return ("-" if value is None else format(value, spec)).rjust(width)


def table(results: dict[str, dict[str, Figures]]) -> str:
    head = (
        f"{'broker':9}{'side':18}{'messages':>9}{'msg/s':>9}{'ratio':>7}{'p50 ms':>8}"
        f"{'p99 ms':>8}{'Δp99 ms':>8}{'results':>9}{'CPU us/msg':>11}  {'RSS MB srv/run/max':>19}"
        "  status"
    )
    lines = [head, "-" * len(head)]
    for broker, sides in results.items():
        hand = sides.get("hand")
        hand_rate = hand.msg_per_s if hand else None
        hand_p99 = hand.latency.percentile(0.99) if hand and hand.latency else None
        for side, fig in sides.items():
            rate = fig.msg_per_s
            ratio = rate / hand_rate if rate and hand_rate else None
            p50 = fig.latency.percentile(0.50) if fig.latency else None
            p99 = fig.latency.percentile(0.99) if fig.latency else None
            delta = p99 - hand_p99 if p99 is not None and hand_p99 is not None else None
            if side == "hand":
                delta = None
            results_seen = [d.results for d in fig.drains]
            shown = min((r for r in results_seen if r is not None), default=None)
            rss = fig.rss
            memory_cell = (
                f"{rss.server_mb:.0f}/{rss.runners_sum_mb:.0f}/{rss.runners_max_mb:.0f}"
                if rss
                else "-"
            )
            status = fig.status
            lat = fig.latency
            if lat is not None and lat.status != "ok":
                status += f"; latency {lat.status.upper()}: {lat.detail}"
            elif lat is not None and lat.sent_rate and lat.sent_rate < 0.95 * lat.rate:
                status += f"; latency sent at only {lat.sent_rate:.0f} msg/s"
            lines.append(
                f"{broker:9}{side:18}{fig.drains[0].messages:9,}{cell(rate, ',.0f', 9)}"
                f"{cell(ratio, '.2f', 7)}{cell(p50, '.1f', 8)}{cell(p99, '.1f', 8)}"
                f"{cell(delta, '+.1f', 8)}{_count(shown):>9}{cell(fig.cpu_us_per_msg, ',.0f', 11)}"
                f"  {memory_cell:>19}  {status}"
            )
    return "\n".join(lines)


def clients(kits: dict[str, Kit], faststream_on: bool) -> str:
    lines = ["clients:"]
    for name, kit in kits.items():
        peer = faststream_on and faststream_peer.sides(name)
        extra = " (FastStream's peer is built on it too)" if peer else ""
        lines.append(f"  {name:9}{kit.client}{extra}")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bench_node(data_dir: Path, workers: int) -> AsyncIterator[Node]:
    # as `modelbus serve` sets it on a SQLite store (ManagerOptions.from_settings): run claims
    # only with worker processes, the only other replicas a SQLite node can have
    runtime = RuntimeOptions(claim_runs=workers > 1)
    options = ManagerOptions(sync_interval_s=None, runtime=runtime)
    async with open_node(data_dir, options=options, **node_options(workers)) as node:
        yield node


async def main(args: argparse.Namespace) -> None:
    names = args.brokers.split(",")
    unknown = [n for n in names if n not in KITS]
    if unknown:
        raise SystemExit(f"unknown broker(s) {unknown}; choose from {','.join(KITS)}")
    bad_sides = [s for s in args.sides.split(",") if s not in ("hand", "modelbus", "faststream")]
    if bad_sides:
        raise SystemExit(f"unknown side(s) {bad_sides}; choose from hand,modelbus,faststream")
    if args.workers < 1:
        raise SystemExit(f"--workers {args.workers}: at least 1")
    args.faststream_missing = faststream_peer.missing()
    args.memory_missing = memory.missing()
    if "faststream" in args.sides.split(",") and args.faststream_missing:
        print(f"faststream sides skipped: {args.faststream_missing}", flush=True)
    if args.memory_missing:
        print(f"peak RSS not measured: {args.memory_missing}", flush=True)
    results: dict[str, dict[str, Figures]] = {}
    kits: dict[str, Kit] = {}
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        data_dir = Path(tmp) / "data"
        async with bench_node(data_dir, args.workers) as node:
            await node.push(BEHAVE, version="1.0.0")
            await model_of(node)([body(-1, 0.0)] * 8)  # start the runners before any clock
            for name in names:
                kit = kits[name] = KITS[name](data_dir)
                async with AsyncExitStack() as stack:
                    await kit.start(stack)
                    results[name] = await measure(kit, node, args)
    print()
    rate = f"at {args.latency_rate:g} msg/s" if args.latency_rate else "at a low rate"
    print(
        f"JSON messages of ~200 B, batch / max_in_flight {args.batch}, workers {args.workers}, "
        f"{args.latency_messages} latency messages {rate}, {args.runs} run(s)"
    )
    print(table(results))
    print(clients(kits, args.faststream_missing is None))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="See docs/benchmarks.md."
    )
    p.add_argument("--brokers", default=",".join(KITS), help="comma-separated (default all)")
    p.add_argument(
        "--sides",
        default="hand,modelbus,faststream",
        help="comma-separated among hand, modelbus, faststream (default all three; "
        "faststream needs the bench extra and runs on redis, amqp, nats and kafka)",
    )
    p.add_argument("--messages", type=int, default=20_000, help="drain size (default 20000)")
    p.add_argument(
        "--batch",
        type=int,
        default=100,
        help="hand loop and FastStream batch, listener max_in_flight (default 100)",
    )
    p.add_argument(
        "--sqs-messages",
        type=int,
        default=1_000,
        help="drain size on SQS (moto drains ~30 msg/s; default 1000)",
    )
    p.add_argument("--runs", type=int, default=1, help="drains per side; the median is shown")
    p.add_argument(
        "--latency-messages", type=int, default=200, help="(default 200; 0: no latency runs)"
    )
    p.add_argument(
        "--rate",
        type=float,
        default=100.0,
        help="latency send rate, msg/s, lowered to half the slower side's drain rate (default 100)",
    )
    p.add_argument(
        "--latency-rate",
        type=float,
        default=None,
        help="send the latency messages at exactly this rate, msg/s (replaces --rate; "
        "the issue's target: 500)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="listener worker processes of the modelbus node (default 1)",
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
        help="... plus one second per this many messages (default 200)",
    )
    return p


if __name__ == "__main__":
    asyncio.run(main(parser().parse_args()))
