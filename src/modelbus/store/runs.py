"""Run records and dead letters, in the store's ``runs`` and ``dead_letters`` tables.

A run record says what happened to one broker message in one listener (keyed by listener +
broker message id, the same on every redelivery): ``running`` -> ``retrying`` ->
``succeeded`` or ``dead_lettered``, with the attempts, the resolved version, timings, where
the result went (the sinks and the output id) or the error. A message whose record says
``succeeded`` is not run again (dedupe) until :meth:`RunStore.prune` forgets it; what it
forgets is added to ``run_totals``, so :meth:`RunStore.totals` never goes down.

Writes are on the hot path of every message: :meth:`RunStore.write` stores many records
and dead letters in one transaction, and the listeners group-commit their writes through
it (:class:`modelbus.listeners.records.RunWriter`). On SQLite the dedupe check and each
write are one hop to a thread of their own (:class:`_SqliteDirect`), not the three or four
aiosqlite round trips of the async engine (BEGIN, statements, COMMIT), each of which waits
for the GIL behind a busy event loop: that cost about 4 ms per commit. A dedupe check of at
most :data:`INLINE_READ_MAX` ids (a receive at a low rate) is read on the event loop itself:
a read by key is quicker than the hop, which sat on every message's path to its result.

**Run claims.** Before a listener runs a batch it claims the batch's messages
(:meth:`RunStore.claim`, one statement): a run row's ``claimed_by`` names the replica
running it and ``claim_expires_at`` until when (on the database's clock), renewed while it
runs (:meth:`RunStore.renew_claims`). A message claimed by another replica whose claim has
not expired is not claimed: that delivery waits (the listener releases it as ``Busy``), on
whichever node or process it arrived. Any run record written after the claim (``retrying``,
``succeeded``, ``dead_lettered``) ends it; a ``running`` note keeps it. A replica that dies
leaves its claims to expire, or to be ended by a replica of the same machine that finds its
process gone (:meth:`RunStore.claimants`, :mod:`modelbus.listeners.claims`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, TypeVar, get_args

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    case,
    delete,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from modelbus.errors import DeadLetterNotFound, InvalidInput
from modelbus.store.database import clock_of, sqlite_sync_engine, write_options
from modelbus.store.schema import dead_letters, run_totals, runs

__all__ = ["DeadLetter", "Page", "RunRecord", "RunStatus", "RunStore", "RunWrite", "Search"]

log = logging.getLogger(__name__)

T = TypeVar("T")
RunStatus = Literal["running", "retrying", "succeeded", "dead_lettered"]
FINAL: tuple[RunStatus, ...] = ("succeeded", "dead_lettered")
# Dedupe checks of at most this many ids are read on the caller's thread (module docstring).
INLINE_READ_MAX = 8


@dataclass(frozen=True, kw_only=True, slots=True)
class RunRecord:
    """What happened to one message in one listener.

    ``result_location`` is where the result went: the output sinks' URLs (credentials
    removed); ``output_id`` the result's deterministic id there. ``error`` is
    ``{"type", "message", "permanent", "stage"}`` for the last failure. Times are epoch s.
    ``object_key`` is the object an object-created notification announced, ``BUCKET/KEY``
    (for a ``dir://`` folder: the file's path), None for any other message.
    """

    listener: str
    message_id: str
    status: RunStatus
    attempts: int
    first_received_at: float
    updated_at: float
    version: str | None = None
    output_id: str | None = None
    result_location: tuple[str, ...] = ()
    error: Mapping[str, Any] | None = None
    duration_ms: float | None = None
    finished_at: float | None = None
    object_key: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class DeadLetter:
    """A message that could not succeed: the original body and attributes, untouched, plus
    the last error. ``model`` is the listener's ``owner/name@spec``, ``version`` the
    resolved version that failed (None if it never resolved); ``object_key`` as in
    :class:`RunRecord`."""

    id: str
    listener: str
    message_id: str
    body: bytes
    attributes: Mapping[str, str]
    error_type: str
    error_message: str
    stacktrace: str
    permanent: bool
    attempts: int
    model: str
    version: str | None
    created_at: float
    redriven_at: float | None = None
    redriven_to: str | None = None
    object_key: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Search:
    """What a listing of runs or dead letters is narrowed to; every field None (the
    default) matches everything. ``since`` and ``until`` (epoch s) bound the time the
    listing is ordered by, ``since <= t < until``: a run record's last update, a dead
    letter's creation. ``object_key`` matches the whole ``BUCKET/KEY`` or any tail of it
    that starts after a ``/`` (``page-1.png``, ``inbox/page-1.png``), case-sensitively."""

    listener: str | None = None
    message_id: str | None = None
    object_key: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_cursor`` back for the next (None: no more)."""

    items: list[T]
    next_cursor: str | None = None


RunWrite = RunRecord | DeadLetter


class RunStore:
    """Run records and dead letters on an :class:`AsyncEngine` (SQLite or PostgreSQL).

    Call :meth:`close` before disposing of the engine.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._upsert_run = _upsert(engine, runs, ("listener", "message_id"))
        self._claiming = _claiming(engine)
        self._upsert_dead = _upsert(engine, dead_letters, ("id",))
        self._add_totals = _adding(engine)
        self._direct = _SqliteDirect.of(engine)

    async def write(self, items: Sequence[RunWrite]) -> None:
        """Store run records and dead letters in one transaction, returning once it is
        committed. The last write of a key wins; an earlier one in the same call is dropped.
        A final run status is never overwritten by an intermediate one."""
        latest_runs: dict[tuple[str, str], dict[str, Any]] = {}
        latest_letters: dict[str, dict[str, Any]] = {}
        for item in items:
            if isinstance(item, RunRecord):
                latest_runs[(item.listener, item.message_id)] = _run_row(item)
            else:
                latest_letters[item.id] = _dead_letter_row(item)
        letters, records = list(latest_letters.values()), list(latest_runs.values())
        if self._direct is not None:
            await self._direct.run(lambda conn: self._write_now(conn, letters, records), write=True)
            return
        async with self._engine.begin() as conn:
            await _executemany(conn, self._upsert_dead, letters)
            await _executemany(conn, self._upsert_run, records)

    async def close(self) -> None:
        """Release this store's own SQLite thread (used again if the store is); the engine
        stays the caller's to dispose of."""
        if self._direct is not None:
            await self._direct.close()

    async def succeeded(self, listener: str, message_ids: Sequence[str]) -> set[str]:
        """Which of ``message_ids`` already succeeded in ``listener`` (the dedupe check)."""
        if not message_ids:
            return set()
        keys = _keys(message_ids)
        query = select(runs.c.message_id).where(
            runs.c.listener == listener,
            runs.c.message_id.in_(list(keys)),
            runs.c.status == "succeeded",
        )
        if self._direct is not None:

            def read(conn: Connection) -> set[str]:
                return set(conn.execute(query).scalars())

            found: set[str] | None = None
            if len(keys) <= INLINE_READ_MAX:
                found = self._direct.succeeded_now(listener, list(keys))
            if found is None:
                found = await self._direct.run(read)
        else:
            async with self._engine.connect() as conn:
                found = set((await conn.execute(query)).scalars())
        return {keys[k] for k in found}

    async def claim(
        self, listener: str, claimant: str, attempts: Mapping[str, int], *, ttl_s: float
    ) -> set[str]:
        """Claim messages ``attempts`` (message id -> its delivery's attempt) of ``listener``
        for ``claimant`` for ``ttl_s`` seconds, in one statement; returns the ids claimed.
        Not claimed: a message claimed by another claimant whose claim has not expired, and
        a message that succeeded already (a duplicate that slipped past the dedupe check).
        A message without a run record gets one, ``running``. Atomic; claiming again what
        ``claimant`` holds renews it."""
        if not attempts:
            return set()
        now, expires = time.time(), clock_of(self._engine.dialect.name) + ttl_s
        keys = _keys(attempts)
        rows = [
            {
                "listener": listener,
                "message_id": key,
                "status": "running",
                "attempts": attempt,
                "first_received_at": now,
                "updated_at": now,
                "claimed_by": claimant,
                "claim_expires_at": expires,
            }
            for key, attempt in ((k, attempts[m]) for k, m in keys.items())
        ]
        statement = self._claiming.values(rows)
        return {keys[k] for k in await self._written_ids(statement)}

    async def renew_claims(
        self, listener: str, claimant: str, message_ids: Sequence[str], *, ttl_s: float
    ) -> set[str]:
        """Extend ``claimant``'s claims of ``message_ids`` by ``ttl_s`` from now; returns
        those it still held (a claim another claimant took after it expired is not)."""
        return await self._claims_of(
            listener,
            claimant,
            message_ids,
            {"claim_expires_at": clock_of(self._engine.dialect.name) + ttl_s},
        )

    async def claimants(self, listener: str, message_ids: Sequence[str]) -> dict[str, str]:
        """Who holds a claim, not expired, on each of ``message_ids`` (message id -> claimant;
        messages not claimed are left out)."""
        if not message_ids:
            return {}
        keys = _keys(message_ids)
        query = select(runs.c.message_id, runs.c.claimed_by).where(
            runs.c.listener == listener,
            runs.c.message_id.in_(list(keys)),
            runs.c.claimed_by.is_not(None),
            runs.c.claim_expires_at >= clock_of(self._engine.dialect.name),
        )
        async with self._engine.connect() as conn:
            return {keys[k]: c for k, c in (await conn.execute(query)).all()}

    async def unclaim(self, listener: str, claimant: str, message_ids: Sequence[str]) -> None:
        """End ``claimant``'s claims of ``message_ids`` (their deliveries were handed back
        unfinished: a stop), so that another replica may run them at once."""
        await self._claims_of(
            listener, claimant, message_ids, {"claimed_by": None, "claim_expires_at": None}
        )

    async def _claims_of(
        self, listener: str, claimant: str, message_ids: Sequence[str], values: dict[str, Any]
    ) -> set[str]:
        if not message_ids:
            return set()
        keys = _keys(message_ids)
        statement = (
            update(runs)
            .where(
                runs.c.listener == listener,
                runs.c.message_id.in_(list(keys)),
                runs.c.claimed_by == claimant,
            )
            .values(**values)
            .returning(runs.c.message_id)
        )
        return {keys[k] for k in await self._written_ids(statement)}

    async def _written_ids(self, statement: Executable) -> set[str]:
        """Run ``statement`` (a write returning message ids) in a transaction of its own."""
        if self._direct is not None:

            def write(conn: Connection) -> set[str]:
                return set(conn.execute(statement).scalars())

            return await self._direct.run(write, write=True)
        async with self._engine.begin() as conn:
            return set((await conn.execute(statement)).scalars())

    async def get_runs(self, message_id: str, listener: str | None = None) -> list[RunRecord]:
        """The run records of a broker message id (one per listener that received it)."""
        query = select(runs).where(runs.c.message_id == _shown(message_id))
        if listener is not None:
            query = query.where(runs.c.listener == listener)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(runs.c.listener))).mappings()
            return [_run_of(row) for row in rows]

    async def list_runs(
        self,
        listener: str | None = None,
        *,
        status: RunStatus | None = None,
        search: Search | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[RunRecord]:
        """Run records, most recently updated first: ``listener``'s (None: every
        listener's), in ``status``, narrowed by ``search`` (its listener, if any, must agree
        with ``listener``). Raises InvalidInput for a cursor this did not give."""
        query = select(runs).where(*_run_terms(_narrowed(search, listener), status))
        if cursor is not None:
            at, name, key = _run_cursor(cursor)
            query = query.where(
                tuple_(runs.c.updated_at, runs.c.listener, runs.c.message_id) < (at, name, key)
            )
        query = query.order_by(
            runs.c.updated_at.desc(), runs.c.listener.desc(), runs.c.message_id.desc()
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.limit(limit + 1))).mappings()
            records = [_run_of(row) for row in rows]
        more = len(records) > limit
        records = records[:limit]
        last = records[-1] if more else None
        return Page(
            records, f"{last.updated_at!r}|{last.listener}|{last.message_id}" if last else None
        )

    async def failed_runs(
        self, listeners: Sequence[str], version: str, limit: int
    ) -> list[RunRecord]:
        """The run records of ``listeners`` that ran ``version`` (a version label) and keep
        an error (retrying, or dead-lettered), most recently updated first, at most ``limit``:
        a model version's recent errors as every node's listeners met them."""
        if not listeners:
            return []
        query = (
            select(runs)
            .where(
                runs.c.listener.in_(list(listeners)),
                runs.c.version == version,
                runs.c.error.is_not(None),
            )
            .order_by(runs.c.updated_at.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_run_of(row) for row in (await conn.execute(query)).mappings()]

    async def list_dead_letters(
        self,
        listener: str | None = None,
        *,
        search: Search | None = None,
        limit: int = 50,
        cursor: str | None = None,
        include_redriven: bool = True,
    ) -> Page[DeadLetter]:
        """Dead letters, newest first, ``limit`` per page: ``listener``'s (None: every
        listener's), narrowed by ``search``. Raises InvalidInput for a bad cursor."""
        terms = _letter_terms(_narrowed(search, listener), include_redriven)
        query = select(dead_letters).where(*terms)
        if cursor is not None:
            at, key = _cursor(cursor)
            query = query.where(tuple_(dead_letters.c.created_at, dead_letters.c.id) < (at, key))
        query = query.order_by(dead_letters.c.created_at.desc(), dead_letters.c.id.desc())
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.limit(limit + 1))).mappings()
            letters = [_dead_letter_of(row) for row in rows]
        more = len(letters) > limit
        letters = letters[:limit]
        last = letters[-1] if more else None
        return Page(letters, f"{last.created_at!r}|{last.id}" if last else None)

    async def dead_letter_ids(
        self,
        listener: str | None = None,
        *,
        search: Search | None = None,
        include_redriven: bool = False,
    ) -> list[str]:
        """Every dead letter id that ``list_dead_letters`` would page through, oldest first
        (for a redrive of all of them)."""
        terms = _letter_terms(_narrowed(search, listener), include_redriven)
        query = select(dead_letters.c.id).where(*terms)
        query = query.order_by(dead_letters.c.created_at, dead_letters.c.id)
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def matching_dead_letters(
        self, search: Search, *, include_redriven: bool = False
    ) -> dict[str, list[str]]:
        """The ids of the dead letters ``search`` matches, per listener, oldest first (for a
        redrive of all of them)."""
        terms = _letter_terms(search, include_redriven)
        query = select(dead_letters.c.listener, dead_letters.c.id).where(*terms)
        query = query.order_by(dead_letters.c.created_at, dead_letters.c.id)
        found: dict[str, list[str]] = {}
        async with self._engine.connect() as conn:
            for listener, letter_id in (await conn.execute(query)).all():
                found.setdefault(listener, []).append(letter_id)
        return found

    async def get_dead_letter(self, id: str) -> DeadLetter:
        """One dead letter; raises DeadLetterNotFound."""
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(select(dead_letters).where(dead_letters.c.id == id)))
                .mappings()
                .first()
            )
        if row is None:
            raise DeadLetterNotFound(f"dead letter {id} does not exist")
        return _dead_letter_of(row)

    async def mark_redriven(self, ids: Sequence[str], *, to: str, at: float | None = None) -> None:
        """Record that dead letters ``ids`` were redriven to ``to`` (a model reference)."""
        stamp = time.time() if at is None else at
        query = (
            update(dead_letters)
            .where(dead_letters.c.id.in_(list(ids)))
            .values(redriven_at=stamp, redriven_to=to)
        )
        await self._execute(query)

    async def prune(self, *, finished_before: float) -> int:
        """Forget finished run records older than ``finished_before`` (epoch s): the end of
        the dedupe window, adding them to ``run_totals`` in the same transaction (only the
        rows this call deleted: two nodes pruning at once count each row once). Returns how
        many were deleted."""
        query = (
            delete(runs)
            .where(runs.c.finished_at.is_not(None), runs.c.finished_at < finished_before)
            .returning(runs.c.listener, runs.c.status)
        )
        async with self._engine.begin() as conn:
            gone: dict[tuple[str, str], int] = {}
            for listener, status in (await conn.execute(query)).all():
                gone[(listener, status)] = gone.get((listener, status), 0) + 1
            if gone:
                rows = [{"listener": k[0], "status": k[1], "count": n} for k, n in gone.items()]
                await conn.execute(self._add_totals, rows)
            return sum(gone.values())

    async def totals(self, listener: str) -> dict[str, int]:
        """Listener ``listener``'s run records by status since it was created: those kept
        plus those pruned. Every status of :data:`RunStatus` is a key (0 when none)."""
        kept = (
            select(runs.c.status, func.count())
            .where(runs.c.listener == listener)
            .group_by(runs.c.status)
        )
        pruned = select(run_totals.c.status, run_totals.c.count).where(
            run_totals.c.listener == listener
        )
        counts = dict.fromkeys(get_args(RunStatus), 0)
        async with self._engine.connect() as conn:
            for query in (kept, pruned):
                for status, n in (await conn.execute(query)).all():
                    counts[status] = counts.get(status, 0) + int(n)
        return counts

    async def _execute(self, query: Executable) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(query)

    def _write_now(
        self, conn: Connection, letters: list[dict[str, Any]], records: list[dict[str, Any]]
    ) -> None:
        for query, rows in ((self._upsert_dead, letters), (self._upsert_run, records)):
            if rows:
                conn.execute(query, rows)


class _SqliteDirect:
    """A synchronous engine on the store's SQLite file, used from two threads of its own,
    one for writes and one for reads: a call is one hop there and back, its transaction (and
    commit) done inside, and a read (the dedupe check on every received batch) never queues
    behind a commit (WAL lets readers run beside the writer). Same file, pragmas (WAL,
    ``synchronous=NORMAL``) and write locking (``BEGIN IMMEDIATE``) as the async engine, so
    what is durable, and when, does not change."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._url = engine.url
        self._sync: Engine | None = None
        self._inline: sqlite3.Connection | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None

    @classmethod
    def of(cls, engine: AsyncEngine) -> _SqliteDirect | None:
        """One for a file-backed SQLite engine; None otherwise (PostgreSQL needs no thread,
        and an in-memory database is private to its connection)."""
        database = engine.url.database
        if engine.dialect.name != "sqlite" or not database or database == ":memory:":
            return None
        if "mode=memory" in str(engine.url):
            return None
        return cls(engine)

    async def run(self, fn: Callable[[Connection], T], *, write: bool = False) -> T:
        """``fn(conn)`` inside one transaction (a write transaction if ``write``), committed
        before this returns; its exception after a rollback."""
        if self._sync is None:
            self._sync = sqlite_sync_engine(self._url)
        if write:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="modelbus-runs")
            thread = self._writer
        else:
            if self._reader is None:
                self._reader = ThreadPoolExecutor(1, thread_name_prefix="modelbus-runs-read")
            thread = self._reader
        return await asyncio.get_running_loop().run_in_executor(
            thread, self._transaction, self._sync, fn, write
        )

    def succeeded_now(self, listener: str, message_ids: Sequence[str]) -> set[str] | None:
        """The dedupe check of a few ids, read on the calling thread (the event loop): for
        a read of a few rows by key, quicker than the hop to the reader thread and back,
        which can wait for the GIL behind a busy loop. It never waits: its own connection
        has no busy timeout, and None (read it on the thread instead) is the answer when
        the file is locked (a WAL recovery after a crash) or the read fails."""
        try:
            if self._inline is None:
                database = self._url.database or ""
                self._inline = sqlite3.connect(database, timeout=0, check_same_thread=False)
            ids = list(set(message_ids))
            marks = ",".join("?" * len(ids))
            rows = self._inline.execute(
                f"SELECT message_id FROM {runs.name} WHERE listener = ? AND status = "
                f"'succeeded' AND message_id IN ({marks})",
                [listener, *ids],
            ).fetchall()
        except sqlite3.Error:
            return None
        return {row[0] for row in rows}

    @staticmethod
    def _transaction(engine: Engine, fn: Callable[[Connection], T], write: bool) -> T:
        with engine.connect() as conn:
            if write:
                conn = conn.execution_options(**write_options())
            with conn.begin():
                return fn(conn)

    async def close(self) -> None:
        inline, self._inline = self._inline, None
        if inline is not None:
            inline.close()
        threads = [t for t in (self._writer, self._reader) if t is not None]
        self._writer = self._reader = None
        engine, self._sync = self._sync, None
        if engine is not None and threads:
            await asyncio.get_running_loop().run_in_executor(threads[0], engine.dispose)
        for thread in threads:
            thread.shutdown(wait=False)


async def _executemany(
    conn: AsyncConnection, query: Executable, rows: list[dict[str, Any]]
) -> None:
    if rows:
        await conn.execute(query, rows)


def _upsert(engine: AsyncEngine, table: Any, keys: tuple[str, ...]) -> Executable:
    """INSERT ... ON CONFLICT (keys) DO UPDATE, in the engine's dialect. For runs, a final
    status is never overwritten by an intermediate one (a late write-behind or another
    replica's duplicate), and the first receive time is kept."""
    stmt: Any = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(table)
    kept = {*keys, "first_received_at", "created_at"}
    changes = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in kept}
    where = None
    if table is runs:
        # A run record written after a claim ends it, but for a ``running`` note.
        for name in ("claimed_by", "claim_expires_at"):
            changes[name] = case((stmt.excluded.status == "running", table.c[name]), else_=None)
        # Literal SQL, not bound parameters: executemany() cannot expand IN (...) binds.
        final = ", ".join(f"'{status}'" for status in FINAL)
        where = text(f"runs.status NOT IN ({final}) OR excluded.status IN ({final})")
    upsert: Executable = stmt.on_conflict_do_update(
        index_elements=list(keys), set_=changes, where=where
    )
    return upsert


def _claiming(engine: AsyncEngine) -> Any:
    """INSERT INTO runs ... ON CONFLICT DO UPDATE the claim WHERE it is free, expired or the
    claimant's own, and the message has not succeeded, RETURNING the ids claimed; the rows
    are given with ``.values(rows)``."""
    stmt: Any = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(runs)
    claimed = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["listener", "message_id"],
        set_={"claimed_by": claimed.claimed_by, "claim_expires_at": claimed.claim_expires_at},
        where=and_(
            runs.c.status != "succeeded",
            or_(
                runs.c.claimed_by.is_(None),
                runs.c.claimed_by == claimed.claimed_by,
                runs.c.claim_expires_at < clock_of(engine.dialect.name),
            ),
        ),
    ).returning(runs.c.message_id)


def _adding(engine: AsyncEngine) -> Executable:
    """INSERT INTO run_totals ... ON CONFLICT DO UPDATE SET count = count + excluded.count."""
    stmt: Any = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(
        run_totals
    )
    adding: Executable = stmt.on_conflict_do_update(
        index_elements=["listener", "status"],
        set_={"count": run_totals.c.count + stmt.excluded["count"]},
    )
    return adding


def _narrowed(search: Search | None, listener: str | None) -> Search:
    search = search or Search()
    if listener is None:
        return search
    if search.listener not in (None, listener):
        raise InvalidInput(f"two listeners asked for: {listener!r} and {search.listener!r}")
    return replace(search, listener=listener)


def _search_terms(search: Search, table: Any, at: Any) -> list[ColumnElement[bool]]:
    terms: list[ColumnElement[bool]] = []
    if search.listener is not None:
        terms.append(table.c.listener == search.listener)
    if search.message_id is not None:
        terms.append(table.c.message_id == search.message_id)
    if search.object_key is not None:
        terms.append(_object_matches(table.c.object_key, search.object_key))
    if search.since is not None:
        terms.append(at >= search.since)
    if search.until is not None:
        terms.append(at < search.until)
    return terms


def _object_matches(column: Any, wanted: str) -> ColumnElement[bool]:
    """``column`` is ``wanted`` or ends with ``/wanted``: compared with substr, not LIKE,
    so that ``%`` and ``_`` in a file name mean themselves and case matters on both
    databases (SQLite's LIKE ignores it)."""
    tail = "/" + wanted.lstrip("/")
    n = len(tail)
    return or_(
        column == wanted,
        and_(func.length(column) > n, func.substr(column, func.length(column) - n + 1) == tail),
    )


def _run_terms(search: Search, status: RunStatus | None) -> list[ColumnElement[bool]]:
    terms = _search_terms(search, runs, runs.c.updated_at)
    if status is not None:
        terms.append(runs.c.status == status)
    return terms


def _letter_terms(search: Search, include_redriven: bool) -> list[ColumnElement[bool]]:
    terms = _search_terms(search, dead_letters, dead_letters.c.created_at)
    if not include_redriven:
        terms.append(dead_letters.c.redriven_at.is_(None))
    return terms


def _run_cursor(text: str) -> tuple[float, str, str]:
    at, listener_key = _cursor(text)
    listener, sep, key = listener_key.partition("|")
    if not sep:
        raise InvalidInput(f"not a page cursor: {text!r}")
    return at, listener, key


def _cursor(text: str) -> tuple[float, str]:
    at, _, key = text.partition("|")
    try:
        moment = float(at)
    except ValueError:
        moment = math.nan
    if not math.isfinite(moment):  # nan, inf: no page ends there (the page would be empty)
        raise InvalidInput(f"not a page cursor: {text!r}")
    return moment, key


def _run_row(r: RunRecord) -> dict[str, Any]:
    return {
        "listener": r.listener,
        "message_id": _shown(r.message_id),
        "status": r.status,
        "attempts": r.attempts,
        "version": r.version,
        "output_id": r.output_id,
        "result_location": json.dumps(list(r.result_location)) if r.result_location else None,
        "error": _shown_error(r.error),
        "duration_ms": r.duration_ms,
        "first_received_at": r.first_received_at,
        "updated_at": r.updated_at,
        "finished_at": r.finished_at,
        "claimed_by": None,  # a record ends the claim, but for a ``running`` note (_upsert)
        "claim_expires_at": None,
        "object_key": r.object_key,
    }


def _keys(message_ids: Iterable[str]) -> dict[str, str]:
    """The store's key of each of ``message_ids`` (:func:`_shown`: a publisher chooses an
    AMQP message id or an MQTT ``modelbus-id``, NUL included) -> the id as given, to answer
    in the caller's terms."""
    return {_shown(m): m for m in message_ids}


def _shown(text: str) -> str:
    """An error's words (its message, a stack trace) or a message id as every store keeps
    them: a NUL character, which PostgreSQL refuses in text, written as the four characters
    ``\\x00`` (else the record could never be written: a model error quoting binary input, or
    a message whose id holds one, would retry forever instead of being dead-lettered)."""
    return text.replace("\x00", "\\x00")


def _shown_error(error: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {k: _shown(v) if isinstance(v, str) else v for k, v in error.items()}


def _run_of(row: RowMapping) -> RunRecord:
    location = row["result_location"]
    return RunRecord(
        listener=row["listener"],
        message_id=row["message_id"],
        status=row["status"],
        attempts=row["attempts"],
        version=row["version"],
        output_id=row["output_id"],
        result_location=tuple(json.loads(location)) if location else (),
        error=row["error"],
        duration_ms=row["duration_ms"],
        first_received_at=row["first_received_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        object_key=row["object_key"],
    )


def _dead_letter_row(d: DeadLetter) -> dict[str, Any]:
    return {
        "id": d.id,
        "listener": d.listener,
        "message_id": _shown(d.message_id),
        "body": d.body,
        "attributes": dict(d.attributes),
        "error_type": d.error_type,
        "error_message": _shown(d.error_message),
        "stacktrace": _shown(d.stacktrace),
        "permanent": d.permanent,
        "attempts": d.attempts,
        "model": d.model,
        "version": d.version,
        "created_at": d.created_at,
        "redriven_at": d.redriven_at,
        "redriven_to": d.redriven_to,
        "object_key": d.object_key,
    }


def _dead_letter_of(row: RowMapping) -> DeadLetter:
    return DeadLetter(
        id=row["id"],
        listener=row["listener"],
        message_id=row["message_id"],
        body=bytes(row["body"]),
        attributes=row["attributes"],
        error_type=row["error_type"],
        error_message=row["error_message"],
        stacktrace=row["stacktrace"],
        permanent=row["permanent"],
        attempts=row["attempts"],
        model=row["model"],
        version=row["version"],
        created_at=row["created_at"],
        redriven_at=row["redriven_at"],
        redriven_to=row["redriven_to"],
        object_key=row["object_key"],
    )
