"""The store's database: one async SQLAlchemy Core engine over SQLite or PostgreSQL.

``Database.open("sqlite:///path")`` (the embedded default) or
``Database.open("postgresql://user@host/db")`` (several nodes share one). Transactions are
explicit: :meth:`Database.read` for reads, :meth:`Database.write` for anything that writes.
On SQLite a write transaction starts with ``BEGIN IMMEDIATE``, so a read-then-write never
fails half-way with "database is locked": writers queue on the busy timeout instead.

:meth:`Database.migrate` upgrades the schema to the newest Alembic revision shipped in
``modelbus/migrations``; concurrent callers (several nodes starting at once) are serialized
by a PostgreSQL advisory lock, or by SQLite's write lock.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Engine,
    Float,
    Table,
    create_engine,
    event,
    literal_column,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from modelbus.errors import InvalidInput, MissingExtra
from modelbus.store.migrations import upgrade_to_head
from modelbus.store.secrets import SecretBox

Dialect = Literal["sqlite", "postgresql"]

VERSION_TABLE = "modelbus_alembic_version"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# How long a connection keeps trying to switch a new file to WAL (see _wal).
WAL_SWITCH_S = 10.0
_WRITE_OPTION = "modelbus_write"


def normalize_url(url: str) -> URL:
    """``sqlite:///path`` -> ``sqlite+aiosqlite``; ``postgres(ql)://`` -> ``postgresql+asyncpg``.

    Raises :class:`InvalidInput` for anything else.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput(
            f"not a database URL: {url!r} (expected sqlite:///PATH or postgresql://...)"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "pysqlite", "aiosqlite"):
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres") and driver in ("", "asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise InvalidInput(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///PATH or postgresql://USER@HOST/DB"
    )


class Database:
    """An open database. Create with :meth:`open`; close with :meth:`close`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect: Dialect = "sqlite" if engine.dialect.name == "sqlite" else "postgresql"

    @classmethod
    async def open(
        cls, url: str, *, connect_timeout_s: float = 10.0, statement_timeout_s: float = 60.0
    ) -> Database:
        """Connect to ``url`` (see :func:`normalize_url`); no schema change is made.

        Raises :class:`MissingExtra` when ``asyncpg`` is needed but not installed, and
        :class:`InvalidInput` for an unsupported URL.
        """
        parsed = normalize_url(url)
        if parsed.get_backend_name() == "sqlite":
            return cls(_sqlite_engine(parsed))
        return cls(_postgres_engine(parsed, connect_timeout_s, statement_timeout_s))

    @property
    def url(self) -> str:
        """The URL with any password hidden, fit for logs."""
        return self.engine.url.render_as_string(hide_password=True)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside a read transaction (a consistent snapshot); rolled back at exit."""
        async with self.engine.connect() as conn, conn.begin():
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside a write transaction: committed at exit, rolled back on error.

        On SQLite the write lock is taken at the start (``BEGIN IMMEDIATE``), so writers
        queue (busy timeout) instead of failing when they upgrade a read to a write.
        """
        async with self.engine.connect() as conn:
            await conn.execution_options(**{_WRITE_OPTION: True})
            async with conn.begin():
                yield conn

    def insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT in this database's dialect, for upserts: both offer
        ``on_conflict_do_nothing()`` and ``on_conflict_do_update(index_elements=, set_=)``."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def clock(self) -> ColumnElement[float]:
        """The database server's clock, in seconds since the epoch, as an SQL expression.

        For times several nodes compare (heartbeats, leases): one clock for all of them, so
        a node whose own clock is off cannot take a lease early or look gone.
        """
        return clock_of(self.dialect)

    async def lock(self, conn: AsyncConnection, name: str) -> None:
        """Hold an exclusive lock called ``name`` until ``conn``'s transaction ends.

        For work that must not run twice at once across nodes (first-start bootstrap,
        migrations). On PostgreSQL an advisory transaction lock; on SQLite the write
        transaction's own lock already excludes every other writer.
        """
        if self.dialect == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(name)})

    async def migrate(self, *, secrets: SecretBox | None = None) -> None:
        """Upgrade the schema to the newest revision. Idempotent; safe to run concurrently.
        ``secrets``, the server's secret key, lets revisions encrypt what was stored in
        clear (listener URLs); one that must, on a store holding such rows, raises
        without it."""
        async with self.write() as conn:
            await self.lock(conn, "modelbus:migrate")
            await conn.run_sync(upgrade_to_head, secrets)

    async def close(self) -> None:
        """Close every pooled connection. The object is unusable afterwards."""
        await self.engine.dispose()


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _sqlite_engine(url: URL) -> AsyncEngine:
    if url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    _sqlite_events(engine.sync_engine)
    return engine


def sqlite_sync_engine(url: URL) -> Engine:
    """A synchronous engine (pysqlite) on the SQLite file of an async engine's ``url``, with
    the same pragmas and transactions, for work that must make one thread hop, not several.
    Its pool hands connections to any thread; ``write_options()`` on a connection makes it
    a write transaction (``BEGIN IMMEDIATE``), as :meth:`Database.write` does."""
    engine = create_engine(url.set(drivername="sqlite"))
    _sqlite_events(engine)
    return engine


def _wal(cursor: Any) -> None:
    """Put the file in WAL mode (it stays so). Switching takes a lock SQLite does not wait
    for, whatever the busy timeout: a connection opened while another holds it (several
    nodes opening a new store together) is told "database is locked" at once. A file in WAL
    mode already needs no switch; otherwise the switch is tried again for a few seconds."""
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + WAL_SWITCH_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def write_options() -> dict[str, Any]:
    """Execution options that make a connection's transaction a write transaction."""
    return {_WRITE_OPTION: True}


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit BEGIN comes too late, only
        # before the first write, so reads would not be in the transaction).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _postgres_engine(url: URL, connect_timeout_s: float, statement_timeout_s: float) -> AsyncEngine:
    if importlib.util.find_spec("asyncpg") is None:
        raise MissingExtra("postgres", "asyncpg")
    engine = create_async_engine(
        url,
        pool_pre_ping=True,
        pool_timeout=connect_timeout_s + statement_timeout_s,
        connect_args={"timeout": connect_timeout_s, "command_timeout": statement_timeout_s},
    )
    event.listen(engine.sync_engine, "handle_error", _refused_text)
    return engine


# SQLSTATEs of text PostgreSQL cannot keep: a NUL character (\x00) in a text column
# (character_not_in_repertoire), or \u0000 in JSON (untranslatable_character).
_UNKEEPABLE_TEXT = frozenset({"22021", "22P05"})


def _refused_text(context: ExceptionContext) -> InvalidInput | None:
    """PostgreSQL's refusal of text it cannot keep, as the caller's InvalidInput (SQLite
    keeps such text: a search for it finds nothing there, instead of failing)."""
    code = getattr(context.original_exception, "sqlstate", None)
    if code not in _UNKEEPABLE_TEXT:
        return None
    return InvalidInput(
        "text with a NUL character (\\x00 or \\u0000), which the store cannot keep: remove it"
    )


def clock_of(dialect: str) -> ColumnElement[float]:
    """:meth:`Database.clock` for an engine of ``dialect`` (``postgresql`` or ``sqlite``)."""
    if dialect == "postgresql":
        return literal_column("extract(epoch from clock_timestamp())::float8", Float)
    return literal_column("((julianday('now') - 2440587.5) * 86400.0)", Float)
