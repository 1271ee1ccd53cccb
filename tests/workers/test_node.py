"""The in-process node of the e2e tests and the benchmarks (tests/e2e/node.py) with
``workers=N``: this process and N-1 real worker processes share a Redis listener, and the
manager's status sums them."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from modelbus.listeners.cluster import ClusterStatus
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.manager import ListenerManager
from tests.e2e.node import BEHAVE, open_node

from .conftest import REDIS


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    name = f"node-workers-{uuid.uuid4().hex[:10]}"
    yield name
    client = Redis(host="127.0.0.1", port=6379)
    await client.delete(name, f"{name}-out")
    await client.aclose()


async def test_open_node_with_workers_shares_a_listener_with_worker_processes(
    tmp_path: Path, stream: str
) -> None:
    async with open_node(tmp_path / "data", workers=2) as node:
        assert node.workers is not None and len(node.workers.pids) == 1
        await node.push(BEHAVE, version="1.0.0")
        definition = ListenerDefinition(
            name="shared",
            source=f"{REDIS}?stream={stream}&create=true",
            model="e2e/behave@1.*",
            outputs=[f"{REDIS}?stream={stream}-out&create=true"],
        )
        await node.manager.create(definition, check=False)
        await _running_in(node.manager, "shared", 2)  # the worker was told at once
        client = Redis(host="127.0.0.1", port=6379)
        try:
            pipe = client.pipeline(transaction=False)
            for i in range(300):
                pipe.xadd(stream, {"body": json.dumps({"n": i})})
            await pipe.execute()
            status = await _summed(node.manager, "shared", 300)
        finally:
            await client.aclose()
    assert isinstance(status, ClusterStatus) and len(status.nodes) == 2
    assert all(part.counters["succeeded"] > 0 for part in status.nodes), status.nodes
    assert sum(part.counters["succeeded"] for part in status.nodes) == 300


async def _running_in(manager: ListenerManager, name: str, processes: int) -> None:
    async with asyncio.timeout(30):
        while True:
            status = await manager.status(name)
            assert isinstance(status, ClusterStatus)
            if [part.state for part in status.nodes] == ["running"] * processes:
                return
            await asyncio.sleep(0.1)


async def _summed(manager: ListenerManager, name: str, succeeded: int) -> ClusterStatus:
    async with asyncio.timeout(120):
        while True:
            status = await manager.status(name)
            assert isinstance(status, ClusterStatus)
            if status.counters.get("succeeded") == succeeded:
                return status
            await asyncio.sleep(0.2)
