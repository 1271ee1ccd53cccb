"""PostgreSQL outbox tables: a Source and a Sink, on asyncpg.

URLs::

    postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE?table=NAME&...
    postgres://...  (the same)

Query options:

* ``table`` (required): the outbox table, ``NAME`` or ``SCHEMA.NAME``.
* ``lease_s`` (source): how long a claimed row stays this consumer's unless extended
  (default 30).
* ``poll_s`` (source): the longest wait between two looks at the table when no notification
  comes (default 2): notifications are a wake-up, not the only one.
* ``application_name``: the connections' ``application_name`` (default ``modelbus:LISTENER``).
* ``create=true``: install the outbox functions and create the table when missing. For tests
  and demos; in production apply :func:`outbox_sql` and ``modelbus_create_outbox`` first.
* ``sslmode`` and the other libpq parameters asyncpg understands are not options here; put
  them in the environment (``PGSSLMODE``...).

The outbox. One table per listener, made by ``SELECT modelbus_create_outbox('NAME')`` (see
:func:`outbox_sql`, which also ships the trigger that turns inserts into a user table into
outbox rows)::

    id bigserial, payload bytea, attributes jsonb, message_id text, created_at timestamptz,
    available_at timestamptz, attempts integer, locked_until timestamptz, locked_by text

A row is one message. An ``AFTER INSERT ... FOR EACH STATEMENT`` trigger notifies the channel
named after the table (``regclass::text``), which consumers LISTEN on.

Source. ``receive`` claims up to ``max_messages`` rows that are available (``available_at``
passed) and not leased (``locked_until`` empty or passed), lowest ``id`` first, with
``FOR UPDATE SKIP LOCKED`` so that consumers never wait for each other, setting
``locked_until = now() + lease_s``, ``locked_by`` and ``attempts + 1`` in the same statement.
When nothing is claimable it waits for a notification, its own next delayed release, or
``poll_s``, whichever comes first. ``Delivery.message_id`` is the row's ``message_id`` when
the sink set one, else ``TABLE:ID``; ``attempt`` is ``attempts`` (how often the row has been
claimed); ``enqueued_at`` is ``created_at``; ``handle`` an :class:`OutboxClaim`.

``ack`` deletes the rows (the run records keep the history), ``release(delay_s)`` sets
``available_at = now() + delay_s`` and clears the lease, ``extend(lease_s)`` sets
``locked_until = now() + lease_s``. Each of them acts only on the claim it was given (the row
id *and* its ``attempts``): once a lease has run out and another consumer has claimed the
row, the old delivery's ack, release or extend does nothing.

Ordering: one consumer receives rows in ``id`` order among those claimable; released rows
come back when their delay is over, after rows inserted meanwhile. Fan-out: an outbox is a
queue whose consumers compete; to give two listeners every row, give each its own outbox
(``modelbus_capture`` takes several outbox names).

Sink. ``publish`` inserts every message as one row (``payload`` the body, ``attributes``,
``message_id`` = ``OutMessage.id``) in one statement, so all or none are stored; the insert
notifies the table's consumers. ``OutMessage.key`` is not stored (rows are ordered by id).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.resources
import json
import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from modelbus.connectors.base import Backlog, ConnectorContext, Delivery, OutMessage
from modelbus.connectors.urls import parse_bool, parse_int, parse_query, redact_url
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError, MissingExtra

__all__ = [
    "OutboxClaim",
    "OutboxSettings",
    "OutboxSink",
    "OutboxSource",
    "backlog",
    "make_sink",
    "make_source",
    "outbox_sql",
]

log = logging.getLogger(__name__)

OUTBOX_OPTIONS = frozenset({"table", "lease_s", "poll_s", "application_name", "create"})
DEFAULT_LEASE_S = 30
DEFAULT_POLL_S = 2
CONNECT_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 30.0
POOL_SIZE = 4
# Serializes "create=true" installs of the outbox functions (CREATE OR REPLACE FUNCTION
# run concurrently fails with "tuple concurrently updated").
_INSTALL_LOCK_KEY = 0x6D6F64656C627573  # "modelbus"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# A row a consumer may hold now: not waiting out a release delay (leased or not).
_AVAILABLE = "available_at <= now()"


def outbox_sql() -> str:
    """The SQL that installs the outbox functions (idempotent): ``modelbus_create_outbox``,
    its notify trigger, and ``modelbus_capture``, the trigger that turns inserts into a user
    table into events. Print it, review it, apply it with psql."""
    return importlib.resources.files(__package__).joinpath("outbox.sql").read_text("utf-8")


def _asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError as exc:
        raise MissingExtra("postgres", "asyncpg") from exc
    return asyncpg


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, kw_only=True, slots=True)
class OutboxSettings:
    """A ``postgresql://`` outbox URL, parsed and checked (see the module docstring)."""

    dsn: str
    table: str
    lease_s: int = DEFAULT_LEASE_S
    poll_s: float = DEFAULT_POLL_S
    application_name: str | None = None
    create: bool = False

    @classmethod
    def from_url(cls, url: str) -> OutboxSettings:
        """Parse ``postgresql://...?table=NAME``. Raises DefinitionError if malformed."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("postgresql", "postgres"):
            raise DefinitionError(f"{redact_url(url)!r} is not a postgresql:// URL")
        if not parts.hostname or parts.path.strip("/") == "":
            raise DefinitionError(
                f"{redact_url(url)!r}: write postgresql://USER@HOST:PORT/DATABASE?table=NAME"
            )
        query = parse_query(url, OUTBOX_OPTIONS)
        table = query.get("table") or ""
        if not all(_IDENTIFIER.fullmatch(p) for p in table.split(".")) or table.count(".") > 1:
            raise DefinitionError(
                f"option table={table!r} must be NAME or SCHEMA.NAME (letters, digits, _)"
            )
        poll_s = parse_int(query, "poll_s", low=1, high=3600)
        return cls(
            dsn=urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
            table=table,
            lease_s=parse_int(query, "lease_s", low=1, high=12 * 3600) or DEFAULT_LEASE_S,
            poll_s=float(poll_s or DEFAULT_POLL_S),
            application_name=query.get("application_name") or None,
            create=parse_bool(query, "create"),
        )

    @property
    def quoted_table(self) -> str:
        return ".".join(f'"{part}"' for part in self.table.split("."))

    @property
    def backlog_sql(self) -> str:
        """One number: the rows of the outbox available now, claimed by a consumer or not
        (rows waiting out a release delay are not counted)."""
        return f"SELECT count(*) FROM {self.quoted_table} WHERE {_AVAILABLE}"

    def where(self) -> str:
        """The table and server, for messages (no password)."""
        parts = urlsplit(self.dsn)
        host = parts.hostname or ""
        return f"outbox {self.table!r} on {host}:{parts.port or 5432}{parts.path}"


# --------------------------------------------------------------------------- errors


def _translate(exc: BaseException, what: str, listener: str) -> ConnectorError:
    """A ConnectorError (permanent for configuration problems) for an asyncpg failure."""
    asyncpg = _asyncpg()
    context = f"listener {listener!r}: {what}"
    permanent = (
        asyncpg.InvalidAuthorizationSpecificationError,  # bad user or password, pg_hba
        asyncpg.InvalidPasswordError,
        asyncpg.InvalidCatalogNameError,  # no such database
        asyncpg.UndefinedTableError,
        asyncpg.UndefinedColumnError,
        asyncpg.InsufficientPrivilegeError,
        asyncpg.InvalidSchemaNameError,
    )
    if isinstance(exc, permanent):
        return ConnectorConfigError(f"{context}: {exc}")
    if isinstance(exc, TimeoutError):
        return ConnectorError(f"{context}: timed out")
    return ConnectorError(f"{context}: {type(exc).__name__}: {exc}")


def _broken_connection_errors() -> tuple[type[BaseException], ...]:
    """Failures after which a connection is unusable (killed backend, lost socket)."""
    asyncpg = _asyncpg()
    return (
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
        TimeoutError,
    )


async def _guarded(awaitable: Any, what: str, listener: str, timeout_s: float) -> Any:
    """Await a database call with a timeout, translating its failures."""
    asyncpg = _asyncpg()
    try:
        return await asyncio.wait_for(awaitable, timeout_s)
    except (asyncpg.PostgresError, *_broken_connection_errors()) as exc:
        raise _translate(exc, what, listener) from exc


# --------------------------------------------------------------------------- shared


class _Database:
    """The pool a source or sink uses, opened and checked."""

    def __init__(self, settings: OutboxSettings, ctx: ConnectorContext) -> None:
        self.settings = settings
        self.listener = ctx.listener
        self.application_name = settings.application_name or f"modelbus:{ctx.listener}"[:63]
        self.pool: Any = None
        self.channel = ""

    def connect_options(self) -> dict[str, Any]:
        return {
            "dsn": self.settings.dsn,
            "timeout": CONNECT_TIMEOUT_S,
            "command_timeout": CALL_TIMEOUT_S,
            "server_settings": {"application_name": self.application_name},
        }

    async def open(self) -> None:
        """Create the pool, install the outbox if ``create``, resolve the table. Raises
        ConnectorConfigError if the table is missing."""
        asyncpg = _asyncpg()
        pool = asyncpg.create_pool(min_size=1, max_size=POOL_SIZE, **self.connect_options())
        what = f"connecting to {self.settings.where()}"
        self.pool = await _guarded(pool, what, self.listener, CONNECT_TIMEOUT_S * 2)
        try:
            if self.settings.create:
                await self.call("installing the outbox", self._install)
            self.channel = await self.call("checking the outbox table", self._resolve)
        except BaseException:
            await self.close()
            raise

    async def _install(self, conn: Any) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _INSTALL_LOCK_KEY)
            await conn.execute(outbox_sql())
            exists = await conn.fetchval("SELECT to_regclass($1)::text", self.settings.table)
            if exists is None:
                await conn.execute("SELECT modelbus_create_outbox($1)", self.settings.table)

    async def _resolve(self, conn: Any) -> str:
        found = await conn.fetchval("SELECT to_regclass($1)::text", self.settings.table)
        if found is None:
            raise ConnectorConfigError(
                f"listener {self.listener!r}: {self.settings.where()} does not exist; create "
                f"it with SELECT modelbus_create_outbox('{self.settings.table}') (see "
                "modelbus.connectors.postgres.outbox_sql), or add create=true to the URL"
            )
        return str(found)

    async def call(self, what: str, fn: Any, *args: Any) -> Any:
        """Run ``fn(conn, *args)`` on a pooled connection, translating failures."""
        if self.pool is None:
            raise ConnectorError(f"listener {self.listener!r}: {self.settings.where()} not open")

        broken = _broken_connection_errors()

        async def run() -> Any:
            async with self.pool.acquire(timeout=CONNECT_TIMEOUT_S) as conn:
                try:
                    return await fn(conn, *args)
                except broken:
                    conn.terminate()  # the pool opens a new one for the next call
                    raise

        return await _guarded(
            run(), f"{what} ({self.settings.where()})", self.listener, CALL_TIMEOUT_S
        )

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), CALL_TIMEOUT_S)
        except Exception:
            log.warning("closing the pool of %s failed", self.settings.where(), exc_info=True)
            pool.terminate()


# --------------------------------------------------------------------------- source


@dataclass(frozen=True, slots=True)
class OutboxClaim:
    """The handle of an outbox delivery: the row id and the ``attempts`` value of this
    claim (a later claim of the same row has a higher one)."""

    row_id: int
    attempts: int


class OutboxSource:
    """Claims rows of one outbox table; see the module docstring. Safe to call
    concurrently (receive, ack, release and extend may overlap)."""

    def __init__(self, settings: OutboxSettings, ctx: ConnectorContext) -> None:
        self.settings = settings
        self.listener = ctx.listener
        self.consumer_id = f"{ctx.listener}:{uuid.uuid4().hex[:12]}"
        self._db = _Database(settings, ctx)
        self._listen_conn: Any = None
        self._notified = asyncio.Event()
        self._next_release_at = float("inf")  # time.monotonic() of our next delayed row
        t = settings.quoted_table
        self._claim_sql = (
            f"WITH picked AS (SELECT id FROM {t} WHERE {_AVAILABLE} "
            "AND (locked_until IS NULL OR locked_until <= now()) "
            "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) "
            f"UPDATE {t} AS o SET locked_until = now() + make_interval(secs => $2), "
            "locked_by = $3, attempts = o.attempts + 1 FROM picked WHERE o.id = picked.id "
            "RETURNING o.id, o.payload, o.attributes, o.message_id, o.created_at, o.attempts"
        )
        claims = "unnest($1::bigint[], $2::int[]) AS c(id, attempts)"
        match = "o.id = c.id AND o.attempts = c.attempts"
        self._ack_sql = f"DELETE FROM {t} AS o USING {claims} WHERE {match}"
        self._extend_sql = (
            f"UPDATE {t} AS o SET locked_until = now() + make_interval(secs => $3) "
            f"FROM {claims} WHERE {match}"
        )
        self._release_sql = (
            f"UPDATE {t} SET available_at = now() + make_interval(secs => $3), "
            "locked_until = NULL, locked_by = NULL WHERE id = $1 AND attempts = $2"
        )
        self._backlog_sql = (
            f"SELECT count(*) FROM {t} WHERE {_AVAILABLE} "
            "AND (locked_until IS NULL OR locked_until <= now())"
        )

    @property
    def lease_s(self) -> float:
        """The URL's ``lease_s`` (default 30 s)."""
        return float(self.settings.lease_s)

    async def open(self) -> None:
        """Connect, check the table exists (creating it if ``create=true``) and LISTEN.
        Raises ConnectorConfigError for a missing table, database or refused credentials,
        ConnectorError if the server cannot be reached."""
        await self._db.open()
        try:
            await self._listen()
        except BaseException:
            await self._db.close()
            raise

    async def _listen(self) -> None:
        """(Re)open the LISTEN connection; a notification sets ``_notified``."""
        asyncpg = _asyncpg()
        what = f"listening on {self._db.settings.where()}"
        conn = await _guarded(
            asyncpg.connect(**self._db.connect_options()), what, self.listener, CONNECT_TIMEOUT_S
        )
        try:
            await _guarded(
                conn.add_listener(self._db.channel, self._on_notify),
                what,
                self.listener,
                CALL_TIMEOUT_S,
            )
        except BaseException:
            conn.terminate()
            raise
        self._listen_conn = conn

    def _on_notify(self, *_: Any) -> None:
        self._notified.set()

    async def receive(self, max_messages: int, wait_s: float) -> list[Delivery]:
        """Claim up to ``max_messages`` rows, waiting at most ``wait_s`` for the first
        (woken by notifications, our own delayed releases and every ``poll_s``). Raises
        ConnectorError if the database cannot be reached."""
        deadline = time.monotonic() + wait_s
        while True:
            self._notified.clear()
            rows = await self._db.call("claiming rows", self._claim, max_messages)
            if rows:
                return [self._delivery(row) for row in rows]
            now = time.monotonic()
            if now >= deadline:
                return []
            await self._relisten_if_lost()
            sleep_s = min(deadline - now, self.settings.poll_s, self._next_release_at - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._notified.wait(), max(0.0, sleep_s))

    async def _claim(self, conn: Any, limit: int) -> list[Any]:
        rows: list[Any] = await conn.fetch(
            self._claim_sql, limit, float(self.settings.lease_s), self.consumer_id
        )
        if rows and time.monotonic() >= self._next_release_at:
            self._next_release_at = float("inf")
        return sorted(rows, key=lambda row: row["id"])  # UPDATE ... RETURNING has no order

    async def _relisten_if_lost(self) -> None:
        """Reconnect the LISTEN connection if it was lost (the poll covers the gap)."""
        if self._listen_conn is not None and not self._listen_conn.is_closed():
            return
        try:
            await self._listen()
        except ConnectorError as exc:
            log.warning("%s: LISTEN lost, polling: %s", self._db.settings.where(), exc)

    def _delivery(self, row: Any) -> Delivery:
        attributes = row["attributes"]
        if isinstance(attributes, str):
            attributes = json.loads(attributes)
        created: dt.datetime | None = row["created_at"]
        return Delivery(
            message_id=row["message_id"] or f"{self.settings.table}:{row['id']}",
            body=bytes(row["payload"]),
            attributes=_attributes(attributes),
            attempt=int(row["attempts"]),
            enqueued_at=created.timestamp() if created is not None else None,
            handle=OutboxClaim(row_id=int(row["id"]), attempts=int(row["attempts"])),
        )

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Delete the claimed rows (one statement). Idempotent; a claim superseded by
        another consumer's is left alone. Raises ConnectorError if the database fails."""
        if deliveries:
            await self._db.call("acking rows", self._batch, self._ack_sql, deliveries, None)

    async def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        """Set the claimed rows' ``locked_until`` to ``lease_s`` from now. A claim that was
        superseded is left alone."""
        if deliveries:
            await self._db.call(
                "extending leases", self._batch, self._extend_sql, deliveries, float(lease_s)
            )

    async def _batch(
        self, conn: Any, sql: str, deliveries: Sequence[Delivery], seconds: float | None
    ) -> None:
        claims = [_claim_of(d) for d in deliveries]
        args: list[Any] = [[c.row_id for c in claims], [c.attempts for c in claims]]
        if seconds is not None:
            args.append(seconds)
        await conn.execute(sql, *args)

    async def release(self, delivery: Delivery, delay_s: float) -> None:
        """Make the row claimable again ``delay_s`` from now (its ``attempts`` goes up when
        it is claimed again). A superseded claim is left alone."""
        claim = _claim_of(delivery)
        delay_s = max(0.0, delay_s)
        await self._db.call("releasing a row", self._release, claim, delay_s)
        self._next_release_at = min(self._next_release_at, time.monotonic() + delay_s)
        self._notified.set()

    async def _release(self, conn: Any, claim: OutboxClaim, delay_s: float) -> None:
        async with conn.transaction():
            await conn.execute(self._release_sql, claim.row_id, claim.attempts, delay_s)
            if delay_s == 0:
                await conn.execute("SELECT pg_notify($1, '')", self._db.channel)

    async def backlog(self) -> int:
        """The rows that could be claimed now: available (not a retry waiting out its delay)
        and not locked by a consumer. One ``count(*)`` over the table (a scan of the rows
        waiting: the runtime asks every few seconds, not per message)."""
        return int(await self._db.call("counting rows", self._count))

    async def _count(self, conn: Any) -> int:
        return int(await conn.fetchval(self._backlog_sql))

    async def close(self) -> None:
        """Disconnect. Rows still claimed come back when their lease runs out."""
        conn, self._listen_conn = self._listen_conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), CALL_TIMEOUT_S)
            except Exception:
                conn.terminate()
        await self._db.close()


def _attributes(raw: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def _claim_of(delivery: Delivery) -> OutboxClaim:
    if not isinstance(delivery.handle, OutboxClaim):
        raise ConnectorError(f"delivery {delivery.message_id!r} did not come from an outbox")
    return delivery.handle


# --------------------------------------------------------------------------- sink


class OutboxSink:
    """Inserts messages as rows of one outbox table; see the module docstring."""

    def __init__(self, settings: OutboxSettings, ctx: ConnectorContext) -> None:
        self.settings = settings
        self.listener = ctx.listener
        self._db = _Database(settings, ctx)
        t = settings.quoted_table
        self._insert_sql = (
            f"INSERT INTO {t} (payload, attributes, message_id) "
            "SELECT * FROM unnest($1::bytea[], $2::jsonb[], $3::text[])"
        )

    async def open(self) -> None:
        """Connect and check the table exists (creating it if ``create=true``); raises like
        :meth:`OutboxSource.open`."""
        await self._db.open()

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Insert every message in one statement (all or none); returns once committed.
        Raises ConnectorError if the database fails."""
        if messages:
            await self._db.call("inserting rows", self._insert, messages)

    async def _insert(self, conn: Any, messages: Sequence[OutMessage]) -> None:
        await conn.execute(
            self._insert_sql,
            [m.body for m in messages],
            [json.dumps(dict(m.attributes)) for m in messages],
            [m.id for m in messages],
        )

    async def close(self) -> None:
        """Disconnect."""
        await self._db.close()


def backlog(url: str, listener: str) -> Backlog:
    """Where ``listener``'s backlog is: the rows of its outbox that are available, in flight
    or not (:attr:`OutboxSettings.backlog_sql`). ``where``: ``host``, ``port``,
    ``database``, ``user``, ``table``, ``query`` (that SQL); ``secrets``: ``url``, the
    connection URL (it may carry the password). Raises DefinitionError for a malformed
    URL."""
    settings = OutboxSettings.from_url(url)
    parts = urlsplit(settings.dsn)
    return Backlog(
        broker="postgresql",
        where={
            "host": parts.hostname or "",
            "port": str(parts.port or 5432),
            "database": parts.path.strip("/"),
            "user": unquote(parts.username or ""),
            "table": settings.table,
            "query": settings.backlog_sql,
        },
        secrets={"url": settings.dsn},
    )


def make_source(url: str, ctx: ConnectorContext) -> OutboxSource:
    """An :class:`OutboxSource` for ``url`` (unopened). Raises DefinitionError if the URL is
    malformed, MissingExtra if asyncpg is not installed."""
    settings = OutboxSettings.from_url(url)
    _asyncpg()
    return OutboxSource(settings, ctx)


def make_sink(url: str, ctx: ConnectorContext) -> OutboxSink:
    """An :class:`OutboxSink` for ``url`` (unopened); raises like :func:`make_source`."""
    settings = OutboxSettings.from_url(url)
    _asyncpg()
    return OutboxSink(settings, ctx)
