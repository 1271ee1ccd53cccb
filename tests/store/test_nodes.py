"""Nodes and listener leases on SQLite and PostgreSQL: join, heartbeat, gone, the one-node
rule of SQLite, and leases that only one node holds at a time."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from sqlalchemy import update

from modelbus.errors import NodeRefused
from modelbus.store import schema
from modelbus.store.database import Database
from modelbus.store.leases import LeaseStore
from modelbus.store.nodes import NodeIdentity, NodeStore


def identity(name: str, *, parent: str | None = None, pid: int | None = None) -> NodeIdentity:
    node = NodeIdentity.of_this_process(
        address=f"http://{name}:8470", version="9.9.9", workers=2, parent=parent
    )
    return node if pid is None else NodeIdentity(**{**_fields(node), "pid": pid})


def _fields(node: NodeIdentity) -> dict[str, object]:
    return {f: getattr(node, f) for f in NodeIdentity.__dataclass_fields__}


async def age(db: Database, node_id: str, seconds: float) -> None:
    """Make ``node_id``'s last heartbeat ``seconds`` older."""
    n = schema.nodes.c
    async with db.write() as conn:
        await conn.execute(
            update(schema.nodes)
            .where(n.id == node_id)
            .values(heartbeat_at=n.heartbeat_at - seconds)
        )


async def test_a_node_joins_beats_and_leaves(db: Database) -> None:
    store = NodeStore(db, gone_after_s=5.0)
    a, b = identity("a"), identity("b")
    await store.join(a)
    await store.join(b)
    await store.beat(a, {"orders": {"state": "running", "counters": {"received": 3}}})

    listed = {n.id: n for n in await store.nodes()}
    assert set(listed) == {a.id, b.id}
    node = listed[a.id]
    assert (node.state, node.address, node.version, node.workers, node.pid) == (
        "live",
        "http://a:8470",
        "9.9.9",
        2,
        os.getpid(),
    )
    assert node.listeners == {"orders": {"state": "running", "counters": {"received": 3}}}
    assert 0 <= node.heartbeat_age_s < 5 and node.started_at <= node.heartbeat_at

    await store.leave(b.id)
    assert [(n.id, n.state) for n in await store.nodes()] == [(a.id, "live"), (b.id, "gone")]
    assert [n.id for n in await store.nodes(include_gone=False)] == [a.id]


async def test_a_node_without_heartbeat_is_gone_then_forgotten(db: Database) -> None:
    store = NodeStore(db, gone_after_s=5.0, forget_after_s=60.0)
    a, b = identity("a"), identity("b")
    await store.join(a)
    await store.join(b)
    await age(db, b.id, 6.0)
    assert {n.id: n.state for n in await store.nodes()} == {a.id: "live", b.id: "gone"}
    assert [n.id for n in await store.live()] == [a.id]

    await store.beat(b, {})  # back (a node cut off from the database for a while)
    assert {n.id: n.state for n in await store.nodes()} == {a.id: "live", b.id: "live"}

    await age(db, b.id, 61.0)
    await store.beat(a, {})  # the heartbeats of others forget it
    assert [n.id for n in await store.nodes()] == [a.id]
    await store.beat(b, {})  # and it registers again when it comes back
    assert {n.id for n in await store.nodes()} == {a.id, b.id}


async def test_an_exclusive_store_refuses_a_second_live_node(db: Database) -> None:
    store = NodeStore(db, gone_after_s=5.0)
    first = identity("first")
    await store.join(first, exclusive=True)

    with pytest.raises(NodeRefused, match=r"uses this SQLite store.*PostgreSQL") as refused:
        await store.join(identity("second"), exclusive=True)
    assert first.id in refused.value.message

    # worker processes of the first node (and their siblings) are welcome
    await store.join(identity("worker-1", parent=first.id), exclusive=True)
    await store.join(identity("worker-2", parent=first.id), exclusive=True)

    await store.leave(first.id)  # stopped gracefully: the next one may start
    await store.join(identity("third"), exclusive=True)


async def test_a_dead_process_does_not_keep_the_store(db: Database) -> None:
    store = NodeStore(db, gone_after_s=60.0)
    exited = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await exited.wait()
    gone_pid = exited.pid
    await store.join(identity("killed", pid=gone_pid))  # its heartbeat is fresh
    await store.join(identity("restarted"), exclusive=True)  # but no such process: not refused


async def test_one_lease_holder_at_a_time(db: Database) -> None:
    leases = LeaseStore(db, ttl_s=30.0)
    assert await leases.claim("inbox", "node-a")
    assert not await leases.claim("inbox", "node-b")
    assert await leases.claim("inbox", "node-a")  # renewed by its owner
    held = await leases.get(["inbox", "other"])
    assert list(held) == ["inbox"]
    assert (held["inbox"].owner, held["inbox"].expired) == ("node-a", False)

    assert await leases.renew(["inbox", "other"], "node-a") == {"inbox"}
    assert await leases.renew(["inbox"], "node-b") == set()

    await leases.release("inbox", "node-b")  # not b's: nothing happens
    assert not await leases.claim("inbox", "node-b")
    await leases.release("inbox", "node-a")
    assert await leases.claim("inbox", "node-b")


async def test_an_expired_lease_goes_to_the_next_claimant(db: Database) -> None:
    leases = LeaseStore(db, ttl_s=30.0)
    assert await leases.claim("inbox", "node-a")
    first = (await leases.get(["inbox"]))["inbox"]
    c = schema.listener_leases.c
    async with db.write() as conn:  # node-a stopped renewing 31 s ago
        await conn.execute(update(schema.listener_leases).values(expires_at=c.expires_at - 31))
    assert (await leases.get(["inbox"]))["inbox"].expired
    assert await leases.renew(["inbox"], "node-b") == set()

    assert await leases.claim("inbox", "node-b")
    taken = (await leases.get(["inbox"]))["inbox"]
    assert (taken.owner, taken.expired) == ("node-b", False)
    assert taken.acquired_at >= first.acquired_at
    assert await leases.renew(["inbox"], "node-a") == set()  # a's renewal comes too late
    assert not await leases.claim("inbox", "node-a")


async def test_concurrent_claims_give_the_lease_to_exactly_one(
    db: Database, database_url: str
) -> None:
    others = [await Database.open(database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(LeaseStore(d).claim("inbox", f"node-{i}") for i, d in enumerate([db, *others]))
        )
    finally:
        for other in others:
            await other.close()
    assert sorted(results) == [False, False, False, False, True]
    owner = (await LeaseStore(db).get(["inbox"]))["inbox"].owner
    assert owner == f"node-{results.index(True)}"
