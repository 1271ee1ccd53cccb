"""The listener runtime end to end over every broker kit of the contract suite: the source,
the output sink and the dead-letter sink are three fresh queues of one broker, the model a
function (:class:`modelbus.testing.FunctionInvoker`).

The runtime's three outcomes, each followed by a check that nothing is left unsettled on the
source: success (result published, then the message acked), a transient failure retried
with backoff until it succeeds, and a permanent failure dead-lettered at once with the
original message. Broker outages (down at start, restarted mid-run) need a broker process of
the test's own and live beside each connector's tests (tests/brokers/*, tests/aws).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from modelbus.connectors import Source, make_source
from modelbus.errors import InputRejected, RunnerCrashed
from modelbus.listeners.lifecycle import ListenerRuntime
from modelbus.listeners.retry import RetryPolicy
from tests.brokers.listener_suite import Harness, opened_harness, read_acked

from .kits import BrokerKit


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with opened_harness(tmp_path) as harness:
        yield harness


@asynccontextmanager
async def reader(kit: BrokerKit, url: str) -> AsyncIterator[Source]:
    """A consumer of ``url`` of its own, subscribed before anything is published (MQTT
    keeps nothing for a topic nobody subscribed to)."""
    source = make_source(url, replace(kit.ctx, listener=f"{kit.ctx.listener}-reader"))
    await source.open()
    try:
        yield source
    finally:
        await source.close()


async def running(harness: Harness, **fields: Any) -> ListenerRuntime:
    """A started listener, once it is receiving (subscribed, for MQTT)."""
    listener = await harness.start(**fields)
    await listener.wait_for_state("running", timeout_s=30)
    return listener


async def queue(kit: BrokerKit) -> str:
    return (await kit.new_queue(lease_s=max(1.0, kit.capabilities.min_lease_s))).source_url


async def settled(kit: BrokerKit, harness: Harness, url: str, listener: ListenerRuntime) -> None:
    """Stop the listener; a consumer in its place then finds nothing left on ``url``."""
    await listener.stop(deadline_s=1)
    harness.started.remove(listener)
    source = make_source(url, replace(kit.ctx, listener=listener.name))
    await source.open()
    try:
        wait_s = max(2.0, kit.capabilities.min_lease_s * 2)
        assert await source.receive(10, wait_s) == []
    finally:
        await source.close()


async def test_a_result_is_published_then_the_message_acked(
    kit: BrokerKit, harness: Harness
) -> None:
    harness.invoker.register("acme/upper", lambda v: {"upper": v["text"].upper()})
    source, out = await queue(kit), await queue(kit)
    async with reader(kit, out) as results:
        listener = await running(harness, source=source, outputs=[out], model="acme/upper@1.*")
        await harness.publish(source, b'{"text": "hi"}', attributes={"tenant": "t1"}, peek=False)
        (result,) = await read_acked(results, 1, timeout_s=20)
    event = json.loads(result.body)
    assert event["data"] == {"upper": "HI"} and event["attempt"] == "1"
    assert event["listener"] == listener.name
    await harness.eventually(lambda: listener.status().counters["succeeded"] == 1)
    await settled(kit, harness, source, listener)


async def test_a_transient_failure_is_retried_until_it_succeeds(
    kit: BrokerKit, harness: Harness
) -> None:
    calls: list[float] = []

    def flaky(value: Any) -> Any:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RunnerCrashed("runner died")
        return value

    harness.invoker.register("acme/flaky", flaky)
    source, out = await queue(kit), await queue(kit)
    retry = RetryPolicy(max_attempts=5, initial_backoff_s=0.3, multiplier=2, jitter=0)
    async with reader(kit, out) as results:
        listener = await running(
            harness, source=source, outputs=[out], model="acme/flaky", retry=retry
        )
        await harness.publish(source, b'{"n": 1}', peek=False)
        (result,) = await read_acked(results, 1, timeout_s=20)
    assert json.loads(result.body)["attempt"] == "3"
    assert calls[1] - calls[0] >= 0.3 * 0.9 and calls[2] - calls[1] >= 0.6 * 0.9
    await harness.eventually(lambda: listener.status().counters["succeeded"] == 1)
    (run,) = (await harness.runs.list_runs(listener.name)).items
    assert (run.status, run.attempts) == ("succeeded", 3)
    await settled(kit, harness, source, listener)


async def test_a_permanent_failure_is_dead_lettered_with_the_original(
    kit: BrokerKit, harness: Harness
) -> None:
    def refuse(value: Any) -> Any:
        raise InputRejected("no such field: text")

    harness.invoker.register("acme/strict", refuse)
    source, out, errors = await queue(kit), await queue(kit), await queue(kit)
    async with reader(kit, errors) as dead_letters:
        listener = await running(
            harness, source=source, outputs=[out], error_sink=errors, model="acme/strict"
        )
        await harness.publish(source, b'{"n": 1}', attributes={"tenant": "t1"}, peek=False)
        (dead,) = await read_acked(dead_letters, 1, timeout_s=20)
    assert dead.body == b'{"n": 1}' and dead.attributes["tenant"] == "t1"
    assert dead.attributes["modelbus-error-type"] == "InputRejected"
    assert dead.attributes["modelbus-permanent"] == "true"
    assert dead.attributes["modelbus-attempts"] == "1"
    assert len(harness.invoker.calls) == 1
    await harness.eventually(lambda: listener.status().counters["dead_lettered"] == 1)
    await settled(kit, harness, source, listener)
