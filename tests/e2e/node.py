"""The server's parts opened in this process, as ``modelbus serve`` wires them (no HTTP).

    async with open_node(data_dir) as node:
        await node.push(BEHAVE, version="1.0.0")
        await node.manager.create(definition)

Everything is real: the SQLite store (migrated), the registry with its builder, runner pools
of real runner processes, the model service, and the listener manager over them. The
crash-test serving process (``serving.py``) and the listener benchmark use it too.

``open_node(data_dir, workers=N)`` with N > 1 is ``modelbus serve --workers N``'s listener
side: this process joins the store as a node (with lease ownership and the sum over nodes,
:mod:`modelbus.listeners.cluster`) and starts N-1 real worker processes
(:class:`modelbus.web.supervisor.Supervisor`) on the same data directory and store. Their
counters reach ``node.manager.status()`` with their heartbeats (every
:data:`WORKER_HEARTBEAT_S`); listener changes made through ``node.manager`` reach them at once.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from modelbus import __version__
from modelbus.config import Settings
from modelbus.listeners.cluster import Cluster
from modelbus.listeners.credentials import Credentials
from modelbus.listeners.lifecycle import RuntimeOptions
from modelbus.listeners.manager import ListenerManager, ManagerOptions
from modelbus.listeners.ownership import Ownership
from modelbus.listeners.retry import RetryPolicy
from modelbus.registry.catalog import PushResult, Registry
from modelbus.runtime.pool import PoolManager
from modelbus.runtime.service import ModelService
from modelbus.store.database import Database
from modelbus.store.jobs import JobStore
from modelbus.store.leases import LeaseStore
from modelbus.store.nodes import NodeIdentity, NodeStore
from modelbus.store.secrets import SecretBox
from modelbus.web.supervisor import Supervisor

__all__ = [
    "BEHAVE",
    "EXAMPLES",
    "FAST_MANAGER",
    "WORKER_HEARTBEAT_S",
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
# With worker processes: their heartbeats carry their counters to this process's status.
WORKER_HEARTBEAT_S = 0.5
WORKER_NODE_TIMEOUT_S = 5.0
WORKERS_READY_TIMEOUT_S = 60.0


@dataclass(frozen=True, kw_only=True)
class Node:
    """The opened parts (see the module docstring)."""

    data_dir: Path
    database: Database
    registry: Registry
    pools: PoolManager
    service: ModelService
    manager: ListenerManager
    workers: Supervisor | None = None

    async def push(self, folder: Path, *, version: str) -> PushResult:
        """Push and publish ``folder`` as ``version`` (building its environment if needed)."""
        return await self.registry.push(folder, version=version)


def database_url(data_dir: Path) -> str:
    """The store ``modelbus serve --data-dir DATA_DIR`` uses by default."""
    return f"sqlite:///{data_dir / 'modelbus.sqlite'}"


@asynccontextmanager
async def open_node(
    data_dir: Path,
    *,
    options: ManagerOptions = FAST_MANAGER,
    start: bool = True,
    workers: int = 1,
) -> AsyncIterator[Node]:
    """Open the store in ``data_dir`` (created and migrated), the registry, pools, model
    service and listener manager (started: it runs the stored enabled listeners), and with
    ``workers`` > 1 the node's membership and ``workers - 1`` worker processes (see the
    module docstring). Everything is stopped and closed in reverse order at exit: listeners
    drain first (the workers' too)."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    database = await Database.open(database_url(data_dir))
    try:
        await database.migrate()
        async with _membership(database, data_dir, options, workers) as (cluster, supervisor):
            registry = Registry(database, data_dir)
            pools = PoolManager()
            service = ModelService(registry=registry, pools=pools, jobs=JobStore(database))
            manager = ListenerManager(
                engine=database.engine,
                invoker=service,
                data_dir=data_dir,
                registry=CollectorRegistry(),
                options=options,
                ownership=_ownership(database, cluster),
                cluster=cluster,
                on_change=supervisor.sync if supervisor is not None else None,
            )
            await service.start()
            try:
                if start:
                    await manager.start()
                if cluster is not None and supervisor is not None:
                    await cluster.start(manager.node_report)
                    await supervisor.start()
                    await supervisor.wait_ready(WORKERS_READY_TIMEOUT_S)
                yield Node(
                    data_dir=data_dir,
                    database=database,
                    registry=registry,
                    pools=pools,
                    service=service,
                    manager=manager,
                    workers=supervisor,
                )
            finally:
                if supervisor is not None:
                    supervisor.terminate()
                try:
                    await manager.stop()
                finally:
                    if supervisor is not None:
                        await supervisor.stop()
                    await service.stop()
                    await pools.close()
    finally:
        await database.close()


@asynccontextmanager
async def _membership(
    database: Database, data_dir: Path, options: ManagerOptions, workers: int
) -> AsyncIterator[tuple[Cluster | None, Supervisor | None]]:
    """With workers: this process joined as a serve node, and the supervisor of its worker
    processes (not started yet); else nothing."""
    if workers == 1:
        yield None, None
        return
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url(data_dir),
        stop_deadline_s=options.stop_deadline_s,
        heartbeat_interval_s=WORKER_HEARTBEAT_S,
        node_timeout_s=WORKER_NODE_TIMEOUT_S,
        workers=workers,
    )
    box = await asyncio.to_thread(SecretBox.load, data_dir)  # made once, before the workers
    cluster = Cluster(
        NodeStore(database, gone_after_s=WORKER_NODE_TIMEOUT_S),
        NodeIdentity.of_this_process(
            address=settings.node_address, version=__version__, workers=workers
        ),
        credentials=Credentials(box),
        heartbeat_interval_s=WORKER_HEARTBEAT_S,
        exclusive=True,
    )
    await cluster.join(key_source=None)
    try:
        yield cluster, Supervisor(settings, parent=cluster.node_id, nodes=cluster.nodes)
    finally:
        await cluster.stop()


def _ownership(database: Database, cluster: Cluster | None) -> Ownership | None:
    if cluster is None:
        return None
    return Ownership(
        LeaseStore(database, ttl_s=WORKER_NODE_TIMEOUT_S),
        cluster.nodes,
        cluster.node_id,
        renew_interval_s=WORKER_HEARTBEAT_S,
    )


def behave_variant(parent: Path, tag: str) -> Path:
    """A copy of the behave model whose results say ``tag`` (so it builds to another hash)."""
    target = parent / f"behave-{tag}"
    shutil.copytree(BEHAVE, target, dirs_exist_ok=True)
    source = target / "model.py"
    source.write_text(source.read_text().replace('VERSION = "base"', f"VERSION = {tag!r}"))
    return target
