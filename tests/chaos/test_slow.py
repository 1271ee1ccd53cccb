"""Slow consumers: a model slower than the source's lease (SQS visibility timeout, local
lease, NATS ack_wait, Redis claim idle time, PostgreSQL outbox lease) is not run twice:
the listener extends the leases of everything it holds, including the messages waiting for
a runner (more messages than runners: under load). Invocations are counted in the ``behave``
model's trace file (one ``start`` line per call).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import pytest

from modelbus.connectors import ConnectorContext
from tests.e2e.node import BEHAVE, open_node
from tests.e2e.processes import Serving

from .accounting import Collector, progress_to
from .brokers import open_kit
from .flow import listener_file, publish

LEASE_S = 1
CALL_S = 2.5  # two and a half leases long
MESSAGES = 6  # the model has 4 runners: two wait their turn, leased all along


@pytest.mark.parametrize("kind", ["local", "sqs", "nats", "redis", "postgres"])
async def test_a_model_slower_than_the_lease_runs_once(
    kind: str, tmp_path: Path, report: list[str]
) -> None:
    trace = tmp_path / "trace.jsonl"
    async with open_kit(kind, tmp_path) as kit:
        async with open_node(kit.data_dir, start=False) as node:
            await node.push(BEHAVE, version="1.0.0")
        source, out, dead = [await kit.new_queue(lease_s=LEASE_S) for _ in range(3)]
        config = listener_file(
            tmp_path / "l.toml",
            source=source.source_url,
            out=out.sink_url,
            dead=dead.sink_url,
            max_in_flight=8,
            extra="timeout_s = 30",
        )
        serving = Serving(kit.data_dir, config)
        ctx = ConnectorContext(listener="chaos-collector", data_dir=kit.data_dir)
        collector = Collector(ctx)
        bodies = [
            json.dumps(
                {"op": "sleep", "seconds": CALL_S, "trace": str(trace), "id": n, "n": n}
            ).encode()
            for n in range(MESSAGES)
        ]
        started = time.monotonic()
        async with collector.running(out.source_url, dead.source_url):
            await serving.start()
            try:
                await publish(source.sink_url, ctx, bodies)
                done = await progress_to(MESSAGES, collector.settled_count, stall_s=20)
                await asyncio.sleep(LEASE_S * 2.5)  # a lapsed lease would redeliver by now
            finally:
                serving.stop()
        elapsed = time.monotonic() - started

    starts = Counter(
        e["id"] for e in map(json.loads, trace.read_text().splitlines()) if e["event"] == "start"
    )
    report.append(
        f"== slow consumer on {kind}: {MESSAGES} calls of {CALL_S:g} s, lease {LEASE_S} s: "
        f"invocations {sum(starts.values())}, results {len(collector.results)}, "
        f"dead letters {len(collector.letters)}, {elapsed:.1f} s"
    )
    assert done, serving.log()[-3000:]
    assert starts == {n: 1 for n in range(MESSAGES)}
    assert sorted(json.loads(d.body)["data"]["n"] for d in collector.results) == list(
        range(MESSAGES)
    )
    assert collector.letters == []
