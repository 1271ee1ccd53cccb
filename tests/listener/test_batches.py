"""The batch is the unit: what one receive returns is decoded, invoked, published, recorded
and acked together, while each message keeps its own outcome and its own context."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from modelbus.connectors import SCHEMES
from modelbus.connectors.base import OutMessage
from modelbus.connectors.memory import BROKER
from modelbus.errors import ModelError
from modelbus.listeners.envelopes import dead_letter_id
from modelbus.listeners.records import RunWriter

from . import counting_connector
from .conftest import Env, eventually


@pytest.fixture
def queue_kind() -> str:
    return "memory"


@pytest.fixture(autouse=True)
def counting_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCHEMES, "counting", counting_connector.__name__)


def counting(role: str) -> str:
    return f"counting://{role}-{uuid.uuid4().hex[:10]}"


def preload(url: str, bodies: list[bytes], **attributes: str) -> list[str]:
    """Put ``bodies`` on the queue before any listener runs, so one receive takes them all."""
    ids = [f"m-{uuid.uuid4().hex}" for _ in bodies]
    pairs = zip(ids, bodies, strict=True)
    messages = [OutMessage(id=i, body=b, attributes=attributes) for i, b in pairs]
    BROKER.queue(counting_connector.name(url)).publish(messages)
    return ids


class CountingWrites:
    """Counts the run store's write transactions (the store itself stays real)."""

    def __init__(self, env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        real = env.runs.write

        async def write(items: Any) -> None:
            self.sizes.append(len(items))
            await real(items)

        monkeypatch.setattr(env.runs, "write", write)
        env.writer = RunWriter(env.runs)  # the writer binds the store's write when made


async def test_a_backlog_is_invoked_published_recorded_and_acked_per_batch(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = CountingWrites(env, monkeypatch)
    env.invoker.register("acme/echo", lambda v: v, batch=lambda values: values)
    source, out = counting("in"), counting("out")
    preload(source, [json.dumps({"n": n}).encode() for n in range(40)])

    listener = await env.start(env.definition(source=source, outputs=[out], max_in_flight=80))
    await eventually(lambda: listener.status().counters["succeeded"] == 40)

    assert env.invoker.batch_sizes == [40]  # one model call for the 40 inputs
    assert counting_connector.PUBLISHES[counting_connector.name(out)] == [40]
    assert counting_connector.ACKS[counting_connector.name(source)] == [40]
    assert writes.sizes == [40]  # one transaction: a run record per message
    page = await env.runs.list_runs(listener=listener.name, limit=100)
    assert len(page.items) == 40 and {r.status for r in page.items} == {"succeeded"}


async def test_max_batch_size_caps_the_inputs_of_one_model_call(env: Env) -> None:
    env.invoker.register("acme/echo", lambda v: v, batch=lambda values: values)
    source = counting("in")
    preload(source, [b'{"n": 1}'] * 20)
    listener = await env.start(
        env.definition(source=source, max_in_flight=40, batch={"max_batch_size": 1})
    )
    await eventually(lambda: listener.status().counters["succeeded"] == 20)
    assert env.invoker.batch_sizes == [1] * 20


async def test_each_message_in_a_batch_keeps_its_own_outcome(env: Env) -> None:
    gate = asyncio.Event()

    async def model(value: dict[str, Any]) -> Any:
        await gate.wait()
        if value.get("poison"):
            raise ModelError("never", permanent=True)
        if value.get("flaky"):
            raise ModelError("not now")
        return value

    env.invoker.register("acme/echo", model)
    source, out = counting("in"), counting("out")
    good = preload(source, [b'{"ok": 1}', b'{"ok": 2}'])
    (poison,) = preload(source, [b'{"poison": true}'])
    (flaky,) = preload(source, [b'{"flaky": true}'])
    (garbled,) = preload(source, [b"{not json"], **{"content-type": "application/json"})
    definition = env.definition(
        source=source,
        outputs=[out],
        max_in_flight=10,
        retry={"max_attempts": 3, "initial_backoff_s": 30, "jitter": 0},
    )
    listener = await env.start(definition)

    # Bad input settles at once, while its neighbours are still with the model.
    await eventually(lambda: listener.status().counters["dead_lettered"] == 1)
    assert (await env.runs.get_dead_letter(dead_letter_id(listener.name, garbled))).permanent
    assert listener.status().counters["succeeded"] == 0
    gate.set()

    await eventually(lambda: listener.status().counters["dead_lettered"] == 2)
    await eventually(lambda: listener.status().counters["succeeded"] == 2)
    await eventually(lambda: listener.status().counters["retried"] == 1)
    for message_id in (poison, garbled):
        letter = await env.runs.get_dead_letter(dead_letter_id(listener.name, message_id))
        assert letter.attempts == 1 and letter.permanent  # at once, not after retries
    for message_id in good:
        (run,) = await env.runs.get_runs(message_id)
        assert run.status == "succeeded"
    (run,) = await env.runs.get_runs(flaky)
    assert (run.status, run.attempts) == ("retrying", 1)
    assert sum(counting_connector.ACKS[counting_connector.name(source)]) == 4  # not the flaky


async def test_a_slow_input_holds_back_only_the_deliveries_of_its_own_runner_call(
    env: Env,
) -> None:
    slow_done = asyncio.Event()

    async def model(value: dict[str, Any]) -> Any:
        if value.get("slow"):
            await slow_done.wait()
        return value

    env.invoker.register("acme/echo", model)
    source = counting("in")
    (slow,) = preload(source, [b'{"slow": true}'])
    fast = preload(source, [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}'])
    listener = await env.start(
        env.definition(source=source, max_in_flight=10, batch={"max_batch_size": 1})
    )
    await eventually(lambda: listener.status().counters["succeeded"] == 3)
    assert env.invoker.batch_sizes == [1, 1, 1, 1]  # one received batch, four model calls
    for message_id in fast:
        (run,) = await env.runs.get_runs(message_id)
        assert run.status == "succeeded"
    assert not [r for r in await env.runs.get_runs(slow) if r.status == "succeeded"]
    slow_done.set()
    await eventually(lambda: listener.status().counters["succeeded"] == 4)


async def test_every_input_of_a_batch_call_gets_its_own_context(env: Env) -> None:
    env.invoker.register("acme/echo", lambda v: v, batch=lambda values: values)
    source, out = counting("in"), counting("out")
    events = [
        {
            "specversion": "1.0",
            "id": f"evt-{n}",
            "source": "/scanner/7",
            "type": f"com.example.scan.v{n}",
            "data": {"n": n},
        }
        for n in range(3)
    ]
    ids = preload(source, [json.dumps(e).encode() for e in events], tenant="t1")
    listener = await env.start(env.definition(source=source, outputs=[out]))
    results = await env.collect(out, 3)

    assert env.invoker.batch_sizes == [3]
    calls = env.invoker.calls
    contexts = {c.options.attributes["sourcemessageid"]: c.options.attributes for c in calls}
    assert set(contexts) == set(ids)
    for n, message_id in enumerate(ids):
        context = contexts[message_id]
        assert context["ce-id"] == f"evt-{n}" and context["ce-type"] == f"com.example.scan.v{n}"
        assert context["tenant"] == "t1" and context["listener"] == listener.name
        assert context["traceparent"].startswith("00-")
    by_event = {json.loads(r.body)["sourceeventid"]: json.loads(r.body) for r in results}
    assert set(by_event) == {"evt-0", "evt-1", "evt-2"}
    assert by_event["evt-1"]["sourceeventtype"] == "com.example.scan.v1"
    assert by_event["evt-1"]["sourceeventsource"] == "/scanner/7"
    assert by_event["evt-1"]["data"] == {"n": 1}


async def test_the_next_batch_is_received_while_part_of_the_last_is_with_the_model(
    env: Env,
) -> None:
    gate = asyncio.Event()

    async def model(value: dict[str, int]) -> Any:
        if value["n"] >= 5:
            await gate.wait()
        return value

    env.invoker.register("acme/echo", model)
    source = counting("in")
    preload(source, [json.dumps({"n": n}).encode() for n in range(20)])
    listener = await env.start(
        env.definition(source=source, max_in_flight=10, batch={"max_batch_size": 1})
    )
    # 0-4 settle at once, which frees half of max_in_flight: 10-14 are received while
    # 5-9 are still held; then the listener is full and waits.
    await eventually(lambda: env.invoker.concurrency == 10)
    assert listener.status().counters["succeeded"] == 5
    assert listener.status().counters["received"] == 15
    gate.set()
    await eventually(lambda: listener.status().counters["succeeded"] == 20)
