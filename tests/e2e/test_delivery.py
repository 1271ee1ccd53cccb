"""The delivery contract (DESIGN.md) end to end, on ``local://`` and on SQS (moto): the
listener manager runs listeners over the real model service, whose pools run the behave
test model (tests/e2e/models/behave) in real runner processes.

Every test runs once per broker (the ``broker`` fixture); inputs are sent as a producer
outside modelbus would, and results and dead letters are drained from their queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from modelbus.connectors import redact_url
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.envelopes import dead_letter_id, output_id
from modelbus.listeners.retry import RetryPolicy
from modelbus.store.runs import RunRecord

from .brokers import Broker, Message
from .conftest import Trace, eventually
from .node import Node, behave_variant

MODEL = "e2e/behave@1.*"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def listener(source: str, **fields: Any) -> ListenerDefinition:
    fields.setdefault("model", MODEL)
    return ListenerDefinition(name=f"e2e-{uuid.uuid4().hex[:8]}", source=source, **fields)


async def record_of(node: Node, definition: ListenerDefinition, message_id: str) -> Any:
    """The run record of ``message_id`` in the listener (None before the first write)."""
    await node.manager.records.flush()
    records = await node.manager.runs.get_runs(message_id, definition.name)
    return records[0] if records else None


async def status_of(node: Node, definition: ListenerDefinition, message_id: str) -> Any:
    record = await record_of(node, definition, message_id)
    return record.status if record else None


async def running(node: Node, definition: ListenerDefinition) -> None:
    async def state() -> bool:
        return (await node.manager.status(definition.name)).state == "running"

    await eventually(state, what=f"listener {definition.name} running")


def by_source(results: list[Message]) -> dict[str, Message]:
    return {m.attributes["sourcemessageid"]: m for m in results}


async def test_nothing_is_acked_until_the_result_is_published(
    node: Node, broker: Broker, trace: Trace
) -> None:
    """Point 1: with the output sink unavailable the model runs, but the message stays with
    the broker and comes back; once the sink is back the result is published, the run
    record says succeeded, and only then the message is gone."""
    source = await broker.queue("in")
    out = await broker.queue("out", breakable=True)
    retry = RetryPolicy(max_attempts=100, initial_backoff_s=0.2, max_backoff_s=0.5, jitter=0)
    definition = listener(source, outputs=[out], retry=retry)
    await node.manager.create(definition)
    await running(node, definition)  # its sinks are open: they fail only from now on

    async with broker.outage(out):
        message_id = await broker.send(source, {"op": "ok", "id": "a", "trace": str(trace.path)})
        await eventually(lambda: len(trace.starts("a")) >= 2, what="a redelivery in the outage")
        record = await eventually(lambda: record_of(node, definition, message_id))
        assert record.status == "retrying"
        assert record.error["stage"] == "publish"
        assert (await broker.depth(source)).total == 1  # still the broker's
        assert (await broker.depth(out)).total == 0
        problems = (await node.manager.status(definition.name)).problems
        assert list(problems) == [f"sink {redact_url(out)}"], problems

    await eventually(lambda: _settled(node, broker, definition, source, message_id), what="settled")
    results = await broker.drain(out, 1)
    results += await broker.drain(out, 1, within_s=1)  # a duplicate is allowed...
    assert {m.json()["id"] for m in results} == {output_id(definition.name, message_id)}
    record = await record_of(node, definition, message_id)
    assert record.attempts >= 2  # it came back, and succeeded on a later delivery


async def _settled(
    node: Node, broker: Broker, definition: ListenerDefinition, source: str, id: str
) -> bool:
    status = await status_of(node, definition, id)
    return status == "succeeded" and (await broker.depth(source)).total == 0


async def test_nothing_is_acked_until_the_dead_letter_is_published(
    node: Node, broker: Broker, trace: Trace
) -> None:
    """Point 1, for failures: while the error sink is unavailable a refused message stays
    with the broker (its dead letter is kept in the store meanwhile); once the sink is back
    the dead letter is published, and only then the message is gone."""
    source, out = await broker.queue("in"), await broker.queue("out")
    dead = await broker.queue("dead", breakable=True)
    retry = RetryPolicy(max_attempts=1, initial_backoff_s=0.2, max_backoff_s=0.5, jitter=0)
    definition = listener(source, outputs=[out], error_sink=dead, retry=retry)
    await node.manager.create(definition)
    await running(node, definition)

    body = {"op": "permanent", "id": "p", "trace": str(trace.path)}
    async with broker.outage(dead):
        message_id = await broker.send(source, body, {"tenant": "acme"})
        # past max_attempts: an outcome that is not durable is never given up on
        await eventually(lambda: len(trace.starts("p")) >= 2, what="a redelivery in the outage")
        assert (await broker.depth(source)).total == 1
        assert (await broker.depth(dead)).total == 0
        problems = (await node.manager.status(definition.name)).problems
        assert list(problems) == [f"sink {redact_url(dead)}"], problems  # the store is fine
        stored = await node.manager.runs.get_dead_letter(
            dead_letter_id(definition.name, message_id)
        )
        assert stored.permanent

    letters = await broker.drain(dead, 1)
    await eventually(lambda: _gone(broker, source), what="the message acked")
    letters += await broker.drain(dead, 1, within_s=1)  # a duplicate is allowed
    assert {m.attributes["modelbus-dead-letter-id"] for m in letters} == {stored.id}
    assert letters[0].attributes["modelbus-source-message-id"] == message_id
    assert letters[0].attributes["tenant"] == "acme"
    assert await status_of(node, definition, message_id) == "dead_lettered"
    assert await broker.drain(out, 1, within_s=0.5) == []


async def _gone(broker: Broker, url: str) -> bool:
    return (await broker.depth(url)).total == 0


async def test_transient_failures_are_retried_with_growing_delays(
    node: Node, broker: Broker, trace: Trace, tmp_path: Path
) -> None:
    """Point 2: a model error is retried after 1 s, then 2 s (jitter off); a runner that
    crashes, or runs past the timeout (and is killed), is replaced and the message retried;
    a message failing every attempt is dead-lettered after ``max_attempts``."""
    source, out, dead = [await broker.queue(r) for r in ("in", "out", "dead")]
    retry = RetryPolicy(max_attempts=3, initial_backoff_s=1, max_backoff_s=10, jitter=0)
    # One input per runner call: this is about delivery attempts. (In a call shared with the
    # crash, the others would be run again alone at once, which counts no attempt:
    # test_batching.py covers that isolation.)
    definition = listener(
        source,
        outputs=[out],
        error_sink=dead,
        retry=retry,
        timeout_s=2,
        batch={"max_batch_size": 1},
    )
    await node.manager.create(definition)
    names = ("flaky", "hopeless", "crash", "stuck")
    counters = {name: tmp_path / f"{name}.counter" for name in names}
    flaky = await broker.send(
        source, {"op": "flaky", "fails": 2, "counter": str(counters["flaky"])}
    )
    hopeless = await broker.send(
        source, {"op": "flaky", "fails": 99, "counter": str(counters["hopeless"])}
    )
    crash = await broker.send(
        source, {"op": "crash_once", "counter": str(counters["crash"]), "trace": str(trace.path)}
    )
    stuck = await broker.send(  # the first attempt hangs; the runner is killed at 2 s
        source, {"op": "sleep", "seconds": 60, "counter": str(counters["stuck"])}
    )

    results = by_source(await broker.drain(out, 3, within_s=30))
    assert set(results) == {flaky, crash, stuck}
    assert results[flaky].attributes["attempt"] == "3"
    assert results[crash].attributes["attempt"] == "2"
    assert results[stuck].attributes["attempt"] == "2"
    attempts_at = [float(t) for t in counters["flaky"].read_text().split()]
    gaps_s = [b - a for a, b in itertools.pairwise(attempts_at)]
    assert len(gaps_s) == 2
    assert gaps_s[0] >= 1.0 * 0.95 and gaps_s[1] >= 2.0 * 0.95, gaps_s

    (letter,) = await broker.drain(dead, 1, within_s=30)
    assert letter.attributes["modelbus-source-message-id"] == hopeless
    assert letter.attributes["modelbus-attempts"] == "3"
    assert letter.attributes["modelbus-permanent"] == "false"
    assert len(counters["hopeless"].read_text().split()) == 3
    stored = await node.manager.runs.get_dead_letter(dead_letter_id(definition.name, hopeless))
    assert (stored.attempts, stored.permanent, stored.version) == (3, False, "1.0.0")
    assert "transient failure 3 of 99" in stored.error_message


async def test_permanent_errors_are_dead_lettered_at_once_with_the_original_message(
    node: Node, broker: Broker, trace: Trace
) -> None:
    """Point 2: a model's PermanentError and an undecodable body go to the error sink and
    the dead-letter store on the first attempt, body and attributes byte for byte."""
    source, out, dead = [await broker.queue(r) for r in ("in", "out", "dead")]
    retry = RetryPolicy(max_attempts=5, initial_backoff_s=0.1, jitter=0)
    definition = listener(source, outputs=[out], error_sink=dead, retry=retry)
    await node.manager.create(definition)
    refused_body = (
        b'{"op":  "permanent", "id": "p", "trace": "%s",  "note": "caf\\u00e9 \xe2\x82\xac"}'
        % str(trace.path).encode()
    )
    # as many attributes as SQS takes: the dead letter's own must not push them out
    refused_attributes = {
        "tenant": "acme",
        "traceparent": TRACEPARENT,
        **{f"key{i}": f"value {i}" for i in range(8)},
    }
    broken_body, broken_attributes = b'{"op": "ok", ', {"content-type": "application/json"}
    refused = await broker.send(source, refused_body, refused_attributes)
    broken = await broker.send(source, broken_body, broken_attributes)

    letters = {m.attributes["modelbus-source-message-id"]: m for m in await broker.drain(dead, 2)}
    assert set(letters) == {refused, broken}
    for message_id, body, attributes in (
        (refused, refused_body, refused_attributes),
        (broken, broken_body, broken_attributes),
    ):
        on_queue = letters[message_id]
        assert on_queue.body == body
        assert {k: on_queue.attributes[k] for k in attributes} == attributes
        assert on_queue.attributes["modelbus-permanent"] == "true"
        assert on_queue.attributes["modelbus-attempts"] == "1"
        stored = await node.manager.runs.get_dead_letter(
            dead_letter_id(definition.name, message_id)
        )
        assert stored.body == body
        assert dict(stored.attributes) == attributes
        assert (stored.attempts, stored.permanent, stored.model) == (1, True, MODEL)
        assert await status_of(node, definition, message_id) == "dead_lettered"
    assert letters[refused].attributes["modelbus-version"] == "1.0.0"
    assert "can never be processed" in letters[refused].attributes["modelbus-error-message"]
    assert "modelbus-version" not in letters[broken].attributes  # never reached a model
    assert len(trace.starts("p")) == 1
    assert (await broker.depth(source)).total == 0
    assert await broker.drain(out, 1, within_s=0.5) == []


async def test_a_model_slower_than_the_lease_runs_once(
    node: Node, broker: Broker, trace: Trace
) -> None:
    """Point 5: the queue's lease is 2 s and the model takes 6 s: the listener keeps
    extending the lease, so the message is not handed out again meanwhile."""
    source = await broker.queue("in", lease_s=2)
    out = await broker.queue("out")
    definition = listener(source, outputs=[out], timeout_s=20)
    await node.manager.create(definition)
    message_id = await broker.send(
        source, {"op": "sleep", "seconds": 6, "id": "slow", "trace": str(trace.path)}
    )

    (result,) = await broker.drain(out, 1, within_s=30)
    assert result.attributes["sourcemessageid"] == message_id
    assert result.attributes["attempt"] == "1"
    assert len(trace.starts("slow")) == 1
    await eventually(lambda: _settled(node, broker, definition, source, message_id))
    record = await record_of(node, definition, message_id)
    assert record.attempts == 1
    assert await broker.drain(out, 1, within_s=1) == []


async def test_a_listener_holds_at_most_max_in_flight(
    node: Node, broker: Broker, trace: Trace
) -> None:
    """Point 6: with max_in_flight 2 (the model's pool would run 4 at once) the listener
    never holds more than 2 messages of the broker's, nor runs more than 2 at once."""
    source, out = await broker.queue("in"), await broker.queue("out")
    for n in range(6):
        await broker.send(source, {"op": "sleep", "seconds": 1, "id": n, "trace": str(trace.path)})
    held: list[int] = []
    async with _sampling(lambda: _hidden(broker, source), held):
        await node.manager.create(listener(source, outputs=[out], max_in_flight=2))
        assert len(await broker.drain(out, 6, within_s=30)) == 6
    assert max(held) <= 2
    assert trace.max_concurrent() == 2


async def _hidden(broker: Broker, url: str) -> int:
    return (await broker.depth(url)).hidden


@contextlib.asynccontextmanager
async def _sampling(sample: Any, into: list[int]) -> AsyncIterator[None]:
    """Sample ``sample()`` into ``into`` every 50 ms while the block runs."""

    async def loop() -> None:
        while True:
            into.append(await sample())
            await asyncio.sleep(0.05)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_paused_listener_finishes_or_releases_what_it_holds(
    node: Node, broker: Broker, trace: Trace, tmp_path: Path
) -> None:
    """Point 7: pausing (graceful stop, 3 s deadline) lets short runs finish and publish,
    hands the long ones back at once without a result, and receives nothing more; resumed,
    the listener processes the rest and does not run the finished ones again."""
    source, out = await broker.queue("in"), await broker.queue("out")
    definition = listener(source, outputs=[out], max_in_flight=4)
    await node.manager.create(definition)

    def sleep(n: int, seconds: float) -> dict[str, Any]:
        counter = str(tmp_path / f"{n}.counter")  # later attempts return at once
        return {
            "op": "sleep",
            "seconds": seconds,
            "id": n,
            "trace": str(trace.path),
            "counter": counter,
        }

    short = [await broker.send(source, sleep(n, 1)) for n in (0, 1)]
    long = [await broker.send(source, sleep(n, 60)) for n in (2, 3)]
    await eventually(lambda: len(trace.starts()) == 4, what="4 runs started")
    waiting = [await broker.send(source, {"op": "ok", "id": n}) for n in (4, 5, 6, 7)]
    await node.manager.pause(definition.name)

    first = by_source(await broker.drain(out, 2))
    assert set(first) == set(short)
    assert await broker.drain(out, 1, within_s=0.5) == []
    assert await broker.depth(source) == _depth(visible=6)  # released at once, none held
    for message_id in long + waiting:
        assert await status_of(node, definition, message_id) != "succeeded"

    await node.manager.resume(definition.name)
    rest = by_source(await broker.drain(out, 6, within_s=30))
    assert set(rest) == set(long + waiting)
    for n in (0, 1):
        assert len(trace.starts(n)) == 1  # finished before the pause: not run again
    for n in (2, 3):
        assert len(trace.starts(n)) == 2  # interrupted by the pause, then run again
    every = {**first, **rest}
    assert {m.json()["id"] for m in every.values()} == {
        output_id(definition.name, message_id) for message_id in every
    }


def _depth(*, visible: int) -> Any:
    from .brokers import Depth

    return Depth(visible=visible, hidden=0)


async def test_results_carry_their_id_correlation_and_the_version_that_ran(
    node: Node, broker: Broker, tmp_path: Path
) -> None:
    """Points 4 and 9, and version specs resolved per message: ``1.*`` runs 1.0.0, then
    1.1.0 once it is published; results and dead letters say which one."""
    source, out, dead = [await broker.queue(r) for r in ("in", "out", "dead")]
    definition = listener(source, outputs=[out], error_sink=dead)
    await node.manager.create(definition)
    traced = {"traceparent": TRACEPARENT}

    before = await broker.send(source, {"op": "ok", "id": "before"}, traced)
    refused_before = await broker.send(source, {"op": "permanent"})
    results = await broker.drain(out, 1)  # settled before 1.1.0 exists
    letters = await broker.drain(dead, 1)
    await node.push(behave_variant(tmp_path, "1.1.0"), version="1.1.0")
    after = await broker.send(source, {"op": "ok", "id": "after"}, traced)
    refused_after = await broker.send(source, {"op": "permanent"})
    results += await broker.drain(out, 1)
    letters += await broker.drain(dead, 1)

    outputs = by_source(results)
    for message_id, version, tag in ((before, "1.0.0", "base"), (after, "1.1.0", "1.1.0")):
        result = outputs[message_id]
        event = result.json()
        assert event["id"] == output_id(definition.name, message_id)
        assert event["data"]["version"] == tag  # the build that ran...
        assert event["modelversion"] == result.attributes["modelversion"] == version  # ...said
        assert result.attributes["sourcemessageid"] == message_id
        assert result.attributes["originid"] == message_id
        assert result.attributes["listener"] == definition.name
        assert result.attributes["model"] == MODEL
        assert result.attributes["attempt"] == "1"
        trace_id = TRACEPARENT.split("-")[1]
        assert result.attributes["traceparent"].split("-")[1] == trace_id  # same trace
        assert result.attributes["traceparent"] != TRACEPARENT  # our own span in it
        record: RunRecord = await record_of(node, definition, message_id)
        assert (record.status, record.version) == ("succeeded", version)
        assert record.output_id == event["id"]
    dead_versions = {
        m.attributes["modelbus-source-message-id"]: m.attributes["modelbus-version"]
        for m in letters
    }
    assert dead_versions == {refused_before: "1.0.0", refused_after: "1.1.0"}
    for message_id, version in dead_versions.items():
        stored = await node.manager.runs.get_dead_letter(
            dead_letter_id(definition.name, message_id)
        )
        assert stored.version == version


async def test_a_result_one_output_refuses_for_good_is_written_to_none_and_dead_lettered(
    node: Node, moto: Any, aws_credentials: None, tmp_path: Path
) -> None:
    """A result over the SQS queue's size limit, for a listener with a folder output and an SQS
    output: the sizes are checked before any output is written, so the folder gets nothing
    (it used to get the result of a run recorded as dead-lettered), and the message is
    dead-lettered at once, naming the limit."""
    from .brokers import LocalBroker, SqsBroker

    local = LocalBroker(node.data_dir)
    source, dead = await local.queue("in"), await local.queue("dead")
    folder = tmp_path / "results"
    folder.mkdir()
    async with SqsBroker.open(moto.endpoint_url, node.data_dir) as sqs:
        queue = await sqs.queue("out")
        definition = listener(
            source,
            outputs=[f"dir://{folder}", queue],
            error_sink=dead,
            max_body_bytes=4 * 1024 * 1024,
        )
        await node.manager.create(definition)
        small = await local.send(source, {"op": "ok", "n": "x" * 100})
        # over SQS's largest message (1 MiB; the queue's own limit may be lower)
        large = await local.send(source, {"op": "ok", "n": "x" * 1_100_000})
        (letter,) = await local.drain(dead, 1, within_s=30)
        assert letter.attributes["modelbus-source-message-id"] == large
        assert letter.attributes["modelbus-permanent"] == "true"
        assert "over the queue's limit of" in letter.attributes["modelbus-error-message"]
        (result,) = await sqs.drain(queue, 1, within_s=30)
        assert result.attributes["sourcemessageid"] == small
        await eventually(lambda: status_of(node, definition, small), what="small settled")
        written = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        assert written == [f"{output_id(definition.name, small)}.json"]  # not the large one
        assert await status_of(node, definition, large) == "dead_lettered"
