"""The listener runtime against real queues (memory:// and local://) and the FunctionInvoker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

from modelbus.connectors import SCHEMES, redact_url
from modelbus.connectors.memory import BROKER
from modelbus.errors import InputRejected, ModelError, RunnerCrashed
from modelbus.listeners.envelopes import dead_letter_id, output_id
from modelbus.listeners.retry import RetryPolicy

from . import cancelling_connector
from .conftest import Env, eventually

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def empty(env: Env, url: str) -> bool:
    return await env.counts(url) == (0, 0)


def no_jitter(**fields: Any) -> RetryPolicy:
    return RetryPolicy(**{"jitter": 0.0, **fields})


async def test_success_publishes_a_cloudevent_with_correlation_and_acks(env: Env) -> None:
    env.invoker.register("acme/echo", lambda v: {"upper": v["text"].upper()}, version="1.2.0")
    source, out = env.url("in"), env.url("out")
    listener = await env.start(env.definition(source=source, outputs=[out]))
    message_id = await env.publish(
        source, b'{"text": "hi"}', attributes={"traceparent": TRACE, "tenant": "t1"}
    )

    (result,) = await env.collect(out, 1)
    event = json.loads(result.body)
    assert event["specversion"] == "1.0"
    assert event["id"] == output_id(listener.name, message_id) == result.message_id
    assert event["type"] == "dev.modelbus.result"
    assert event["source"] == f"modelbus/listener/{listener.name}"
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == {"upper": "HI"}
    assert event["sourcemessageid"] == message_id == event["originid"]
    assert (event["listener"], event["model"]) == (listener.name, "acme/echo@1.*")
    assert (event["modelversion"], event["attempt"]) == ("1.2.0", "1")
    assert float(event["durationms"]) >= 0
    trace_id = TRACE.split("-")[1]
    assert event["traceparent"].split("-")[1] == trace_id
    assert event["traceparent"] != TRACE  # our own span, same trace
    assert result.attributes["sourcemessageid"] == message_id
    assert result.attributes["content-type"].startswith("application/cloudevents+json")

    await eventually(lambda: listener.status().counters["succeeded"] == 1)
    await eventually(lambda: empty(env, source))
    (run,) = await env.runs.get_runs(message_id)
    assert (run.status, run.attempts, run.version) == ("succeeded", 1, "1.2.0")
    assert run.output_id == event["id"]
    assert run.result_location == (redact_url(out),)  # where it went, by its shape
    call = env.invoker.calls[0]
    assert call.options.attributes["traceparent"] == event["traceparent"]


async def test_transient_failures_are_retried_with_growing_delays(env: Env) -> None:
    attempts: list[float] = []

    async def flaky(value: Any) -> Any:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise RunnerCrashed("runner died")
        return value

    env.invoker.register("acme/echo", flaky)
    source, out = env.url("in"), env.url("out")
    retry = no_jitter(max_attempts=5, initial_backoff_s=0.3, multiplier=2)
    listener = await env.start(env.definition(source=source, outputs=[out], retry=retry))
    message_id = await env.publish(source, b'{"n": 1}')

    (result,) = await env.collect(out, 1)
    assert json.loads(result.body)["attempt"] == "3"
    first_gap, second_gap = attempts[1] - attempts[0], attempts[2] - attempts[1]
    assert first_gap >= 0.3 * 0.9
    assert second_gap >= 0.6 * 0.9
    await eventually(lambda: listener.status().counters["succeeded"] == 1)
    assert listener.status().counters["retried"] == 2
    (run,) = await env.runs.get_runs(message_id, listener.name)
    assert (run.status, run.attempts) == ("succeeded", 3)
    assert "runner died" in (listener.status().last_error or "")


async def test_exhausted_retries_dead_letter_with_the_original_message(env: Env) -> None:
    async def always_crashes(value: Any) -> Any:
        raise RunnerCrashed("runner died again")

    env.invoker.register("acme/echo", always_crashes, version="2.0.0")
    source, out, errors = env.url("in"), env.url("out"), env.url("dlq")
    retry = no_jitter(max_attempts=3, initial_backoff_s=0.05)
    listener = await env.start(
        env.definition(
            source=source, outputs=[out], error_sink=errors, retry=retry, model="acme/echo"
        )
    )
    message_id = await env.publish(source, b'{"n": 1}', attributes={"tenant": "t1"})

    (dead,) = await env.collect(errors, 1)
    assert dead.body == b'{"n": 1}'
    assert dead.attributes["tenant"] == "t1"
    assert dead.attributes["modelbus-error-type"] == "RunnerCrashed"
    assert dead.attributes["modelbus-attempts"] == "3"
    assert dead.attributes["modelbus-version"] == "2.0.0"
    assert dead.attributes["modelbus-model"] == "acme/echo@latest"
    assert dead.attributes["modelbus-permanent"] == "false"
    assert len(env.invoker.calls) == 3
    letter = await env.runs.get_dead_letter(dead_letter_id(listener.name, message_id))
    assert (letter.body, letter.attempts, letter.version) == (b'{"n": 1}', 3, "2.0.0")
    assert letter.error_message == "runner died again"
    (run,) = await env.runs.get_runs(message_id)
    assert run.status == "dead_lettered"
    await eventually(lambda: listener.status().counters["dead_lettered"] == 1)
    await eventually(lambda: empty(env, source))
    assert await empty(env, out)


async def test_permanent_failure_is_dead_lettered_at_once_with_body_untouched(env: Env) -> None:
    async def rejects(value: Any) -> Any:
        raise ModelError("cannot read this", permanent=True, stacktrace="Traceback: here")

    env.invoker.register("acme/echo", rejects)
    source, errors = env.url("in"), env.url("dlq")
    listener = await env.start(env.definition(source=source, error_sink=errors))
    body = bytes(range(256))  # binary, not UTF-8
    message_id = await env.publish(source, body, attributes={"x-custom": "kept"})

    (dead,) = await env.collect(errors, 1)
    assert dead.body == body
    assert dead.attributes["x-custom"] == "kept"
    assert dead.attributes["modelbus-permanent"] == "true"
    assert dead.attributes["modelbus-error-stacktrace"] == "Traceback: here"
    assert len(env.invoker.calls) == 1
    letter = await env.runs.get_dead_letter(dead_letter_id(listener.name, message_id))
    assert letter.permanent and letter.attempts == 1 and letter.stacktrace == "Traceback: here"


async def test_undecodable_and_rejected_inputs_are_dead_lettered_at_once(env: Env) -> None:
    def check(value: Any) -> Any:
        if "text" not in value:
            raise InputRejected("text is required")
        return value

    env.invoker.register("acme/echo", check)
    source, errors = env.url("in"), env.url("dlq")
    listener = await env.start(env.definition(source=source, error_sink=errors))
    await env.publish(source, b"{broken", attributes={"content-type": "application/json"})
    await env.publish(source, b'{"other": 1}')

    dead = await env.collect(errors, 2)
    types = sorted(d.attributes["modelbus-error-type"] for d in dead)
    assert types == ["InputRejected", "InvalidInput"]
    assert len(env.invoker.calls) == 1  # the undecodable one never reached the model
    assert all(d.attributes["modelbus-attempts"] == "1" for d in dead)
    await eventually(lambda: listener.status().counters["dead_lettered"] == 2)


async def test_unresolvable_version_is_retried_not_lost(env: Env) -> None:
    env.invoker.register("acme/echo", lambda v: v, version="1.0.0")
    source, out = env.url("in"), env.url("out")
    retry = no_jitter(max_attempts=10, initial_backoff_s=0.1, max_backoff_s=0.2)
    listener = await env.start(
        env.definition(source=source, outputs=[out], model="acme/echo@2.*", retry=retry)
    )
    message_id = await env.publish(source, b'{"n": 1}')
    await eventually(lambda: listener.status().counters["retried"] >= 2)
    env.invoker.register("acme/echo", lambda v: {"v2": v}, version="2.0.0")  # published later

    (result,) = await env.collect(out, 1)
    assert json.loads(result.body)["data"] == {"v2": {"n": 1}}
    assert json.loads(result.body)["modelversion"] == "2.0.0"
    await eventually(lambda: listener.status().counters["succeeded"] == 1)
    (run,) = await env.runs.get_runs(message_id)
    assert run.status == "succeeded" and run.attempts >= 3


async def test_a_redelivered_success_is_acked_without_running_again(env: Env) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    source, out = env.url("in"), env.url("out")
    listener = await env.start(env.definition(source=source, outputs=[out]))
    message_id = await env.publish(source, b'{"n": 1}')
    await env.collect(out, 1)
    await eventually(lambda: listener.status().counters["succeeded"] == 1)

    await env.publish(source, b'{"n": 1}', id=message_id)  # the broker hands it out again
    await eventually(lambda: listener.status().counters["skipped_duplicate"] == 1)
    assert len(env.invoker.calls) == 1
    await eventually(lambda: empty(env, source))
    assert await empty(env, out)


async def test_a_slow_model_keeps_its_lease(env: Env) -> None:
    async def slow(value: Any) -> Any:
        await asyncio.sleep(2.5)
        return value

    env.invoker.register("acme/echo", slow)
    source, out = env.url("in", lease_s=0.6), env.url("out")
    listener = await env.start(env.definition(source=source, outputs=[out], max_in_flight=4))
    message_id = await env.publish(source, b'{"n": 1}')

    (result,) = await env.collect(out, 1, timeout_s=15)
    assert json.loads(result.body)["attempt"] == "1"
    await eventually(lambda: listener.status().counters["succeeded"] == 1)
    assert len(env.invoker.calls) == 1  # never redelivered to a second worker
    assert listener.status().counters["received"] == 1
    (run,) = await env.runs.get_runs(message_id)
    assert run.attempts == 1


async def test_lease_shorter_than_timeout_without_extension_is_refused(env: Env) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    source = env.url("in", lease_s=1)
    listener = await env.start(env.definition(source=source, extend_lease=False, timeout_s=5))
    await listener.wait_for_state("stopped")
    error = listener.status().last_error or ""
    assert "timeout_s" in error and "extend_lease" in error


async def test_never_more_than_max_in_flight(env: Env) -> None:
    source, out = env.url("in"), env.url("out")
    hidden_seen: list[int] = []

    async def sampled(value: Any) -> Any:
        hidden_seen.append((await env.counts(source))[1])
        await asyncio.sleep(0.15)
        return value

    env.invoker.register("acme/echo", sampled)
    for n in range(12):
        await env.publish(source, json.dumps({"n": n}).encode())
    listener = await env.start(env.definition(source=source, outputs=[out], max_in_flight=3))

    await env.collect(out, 12, timeout_s=20)
    assert env.invoker.peak_concurrency == 3
    assert max(hidden_seen) <= 3
    await eventually(lambda: listener.status().counters["succeeded"] == 12)


async def test_stop_drains_in_flight_work_before_the_deadline(env: Env) -> None:
    async def slow(value: Any) -> Any:
        await asyncio.sleep(0.4)
        return value

    env.invoker.register("acme/echo", slow)
    source, out = env.url("in"), env.url("out")
    listener = await env.start(env.definition(source=source, outputs=[out]))
    for n in range(3):
        await env.publish(source, json.dumps({"n": n}).encode())
    await eventually(lambda: env.invoker.concurrency == 3)

    await listener.stop(deadline_s=5)
    assert listener.state == "stopped"
    await eventually(lambda: empty(env, source))
    assert len(await env.collect(out, 3)) == 3


async def test_stop_releases_what_misses_the_deadline_at_once(env: Env) -> None:
    async def stuck(value: Any) -> Any:
        await asyncio.sleep(30)
        return value

    env.invoker.register("acme/echo", stuck)
    source, out = env.url("in", lease_s=60), env.url("out")
    listener = await env.start(env.definition(source=source, outputs=[out]))
    message_id = await env.publish(source, b'{"n": 1}')
    await eventually(lambda: env.invoker.concurrency == 1)

    await listener.stop(deadline_s=0.2)
    assert await env.counts(source) == (1, 0)  # back in the queue, visible now
    (again,) = await env.collect(source, 1, timeout_s=2)
    assert (again.message_id, again.attempt) == (message_id, 2)
    assert await empty(env, out)


async def test_filter_skips_what_does_not_match(env: Env) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    source, out = env.url("in"), env.url("out")
    definition = env.definition(
        source=source,
        outputs=[out],
        filter={"body": {"kind": ["invoice"]}, "attributes": {"tenant": [{"prefix": "acme"}]}},
    )
    listener = await env.start(definition)
    await env.publish(source, b'{"kind": "invoice"}', attributes={"tenant": "acme-eu"})
    await env.publish(source, b'{"kind": "memo"}', attributes={"tenant": "acme-eu"})
    await env.publish(source, b'{"kind": "invoice"}', attributes={"tenant": "other"})

    (result,) = await env.collect(out, 1)
    assert json.loads(result.body)["data"] == {"kind": "invoice"}
    await eventually(lambda: listener.status().counters["skipped_filtered"] == 2)
    assert len(env.invoker.calls) == 1
    await eventually(lambda: empty(env, source))


async def test_batching_groups_inputs_into_batch_calls(env: Env) -> None:
    env.invoker.register(
        "acme/echo", lambda v: v, batch=lambda values: [{"doubled": v["n"] * 2} for v in values]
    )
    source, out = env.url("in"), env.url("out")
    definition = env.definition(
        source=source, outputs=[out], batch={"max_batch_size": 4, "max_wait_ms": 300}
    )
    listener = await env.start(definition)
    for n in range(8):
        await env.publish(source, json.dumps({"n": n}).encode())

    results = await env.collect(out, 8)
    assert sorted(json.loads(r.body)["data"]["doubled"] for r in results) == list(range(0, 16, 2))
    assert sum(env.invoker.batch_sizes) == 8
    assert max(env.invoker.batch_sizes) > 1
    assert max(env.invoker.batch_sizes) <= 4
    await eventually(lambda: listener.status().counters["succeeded"] == 8)


async def test_raw_output_mode_publishes_the_bare_result(env: Env) -> None:
    env.invoker.register("acme/echo", lambda v: f"hello {v['name']}")
    source, out = env.url("in"), env.url("out")
    listener = await env.start(env.definition(source=source, outputs=[out], output_mode="raw"))
    message_id = await env.publish(source, b'{"name": "ada"}')

    (result,) = await env.collect(out, 1)
    assert result.body == b"hello ada"
    assert result.attributes["content-type"] == "text/plain; charset=utf-8"
    assert result.attributes["sourcemessageid"] == message_id
    assert result.attributes["listener"] == listener.name
    assert result.message_id == output_id(listener.name, message_id)


async def test_results_chain_into_the_next_listener_with_the_correlation(env: Env) -> None:
    env.invoker.register("acme/echo", lambda v: {"step": 1, "input": v})
    env.invoker.register("acme/second", lambda v: {"step": 2, "input": v})
    source, middle, out = env.url("in"), env.url("mid"), env.url("out")
    await env.start(env.definition(source=source, outputs=[middle]))
    await env.start(env.definition(source=middle, outputs=[out], model="acme/second"))
    first_id = await env.publish(source, b'{"n": 7}', attributes={"traceparent": TRACE})

    (result,) = await env.collect(out, 1)
    event = json.loads(result.body)
    assert event["data"] == {"step": 2, "input": {"step": 1, "input": {"n": 7}}}
    assert event["originid"] == first_id
    assert event["sourcemessageid"] != first_id
    assert event["traceparent"].split("-")[1] == TRACE.split("-")[1]


async def test_source_outage_degrades_then_recovers_by_itself(env: Env) -> None:
    if env.kind != "memory":
        import pytest

        pytest.skip("an outage of the source is injected through the memory broker")
    env.invoker.register("acme/echo", lambda v: v)
    source, out = env.url("in"), env.url("out")
    listener = await env.start(env.definition(source=source, outputs=[out]))
    await listener.wait_for_state("running")
    queue = BROKER.queue(source.split("://")[1])

    queue.outage("connection refused")
    await listener.wait_for_state("degraded", timeout_s=5)
    status = listener.status()
    assert "connection refused" in status.problems["source"]
    assert "connection refused" in (status.last_error or "")

    queue.outage(None)
    await listener.wait_for_state("running", timeout_s=5)
    await env.publish(source, b'{"n": 1}')
    assert len(await env.collect(out, 1)) == 1


async def test_a_source_whose_close_cancels_itself_does_not_end_the_listener(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env.kind != "memory":
        pytest.skip("an outage of the source is injected through the memory broker")
    monkeypatch.setitem(SCHEMES, "cancelling", cancelling_connector.__name__)
    env.invoker.register("acme/echo", lambda v: v)
    name, out = f"in-{uuid.uuid4().hex[:10]}", env.url("out")
    listener = await env.start(env.definition(source=f"cancelling://{name}", outputs=[out]))
    await listener.wait_for_state("running")

    BROKER.queue(name).outage("connection refused")
    await listener.wait_for_state("degraded", timeout_s=5)
    await eventually(lambda: name in cancelling_connector.CLOSES)  # reconnecting closed it
    BROKER.queue(name).outage(None)
    await listener.wait_for_state("running", timeout_s=5)
    await env.publish(f"memory://{name}", b'{"n": 1}')
    assert len(await env.collect(out, 1)) == 1


async def test_a_failing_sink_degrades_and_recovers_without_losing_the_message(
    env: Env, tmp_path: Any
) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    folder = tmp_path / "results"
    source = env.url("in")
    retry = no_jitter(max_attempts=100, initial_backoff_s=0.1, max_backoff_s=0.2)
    listener = await env.start(
        env.definition(source=source, outputs=[f"dir://{folder}"], retry=retry)
    )
    await listener.wait_for_state("running")
    folder.rmdir()
    folder.write_text("not a folder")  # the sink cannot write any more

    message_id = await env.publish(source, b'{"n": 1}')
    await listener.wait_for_state("degraded", timeout_s=5)
    assert any(part.startswith("sink dir://") for part in listener.status().problems)

    folder.unlink()
    folder.mkdir()
    await listener.wait_for_state("running", timeout_s=10)
    written = await eventually(lambda: list(folder.glob("*.json")))
    assert json.loads(written[0].read_text())["sourcemessageid"] == message_id
    await eventually(lambda: listener.status().counters["succeeded"] == 1)
    (run,) = await env.runs.get_runs(message_id)
    assert run.status == "succeeded" and run.attempts >= 2
