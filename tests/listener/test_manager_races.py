"""ListenerManager races: a read of the stored listeners overtaken by a change (create,
delete, apply, pause, resume) on the same node or on another sharing the store; a node
stopped while its sync loop is stopping a listener.

Each test forces its interleaving: :func:`race` holds the first read of the stored
listeners made by one operation, with what it read, while a concurrent change runs until it
is done or has to wait for the manager's lock (:class:`WatchedLock`), then lets the read
go. No timing decides the outcome: every run takes the same path.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from modelbus.connectors import SCHEMES
from modelbus.errors import Conflict, ListenerNotFound
from modelbus.listeners.manager import ListenerManager, ManagerOptions

from . import tracking_connector
from .conftest import FAST, Env, eventually

RACE_TIMEOUT_S = 30.0  # a deadlock fails the test instead of hanging it


@pytest.fixture
def queue_kind() -> str:
    return "memory"


@pytest.fixture(autouse=True)
def tracked_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCHEMES, "tracked", tracking_connector.__name__)


class WatchedLock(asyncio.Lock):
    """The manager's lock, telling when a caller has had to wait for it."""

    def __init__(self) -> None:
        super().__init__()
        self.contended = asyncio.Event()

    async def acquire(self) -> Literal[True]:
        if self.locked():
            self.contended.set()
        return await super().acquire()


@dataclass
class Node:
    """One ``serve`` process's listener manager, its metrics and its (watched) lock."""

    manager: ListenerManager
    registry: CollectorRegistry
    lock: WatchedLock

    def series(self, name: str) -> float | None:
        """Listener ``name``'s received count in this node's metrics (None: no series)."""
        return self.registry.get_sample_value(
            "modelbus_listener_received_total", {"listener": name}
        )


def new_node(env: Env, engine: AsyncEngine, *, sync_interval_s: float | None = None) -> Node:
    registry = CollectorRegistry()
    manager = ListenerManager(
        engine=engine,
        invoker=env.invoker,
        data_dir=env.data_dir,
        registry=registry,
        runs=env.runs,
        options=ManagerOptions(sync_interval_s=sync_interval_s, stop_deadline_s=2, runtime=FAST),
    )
    lock = manager._lock = WatchedLock()
    return Node(manager=manager, registry=registry, lock=lock)


@pytest.fixture
async def node(env: Env, engine: AsyncEngine) -> AsyncIterator[Node]:
    env.invoker.register("acme/echo", lambda v: v)
    started = new_node(env, engine)
    await started.manager.start()
    yield started
    await started.manager.stop()


@pytest.fixture
async def other(env: Env, engine: AsyncEngine) -> AsyncIterator[Node]:
    """A second node on the same store."""
    started = new_node(env, engine)
    await started.manager.start()
    yield started
    await started.manager.stop()


@pytest.fixture
async def follower(env: Env, engine: AsyncEngine) -> AsyncIterator[Node]:
    """A node that follows the store with its sync loop (every 10 ms)."""
    started = new_node(env, engine, sync_interval_s=0.01)
    await started.manager.start()
    yield started
    await started.manager.stop()


async def race(
    node: Node,
    reading: Callable[[], Coroutine[Any, Any, Any]],
    change: Callable[[], Coroutine[Any, Any, Any]],
) -> None:
    """Run ``reading`` on ``node`` and hold its first read of the stored listeners, with what
    it read, while ``change`` runs until it is done or waits for ``node``'s lock; then let
    both finish (their exceptions propagate)."""
    manager = node.manager
    read, go = asyncio.Event(), asyncio.Event()

    def held(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def read_then_wait(*args: Any) -> Any:
            stored = await original(*args)
            if not read.is_set():
                read.set()
                await go.wait()
            return stored

        return read_then_wait

    async with asyncio.timeout(RACE_TIMEOUT_S):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(manager, "list", held(manager.list))
            patch.setattr(manager, "_row", held(manager._row))
            reader = asyncio.create_task(reading())
            await read.wait()
            changer = asyncio.create_task(change())
            await done_or_waiting(changer, node.lock)
            go.set()
            await asyncio.gather(reader, changer)


async def done_or_waiting(task: asyncio.Task[Any], lock: WatchedLock) -> None:
    """Return once ``task`` is done or waits for ``lock`` (call it right after creating
    ``task``: waits for the lock before are forgotten)."""
    lock.contended.clear()
    waiting = asyncio.create_task(lock.contended.wait())
    await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()


def tracked(role: str) -> str:
    return f"tracked://{role}-{uuid.uuid4().hex[:10]}"


async def assert_gone(node: Node, name: str, source: str) -> None:
    """Not stored, not running, its source closed, its series dropped."""
    with pytest.raises(ListenerNotFound):
        await node.manager.get(name)
    assert name not in node.manager._running
    assert tracking_connector.unclosed(source) == 0
    assert node.series(name) is None


# --- a sync against a change on the same node ----------------------------------------------


async def test_a_sync_that_read_before_a_delete_does_not_start_the_listener_again(
    env: Env, node: Node
) -> None:
    source = tracked("in")
    await node.manager.create(env.definition(name="gone", source=source))
    runtime = node.manager._running["gone"]

    await race(node, node.manager.sync, lambda: node.manager.delete("gone"))

    assert runtime.state == "stopped"
    await assert_gone(node, "gone", source)


async def test_a_sync_that_read_before_a_change_does_not_restart_the_old_definition(
    env: Env, node: Node
) -> None:
    source, old_out, new_out = tracked("in"), env.url("old"), env.url("new")
    await node.manager.create(env.definition(name="moved", source=source, outputs=[old_out]))
    changed = env.definition(name="moved", source=source, outputs=[new_out])

    await race(node, node.manager.sync, lambda: node.manager.apply([changed]))

    assert (await node.manager.get("moved")).definition == changed
    assert node.manager._running["moved"].definition == changed
    assert tracking_connector.unclosed(source) == 1  # the new runtime's, no other
    await env.publish(source, b'{"n": 1}')
    assert len(await env.collect(new_out, 1)) == 1


async def test_a_sync_that_read_before_a_pause_does_not_resume_the_listener(
    env: Env, node: Node
) -> None:
    source = tracked("in")
    await node.manager.create(env.definition(name="held", source=source))

    await race(node, node.manager.sync, lambda: node.manager.pause("held"))

    assert not (await node.manager.get("held")).definition.enabled
    assert "held" not in node.manager._running
    assert (await node.manager.status("held")).state == "paused"
    assert tracking_connector.unclosed(source) == 0


async def test_a_sync_that_read_before_a_create_does_not_stop_the_new_listener(
    env: Env, node: Node
) -> None:
    source = tracked("in")
    created = env.definition(name="new", source=source)

    await race(node, node.manager.sync, lambda: node.manager.create(created))

    assert "new" in node.manager._running
    assert node.manager._running["new"].definition == (await node.manager.get("new")).definition
    assert tracking_connector.unclosed(source) == 1


async def test_a_sync_that_read_before_a_resume_does_not_stop_the_listener_again(
    env: Env, node: Node
) -> None:
    source = tracked("in")
    await node.manager.create(env.definition(name="back", source=source, enabled=False))

    await race(node, node.manager.sync, lambda: node.manager.resume("back"))

    assert (await node.manager.get("back")).definition.enabled
    assert "back" in node.manager._running
    assert tracking_connector.unclosed(source) == 1


# --- a change against another change on the same node -------------------------------------


async def test_an_apply_that_read_before_a_delete_does_not_run_a_listener_it_did_not_store(
    env: Env, node: Node
) -> None:
    source = tracked("in")
    await node.manager.create(env.definition(name="gone", source=source))
    changed = env.definition(name="gone", source=source, max_in_flight=2)

    await race(node, lambda: node.manager.apply([changed]), lambda: node.manager.delete("gone"))

    await assert_gone(node, "gone", source)


async def test_a_resume_that_read_before_a_delete_does_not_run_a_listener_it_did_not_store(
    env: Env, node: Node
) -> None:
    source = tracked("in")
    await node.manager.create(env.definition(name="gone", source=source, enabled=False))

    await race(node, lambda: node.manager.resume("gone"), lambda: node.manager.delete("gone"))

    await assert_gone(node, "gone", source)


async def test_a_pause_that_read_before_a_change_does_not_undo_the_change(
    env: Env, node: Node
) -> None:
    source, old_out, new_out = tracked("in"), env.url("old"), env.url("new")
    await node.manager.create(env.definition(name="both", source=source, outputs=[old_out]))
    changed = env.definition(name="both", source=source, outputs=[new_out])

    await race(node, lambda: node.manager.pause("both"), lambda: node.manager.apply([changed]))

    # The pause took the lock first; the change applied after it (and resumed: apply makes
    # the store hold the definition as given, enabled included).
    assert (await node.manager.get("both")).definition == changed
    assert node.manager._running["both"].definition == changed
    assert tracking_connector.unclosed(source) == 1


async def test_a_pruning_apply_that_read_before_a_delete_does_not_fail_on_it(
    env: Env, node: Node
) -> None:
    kept = env.definition(name="kept", source=tracked("kept"))
    await node.manager.create(kept)
    await node.manager.create(env.definition(name="gone", source=tracked("gone")))

    async def apply_and_prune() -> None:
        result = await node.manager.apply([kept], prune=True)
        assert result.unchanged == ["kept"]

    await race(node, apply_and_prune, lambda: node.manager.delete("gone"))

    assert [info.name for info in await node.manager.list()] == ["kept"]
    assert set(node.manager._running) == {"kept"}


# --- another node sharing the store ---------------------------------------------------------


async def test_a_node_that_read_before_another_deleted_converges_at_its_next_sync(
    env: Env, node: Node, other: Node
) -> None:
    # The two nodes' locks are their own: the other node starts the listener from the row
    # it read, and only its next sync can stop it. It must then leave nothing behind.
    source = tracked("in")
    await node.manager.create(env.definition(name="shared", source=source))

    await race(other, other.manager.sync, lambda: node.manager.delete("shared"))
    assert "shared" in other.manager._running  # read before the delete: started

    await other.manager.sync()
    await assert_gone(other, "shared", source)
    await assert_gone(node, "shared", source)


async def test_two_nodes_creating_one_name_at_once_give_the_loser_a_conflict(
    env: Env, node: Node, other: Node
) -> None:
    # The other node's check for the name is held while this node creates it (another
    # node's lock keeps nothing out): its insert then meets the row, which must be the
    # API's Conflict (409), not a database error.
    first, second = tracked("in"), tracked("in")
    with pytest.raises(Conflict, match="exists already"):
        await race(
            other,
            lambda: other.manager.create(env.definition(name="twice", source=second)),
            lambda: node.manager.create(env.definition(name="twice", source=first)),
        )
    assert (await node.manager.get("twice")).definition.source == first
    assert "twice" not in other.manager._running
    assert tracking_connector.unclosed(second) == 0


async def test_an_apply_racing_a_create_on_another_node_replaces_what_it_created(
    env: Env, node: Node, other: Node
) -> None:
    first, second = tracked("in"), tracked("in")
    await race(
        other,
        lambda: other.manager.apply([env.definition(name="twice", source=second)]),
        lambda: node.manager.create(env.definition(name="twice", source=first)),
    )
    assert (await other.manager.get("twice")).definition.source == second
    assert other.manager._running["twice"].definition.source == second


# --- stopping a node ----------------------------------------------------------------------


async def test_stopping_a_node_mid_sync_waits_for_the_listener_that_sync_is_stopping(
    env: Env, engine: AsyncEngine, follower: Node
) -> None:
    # The sync loop is stopping a listener deleted elsewhere, and that listener is draining
    # a delivery, when the node stops: stop() returns only once the listener has stopped.
    invoked, finish = asyncio.Event(), asyncio.Event()

    async def slow(value: Any) -> Any:
        invoked.set()
        await finish.wait()
        return value

    env.invoker.register("acme/slow", slow)
    writer = new_node(env, engine)  # not started: it only changes the store
    source, out = tracked("in"), env.url("out")
    await writer.manager.create(
        env.definition(name="busy", source=source, outputs=[out], model="acme/slow@1.*")
    )
    await eventually(lambda: "busy" in follower.manager._running)
    runtime = follower.manager._running["busy"]
    try:
        await env.publish(source, b'{"n": 1}')
        await invoked.wait()
        await writer.manager.delete("busy")
        await eventually(lambda: "busy" not in follower.manager._running)  # being stopped

        async def stop_then_look() -> tuple[str, int]:
            await follower.manager.stop()
            return runtime.state, tracking_connector.unclosed(source)

        stopping = asyncio.create_task(stop_then_look())
        await done_or_waiting(stopping, follower.lock)
        finish.set()
        assert await stopping == ("stopped", 0)
        assert len(await env.collect(out, 1)) == 1  # drained, not dropped
    finally:
        finish.set()
        await runtime.stop()  # idempotent; what a failure left draining
