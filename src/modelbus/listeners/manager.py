"""The listener service: definitions in the store, runtimes in this process.

:class:`ListenerManager` is what the HTTP routes and the CLI call (they only parse and
format). Definitions live in the ``listeners`` table; every ``modelbus serve`` process runs
every enabled listener (the replicas of a listener compete for its messages) and follows
changes made by the others with a periodic :meth:`ListenerManager.sync`.

With several nodes (a manager given an :class:`~modelbus.listeners.ownership.Ownership`), a
listener whose source cannot be shared runs only on the node holding its lease: the manager
claims it before starting the listener, renews it every ``renew_interval_s``, stops the
listener at once when the lease is lost, claims it when its owner is gone, and releases it
when the listener stops here. With a :class:`~modelbus.listeners.cluster.Cluster`,
:meth:`ListenerManager.status` is the sum over the live nodes, with a per-node breakdown;
:meth:`ListenerManager.node_report` is what this node's heartbeat tells the others.

Dead letters are redriven here, through the listener's own stages (decode -> invoke ->
publish to its outputs -> run record), at a limited rate (:class:`TokenBucket`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prometheus_client import CollectorRegistry
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from modelbus.client.schemas import DEFAULT_REDRIVE_RATE_PER_S
from modelbus.config import Settings
from modelbus.connectors import (
    ConnectorContext,
    ConnectorPolicy,
    Egress,
    check_policy,
    make_sink,
    make_source,
)
from modelbus.errors import (
    Conflict,
    DeadLetterNotFound,
    DefinitionError,
    InvalidInput,
    ListenerNotFound,
    ModelbusError,
    NotFound,
    PolicyRefused,
    VersionSpecError,
)
from modelbus.listeners.cluster import Cluster, Report
from modelbus.listeners.credentials import Credentials
from modelbus.listeners.definition import ListenerDefinition, check_lease, model_ref
from modelbus.listeners.lifecycle import ListenerRuntime, ListenerStatus, RuntimeOptions
from modelbus.listeners.metrics import Metrics
from modelbus.listeners.ownership import Ownership
from modelbus.listeners.records import RunWriter
from modelbus.runtime.invocation import Invoker
from modelbus.store.runs import DeadLetter, RunStore, Search
from modelbus.store.schema import listeners as listeners_table

__all__ = [
    "ApplyResult",
    "ListenerInfo",
    "ListenerManager",
    "ManagerOptions",
    "RedriveResult",
    "TokenBucket",
]

log = logging.getLogger(__name__)

# The store's totals of a listener are read again after this many seconds.
TOTALS_MAX_AGE_S = 2.0

Outcome = Literal["created", "updated", "unchanged"]  # what apply did to one listener


@dataclass(frozen=True, kw_only=True, slots=True)
class ManagerOptions:
    """How the manager runs listeners.

    ``sync_interval_s``: how often to pick up changes made by other processes and forget run
    records older than ``dedupe_window_s`` (None: never).
    ``check_timeout_s``: how long validation may take to open a listener's connectors.
    ``redrive_rate_per_s``: default pace of a redrive.
    ``dir_roots``: the folders ``dir://`` sources and sinks must lie in (None: no roots, only
    the data-directory rule); ``egress``: where connectors may connect (None: anywhere).
    See :mod:`modelbus.connectors.policy`.
    """

    check_timeout_s: float = 10.0
    stop_deadline_s: float = 30.0
    sync_interval_s: float | None = 10.0
    dedupe_window_s: float = 7 * 24 * 3600.0
    redrive_rate_per_s: float = DEFAULT_REDRIVE_RATE_PER_S
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    dir_roots: tuple[Path, ...] | None = None
    egress: Egress | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ManagerOptions:
        """The options of a serve or worker process: its stop deadline, its folder roots
        and its egress policy (the allow list, and its own API's address to refuse)."""
        egress = None
        if settings.allow_hosts is not None:
            egress = Egress(
                allow=settings.allow_hosts, own_port=settings.port, own_hosts=(settings.host,)
            )
        # One node on SQLite with no workers is the only replica of every listener: no run
        # claims (RuntimeOptions.claim_runs)
        alone = settings.database_url.startswith("sqlite") and settings.workers <= 1
        return cls(
            stop_deadline_s=settings.stop_deadline_s,
            dir_roots=settings.dir_roots,
            egress=egress,
            runtime=RuntimeOptions(claim_runs=not alone),
        )

    @property
    def policy(self) -> ConnectorPolicy:
        """What the connectors of this manager's listeners may reach."""
        return ConnectorPolicy(dir_roots=self.dir_roots, egress=self.egress)


@dataclass(frozen=True, kw_only=True, slots=True)
class ListenerInfo:
    """A stored listener (``definition.enabled`` is False while it is paused)."""

    definition: ListenerDefinition
    created_at: float
    updated_at: float

    @property
    def name(self) -> str:
        return self.definition.name


@dataclass(frozen=True, kw_only=True, slots=True)
class ApplyResult:
    """Listener names by what :meth:`ListenerManager.apply` did to them."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True, slots=True)
class RedriveResult:
    """Dead letters redriven (ids) and those that failed again (id -> error)."""

    model: str
    redriven: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved up. :meth:`take` waits."""

    def __init__(self, rate_per_s: float, *, burst: float | None = None) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else max(1.0, rate_per_s)
        self._tokens = 1.0
        self._at = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        """Wait for one token."""
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate_per_s)


class ListenerManager:
    """Creates, changes, runs and stops listeners; redrives dead letters.

    Raises :class:`DefinitionError` for a refused definition, :class:`ListenerNotFound` for
    an unknown name, :class:`Conflict` when creating a name that exists.

    With ``credentials``, credentials in definitions are stored encrypted
    (:meth:`Credentials.seal`) and decrypted when read; what the manager returns is the
    definition as given, credentials included (the API masks them).

    ``runs`` is the run store (read it for run records and dead letters); ``records`` the
    group-committed writer every listener of this manager writes through.

    ``on_change`` is called (synchronously, it must not block) each time this manager has
    written a change to the stored listeners (created, updated, paused, resumed, deleted),
    once the change is committed: the serve process tells its worker processes to
    :meth:`sync` at once rather than at their next periodic sync.
    """

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        invoker: Invoker,
        data_dir: Path,
        registry: CollectorRegistry,
        runs: RunStore | None = None,
        options: ManagerOptions | None = None,
        credentials: Credentials | None = None,
        ownership: Ownership | None = None,
        cluster: Cluster | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._on_change = on_change
        self._ownership = ownership
        self._cluster = cluster
        self._credentials = credentials
        self._invoker = invoker
        self._data_dir = data_dir
        self._options = options or ManagerOptions()
        self.runs = runs or RunStore(engine)
        self.records = RunWriter(self.runs)
        self.metrics = Metrics(registry)
        self._running: dict[str, ListenerRuntime] = {}
        self._refused: dict[str, str] = {}  # name -> why its stored definition cannot start
        self._lock = asyncio.Lock()
        self._started = False
        self._sync_task: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._totals: dict[str, tuple[float, dict[str, int]]] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every enabled listener, then follow the store (see ``sync_interval_s``)."""
        self._started = True
        await self.sync()
        if self._options.sync_interval_s is not None:
            self._sync_task = asyncio.create_task(self._sync_loop(self._options.sync_interval_s))
        if self._ownership is not None:
            self._lease_task = asyncio.create_task(self._lease_loop(self._ownership))

    async def stop(self) -> None:
        """Stop following the store (a sync pass under way finishes first), stop every
        listener gracefully (in parallel), then flush and close the run store."""
        self._started = False
        async with self._lock:
            # Cancel the sync loop with the lock held, so never mid-pass: cancelled while
            # stopping a listener (deleted or changed elsewhere), it left that one draining
            # after this returned, the run store closed under it.
            for task in (self._sync_task, self._lease_task):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            self._sync_task = self._lease_task = None
            running, self._running = list(self._running.values()), {}
            await asyncio.gather(*(self._stop(listener) for listener in running))
            if self._ownership is not None:  # stopped: another node may take them at once
                await self._ownership.release_all()
        await self.records.flush()
        await self.runs.close()

    async def sync(self) -> None:
        """Make this process run exactly the enabled listeners of the store, as stored."""
        async with self._lock:
            # Read under the lock: read before it, a listener deleted (or changed) meanwhile
            # was started again from the stale row until the next sync (seen in CI).
            stored = {info.name: info.definition for info in await self.list()}
            for name in set(self._running) - set(stored):
                await self._stop(self._running.pop(name))
            if self._ownership is not None:
                await self._ownership.keep_only(stored)
            for definition in stored.values():
                await self._reconcile(definition)
            # Deleted by another process (running here or paused): :meth:`delete` dropped
            # its series there, not here, and a scrape of this process still showed them.
            for name in self.metrics.names() - set(stored):
                self.metrics.remove(name)

    async def _sync_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sync()
                await self.runs.prune(finished_before=time.time() - self._options.dedupe_window_s)
            except Exception:
                log.exception("listener sync failed")

    async def _lease_loop(self, ownership: Ownership) -> None:
        """Renew this node's leases; stop at once the listeners whose lease is lost; claim
        (through :meth:`sync`) a listener whose owner is gone."""
        while True:
            await asyncio.sleep(ownership.renew_interval_s)
            try:
                lost = await ownership.renew()
                if lost:
                    async with self._lock:
                        for name in lost & set(self._running):
                            await self._stop(self._running.pop(name))
                if await ownership.vacant():
                    await self.sync()
            except Exception:
                log.exception("listener lease renewal failed")

    async def _reconcile(self, definition: ListenerDefinition) -> None:
        """Start, restart or stop the runtime of ``definition`` as needed (lock held)."""
        current = self._running.get(definition.name)
        run_here = definition.enabled and self._started and await self._may_run(definition)
        if current is not None and current.definition == definition and run_here:
            return
        if current is not None:
            await self._stop(self._running.pop(definition.name))
        if not run_here:
            if self._ownership is not None and not (definition.enabled and self._started):
                await self._ownership.release(definition.name)  # paused, or stopping
            return
        self._refused.pop(definition.name, None)
        try:
            listener = self._new_runtime(definition)
        except DefinitionError as exc:
            # Stored, but refused now (the roots changed, a folder became a symlink to the
            # data directory...): shown stopped with the reason; the others still start.
            log.error("listener %s not started: %s", definition.name, exc.message)
            self._refused[definition.name] = exc.message
            return
        await listener.start()
        self._running[definition.name] = listener

    async def _may_run(self, definition: ListenerDefinition) -> bool:
        """Whether this node may run ``definition``: always with no ownership; else only
        when shared or this node holds its lease (claimed now)."""
        if self._ownership is None:
            return True
        return await self._ownership.may_run(definition)

    async def _stop(self, listener: ListenerRuntime) -> None:
        try:
            await listener.stop(self._options.stop_deadline_s)
        except Exception:
            log.exception("listener %s did not stop cleanly", listener.name)

    # --- definitions -------------------------------------------------------------------------

    async def validate(self, definition: ListenerDefinition) -> None:
        """Check that the model reference resolves to a version, that the connectors exist
        and can be opened (within ``check_timeout_s``) and that the source's lease suits the
        timeout; raises DefinitionError saying what to change. (The definition itself was
        validated when it was built.)"""
        try:
            await self._invoker.version_of(definition.ref)
        except (NotFound, VersionSpecError) as exc:
            raise DefinitionError(
                f"listener {definition.name!r}: model {definition.model} resolves to no "
                f"version ({exc}): push a version that matches, correct the reference, or "
                "create the listener with check=false to store it before the model exists"
            ) from None
        ctx = self.context(definition)
        try:
            source = make_source(definition.source, ctx)
            sinks = [make_sink(url, ctx) for url in definition.sinks]
        except ModelbusError as exc:
            raise DefinitionError(f"listener {definition.name!r}: {exc}") from None
        await self._try_open(definition, "source", definition.source, source)
        try:
            check_lease(definition, source.lease_s)
        finally:
            await _close(source.close())
        for url, sink in zip(definition.sinks, sinks, strict=True):
            await self._try_open(definition, "sink", url, sink)
            await _close(sink.close())

    @property
    def policy(self) -> ConnectorPolicy:
        """What this manager's listeners' connectors may reach (see :class:`ManagerOptions`)."""
        return self._options.policy

    def check_policy(self, definition: ListenerDefinition) -> None:
        """Check ``definition``'s URLs against the policy without making their connectors
        (:func:`modelbus.connectors.check_policy`), so that what the policy refuses (a
        folder outside the roots, a refused host) is refused even with ``check=false``; any
        other problem is left to :meth:`validate`. Raises PolicyRefused naming the listener."""
        ctx = self.context(definition)
        try:
            for url in (definition.source, *definition.sinks):
                check_policy(url, ctx)
        except PolicyRefused as exc:
            raise PolicyRefused(f"listener {definition.name!r}: {exc.message}") from None

    def context(self, definition: ListenerDefinition) -> ConnectorContext:
        """The connector context of ``definition``'s connectors, with this manager's policy."""
        return ConnectorContext(
            listener=definition.name, data_dir=self._data_dir, policy=self._options.policy
        )

    async def _try_open(
        self, definition: ListenerDefinition, role: str, url: str, part: Any
    ) -> None:
        try:
            await asyncio.wait_for(part.open(), self._options.check_timeout_s)
        except TimeoutError:
            raise DefinitionError(
                f"listener {definition.name!r}: the {role} {url} did not answer within "
                f"{self._options.check_timeout_s:g} s: check the URL and that the broker is up"
            ) from None
        except ModelbusError as exc:
            raise DefinitionError(
                f"listener {definition.name!r}: cannot open the {role} {url}: {exc}"
            ) from None

    async def create(self, definition: ListenerDefinition, *, check: bool = True) -> ListenerInfo:
        """Store a new listener and start it if enabled. ``check`` opens its connectors first
        (:meth:`validate`); what the policy refuses is refused either way
        (:meth:`check_policy`). Raises Conflict if the name is taken."""
        await asyncio.to_thread(self.check_policy, definition)  # resolves host names
        if check:
            await self.validate(definition)
        now = time.time()
        async with self._lock:
            if await self._row(definition.name) is not None:
                raise Conflict(
                    f"listener {definition.name!r} exists already: use apply to change it"
                )
            await self._insert(definition, now)
            await self._reconcile(definition)
        return ListenerInfo(definition=definition, created_at=now, updated_at=now)

    async def apply(
        self,
        definitions: Sequence[ListenerDefinition],
        *,
        prune: bool = False,
        check: bool = True,
    ) -> ApplyResult:
        """Create or update each listener; restart only those whose definition changed.
        ``prune`` deletes stored listeners that are not in ``definitions``."""
        names = [d.name for d in definitions]
        if len(set(names)) != len(names):
            raise DefinitionError("a listener name appears twice: names must be unique")
        for definition in definitions:
            await asyncio.to_thread(self.check_policy, definition)  # resolves host names
        if check:
            for definition in definitions:
                await self.validate(definition)
        result = ApplyResult()
        by_outcome: dict[Outcome, list[str]] = {
            "created": result.created,
            "updated": result.updated,
            "unchanged": result.unchanged,
        }
        for definition in definitions:
            by_outcome[await self._put(definition)].append(definition.name)
        if prune:
            result.deleted.extend(await self._prune(keep=set(names)))
        return result

    async def _put(self, definition: ListenerDefinition) -> Outcome:
        """Store ``definition`` and run it as stored. Decided on the row as it is under the
        lock: a row read before it may be stale (deleted or changed meanwhile), and acting
        on it ran a listener that was not stored any more."""
        outcome: Outcome = "unchanged"
        async with self._lock:
            row = await self._row(definition.name)
            if row is None:
                try:
                    await self._insert(definition, time.time())
                    outcome = "created"
                except Conflict:  # another node created it meanwhile: apply wins
                    await self._replace(definition)
                    outcome = "updated"
            elif self._differs(row, definition):
                await self._replace(definition)
                outcome = "updated"
            await self._reconcile(definition)
        return outcome

    def _differs(self, row: Any, definition: ListenerDefinition) -> bool:
        try:
            return _info(row, self._credentials).definition != definition
        except DefinitionError:  # stored by an older version, now refused: replace it
            return True

    async def _prune(self, keep: set[str]) -> list[str]:
        """Delete the stored listeners not in ``keep`` (read under the lock, as in _put)."""
        async with self._lock:
            names = [info.name for info in await self.list() if info.name not in keep]
            for name in names:
                await self._forget(name)
        return names

    async def list(self) -> list[ListenerInfo]:
        """Every stored listener, by name."""
        query = select(listeners_table).order_by(listeners_table.c.name)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        infos = []
        for row in rows:
            try:
                infos.append(_info(row, self._credentials))
            except DefinitionError as exc:  # stored by an older version, now refused
                log.error("stored listener %s is not valid any more: %s", row["name"], exc)
        return infos

    async def get(self, name: str) -> ListenerInfo:
        """One stored listener; raises ListenerNotFound."""
        row = await self._row(name)
        if row is None:
            raise ListenerNotFound(f"listener {name!r} does not exist")
        return _info(row, self._credentials)

    async def status(self, name: str) -> ListenerStatus:
        """The live status: with a cluster, over every live node (a :class:`ClusterStatus`,
        with a per-node breakdown), else in this process: ``paused`` when disabled,
        ``stopped`` when not running here. Raises ListenerNotFound."""
        local = await self.local_status(name)
        if self._cluster is None:
            return local
        peers = await self._cluster.peers()
        return self._cluster.summed(local, self._local_state(local), peers)

    async def totals(self, name: str) -> dict[str, int]:
        """Listener ``name``'s run records by status, from the store (so unchanged by a
        restart and the same on every node; :meth:`RunStore.totals`), read at most every
        :data:`TOTALS_MAX_AGE_S`."""
        at, cached = self._totals.get(name, (-1e9, {}))
        if time.monotonic() - at < TOTALS_MAX_AGE_S:
            return cached
        totals = await self.runs.totals(name)
        self._totals[name] = (time.monotonic(), totals)
        return totals

    async def local_status(self, name: str) -> ListenerStatus:
        """The status in this process alone; raises ListenerNotFound."""
        running = self._running.get(name)
        if running is not None:
            return running.status()
        info = await self.get(name)
        refused = self._refused.get(name) if info.definition.enabled else None
        return ListenerStatus(
            name=name,
            state="paused" if not info.definition.enabled else "stopped",
            last_error=refused,
            last_error_at=None,
            problems={"definition": refused} if refused else {},
            counters=self.metrics.snapshot(name),
        )

    def _local_state(self, status: ListenerStatus) -> str:
        """This node's state of a listener: ``standby`` while another node holds its lease."""
        return "standby" if self._standby(status.name) else status.state

    def _standby(self, name: str) -> bool:
        return (
            self._ownership is not None
            and self._ownership.standby(name)
            and name not in self._running
        )

    async def node_report(self) -> Report:
        """What this node's heartbeat reports, per listener it knows: its state here
        (``standby`` while another node holds the lease), counters since this process
        started, the last error and the failing parts."""
        names = set(self._running) | self.metrics.names()
        if self._ownership is not None:
            names |= self._ownership.wanted
        report: Report = {}
        for name in sorted(names):
            running = self._running.get(name)
            if running is None:
                state = "standby" if self._standby(name) else "stopped"
                report[name] = {"state": state, "counters": self.metrics.snapshot(name)}
                continue
            status = running.status()
            report[name] = {
                "state": status.state,
                "counters": status.counters,
                "reason": status.last_error,
                "reason_at": status.last_error_at,
                "problems": dict(status.problems),
                "backlog": status.backlog,
                "backlog_at": status.backlog_at,
            }
        return report

    async def pause(self, name: str) -> ListenerInfo:
        """Disable a listener: it stops gracefully and stays stopped across restarts."""
        return await self._set_enabled(name, False)

    async def resume(self, name: str) -> ListenerInfo:
        """Enable a paused listener and start it."""
        return await self._set_enabled(name, True)

    async def _set_enabled(self, name: str, enabled: bool) -> ListenerInfo:
        async with self._lock:
            # The flag alone, in one statement, then the row as it is: writing back a whole
            # definition read before would undo a change made meanwhile (here or elsewhere)
            # or run a listener deleted meanwhile. (_info takes the flag from its column.)
            await self._execute(
                update(listeners_table)
                .where(listeners_table.c.name == name, listeners_table.c.enabled != enabled)
                .values(enabled=enabled, updated_at=time.time())
            )
            row = await self._row(name)
            if row is None:
                raise ListenerNotFound(f"listener {name!r} does not exist")
            info = _info(row, self._credentials)
            await self._reconcile(info.definition)
        return info

    async def delete(self, name: str) -> None:
        """Stop and forget a listener (its run records and dead letters are kept)."""
        await self.get(name)
        async with self._lock:
            await self._forget(name)

    async def _forget(self, name: str) -> None:
        """Stop listener ``name``, delete its row, drop its series (lock held)."""
        running = self._running.pop(name, None)
        if running is not None:
            await self._stop(running)
        await self._execute(delete(listeners_table).where(listeners_table.c.name == name))
        if self._ownership is not None:
            await self._ownership.forget(name)
        self.metrics.remove(name)
        self._totals.pop(name, None)

    # --- redrive -----------------------------------------------------------------------------

    async def redrive(
        self,
        name: str,
        *,
        ids: Sequence[str] | None = None,
        spec: str | None = None,
        rate_per_s: float | None = None,
    ) -> RedriveResult:
        """Run dead letters of listener ``name`` again: ``ids``, or every one not redriven
        yet; on the listener's model at ``spec`` (default: the listener's own spec). Results
        go to the listener's outputs and are recorded as runs; redriven letters are marked.
        At most ``rate_per_s`` a second. Raises DeadLetterNotFound for an id that is not a
        dead letter of this listener."""
        definition = (await self.get(name)).definition
        ref = definition.ref
        if spec is not None:
            ref = model_ref(f"{ref.owner}/{ref.name}@{spec}")
        if ids is None:
            ids = await self.runs.dead_letter_ids(name)
        letters = [await self._letter(name, letter_id) for letter_id in ids]
        bucket = TokenBucket(rate_per_s or self._options.redrive_rate_per_s)
        result = RedriveResult(model=str(ref))
        async with self._runtime_for(definition) as listener:
            slots = asyncio.Semaphore(definition.max_in_flight)

            async def one(letter_id: str, letter: DeadLetter) -> None:
                async with slots:
                    await bucket.take()
                    try:
                        await listener.redrive(letter, ref)
                    except Exception as exc:
                        result.failed[letter_id] = f"{type(exc).__name__}: {exc}"
                        return
                    await self.runs.mark_redriven([letter_id], to=str(ref))
                    result.redriven.append(letter_id)

            await asyncio.gather(*(one(letter.id, letter) for letter in letters))
        return result

    async def redrive_matching(
        self,
        search: Search,
        *,
        include_redriven: bool = False,
        spec: str | None = None,
        rate_per_s: float | None = None,
        every: bool = False,
        check: Callable[[str], Awaitable[object]] | None = None,
    ) -> tuple[int, dict[str, RedriveResult]]:
        """Redrive every dead letter ``search`` matches (not redriven yet, unless
        ``include_redriven``), listener by listener as :meth:`redrive` does, each on its
        model at ``spec``. An empty search (every letter of every listener) is refused with
        InvalidInput unless ``every`` says it is meant. ``check(listener)`` is awaited for
        every listener concerned before anything runs, and refuses by raising (a key's
        permission). Returns how many matched and the result per listener. Raises
        ListenerNotFound if a matched letter's listener was deleted (narrow the search)."""
        if search == Search() and not every:
            raise InvalidInput(
                "give a filter (listener, message_id, object_key, since, until), or say "
                "that every dead letter of every listener is meant (all)"
            )
        found = await self.runs.matching_dead_letters(search, include_redriven=include_redriven)
        for name in found:
            if check is not None:
                await check(name)
            else:
                await self.get(name)
        results = {
            name: await self.redrive(name, ids=ids, spec=spec, rate_per_s=rate_per_s)
            for name, ids in found.items()
        }
        return sum(len(ids) for ids in found.values()), results

    async def _letter(self, name: str, letter_id: str) -> DeadLetter:
        letter = await self.runs.get_dead_letter(letter_id)
        if letter.listener != name:
            raise DeadLetterNotFound(f"dead letter {letter_id} is not one of listener {name!r}")
        return letter

    def _new_runtime(self, definition: ListenerDefinition) -> ListenerRuntime:
        """A runtime for ``definition`` (not started), its connectors under this manager's
        folder and egress policy. Raises DefinitionError when the policy refuses them."""
        return ListenerRuntime(
            definition,
            invoker=self._invoker,
            runs=self.records,
            metrics=self.metrics.listener(definition.name),
            data_dir=self._data_dir,
            options=self._options.runtime,
            policy=self._options.policy,
        )

    @contextlib.asynccontextmanager
    async def _runtime_for(self, definition: ListenerDefinition) -> AsyncIterator[ListenerRuntime]:
        """The running listener, or a runtime whose output sinks are opened for the occasion."""
        running = self._running.get(definition.name)
        if running is not None and running.state in ("running", "degraded"):
            yield running
            return
        listener = self._new_runtime(definition)
        await listener.open_sinks()
        try:
            yield listener
        finally:
            await listener.close_sinks()

    # --- store -------------------------------------------------------------------------------

    def _stored_form(self, definition: ListenerDefinition) -> dict[str, Any]:
        """The definition's JSON for the table: credentials encrypted when a box is set."""
        if self._credentials is None:
            return definition.model_dump(mode="json")
        return self._credentials.seal(definition)

    async def _insert(self, definition: ListenerDefinition, now: float) -> None:
        """Store a new row. Raises Conflict if the name was taken meanwhile (by another
        node sharing the store: this node's lock does not keep those out)."""
        try:
            await self._execute(
                insert(listeners_table).values(
                    name=definition.name,
                    definition=self._stored_form(definition),
                    enabled=definition.enabled,
                    created_at=now,
                    updated_at=now,
                )
            )
        except IntegrityError:
            raise Conflict(
                f"listener {definition.name!r} exists already: use apply to change it"
            ) from None

    async def _replace(self, definition: ListenerDefinition) -> None:
        await self._execute(
            update(listeners_table)
            .where(listeners_table.c.name == definition.name)
            .values(
                definition=self._stored_form(definition),
                enabled=definition.enabled,
                updated_at=time.time(),
            )
        )

    async def _row(self, name: str) -> Any:
        query = select(listeners_table).where(listeners_table.c.name == name)
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).mappings().first()

    async def _execute(self, statement: Any) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(statement)
        if self._on_change is not None:
            self._on_change()


async def _close(closing: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(closing, 10)


def _info(row: Any, credentials: Credentials | None = None) -> ListenerInfo:
    stored = row["definition"]
    if credentials is not None:
        stored = credentials.open(stored, name=row["name"])
    definition = ListenerDefinition.from_mapping(stored)
    if definition.enabled != row["enabled"]:
        definition = definition.model_copy(update={"enabled": row["enabled"]})
    return ListenerInfo(
        definition=definition, created_at=row["created_at"], updated_at=row["updated_at"]
    )
