"""Delivery contract points that need more than one listener, process or failure:
nothing lost on a crash, settle only after durability, fan-out and competing replicas."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelbus.listeners.lifecycle import ListenerRuntime
from modelbus.listeners.retry import RetryPolicy
from modelbus.store.schema import metadata
from modelbus.store.schema import runs as runs_table
from modelbus.testing import FunctionInvoker

from .conftest import FAST, Env, eventually

LISTENER_PROCESS = Path(__file__).with_name("listener_process.py")


@pytest.fixture
def queue_kind() -> str:
    return "local"


async def test_a_killed_listener_loses_nothing(env: Env, tmp_path: Path) -> None:
    """Point 3: kill -9 a listener process mid-work; another process finishes everything."""
    source, out = env.url("in", lease_s=1), env.url("out")
    ids = [await env.publish(source, json.dumps({"n": n}).encode()) for n in range(12)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(LISTENER_PROCESS),
        str(env.data_dir),
        str(tmp_path / "store.sqlite"),
        "crashy",
        source,
        out,
        "0.3",
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert (await asyncio.wait_for(process.stdout.readline(), 60)).strip() == b"ready"
        await asyncio.wait_for(process.stdout.readline(), 60)  # the first input is done...
        await asyncio.wait_for(process.stdout.readline(), 60)  # ...and more are in flight
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()

    env.invoker.register("acme/echo", lambda v: v)
    await env.start(env.definition(name="crashy", source=source, outputs=[out], model="acme/echo"))
    seen: set[str] = set()
    while seen != set(ids):
        batch = await env.collect(out, 1, timeout_s=20)
        seen |= {json.loads(m.body)["sourcemessageid"] for m in batch}
    assert await eventually(lambda: _empty(env, source), timeout_s=20)


async def _empty(env: Env, url: str) -> bool:
    return await env.counts(url) == (0, 0)


async def test_no_ack_while_the_run_record_cannot_be_written(env: Env, engine: AsyncEngine) -> None:
    """Point 1: the store is down -> the message stays with the broker; it heals by itself."""
    env.invoker.register("acme/echo", lambda v: v)
    source, out = env.url("in"), env.url("out")
    retry = RetryPolicy(max_attempts=3, initial_backoff_s=0.1, max_backoff_s=0.2, jitter=0)
    listener = await env.start(env.definition(source=source, outputs=[out], retry=retry))
    await listener.wait_for_state("running")
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE runs"))

    message_id = await env.publish(source, b'{"n": 1}')
    await listener.wait_for_state("degraded")
    assert "store" in listener.status().problems
    await eventually(lambda: listener.status().counters["retried"] >= 3)
    assert (await env.counts(source))[0] == 1  # still queued: never acked, never dead-lettered

    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: metadata.create_all(sync, tables=[runs_table]))
    await eventually(lambda: listener.status().counters["succeeded"] == 1)
    (run,) = await env.runs.get_runs(message_id)
    assert run.status == "succeeded" and run.attempts > 3  # past max_attempts, not dropped
    assert await eventually(lambda: _empty(env, source))


async def test_every_output_gets_the_result_before_the_ack(env: Env, tmp_path: Path) -> None:
    """Point 1: one of two outputs fails -> retried until both have it."""
    env.invoker.register("acme/echo", lambda v: v)
    folder = tmp_path / "results"
    source, out = env.url("in"), env.url("out")
    retry = RetryPolicy(max_attempts=50, initial_backoff_s=0.1, max_backoff_s=0.2, jitter=0)
    listener = await env.start(
        env.definition(source=source, outputs=[out, f"dir://{folder}"], retry=retry)
    )
    await listener.wait_for_state("running")
    folder.rmdir()
    folder.write_text("a file where the folder should be")
    message_id = await env.publish(source, b'{"n": 1}')
    await eventually(lambda: listener.status().counters["retried"] >= 2)
    assert (await env.counts(source))[0] == 1

    folder.unlink()
    await eventually(lambda: listener.status().counters["succeeded"] == 1)
    (in_queue,) = await env.collect(out, 1)
    (in_folder,) = folder.glob("*.json")
    assert json.loads(in_folder.read_text())["id"] == in_queue.message_id
    assert json.loads(in_queue.body)["sourcemessageid"] == message_id


async def test_replicas_of_one_listener_compete(env: Env) -> None:
    """Point 8: the replicas of one listener share its messages, each settled once."""
    source, out = env.url("in"), env.url("out")
    second_invoker = FunctionInvoker()

    async def work(value: dict[str, int]) -> dict[str, int]:
        await asyncio.sleep(0.05)
        return value

    env.invoker.register("acme/echo", work)
    second_invoker.register("acme/echo", work)
    definition = env.definition(source=source, outputs=[out], max_in_flight=2)
    await env.start(definition)
    replica = ListenerRuntime(
        definition,
        invoker=second_invoker,
        runs=env.writer,
        metrics=env.metrics.listener(definition.name),
        data_dir=env.data_dir,
        options=FAST,
    )
    await replica.start()
    env.started.append(replica)
    for n in range(20):
        await env.publish(source, json.dumps({"n": n}).encode())

    results = await env.collect(out, 20)
    assert len({r.message_id for r in results}) == 20
    first, second = len(env.invoker.calls), len(second_invoker.calls)
    assert first + second == 20 and first > 0 and second > 0

    await replica.stop()  # removing a replica does not disturb the other
    await env.publish(source, b'{"n": 99}')
    (late,) = await env.collect(out, 1)
    assert json.loads(late.body)["data"] == {"n": 99}


async def test_two_listeners_on_one_folder_each_see_every_file(env: Env, tmp_path: Path) -> None:
    """Point 8: fan-out (each listener has its own subscription to the folder)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    env.invoker.register("acme/echo", lambda data: {"size": len(data)})
    source = f"dir://{inbox}?poll_ms=50"
    out_a, out_b = env.url("a"), env.url("b")
    await env.start(env.definition(name="reader-a", source=source, outputs=[out_a]))
    b = await env.start(env.definition(name="reader-b", source=source, outputs=[out_b]))
    (inbox / "one.bin").write_bytes(b"12345")
    (a_result,) = await env.collect(out_a, 1)
    (b_result,) = await env.collect(out_b, 1)
    assert json.loads(a_result.body)["data"] == json.loads(b_result.body)["data"] == {"size": 5}

    await b.stop()  # removing a listener does not disturb another
    (inbox / "two.bin").write_bytes(b"12")
    (a_second,) = await env.collect(out_a, 1)
    assert json.loads(a_second.body)["key"] == "two.bin"


async def test_a_message_handed_out_again_while_it_runs_is_not_run_twice_at_once(
    env: Env,
) -> None:
    """Its lease lapses before its run is over (extension off; here it waits 2.5 s for a
    batch, past its 1 s lease): the broker hands the message out again, to this same
    listener. That second delivery is handed back, not run beside the first; once the
    first has succeeded, the copy that comes back is a duplicate. One run, one result."""
    env.invoker.register("acme/echo", lambda v: v)
    source, out = env.url("in", lease_s=1), env.url("out")
    retry = RetryPolicy(max_attempts=10, initial_backoff_s=0.5, max_backoff_s=0.5, jitter=0)
    definition = env.definition(
        source=source,
        outputs=[out],
        retry=retry,
        extend_lease=False,
        timeout_s=0.9,
        batch={"max_batch_size": 64, "max_wait_ms": 2500},
    )
    listener = await env.start(definition)
    await listener.wait_for_state("running")
    await env.publish(source, b'{"n": 1}')
    await eventually(lambda: listener.status().counters["retried"] >= 1, timeout_s=10)
    await eventually(lambda: listener.status().counters["succeeded"] == 1, timeout_s=15)
    await eventually(lambda: listener.status().counters["skipped_duplicate"] >= 1, timeout_s=15)
    assert len(env.invoker.calls) == 1  # it ran once, never beside itself
    assert len(await env.collect(out, 1)) == 1
