"""ListenerManager: stored definitions, running listeners, redrive."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from modelbus.errors import (
    Conflict,
    DeadLetterNotFound,
    DefinitionError,
    ListenerNotFound,
    ModelError,
)
from modelbus.listeners.definition import ListenerDefinition, parse_definitions
from modelbus.listeners.manager import ListenerManager, ManagerOptions, TokenBucket
from modelbus.listeners.retry import RetryPolicy
from modelbus.store.runs import RunRecord, RunStore
from modelbus.store.schema import listeners as listeners_table

from .conftest import FAST, Env, eventually


@pytest.fixture
def queue_kind() -> str:
    return "local"


@pytest.fixture
async def manager(env: Env, engine: AsyncEngine) -> AsyncIterator[ListenerManager]:
    mgr = new_manager(env, engine)
    await mgr.start()
    yield mgr
    await mgr.stop()


def new_manager(env: Env, engine: AsyncEngine) -> ListenerManager:
    return ListenerManager(
        engine=engine,
        invoker=env.invoker,
        data_dir=env.data_dir,
        registry=CollectorRegistry(),
        runs=env.runs,
        options=ManagerOptions(sync_interval_s=None, stop_deadline_s=2, runtime=FAST),
    )


async def test_create_runs_the_listener_and_refuses_a_taken_name(
    env: Env, manager: ListenerManager
) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    source, out = env.url("in"), env.url("out")
    definition = env.definition(name="orders", source=source, outputs=[out])
    info = await manager.create(definition)
    assert info.definition == definition
    assert [i.name for i in await manager.list()] == ["orders"]
    assert (await manager.get("orders")).definition == definition

    await env.publish(source, b'{"n": 1}')
    assert len(await env.collect(out, 1)) == 1
    status = await eventually(lambda: _succeeded(manager, "orders"))
    assert status
    with pytest.raises(Conflict):
        await manager.create(definition)
    with pytest.raises(ListenerNotFound):
        await manager.get("nope")


async def _succeeded(manager: ListenerManager, name: str) -> bool:
    status = await manager.status(name)
    return status.state == "running" and status.counters["succeeded"] == 1


async def test_validation_opens_the_connectors_and_says_what_to_change(
    env: Env, manager: ListenerManager, tmp_path: Path
) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    missing = env.definition(source=f"dir://{tmp_path / 'no-such-folder'}")
    with pytest.raises(DefinitionError, match="no such folder"):
        await manager.create(missing)
    short_lease = env.definition(source=env.url("in", lease_s=1), extend_lease=False, timeout_s=5)
    with pytest.raises(DefinitionError, match="lengthen the source's visibility timeout"):
        await manager.create(short_lease)
    bad_option = env.definition(source="local://jobs?visibility=3")
    with pytest.raises(DefinitionError, match="unknown option 'visibility'"):
        await manager.create(bad_option)
    assert await manager.list() == []


@pytest.mark.parametrize("model", ["acme/helo@1.*", "acme/echo@3.*", "acme/echo@2.0.0"])
async def test_a_model_reference_that_resolves_to_nothing_is_refused_unless_unchecked(
    env: Env, manager: ListenerManager, model: str
) -> None:
    env.invoker.register("acme/echo", lambda v: v, version="1.2.0")
    definition = env.definition(name="typo", model=model, source=env.url("in"))
    with pytest.raises(DefinitionError, match="resolves to no version") as info:
        await manager.create(definition)
    assert model in str(info.value) and "check=false" in str(info.value)
    with pytest.raises(DefinitionError, match="resolves to no version"):
        await manager.apply([definition])
    assert await manager.list() == []
    await manager.create(definition, check=False)  # stored: the model may come later
    assert [i.name for i in await manager.list()] == ["typo"]


async def test_a_listener_whose_model_stops_resolving_shows_degraded_with_the_reason(
    env: Env, manager: ListenerManager
) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    source, out = env.url("in"), env.url("out")
    await manager.create(env.definition(name="orders", source=source, outputs=[out]))
    await env.publish(source, b'{"n": 1}')
    assert await eventually(lambda: _succeeded(manager, "orders"))
    env.invoker.unregister("acme/echo")  # the model was deleted
    await env.publish(source, b'{"n": 2}')

    async def degraded() -> bool:
        status = await manager.status("orders")
        return status.state == "degraded" and "model" in status.problems

    assert await eventually(degraded)
    problem = (await manager.status("orders")).problems["model"]
    assert "acme/echo@1.*" in problem and "resolves to no version" in problem
    env.invoker.register("acme/echo", lambda v: v)  # pushed again: it recovers
    await env.publish(source, b'{"n": 3}')

    async def recovered() -> bool:
        status = await manager.status("orders")
        return status.state == "running" and "model" not in status.problems

    assert await eventually(recovered)


async def test_apply_restarts_only_what_changed_and_prunes(
    env: Env, manager: ListenerManager
) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    a = env.definition(name="a", source=env.url("a"))
    b = env.definition(name="b", source=env.url("b"))
    c = env.definition(name="c", source=env.url("c"))
    first = await manager.apply([a, b, c])
    assert (first.created, first.updated, first.unchanged) == (["a", "b", "c"], [], [])
    runtime_a, runtime_b = manager._running["a"], manager._running["b"]

    b2 = b.model_copy(update={"max_in_flight": 2})
    second = await manager.apply([a, b2], prune=True)
    assert (second.created, second.updated, second.unchanged, second.deleted) == (
        [],
        ["b"],
        ["a"],
        ["c"],
    )
    assert manager._running["a"] is runtime_a
    assert manager._running["b"] is not runtime_b
    assert runtime_b.state == "stopped"
    assert (await manager.get("b")).definition.max_in_flight == 2
    with pytest.raises(ListenerNotFound):
        await manager.get("c")


async def test_apply_replaces_a_stored_definition_that_is_not_valid_any_more(
    env: Env, manager: ListenerManager, engine: AsyncEngine
) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    stored_by_an_older_version = {
        "name": "old",
        "source": "local://x",
        "model": "acme/echo@1.*",
        "retired_option": 1,
    }
    async with engine.begin() as conn:
        await conn.execute(
            insert(listeners_table).values(
                name="old",
                definition=stored_by_an_older_version,
                enabled=True,
                created_at=1.0,
                updated_at=1.0,
            )
        )
    assert await manager.list() == []  # refused when read, logged

    definition = env.definition(name="old", source=env.url("in"))
    result = await manager.apply([definition])
    assert result.updated == ["old"]
    assert (await manager.get("old")).definition == definition
    assert manager._running["old"].definition == definition


async def test_apply_takes_a_listener_file(env: Env, manager: ListenerManager) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    source = env.url("in")
    text = f"""
        [[listeners]]
        name = "from-file"
        source = "{source}"
        model = "acme/echo@1.*"

        [listeners.retry]
        max_attempts = 2
    """
    result = await manager.apply(parse_definitions(text))
    assert result.created == ["from-file"]
    assert (await manager.get("from-file")).definition.retry.max_attempts == 2


async def test_pause_stops_consuming_until_resume_and_survives_a_restart(
    env: Env, manager: ListenerManager, engine: AsyncEngine
) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    source, out = env.url("in"), env.url("out")
    await manager.create(env.definition(name="p", source=source, outputs=[out]))
    paused = await manager.pause("p")
    assert not paused.definition.enabled
    assert (await manager.status("p")).state == "paused"
    await env.publish(source, b'{"n": 1}')

    await manager.stop()  # a server restart keeps it paused
    restarted = new_manager(env, engine)
    await restarted.start()
    try:
        assert (await restarted.status("p")).state == "paused"
        assert await env.counts(source) == (1, 0)
        await restarted.resume("p")
        assert len(await env.collect(out, 1)) == 1
        assert (await restarted.get("p")).definition.enabled
    finally:
        await restarted.stop()


async def test_delete_stops_and_forgets(env: Env, manager: ListenerManager) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    await manager.create(env.definition(name="gone", source=env.url("in")))
    runtime = manager._running["gone"]
    await manager.delete("gone")
    assert runtime.state == "stopped"
    with pytest.raises(ListenerNotFound):
        await manager.status("gone")
    with pytest.raises(ListenerNotFound):
        await manager.delete("gone")


async def test_another_process_follows_changes_through_sync(
    env: Env, manager: ListenerManager, engine: AsyncEngine
) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    other = new_manager(env, engine)
    await other.start()
    try:
        await manager.create(env.definition(name="shared", source=env.url("in")))
        assert "shared" not in other._running
        await other.sync()
        assert other._running["shared"].definition == (await manager.get("shared")).definition
        await manager.pause("shared")
        await other.sync()
        assert "shared" not in other._running
        assert (await other.status("shared")).state == "paused"
        assert "shared" in other.metrics.names()  # a paused listener keeps its figures
        await manager.delete("shared")
        await other.sync()
        assert "shared" not in other.metrics.names()  # a deleted one does not
    finally:
        await other.stop()


async def test_redrive_runs_dead_letters_on_another_version(
    env: Env, manager: ListenerManager
) -> None:
    def broken(value: Any) -> Any:
        raise ModelError("bad model", permanent=True)

    env.invoker.register("acme/echo", broken, version="1.0.0")
    source, out = env.url("in"), env.url("out")
    await manager.create(
        env.definition(name="r", source=source, outputs=[out], retry=RetryPolicy(max_attempts=1))
    )
    ids = [await env.publish(source, json.dumps({"n": n}).encode()) for n in range(3)]
    await eventually(lambda: _dead_lettered(manager, "r", 3))
    page = await manager.runs.list_dead_letters("r")
    assert sorted(d.message_id for d in page.items) == sorted(ids)

    env.invoker.register("acme/echo", lambda v: {"fixed": v["n"]}, version="1.1.0")
    result = await manager.redrive("r", spec="1.1.0", rate_per_s=50)
    assert result.model == "acme/echo@1.1.0"
    assert len(result.redriven) == 3 and result.failed == {}
    outputs = await env.collect(out, 3)
    assert sorted(json.loads(o.body)["data"]["fixed"] for o in outputs) == [0, 1, 2]
    assert {json.loads(o.body)["modelversion"] for o in outputs} == {"1.1.0"}
    for message_id in ids:
        (run,) = await manager.runs.get_runs(message_id, "r")
        assert (run.status, run.version) == ("succeeded", "1.1.0")
    letter = await manager.runs.get_dead_letter(result.redriven[0])
    assert letter.redriven_to == "acme/echo@1.1.0" and letter.redriven_at is not None
    again = await manager.redrive("r")  # nothing left that was not redriven
    assert again.redriven == [] and again.failed == {}


async def test_redrive_reports_failures_and_refuses_foreign_ids(
    env: Env, manager: ListenerManager
) -> None:
    def broken(value: Any) -> Any:
        raise ModelError("still bad", permanent=True)

    env.invoker.register("acme/echo", broken)
    source = env.url("in")
    await manager.create(
        env.definition(name="r2", source=source, retry=RetryPolicy(max_attempts=1))
    )
    await manager.create(env.definition(name="other", source=env.url("x")))
    await env.publish(source, b'{"n": 1}')
    await eventually(lambda: _dead_lettered(manager, "r2", 1))
    (letter_id,) = await manager.runs.dead_letter_ids("r2")

    result = await manager.redrive("r2", ids=[letter_id])
    assert result.redriven == [] and "still bad" in result.failed[letter_id]
    assert (await manager.runs.get_dead_letter(letter_id)).redriven_at is None
    with pytest.raises(DeadLetterNotFound):
        await manager.redrive("other", ids=[letter_id])
    with pytest.raises(DefinitionError):
        await manager.redrive("r2", spec="not-a-spec")


async def _dead_lettered(manager: ListenerManager, name: str, count: int) -> bool:
    return (await manager.status(name)).counters["dead_lettered"] == count


async def test_token_bucket_paces_takes() -> None:
    bucket = TokenBucket(rate_per_s=20, burst=1)
    import time

    started = time.monotonic()
    for _ in range(5):
        await bucket.take()
    assert time.monotonic() - started >= 4 / 20 * 0.9


def test_definitions_compare_by_value() -> None:
    name = f"x-{uuid.uuid4().hex[:6]}"
    one = ListenerDefinition(name=name, source="local://a", model="a/b")
    assert one == ListenerDefinition.from_mapping(one.model_dump(mode="json"))


async def test_the_sync_loop_follows_the_store_and_ends_the_dedupe_window(
    env: Env, engine: AsyncEngine
) -> None:
    env.invoker.register("acme/echo", lambda v: v)
    options = ManagerOptions(sync_interval_s=0.05, dedupe_window_s=3600, runtime=FAST)
    writer, follower = (
        ListenerManager(
            engine=engine,
            invoker=env.invoker,
            data_dir=env.data_dir,
            registry=CollectorRegistry(),
            runs=env.runs,
            options=options,
        )
        for _ in range(2)
    )
    old = RunRecord(
        listener="s",
        message_id="old",
        status="succeeded",
        attempts=1,
        first_received_at=1.0,
        updated_at=1.0,
        finished_at=1.0,
    )
    await env.runs.write([old])
    await follower.start()
    try:
        await writer.create(env.definition(name="s", source=env.url("in")))
        await eventually(lambda: "s" in follower._running)
        await eventually(lambda: _forgotten(env.runs, "old"))
    finally:
        await follower.stop()
        await writer.stop()


async def _forgotten(runs: RunStore, message_id: str) -> bool:
    return await runs.get_runs(message_id) == []
