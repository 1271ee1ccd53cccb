"""ListenerHarness runs a user's model folder behind a real listener with production semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbus.connectors.memory import BROKER
from modelbus.listeners.retry import RetryPolicy
from modelbus.testing import ListenerHarness, SyncListenerHarness

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello"
ECHO = ROOT / "tests" / "support" / "models" / "echo"

# A model that shows what production passes it: load() once per runner, state, context,
# PermanentError, transient failures that clear after a few attempts, an input schema.
MODEL = """
import os
from modelbus_runner import PermanentError

LOADS = 0


def load():
    global LOADS
    LOADS += 1
    return {"pid": os.getpid(), "failures": {}}


def apply(input, state, context):
    if input.get("refuse"):
        raise PermanentError("cannot be helped")
    if "flaky" in input:
        seen = state["failures"].setdefault(input["flaky"], 0)
        if seen < input["fail_times"]:
            state["failures"][input["flaky"]] = seen + 1
            raise ConnectionError(f"upstream busy ({seen + 1})")
    return {
        "loads": LOADS,
        "pid": state["pid"],
        "content_type": context.content_type,
        "tenant": context.attributes.get("tenant"),
    }
"""

MANIFEST = """
[model]
owner = "tests"
name = "harnessed"

[runtime]
entrypoint = "model:apply"

[serving]
max_runners = 1

[schema]
input = { type = "object" }
"""


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "harnessed"
    folder.mkdir()
    (folder / "model.py").write_text(MODEL)
    (folder / "modelbus.toml").write_text(MANIFEST)
    return folder


async def test_an_example_model_answers_with_a_cloudevent_and_refuses_binary_at_once() -> None:
    async with ListenerHarness(HELLO) as h:
        sent = await h.send({"name": "Ada"})
        [result] = await h.results(1)
        assert result.data == {"greeting": "Hello, Ada!"}
        assert result.event["type"] == "dev.modelbus.result"
        assert result.attributes["sourcemessageid"] == sent
        refused = await h.send(b"\x00\xff", attributes={"k": "v"})
        [letter] = await h.dead_letters(1)
        assert letter.body == b"\x00\xff" and letter.attributes["k"] == "v"
        assert letter.attributes["modelbus-error-type"] == "PermanentError"
        assert letter.attributes["modelbus-attempts"] == "1"
        runs = {r.message_id: r for r in await h.runs()}
        assert runs[sent].status == "succeeded" and runs[sent].version == "1.0.0"
        assert runs[refused].status == "dead_lettered" and runs[refused].attempts == 1


async def test_load_runs_once_per_runner_and_state_and_context_reach_apply(
    model_dir: Path,
) -> None:
    async with ListenerHarness(model_dir) as h:
        for tenant in ("a", "b", "c"):
            await h.send({"n": 1}, attributes={"tenant": tenant})
        results = await h.results(3)
    assert sorted(r.data["tenant"] for r in results) == ["a", "b", "c"]
    assert {r.data["loads"] for r in results} == {1}
    assert len({r.data["pid"] for r in results}) == 1
    assert {r.data["content_type"] for r in results} == {"json"}


async def test_permanent_errors_dead_letter_at_once_and_transient_ones_are_retried(
    model_dir: Path,
) -> None:
    async with ListenerHarness(model_dir, listener={"retry": {"max_attempts": 3}}) as h:
        refused = await h.send({"refuse": True})
        recovers = await h.send({"flaky": "x", "fail_times": 2})
        gives_up = await h.send({"flaky": "y", "fail_times": 5})
        [result] = await h.results(1)
        letters = await h.dead_letters(2)
        runs = {r.message_id: r for r in await h.runs()}
    assert result.attributes["sourcemessageid"] == recovers
    assert runs[recovers].status == "succeeded" and runs[recovers].attempts == 3
    by_source = {m.attributes["modelbus-source-message-id"]: m for m in letters}
    assert by_source[refused].attributes["modelbus-permanent"] == "true"
    assert by_source[refused].attributes["modelbus-attempts"] == "1"
    assert by_source[gives_up].attributes["modelbus-permanent"] == "false"
    assert by_source[gives_up].attributes["modelbus-attempts"] == "3"
    assert by_source[gives_up].attributes["modelbus-error-type"] == "ConnectionError"
    assert runs[gives_up].status == "dead_lettered" and runs[gives_up].attempts == 3


async def test_a_timeout_is_transient_and_the_pool_replaces_the_hung_runner() -> None:
    settings = {"timeout_s": 0.5, "retry": {"max_attempts": 2}}
    async with ListenerHarness(ECHO, listener=settings) as h:
        hung = await h.send({"sleep": 30})
        fine = await h.send({"after": "the hang"})
        [letter] = await h.dead_letters(1)
        [result] = await h.results(1)
        runs = {r.message_id: r for r in await h.runs()}
    assert letter.attributes["modelbus-error-type"] == "InvocationTimeout"
    assert letter.attributes["modelbus-permanent"] == "false"
    assert runs[hung].attempts == 2
    assert result.data == {"after": "the hang"} and runs[fine].status == "succeeded"


async def test_the_manifest_schema_is_enforced(model_dir: Path) -> None:
    async with ListenerHarness(model_dir) as h:
        await h.send("not an object")
        [letter] = await h.dead_letters(1)
    assert letter.attributes["modelbus-error-type"] == "InputRejected"
    assert letter.attributes["modelbus-attempts"] == "1"


async def test_it_cleans_up_and_says_what_happened_when_a_result_never_comes(
    model_dir: Path,
) -> None:
    harness = ListenerHarness(model_dir, timeout_s=2)
    async with harness as h:
        await h.send({"refuse": True}, id="m-1")
        with pytest.raises(TimeoutError, match=r"m-1 dead_lettered .*PermanentError"):
            await h.results(1, timeout_s=1)
        data_dir = h.data_dir
        dead = BROKER.queue(h.error_sink.removeprefix("memory://"))
        assert dead.counts() == (1, 0)  # the dead letter nobody took
    assert data_dir is not None and not data_dir.exists()
    assert BROKER.queue(dead.name).counts() == (0, 0)  # the harness deleted its queues
    with pytest.raises(RuntimeError, match="not started"):
        await harness.send({})


def test_the_harness_owns_the_queues_and_the_model() -> None:
    with pytest.raises(ValueError, match="sets source"):
        ListenerHarness(HELLO, listener={"source": "memory://mine"})


def test_the_sync_harness_runs_the_same_listener_from_a_plain_test() -> None:
    with SyncListenerHarness(HELLO, listener={"output_mode": "raw"}) as h:
        h.send("Ada")
        [result] = h.results(1)
        [run] = h.runs()
    assert result.data == "Hello, Ada!" and result.body == b"Hello, Ada!"
    assert run.status == "succeeded"
    with pytest.raises(RuntimeError, match="not started"):
        h.send("again")


async def test_fast_retries_fill_in_only_the_delays_the_listener_leaves_out() -> None:
    async with ListenerHarness(HELLO, listener={"retry": {"initial_backoff_s": 0.5}}) as h:
        retry = h.listener.definition.retry
        assert (retry.initial_backoff_s, retry.max_backoff_s, retry.jitter) == (0.5, 0.5, 0.0)
        assert retry.max_attempts == RetryPolicy().max_attempts
    async with ListenerHarness(HELLO, fast_retries=False) as h:
        assert h.listener.definition.retry == RetryPolicy()
