"""The server's parts opened in this process, as ``modelbus serve`` wires them (no HTTP).

    async with open_node(data_dir) as node:
        await node.push(BEHAVE, version="1.0.0")
        await node.manager.create(definition)

Everything is real: the SQLite store (migrated), the registry with its builder, runner pools
of real runner processes, the model service, and the listener manager over them. The
crash-test serving process (``serving.py``) and the listener benchmark use it too.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from modelbus.listeners.lifecycle import RuntimeOptions
from modelbus.listeners.manager import ListenerManager, ManagerOptions
from modelbus.listeners.retry import RetryPolicy
from modelbus.registry.catalog import PushResult, Registry
from modelbus.runtime.pool import PoolManager
from modelbus.runtime.service import ModelService
from modelbus.store.database import Database
from modelbus.store.jobs import JobStore

__all__ = [
    "BEHAVE",
    "EXAMPLES",
    "FAST_MANAGER",
    "Node",
    "behave_variant",
    "open_node",
]

MODELS = Path(__file__).parent / "models"
BEHAVE = MODELS / "behave"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Short waits so that tests see retries, reconnects and stops within seconds.
FAST_RUNTIME = RuntimeOptions(
    receive_wait_s=0.5,
    op_timeout_s=5,
    publish_timeout_s=3,
    open_timeout_s=5,
    stop_deadline_s=3,
    reconnect=RetryPolicy(max_attempts=1000, initial_backoff_s=0.1, max_backoff_s=1, jitter=0),
)
FAST_MANAGER = ManagerOptions(
    check_timeout_s=10, stop_deadline_s=3, sync_interval_s=None, runtime=FAST_RUNTIME
)


@dataclass(frozen=True, kw_only=True)
class Node:
    """The opened parts (see the module docstring)."""

    data_dir: Path
    database: Database
    registry: Registry
    pools: PoolManager
    service: ModelService
    manager: ListenerManager

    async def push(self, folder: Path, *, version: str) -> PushResult:
        """Push and publish ``folder`` as ``version`` (building its environment if needed)."""
        return await self.registry.push(folder, version=version)


def database_url(data_dir: Path) -> str:
    """The store ``modelbus serve --data-dir DATA_DIR`` uses by default."""
    return f"sqlite:///{data_dir / 'modelbus.sqlite'}"


@asynccontextmanager
async def open_node(
    data_dir: Path, *, options: ManagerOptions = FAST_MANAGER, start: bool = True
) -> AsyncIterator[Node]:
    """Open the store in ``data_dir`` (created and migrated), the registry, pools, model
    service and listener manager (started: it runs the stored enabled listeners). Everything
    is stopped and closed in reverse order at exit: listeners drain first."""
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    database = await Database.open(database_url(data_dir))
    try:
        await database.migrate()
        registry = Registry(database, data_dir)
        pools = PoolManager()
        service = ModelService(registry=registry, pools=pools, jobs=JobStore(database))
        manager = ListenerManager(
            engine=database.engine,
            invoker=service,
            data_dir=data_dir,
            registry=CollectorRegistry(),
            options=options,
        )
        await service.start()
        try:
            if start:
                await manager.start()
            yield Node(
                data_dir=data_dir,
                database=database,
                registry=registry,
                pools=pools,
                service=service,
                manager=manager,
            )
        finally:
            await manager.stop()
            await service.stop()
            await pools.close()
    finally:
        await database.close()


def behave_variant(parent: Path, tag: str) -> Path:
    """A copy of the behave model whose results say ``tag`` (so it builds to another hash)."""
    target = parent / f"behave-{tag}"
    shutil.copytree(BEHAVE, target, dirs_exist_ok=True)
    source = target / "model.py"
    source.write_text(source.read_text().replace('VERSION = "base"', f"VERSION = {tag!r}"))
    return target
