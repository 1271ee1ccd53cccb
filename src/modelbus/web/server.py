"""Process wiring for ``modelbus serve``: open every service, run the app, close in order.

:func:`open_services` is the one place the server's parts are built and connected: the
database (migrated to the newest schema), this node's membership among the nodes of the
store (:mod:`modelbus.listeners.cluster`: refused if it cannot work with the others, then a
heartbeat), the registry, the key store (creating the first
admin key on a fresh store, printed once), the runner pools, the model service with its
background jobs, and the listener manager (which invokes models through the model service;
it runs a listener that cannot be shared only while this node holds its lease,
:mod:`modelbus.listeners.ownership`). :func:`check_node` makes the refusal checks alone,
before anything is served.
The listener file of ``serve --config`` is applied before the listeners start. With
``settings.workers > 1`` the listeners also run in worker processes
(:mod:`modelbus.web.supervisor`, started after this process's listeners; each opens the
listener side of this wiring, :mod:`modelbus.web.worker`), told at once of every listener
change made here.

Start and stop order: models first, listeners last; at stop, listeners first. A graceful
stop (SIGTERM or Ctrl-C) is: uvicorn stops accepting requests and finishes those under way
-> the worker processes are sent SIGTERM and, meanwhile, this process's listeners stop
receiving, let in-flight messages finish until ``stop_deadline_s``, release the rest to
their brokers, close, give their leases up -> the workers have exited (each drained the
same way) -> the node is marked stopped
-> jobs, pools and the database close.
:func:`modelbus.web.app.run` serves the app with uvicorn until then.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TextIO

from prometheus_client import CollectorRegistry

from modelbus import __version__
from modelbus.config import Settings
from modelbus.listeners.cluster import Cluster
from modelbus.listeners.credentials import Credentials, RedactingFilter
from modelbus.listeners.files import apply_listener_file
from modelbus.listeners.hooks import HookIntake
from modelbus.listeners.manager import ListenerManager, ManagerOptions
from modelbus.listeners.ownership import Ownership
from modelbus.registry.artifacts import LocalArtifacts, open_store
from modelbus.registry.builds import Builder
from modelbus.registry.catalog import Registry
from modelbus.runtime.invocation import Invoker
from modelbus.runtime.metrics import VersionMetrics
from modelbus.runtime.pool import PoolManager
from modelbus.runtime.service import ModelService
from modelbus.store.database import Database
from modelbus.store.history import HistoryStore
from modelbus.store.jobs import JobStore
from modelbus.store.keys import KeyStore
from modelbus.store.leases import LeaseStore
from modelbus.store.nodes import NodeIdentity, NodeStore
from modelbus.store.secrets import KEY_FILE, SecretBox
from modelbus.store.sessions import SessionStore
from modelbus.web.figures import WorkerFigures, figures_folder
from modelbus.web.history import History, HistoryRecorder
from modelbus.web.supervisor import Supervisor

log = logging.getLogger("modelbus.web.server")


@dataclass(frozen=True, kw_only=True, slots=True)
class Services:
    """Everything the routes use, opened together by :func:`open_services`.

    ``cluster`` is this node among the nodes of the store (``GET /v1/nodes``).
    ``hooks`` accepts webhooks into the queues of their listeners; ``credentials`` encrypts listener
    credentials and masks them in answers and logs; ``metrics`` is the app's Prometheus
    registry (listener and per-version families; with worker processes, theirs too, each
    labelled ``worker``: :mod:`modelbus.web.figures`), ``version_metrics`` names the pools'
    models and versions when ``/metrics`` is read. ``history`` is the last hour of
    listener and version figures summed over nodes (:mod:`modelbus.web.history`).
    """

    settings: Settings
    database: Database
    cluster: Cluster
    registry: Registry
    keys: KeyStore
    sessions: SessionStore
    pools: PoolManager
    models: ModelService
    listeners: ListenerManager
    hooks: HookIntake
    credentials: Credentials
    metrics: CollectorRegistry
    version_metrics: VersionMetrics
    history: History


def announce_admin_key(key: str, out: TextIO | None = None) -> None:
    """Print the bootstrap admin key, clearly and once (only a fresh store makes one)."""
    out = out or sys.stdout
    rule = "=" * 72
    print(
        f"\n{rule}\n"
        "  modelbus: a new store was created with this admin API key.\n"
        "  It is shown ONLY NOW; store it safely (MODELBUS_API_KEY for the CLI):\n\n"
        f"  admin API key: {key}\n"
        f"{rule}\n",
        file=out,
        flush=True,
    )


@asynccontextmanager
async def open_services(
    settings: Settings, *, announce: Callable[[str], None] = announce_admin_key
) -> AsyncIterator[Services]:
    """Open, migrate and start everything; close it all in reverse order at exit. While
    open, every log handler masks the credentials of listener definitions."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    box = SecretBox.load(settings.data_dir, settings.secret_key)
    credentials = Credentials(box)
    with redacted_logs(credentials):
        database = await Database.open(settings.database_url)
        try:
            await database.migrate(secrets=box)
            cluster = node_cluster(settings, database, credentials)
            await cluster.join(key_source=key_source(settings))
            try:
                keys = KeyStore(database)
                admin_key = await keys.bootstrap_admin()
                if admin_key is not None:
                    announce(admin_key)
                async with _running(settings, database, keys, credentials, cluster) as services:
                    yield services
            finally:
                await cluster.stop()
        finally:
            await database.close()


async def check_node(settings: Settings) -> None:
    """Raise :class:`~modelbus.errors.NodeRefused` if a server with ``settings`` could not
    join the nodes of its store now (the checks :func:`open_services` makes at start:
    another node on a SQLite store, a secret key that cannot decrypt the stored
    credentials). Migrates the store; joins nothing."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    box = SecretBox.load(settings.data_dir, settings.secret_key)
    credentials = Credentials(box)
    database = await Database.open(settings.database_url)
    try:
        await database.migrate(secrets=box)
        await node_cluster(settings, database, credentials).check(key_source=key_source(settings))
    finally:
        await database.close()


def key_source(settings: Settings) -> str | None:
    """Where the secret key comes from, for messages; None when the stored credentials are
    not to be checked with it (``ignore_undecryptable``)."""
    if settings.ignore_undecryptable:
        return None
    if settings.secret_key:
        return "MODELBUS_SECRET_KEY"
    return f"the key file {settings.data_dir / KEY_FILE}"


def node_cluster(
    settings: Settings,
    database: Database,
    credentials: Credentials,
    *,
    identity: NodeIdentity | None = None,
) -> Cluster:
    """This process's membership among the nodes of the store: as ``identity`` (a worker
    process's, given by its serve process), else as a new serve node with
    ``settings.workers`` processes."""
    nodes = NodeStore(database, gone_after_s=settings.node_timeout_s)
    identity = identity or NodeIdentity.of_this_process(
        address=settings.node_address, version=__version__, workers=settings.workers
    )
    return Cluster(
        nodes,
        identity,
        credentials=credentials,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        exclusive=database.dialect == "sqlite",
    )


@asynccontextmanager
async def _running(
    settings: Settings,
    database: Database,
    keys: KeyStore,
    credentials: Credentials,
    cluster: Cluster,
) -> AsyncIterator[Services]:
    """Models, then listeners, then the worker processes; stopped in the reverse order
    (the workers told to stop first, while this process's listeners drain too)."""
    registry = await open_registry(settings, database)
    pools = PoolManager()
    models = ModelService(registry=registry, pools=pools, jobs=JobStore(database))
    metrics = CollectorRegistry()
    version_metrics = VersionMetrics(pools, registry)
    metrics.register(version_metrics)
    workers, figures = None, None
    if settings.workers > 1:
        workers = Supervisor(settings, parent=cluster.node_id, nodes=cluster.nodes)
        figures = WorkerFigures(metrics, figures_folder(settings.data_dir, cluster.node_id))
        live = [node.id for node in await cluster.nodes.live()]
        await asyncio.to_thread(figures.forget_others, live)
    listeners = listener_manager(
        settings,
        database,
        models,
        credentials=credentials,
        cluster=cluster,
        registry=metrics,
        on_change=workers.sync if workers is not None else None,
    )
    hooks = HookIntake(listeners, settings.data_dir)
    recorder = history_recorder(settings, database, cluster, listeners, version_metrics)
    await models.start()
    try:
        if settings.listeners_file is not None:
            await apply_listener_file(
                listeners,
                settings.listeners_file,
                settings.data_dir,
                prune=settings.prune_listeners,
            )
        await listeners.start()
        try:
            await cluster.start(listeners.node_report)
            recorder.start()
            if workers is not None:
                await workers.start()
            yield Services(
                settings=settings,
                database=database,
                cluster=cluster,
                registry=registry,
                keys=keys,
                sessions=SessionStore(database),
                pools=pools,
                models=models,
                listeners=listeners,
                hooks=hooks,
                credentials=credentials,
                metrics=figures.exposed() if figures is not None else metrics,
                version_metrics=version_metrics,
                history=History(HistoryStore(database), lag_s=settings.heartbeat_interval_s),
            )
        finally:
            log.info("stopping listeners (deadline %g s)", settings.stop_deadline_s)
            if workers is not None:
                workers.terminate()  # they drain while this process's listeners do
            try:
                await listeners.stop()
            finally:
                if workers is not None:
                    await workers.stop()
                if figures is not None:
                    await asyncio.to_thread(figures.remove)
                await recorder.stop()
            await hooks.close()
    finally:
        await models.stop()
        await pools.close()


def listener_manager(
    settings: Settings,
    database: Database,
    invoker: Invoker,
    *,
    credentials: Credentials,
    cluster: Cluster,
    registry: CollectorRegistry,
    on_change: Callable[[], None] | None = None,
) -> ListenerManager:
    """The listener manager of a serve or worker process: it runs the listeners of the
    store through ``invoker``, an unshareable one only while ``cluster``'s node holds its
    lease, and reports them in the node's heartbeat (``on_change``: see
    :class:`ListenerManager`)."""
    return ListenerManager(
        engine=database.engine,
        invoker=invoker,
        data_dir=settings.data_dir,
        registry=registry,
        options=ManagerOptions.from_settings(settings),
        credentials=credentials,
        ownership=Ownership(
            LeaseStore(database, ttl_s=settings.node_timeout_s),
            cluster.nodes,
            cluster.node_id,
            renew_interval_s=settings.heartbeat_interval_s,
        ),
        cluster=cluster,
        on_change=on_change,
    )


def history_recorder(
    settings: Settings,
    database: Database,
    cluster: Cluster,
    listeners: ListenerManager,
    versions: VersionMetrics,
) -> HistoryRecorder:
    """What samples a serve or worker process's figures into the history, as its node,
    every heartbeat interval (:mod:`modelbus.web.history`)."""
    return HistoryRecorder(
        HistoryStore(database),
        cluster.node_id,
        listeners=listeners,
        versions=versions,
        interval_s=settings.heartbeat_interval_s,
    )


async def open_registry(settings: Settings, database: Database) -> Registry:
    """The registry over the artifact store of ``settings``; a store that does not answer
    is logged (and shown by ``/health``), not fatal: versions fetched before still run."""
    store = open_store(settings.artifacts_url, settings.data_dir)
    registry = Registry(
        database,
        settings.data_dir,
        artifacts=LocalArtifacts(settings.data_dir, store),
        builder=Builder(
            settings.data_dir, allow_direct_requirements=settings.allow_direct_requirements
        ),
        node=f"{socket.gethostname()}:{settings.port}",
    )
    status = await registry.artifact_status()
    if status.ok:
        log.info("artifact store: %s", status.store)
    else:
        log.warning("artifact store unavailable: %s", status.error)
    return registry


LOGGERS_WITH_HANDLERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


@contextmanager
def redacted_logs(credentials: Credentials) -> Iterator[None]:
    """Mask credentials in everything the root and uvicorn handlers write, meanwhile."""
    redacting = RedactingFilter(credentials)
    handlers = {h for name in LOGGERS_WITH_HANDLERS for h in logging.getLogger(name).handlers}
    for handler in handlers:
        handler.addFilter(redacting)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(redacting)
