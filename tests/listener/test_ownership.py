"""Listener ownership between nodes, in one process: two managers on one store, each a node
with its own leases. An unshareable listener runs on exactly one; the other waits
(standby); a node that cannot renew its lease stops the listener and the other takes it
over once the lease expires; a shared listener runs on both. And the sum over nodes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from modelbus.listeners.cluster import Cluster, ClusterStatus
from modelbus.listeners.credentials import Credentials
from modelbus.listeners.lifecycle import ListenerStatus
from modelbus.listeners.manager import ListenerManager, ManagerOptions
from modelbus.listeners.ownership import Ownership
from modelbus.store.database import Database
from modelbus.store.leases import LeaseStore
from modelbus.store.nodes import Node, NodeIdentity, NodeStore
from modelbus.store.secrets import SecretBox

from .conftest import FAST, Env, eventually

TTL_S = 1.0
RENEW_S = 0.2


@pytest.fixture
def queue_kind() -> str:
    return "local"


@pytest.fixture
async def database(engine: AsyncEngine) -> Database:
    return Database(engine)


def node_manager(env: Env, database: Database, node_id: str) -> ListenerManager:
    ownership = Ownership(
        LeaseStore(database, ttl_s=TTL_S), NodeStore(database), node_id, renew_interval_s=RENEW_S
    )
    return ListenerManager(
        engine=database.engine,
        invoker=env.invoker,
        data_dir=env.data_dir,
        registry=CollectorRegistry(),
        runs=env.runs,
        options=ManagerOptions(sync_interval_s=None, stop_deadline_s=2, runtime=FAST),
        ownership=ownership,
    )


@pytest.fixture
async def pair(env: Env, database: Database) -> AsyncIterator[tuple[ListenerManager, ...]]:
    env.invoker.register("acme/echo", lambda v: v)
    first, second = node_manager(env, database, "node-1"), node_manager(env, database, "node-2")
    await first.start()
    await second.start()
    yield first, second
    await first.stop()
    await second.stop()


async def test_an_unshareable_listener_runs_on_one_node_and_moves_when_its_lease_is_lost(
    env: Env, pair: tuple[ListenerManager, ListenerManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = pair
    inbox, results = env.url("in"), env.url("out")
    definition = env.definition(name="inbox", source=inbox, outputs=[results])
    await first.create(definition)
    await second.sync()
    assert set(first._running) == {"inbox"} and not second._running
    assert (await second.node_report())["inbox"]["state"] == "standby"
    assert (await first.node_report())["inbox"]["state"] in ("starting", "running")

    await env.publish(inbox, b'{"n": 1}')
    await env.collect(results, 1)

    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OSError("the database is unreachable")

    # node-1 cannot reach its leases: it stops the listener before the lease may have
    # expired, and node-2 claims it once it has
    leases = first._ownership._leases  # type: ignore[union-attr]
    for operation in ("claim", "renew", "get"):
        monkeypatch.setattr(leases, operation, unreachable)
    await eventually(lambda: "inbox" not in first._running, 5)
    await eventually(lambda: "inbox" in second._running, 5)
    await env.publish(inbox, b'{"n": 2}')
    (result,) = await env.collect(results, 1)
    assert json.loads(result.body)["data"] == {"n": 2}
    assert (await second.node_report())["inbox"]["state"] in ("starting", "running")

    # node-2 stops gracefully: it gives the lease up, and node-1 (reachable again) takes it
    monkeypatch.undo()
    await second.stop()
    await eventually(lambda: "inbox" in first._running, 5)


async def test_a_shared_listener_runs_on_every_node(
    env: Env, pair: tuple[ListenerManager, ListenerManager]
) -> None:
    first, second = pair
    env.kind = "memory"  # memory:// is shared (one queue per process)
    await first.create(env.definition(name="everywhere", source=env.url("in")))
    await second.sync()
    assert "everywhere" in first._running and "everywhere" in second._running
    assert first._ownership is not None and not first._ownership.wanted


async def test_pausing_or_deleting_gives_the_lease_up(
    env: Env, pair: tuple[ListenerManager, ListenerManager]
) -> None:
    first, second = pair
    await first.create(env.definition(name="inbox", source=env.url("in")))
    await second.sync()
    await first.pause("inbox")
    await second.sync()
    assert not first._running and not second._running
    await second.resume("inbox")  # the lease was released: node-2 gets it at once
    assert "inbox" in second._running
    await first.sync()
    assert not first._running
    await second.delete("inbox")
    await first.sync()
    assert first._ownership is not None and not first._ownership.wanted


# --- the sum over nodes ------------------------------------------------------------------------


def status(state: str, **counters: float) -> ListenerStatus:
    return ListenerStatus(
        name="orders",
        state=state,  # type: ignore[arg-type]
        last_error=None,
        last_error_at=None,
        problems={},
        counters=counters,
    )


def peer(node_id: str, entry: dict[str, Any] | None) -> Node:
    return Node(
        id=node_id,
        parent=None,
        host="elsewhere",
        pid=1,
        address=f"http://{node_id}:8470",
        version="0",
        workers=1,
        started_at=0.0,
        heartbeat_at=0.0,
        heartbeat_age_s=0.5,
        stopped_at=None,
        state="live",
        listeners={"orders": entry} if entry is not None else {},
    )


@pytest.fixture
async def cluster(database: Database, tmp_path: Any) -> Cluster:
    me = NodeIdentity.of_this_process(address="http://me:8470", version="0")
    credentials = Credentials(SecretBox.load(tmp_path))
    return Cluster(NodeStore(database), me, credentials=credentials)


async def test_counters_are_summed_over_nodes_with_a_breakdown(cluster: Cluster) -> None:
    local = status("running", received=2, succeeded=2, oldest_in_flight_age_s=1.5)
    peers = [
        peer("aaaaaaaa-1", {"state": "degraded", "counters": {"received": 3, "succeeded": 1,
             "oldest_in_flight_age_s": 4.0}, "reason": "source: down", "reason_at": 10.0,
             "problems": {"source": "down"}}),
        peer("bbbbbbbb-2", {"state": "standby", "counters": {"received": 1, "succeeded": 1}}),
        peer("cccccccc-3", None),  # does not know the listener (yet)
    ]  # fmt: skip
    summed = cluster.summed(local, "running", peers)
    assert isinstance(summed, ClusterStatus)
    assert summed.counters == {"received": 6, "succeeded": 4, "oldest_in_flight_age_s": 4.0}
    assert summed.state == "degraded"  # something is failing somewhere
    assert summed.last_error == "node aaaaaaaa: source: down"
    assert summed.problems == {"source (node aaaaaaaa)": "down"}
    assert [(p.node, p.state) for p in summed.nodes] == [
        (cluster.node_id, "running"),
        ("aaaaaaaa-1", "degraded"),
        ("bbbbbbbb-2", "standby"),
    ]


async def test_one_node_alone_reads_as_before(cluster: Cluster) -> None:
    for state in ("running", "stopped", "paused", "starting"):
        local = status(state, received=1)
        summed = cluster.summed(local, state, [])
        assert (summed.state, summed.counters, summed.last_error) == (state, {"received": 1}, None)
        assert [p.node for p in summed.nodes] == [cluster.node_id]
    waiting = cluster.summed(status("stopped"), "standby", [peer("dddddddd", None)])
    assert waiting.state == "stopped" and waiting.nodes[0].state == "standby"
