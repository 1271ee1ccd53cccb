"""One worker process of ``modelbus serve --workers N``: listeners only, no HTTP.

The serve process (:mod:`modelbus.web.supervisor`) starts it as ``python -m modelbus
worker`` with a pipe on its standard input, and writes on that pipe:

1. one line of JSON, the :class:`~modelbus.web.supervisor.WorkerSpec`: the serve process's
   settings (secret key included, which is why they travel through the pipe and not the
   command line), this worker's number, its node id, and the serve node's id (its
   ``parent``);
2. then a :data:`SYNC` line whenever a listener changed through the API, so that the worker
   picks the change up at once (:meth:`ListenerManager.sync`) rather than at its next
   periodic sync.

The worker opens what a serve process opens for its listeners: the database, its node
(registered with ``parent`` set: allowed on a SQLite store too), the registry, **its own
runner pools**, the model service and the listener manager with its lease ownership
(:func:`modelbus.web.server.listener_manager`). It runs every enabled listener whose source
can be shared (competing with the serve process and the other workers for its messages, as
replicas do) and an unshareable one only while it holds its lease; its heartbeat reports its
listeners' state and counters, which the serve process sums into the API's status, and it
writes its share of the figure history (:mod:`modelbus.web.history`).

It never serves HTTP, runs async jobs, migrates the store or applies the listener file: its
serve process does. It runs until SIGTERM or SIGINT, or until its standard input closes
(the serve process is gone), then stops as serve does: listeners stop receiving, drain until
the stop deadline, release the rest and give their leases up; the node is marked stopped;
pools and database close. Exit status 0 after a graceful stop, 2 when its spec is refused.
On Linux the supervisor also arms ``PR_SET_PDEATHSIG``: it is killed with its serve process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from prometheus_client import CollectorRegistry

from modelbus.listeners.cluster import Cluster
from modelbus.listeners.credentials import Credentials
from modelbus.listeners.manager import ListenerManager
from modelbus.runtime import telemetry
from modelbus.runtime.metrics import VersionMetrics
from modelbus.runtime.pool import PoolManager
from modelbus.runtime.service import ModelService
from modelbus.store.database import Database
from modelbus.store.jobs import JobStore
from modelbus.store.secrets import SecretBox
from modelbus.web.figures import FigureWriter, figures_folder
from modelbus.web.server import (
    history_recorder,
    listener_manager,
    node_cluster,
    open_registry,
    redacted_logs,
)
from modelbus.web.supervisor import SYNC, WorkerSpec

__all__ = ["main", "run_worker"]

log = logging.getLogger("modelbus.web.worker")

SPEC_LIMIT_BYTES = 1 << 20


def main() -> None:
    """The worker process (``python -m modelbus worker``): read the spec from standard
    input, then run (:func:`run_worker`) until told to stop. Blocks; exits 2 when the spec
    cannot be read."""
    try:
        asyncio.run(_main())
    except _Refused as exc:
        print(f"modelbus worker: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


class _Refused(Exception):
    pass


async def _main() -> None:
    stop = _stop_on_signals()
    commands = await _standard_input()
    line = await commands.readline()
    try:
        spec = WorkerSpec.from_line(line)
    except ValueError as exc:
        raise _Refused(str(exc)) from None
    _configure_logging(spec.index)
    try:
        tracing = telemetry.setup()
    except RuntimeError as exc:
        raise _Refused(str(exc)) from None
    try:
        await run_worker(spec, commands, stop)
    finally:
        if tracing:
            telemetry.shutdown()


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (from now on: a stop during start-up is graceful
    too)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _standard_input() -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=SPEC_LIMIT_BYTES)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _configure_logging(index: int) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s [worker {index}] %(name)s %(message)s",
    )


async def run_worker(spec: WorkerSpec, commands: asyncio.StreamReader, stop: asyncio.Event) -> None:
    """Open this worker's parts, run its listeners until ``stop`` is set or ``commands``
    ends, then stop gracefully (see the module docstring)."""
    settings = spec.settings
    credentials = Credentials(SecretBox.load(settings.data_dir, settings.secret_key))
    with redacted_logs(credentials):
        database = await Database.open(settings.database_url)
        try:
            cluster = node_cluster(settings, database, credentials, identity=spec.identity())
            await cluster.join(key_source=None)  # the serve process checked the key
            try:
                await _run_listeners(spec, database, credentials, cluster, commands, stop)
            finally:
                await cluster.stop()
        finally:
            await database.close()


async def _run_listeners(
    spec: WorkerSpec,
    database: Database,
    credentials: Credentials,
    cluster: Cluster,
    commands: asyncio.StreamReader,
    stop: asyncio.Event,
) -> None:
    settings = spec.settings
    registry = await open_registry(settings, database)
    pools = PoolManager()
    # Never started: async jobs run in the serve process only.
    models = ModelService(registry=registry, pools=pools, jobs=JobStore(database))
    metrics = CollectorRegistry()
    version_metrics = VersionMetrics(pools, registry)
    metrics.register(version_metrics)
    listeners = listener_manager(
        settings, database, models, credentials=credentials, cluster=cluster, registry=metrics
    )
    figures = FigureWriter(
        metrics,
        figures_folder(settings.data_dir, spec.parent),
        spec.index,
        interval_s=settings.heartbeat_interval_s,
        refresh=version_metrics.refresh,
    )
    recorder = history_recorder(settings, database, cluster, listeners, version_metrics)
    try:
        if not stop.is_set():
            await listeners.start()
            await cluster.start(listeners.node_report)
            figures.start()
            recorder.start()
            log.info("worker node %s started (parent %s)", cluster.node_id, spec.parent)
            await _until_stopped(listeners, commands, stop)
    finally:
        log.info("stopping listeners (deadline %g s)", settings.stop_deadline_s)
        await listeners.stop()
        await figures.stop()
        await recorder.stop()
        await pools.close()


async def _until_stopped(
    listeners: ListenerManager, commands: asyncio.StreamReader, stop: asyncio.Event
) -> None:
    following = asyncio.create_task(_follow(listeners, commands), name="worker-commands")
    stopping = asyncio.create_task(stop.wait(), name="worker-stop")
    try:
        await asyncio.wait({following, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (following, stopping):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _follow(listeners: ListenerManager, commands: asyncio.StreamReader) -> None:
    """Carry out the serve process's commands until its pipe closes (it is gone)."""
    while True:
        line = await commands.readline()
        if not line:
            log.warning("the serve process is gone (its pipe closed): stopping")
            return
        if line == SYNC:
            try:
                await listeners.sync()
            except Exception:
                log.exception("listener sync failed")
        else:
            log.warning("unknown command from the serve process: %r", line[:80])
