"""Broker faults mid-run: nothing is lost, the listener says it is degraded while its broker
is away, and recovers by itself.

* A broker restart (:func:`tests.chaos.faults.restartable`): a real ``modelbus serve`` runs
  the listener; its broker process is SIGKILLed mid-run and started again a few seconds
  later. ``GET /v1/listeners/{name}/status`` must show ``degraded`` while it is down and
  ``running`` again afterwards, with no help.
* A network partition (:func:`tests.chaos.faults.partitioned`): the listener reaches the
  broker through a proxy that swallows every byte for longer than the runtime's own
  timeouts. ``modelbus serve`` waits 30 s for a broker call before it calls it failed; to
  keep this under CI's budget the listener runs in this process, as ``serve`` wires it
  (:mod:`tests.e2e.node`), with 5 s timeouts, and the status is the one that route returns.

In both, inputs keep coming during the fault, and the accounting must balance.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelbus.connectors import ConnectorContext
from modelbus.definition import ListenerDefinition
from tests.e2e.node import BEHAVE, FAST_RUNTIME, open_node
from tests.e2e.processes import Serving

from .accounting import Collector, Tally, progress_to, table
from .brokers import BASE_MESSAGES
from .faults import Fault, partitioned, restartable
from .test_kills import PERMANENT_EVERY, inputs, listener_file, publish

LISTENER = "chaos"
COUNT = max(150, BASE_MESSAGES // 10)
DOWN_S = 4.0  # the broker stays away this long after the listener said degraded
PARTITION_S = max(FAST_RUNTIME.op_timeout_s, FAST_RUNTIME.publish_timeout_s) + 3
StatusOf = Callable[[], Awaitable[dict[str, Any]]]


async def _call(step: Callable[[], object]) -> None:
    if inspect.iscoroutinefunction(step):
        await step()
    else:
        await asyncio.to_thread(step)


async def _wait_state(status: StatusOf, state: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        now = await status()
        if now["state"] == state:
            return now
        assert time.monotonic() < deadline, f"listener not {state} within {timeout_s} s: {now}"
        await asyncio.sleep(0.1)


async def _run(
    fault: Fault,
    data_dir: Path,
    status: StatusOf,
    *,
    source: str,
    out: str,
    dead: str,
    hold_s: float,
    degraded_within_s: float,
    recovered_within_s: float,
) -> tuple[Tally, list[str], dict[str, Any]]:
    """Send COUNT inputs; a third of the way through bring the fault down until the listener
    says degraded and ``hold_s`` more, then up; wait for every outcome."""
    ctx = ConnectorContext(listener="chaos-collector", data_dir=data_dir)
    collector = Collector(ctx)
    events: list[str] = []
    started = time.monotonic()

    def note(event: str) -> None:
        events.append(f"{time.monotonic() - started:.1f}s {event} @{collector.settled_count()}")

    async with collector.running(fault_url(fault, out), fault_url(fault, dead)):
        producer = asyncio.create_task(publish(fault_url(fault, source), ctx, inputs(COUNT)))
        try:
            assert await progress_to(COUNT // 3, collector.settled_count)
            await _call(fault.down)
            note("broker down")
            degraded = await _wait_state(status, "degraded", degraded_within_s)
            parts = sorted({part.split()[0] for part in degraded["problems"]})
            note(f"listener degraded ({', '.join(parts) or 'no part named'})")
            await asyncio.sleep(hold_s)
            await _call(fault.up)
            note("broker up")
            await _wait_state(status, "running", recovered_within_s)
            note("listener running")
            await producer
            done = await progress_to(COUNT, collector.settled_count)
            if done:
                await asyncio.sleep(1.0)  # late duplicates are counted too
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
    assert done, f"stalled: {events}"
    tally = Tally.of(
        fault.kind, range(COUNT), collector, seconds=time.monotonic() - started, events=events
    )
    return tally, events, degraded


def fault_url(fault: Fault, url: str) -> str:
    """The same queue, reached directly (the test's producer and collector)."""
    return url.replace(fault.address, fault.direct)


@pytest.mark.parametrize("kind", ["redis", "nats", "postgres", "amqp"])
async def test_a_broker_restart_mid_run_degrades_recovers_and_loses_nothing(
    kind: str, tmp_path: Path, report: list[str]
) -> None:
    data_dir = tmp_path / "data"
    async with open_node(data_dir, start=False) as node:
        await node.push(BEHAVE, version="1.0.0")
    async with restartable(kind, tmp_path) as fault:
        source = fault.url(fault.queue("in"), lease_s=3)
        out, dead = fault.url(fault.queue("out")), fault.url(fault.queue("dead"))
        config = listener_file(tmp_path / "l.toml", source=source, out=out, dead=dead)
        serving = Serving(data_dir, config)
        await serving.start()
        assert serving.server is not None
        http = httpx.AsyncClient(
            base_url=serving.server.url,
            headers={"Authorization": f"Bearer {serving.server.admin_key}"},
            timeout=10,
        )

        async def status() -> dict[str, Any]:
            answer = await http.get(f"/v1/listeners/{LISTENER}/status")
            answer.raise_for_status()
            return dict(answer.json())

        try:
            tally, _, degraded = await _run(
                fault,
                data_dir,
                status,
                source=source,
                out=out,
                dead=dead,
                hold_s=DOWN_S,
                degraded_within_s=40,  # serve's own op timeout is 30 s
                recovered_within_s=60,  # reconnects back off up to 30 s
            )
        finally:
            await http.aclose()
            serving.stop()
    report.append(table([tally], f"broker restart on {kind} (modelbus serve)"))
    assert degraded["problems"], degraded  # it says which part is failing
    tally.check(expected_dead=len(range(0, COUNT, PERMANENT_EVERY)))


@pytest.mark.parametrize("kind", ["redis", "nats", "postgres", "amqp"])
async def test_a_partition_longer_than_the_timeouts_degrades_recovers_and_loses_nothing(
    kind: str, tmp_path: Path, report: list[str]
) -> None:
    data_dir = tmp_path / "data"
    async with partitioned(kind) as fault, open_node(data_dir) as node:
        await node.push(BEHAVE, version="1.0.0")
        source = fault.url(fault.queue("in"), lease_s=3)
        out, dead = fault.url(fault.queue("out")), fault.url(fault.queue("dead"))
        definition = ListenerDefinition.from_mapping(
            {
                "name": LISTENER,
                "source": source,
                "model": "e2e/behave@1.*",
                "outputs": [out],
                "error_sink": dead,
                "max_in_flight": 32,
                "retry": {"max_attempts": 10, "initial_backoff_s": 0.2, "max_backoff_s": 1.0},
            }
        )
        await node.manager.create(definition, check=False)

        async def status() -> dict[str, Any]:
            found = await node.manager.status(LISTENER)
            return {"state": found.state, "problems": found.problems}

        tally, _, degraded = await _run(
            fault,
            data_dir,
            status,
            source=source,
            out=out,
            dead=dead,
            hold_s=PARTITION_S,
            degraded_within_s=40,  # the runtime notices through its own timeouts
            recovered_within_s=30,
        )
    report.append(table([tally], f"network partition on {kind} ({PARTITION_S:g} s black hole)"))
    assert degraded["problems"], degraded
    tally.check(expected_dead=len(range(0, COUNT, PERMANENT_EVERY)))
