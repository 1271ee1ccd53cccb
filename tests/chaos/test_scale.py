"""The proof at scale: ``--chaos-size`` inputs through a real ``modelbus serve`` on Redis,
RabbitMQ, Kafka and the embedded queue, with the server SIGKILLed twice, a runner SIGKILLed
twice and the broker restarted once, each at a random moment of the run. In the end every
input has exactly one outcome (one result, however often it was published, always under one
output id, or one dead letter) and nothing is lost; the accounting table is printed.

    .venv/bin/pytest -q tests/chaos/test_scale.py -s                              # CI's size
    .venv/bin/pytest -q tests/chaos/test_scale.py -s --chaos-size 100000          # the proof

``--chaos-size`` (or ``MODELBUS_CHAOS_SIZE``; default 400, tests/conftest.py) is the number
of inputs per broker; past the default the tests get no per-test timeout. The broker restart is a
private broker process (tests/chaos/faults.py :func:`restartable`) killed and started again
with its data, or for the embedded queue, which lives inside ``modelbus serve``, a graceful
restart of the server (SIGTERM, then started again). The tansu that survives a real restart
keeps its data on moto's S3 as one object per produce request and lists a partition's
objects on every fetch, so the listener's Kafka sinks linger (:data:`KAFKA_SINK`) with many
messages in flight: results sent together keep the objects few enough for reads to keep up.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelbus.connectors import ConnectorContext
from tests.e2e.node import BEHAVE, open_node
from tests.e2e.processes import Serving

from .accounting import Collector, Tally, progress_to, table
from .brokers import open_kit, with_query
from .faults import COLLECTOR_LEASE_S, _call, fault_url, restartable
from .flow import PERMANENT_EVERY, inputs, listener_file, publish
from .test_kills import kill_a_runner, kill_server

KINDS = ("local", "redis", "amqp", "kafka")
LEASE_S = 3
DOWN_S = 3.0  # the broker stays away this long
STALL_S = 90.0  # a broker restart plus the listener's reconnect backoff (up to 30 s) fit in it
CHUNK = 500  # inputs per publish, at most
# Kafka: tansu's S3 storage keeps one object per produce request and lists every object of a
# partition on every fetch, so few objects are what keeps its reads going at scale (a few
# results per object stalled them at 20,000 inputs; 16 per object at 35,000). The sinks
# linger a second and the listener holds enough in flight for hundreds of results per object.
KAFKA_SINK = {"linger_ms": 1000, "batch_kb": 4096}
KAFKA_IN_FLIGHT = 1000
PUBLISH_S = 25.0  # inputs trickle in over this long at least: faults land while they come


def chaos_size(config: pytest.Config) -> int:
    """The inputs per broker (``--chaos-size``, see tests/conftest.py)."""
    return int(config.getoption("chaos_size"))


@dataclass
class Setup:
    """One broker's queues: the listener's URLs, the test's own (producer and collector),
    and how to restart the broker."""

    data_dir: Path
    source: str
    out: str
    dead: str
    produce: str
    collect_out: str
    collect_dead: str
    restart: Callable[[Serving], Awaitable[str]]
    max_in_flight: int = 64


@contextlib.asynccontextmanager
async def broker(kind: str, tmp_path: Path) -> AsyncIterator[Setup]:
    if kind == "local":
        async with open_kit(kind, tmp_path) as kit:
            queues = [await kit.new_queue(lease_s=LEASE_S) for _ in range(3)]
            source, out, dead = (
                (with_query(q.source_url, drop=("group",)), with_query(q.sink_url, drop=("group",)))
                for q in queues
            )

            async def restart_server(serving: Serving) -> str:
                await asyncio.to_thread(serving.stop)
                await serving.start()
                return "serve restarted (SIGTERM: the embedded queue's broker)"

            yield Setup(
                kit.data_dir,
                source[0],
                out[1],
                dead[1],
                source[1],
                out[0],
                dead[0],
                restart_server,
            )
        return
    async with restartable(kind, tmp_path) as fault:
        source = fault.url(fault.queue("in"), lease_s=LEASE_S)
        out, dead = fault.url(fault.queue("out")), fault.url(fault.queue("dead"))
        if kind == "kafka":
            out, dead = with_query(out, **KAFKA_SINK), with_query(dead, **KAFKA_SINK)

        async def restart_broker(serving: Serving) -> str:
            await _call(fault.down)
            await asyncio.sleep(DOWN_S)
            await _call(fault.up)
            return f"broker restarted ({DOWN_S:g} s away)"

        def collect(url: str) -> str:
            url = fault_url(fault, url, lease_s=COLLECTOR_LEASE_S)
            # the listener's short Kafka session (a killed server's partitions move fast)
            # would have the test's own busy consumer rebalancing over and over
            return with_query(url, session_timeout_s=30) if kind == "kafka" else url

        yield Setup(
            tmp_path / "data",
            source,
            out,
            dead,
            fault_url(fault, source),
            collect(out),
            collect(dead),
            restart_broker,
            KAFKA_IN_FLIGHT if kind == "kafka" else 64,
        )


def plan(count: int) -> list[tuple[int, str]]:
    """When (inputs settled) each fault strikes: two server kills, two runner kills and one
    broker restart at random moments between 5 % and 90 % of the run."""
    faults = ["serve", "serve", "runner", "runner", "broker"]
    return sorted((int(count * random.uniform(0.05, 0.9)), fault) for fault in faults)


@pytest.mark.parametrize("kind", KINDS)
async def test_at_scale_kills_and_a_broker_restart_lose_nothing(
    kind: str, tmp_path: Path, report: list[str], pytestconfig: pytest.Config
) -> None:
    count = chaos_size(pytestconfig)
    async with broker(kind, tmp_path) as setup:
        async with open_node(setup.data_dir, start=False) as node:
            await node.push(BEHAVE, version="1.0.0")
        config = listener_file(
            tmp_path / "listeners.toml",
            source=setup.source,
            out=setup.out,
            dead=setup.dead,
            max_in_flight=setup.max_in_flight,
        )
        serving = Serving(setup.data_dir, config)
        ctx = ConnectorContext(listener="chaos-collector", data_dir=setup.data_dir)
        collector = Collector(ctx)
        progress = collector.settled_count
        started = time.monotonic()
        events: list[str] = []

        def note(event: str) -> None:
            events.append(f"{time.monotonic() - started:.1f}s {event} @{progress()}")

        survivors: list[int] = []
        async with collector.running(setup.collect_out, setup.collect_dead):
            await serving.start()
            chunk = min(CHUNK, max(10, count // 50))
            pace_s = PUBLISH_S / -(-count // chunk)
            sending = publish(
                setup.produce, ctx, inputs(count), chunk=chunk, pace_s=pace_s, patience_s=120
            )
            producer = asyncio.create_task(sending)
            try:
                for at, fault in plan(count):
                    stalled = not await progress_to(at, progress, stall_s=STALL_S)
                    assert not stalled, f"stalled at {progress()} of {count}:\n{serving.log()}"
                    if fault == "serve":
                        survivors += await kill_server(serving)
                        note("serve SIGKILLed")
                        await serving.start()
                    elif fault == "runner":
                        note(await kill_a_runner(serving))
                    else:
                        note(await setup.restart(serving))
                await producer
                if await progress_to(count, progress, stall_s=STALL_S):
                    await asyncio.sleep(1.0)  # late duplicates, if any, are counted too
                else:
                    note(f"nothing settled for {STALL_S:g} s")
            finally:
                producer.cancel()
                with contextlib.suppress(BaseException):
                    await producer
                serving.stop()

    seconds = time.monotonic() - started
    tally = Tally.of(kind, range(count), collector, seconds=seconds, events=events)
    title = f"at scale on {kind}: {count:,} inputs, {count / seconds:,.0f}/s with the faults"
    report.append(table([tally], title))
    assert survivors == [], f"runners outlived their SIGKILLed server: {survivors}"
    tally.check(expected_dead=len(range(0, count, PERMANENT_EVERY)))
