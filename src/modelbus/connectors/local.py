"""``local://NAME``: the embedded durable queue, a SQLite file per queue.

The file is ``DATA_DIR/queues/NAME.sqlite``; every process on the machine that opens the
same name shares the queue, and it survives crashes of any of them. It is a *queue*, like
SQS: all consumers of a name compete, whichever listener they belong to, and a message
published before any consumer exists waits for the first. To give several listeners every
message, give each its own queue (a producing listener may list several outputs).
With several nodes, a listener on a ``local://`` queue runs on one node at a time
(:func:`shared_source`).

* a received message is leased (hidden) until ``now + lease_s``; if it is not acked, released
  or extended by then, it is handed out again with its receive count (the attempt) one higher;
* ``release(delay_s)`` makes it visible again after the delay; ``extend`` pushes the lease;
* each operation is one short transaction (``BEGIN IMMEDIATE``, WAL journal), batch receive
  and batch ack included, so several processes interleave safely and a crash at any instant
  leaves every message either queued, leased (and so redelivered later) or gone after an ack;
* messages go out oldest first among the visible ones; publishing an id that is still queued
  is a no-op (publish-side dedupe of the listener's deterministic output ids).

Receivers wake as soon as a publisher of the same process commits, and poll the file
(every ``poll_ms``) for publishers in other processes. Blocking SQLite calls run on one
thread per queue handle, never on the event loop.

URL options: ``local://NAME?lease_s=30&poll_ms=100&synchronous=normal``. ``synchronous``
is SQLite's: ``normal`` (default) survives process crashes, ``full`` also power loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from modelbus.connectors.base import ConnectorContext, Delivery, OutMessage
from modelbus.errors import ConnectorError, DefinitionError

__all__ = [
    "LocalOptions",
    "LocalSink",
    "LocalSource",
    "SqliteQueue",
    "make_sink",
    "make_source",
    "parse_query",
    "queue_name",
    "shared_source",
]

T = TypeVar("T")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL,
    attributes TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    token TEXT
);
CREATE INDEX IF NOT EXISTS messages_visible_at ON messages (visible_at);
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, at REAL NOT NULL);
"""
_RECEIVE = """
UPDATE messages SET visible_at = ?, receive_count = receive_count + 1, token = ?
WHERE seq IN (SELECT seq FROM messages WHERE visible_at <= ? ORDER BY seq LIMIT ?)
RETURNING seq, id, body, attributes, enqueued_at, receive_count
"""
_PUBLISH = (
    "INSERT OR IGNORE INTO messages (id, body, attributes, enqueued_at, visible_at)"
    " VALUES (?, ?, ?, ?, ?)"
)

# In-process wake-ups: waiters per queue file, completed when a publisher of this process
# commits to that file. (Publishers in other processes are found by polling.)
_waiters: dict[str, set[asyncio.Future[None]]] = {}
_waiters_lock = threading.Lock()


def parse_query(url: str, fields: Mapping[str, Callable[[str], Any]]) -> dict[str, Any]:
    """The URL's query options converted by ``fields``; unknown or malformed ones raise
    DefinitionError naming the options that exist."""
    options: dict[str, Any] = {}
    for key, raw in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        convert = fields.get(key)
        if convert is None:
            known = ", ".join(fields) or "none"
            raise DefinitionError(f"{url}: unknown option {key!r} (options: {known})")
        try:
            options[key] = convert(raw)
        except ValueError:
            raise DefinitionError(f"{url}: option {key}={raw!r} is not valid") from None
    return options


def queue_name(url: str, name: str) -> str:
    """``name`` if it is a valid queue name, else DefinitionError."""
    if not _NAME.match(name):
        raise DefinitionError(
            f"{url}: queue name {name!r} must be letters, digits, '_', '.' or '-' "
            "(at most 200, not starting with a dot)"
        )
    return name


def _positive(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError(raw)
    return value


def _synchronous(raw: str) -> str:
    if raw.lower() not in ("normal", "full"):
        raise ValueError(raw)
    return raw.lower()


@dataclass(frozen=True, kw_only=True, slots=True)
class LocalOptions:
    """A ``local://`` URL, parsed."""

    name: str
    lease_s: float = 30.0
    poll_ms: float = 100.0
    synchronous: str = "normal"

    @classmethod
    def from_url(cls, url: str) -> LocalOptions:
        """Parse ``local://NAME?...``; raises DefinitionError."""
        parts = urlsplit(url)
        if parts.scheme != "local" or parts.path.strip("/"):
            raise DefinitionError(f"{url}: expected local://NAME")
        options = parse_query(
            url, {"lease_s": _positive, "poll_ms": _positive, "synchronous": _synchronous}
        )
        return cls(name=queue_name(url, parts.netloc), **options)

    def path(self, data_dir: Path) -> Path:
        """Where the queue's file lives."""
        return data_dir / "queues" / f"{self.name}.sqlite"


class SqliteQueue:
    """One handle on a queue file. Each method is one short transaction on a private thread.

    Raises ConnectorError (transient) when SQLite fails (disk full, file locked too long).
    """

    def __init__(self, path: Path, *, synchronous: str = "normal") -> None:
        self.path = path
        self._synchronous = synchronous
        self._key = str(path)
        self._conn: _Connection | None = None

    async def open(self) -> None:
        """Create the file (and its folder) if needed and connect. Idempotent."""
        if self._conn is not None:
            return
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"local-{self.path.stem}")
        try:
            db = await _translated(
                self.path, asyncio.get_running_loop().run_in_executor(executor, self._connect)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        if self._conn is None:
            self._conn = _Connection(executor, db)
        else:  # another open() won the race
            executor.submit(db.close)
            executor.shutdown(wait=False)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(100):
            db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            try:
                _prepare(db, self._synchronous)
            except sqlite3.OperationalError as exc:
                db.close()
                # Switching to WAL and creating the schema race with other processes doing
                # the same; SQLite reports that as "locked" without waiting. Try again.
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.01 + 0.002 * attempt)
                continue
            return db
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Disconnect (after the operations already under way). Leased messages stay leased
        until their lease runs out."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        await asyncio.get_running_loop().run_in_executor(conn.executor, conn.db.close)
        await asyncio.to_thread(conn.executor.shutdown, True)

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Append ``messages`` durably; ids still queued are skipped."""
        now = time.time()
        rows = [(m.id, bytes(m.body), _dump(m.attributes), now, now) for m in messages]
        await self._write(_many(_PUBLISH, rows))
        _notify(self._key)

    async def publish_unseen(self, entries: Sequence[tuple[str, OutMessage]]) -> int:
        """Publish each message whose ``seen`` key was never recorded, and record the keys,
        in one transaction. Returns how many were published."""
        now = time.time()

        def write(db: sqlite3.Connection) -> int:
            count = 0
            for key, m in entries:
                if db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (key, now)).rowcount:
                    db.execute(_PUBLISH, (m.id, bytes(m.body), _dump(m.attributes), now, now))
                    count += 1
            return count

        published = await self._write(write)
        if published:
            _notify(self._key)
        return published

    async def receive(
        self, max_messages: int, lease_s: float
    ) -> tuple[list[Delivery], float | None]:
        """Lease up to ``max_messages`` visible messages, oldest first. Also returns when the
        next message becomes visible (epoch seconds) if none was, so callers can sleep."""

        def take(db: sqlite3.Connection) -> tuple[list[Delivery], float | None]:
            now = time.time()
            token = uuid.uuid4().hex
            rows = db.execute(_RECEIVE, (now + lease_s, token, now, max_messages)).fetchall()
            if not rows:
                row = db.execute("SELECT MIN(visible_at) FROM messages").fetchone()
                return [], row[0]
            rows.sort()
            return [_delivery(row, token) for row in rows], None

        return await self._write(take)

    async def ack(self, handles: Sequence[Any]) -> None:
        """Delete the messages behind ``handles``; stale handles (lease lapsed and the message
        taken by someone else) are ignored."""
        params = list(handles)
        await self._write(_many("DELETE FROM messages WHERE seq = ? AND token = ?", params))

    async def set_visible(self, handles: Sequence[Any], delay_s: float, *, release: bool) -> None:
        """Hide the messages behind ``handles`` until ``delay_s`` from now; ``release`` also
        ends this consumer's lease (the next receive counts as a new attempt)."""
        until = time.time() + delay_s
        sql = "UPDATE messages SET visible_at = ?" + (", token = NULL" if release else "")
        params = [(until, seq, token) for seq, token in handles]
        await self._write(_many(sql + " WHERE seq = ? AND token = ?", params))

    async def counts(self) -> tuple[int, int]:
        """(messages queued in total, messages currently leased or delayed)."""

        def count(db: sqlite3.Connection) -> tuple[int, int]:
            row = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(visible_at > ?), 0) FROM messages", (time.time(),)
            ).fetchone()
            return int(row[0]), int(row[1])

        return await self._run(count)

    def waiter(self) -> asyncio.Future[None]:
        """A future completed when a publisher of this process next commits to the file."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with _waiters_lock:
            _waiters.setdefault(self._key, set()).add(future)
        return future

    def forget(self, future: asyncio.Future[None]) -> None:
        with _waiters_lock:
            waiting = _waiters.get(self._key)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del _waiters[self._key]

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def transaction(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return await self._run(transaction)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the connection's own thread. The connection is picked now, so an
        operation under way when the queue is closed and reopened stays on its thread."""
        conn = self._conn
        if conn is None:
            raise ConnectorError(f"local queue {self.path.stem} is not open")
        loop = asyncio.get_running_loop()
        try:
            running = loop.run_in_executor(conn.executor, fn, conn.db)
        except RuntimeError as exc:  # closed meanwhile: the executor refuses new work
            raise ConnectorError(f"local queue {self.path.stem} is closed") from exc
        return await _translated(self.path, running)


@dataclass(frozen=True, slots=True)
class _Connection:
    """One SQLite connection and the only thread that uses it."""

    executor: ThreadPoolExecutor
    db: sqlite3.Connection


async def _translated(path: Path, running: Awaitable[T]) -> T:
    try:
        return await running
    except sqlite3.Error as exc:
        raise ConnectorError(f"local queue {path.stem}: {exc}") from exc
    except OSError as exc:
        raise ConnectorError(f"local queue {path.stem}: {exc.strerror or exc}") from exc


def _many(sql: str, rows: Sequence[Sequence[Any]]) -> Callable[[sqlite3.Connection], None]:
    """A statement run once per row. It returns nothing on purpose: a cursor must never
    reach the event loop's thread, whose garbage collector would then finalise it while the
    queue's own thread uses the connection (SQLite "API misuse", even a crash)."""

    def run(db: sqlite3.Connection) -> None:
        db.executemany(sql, rows).close()

    return run


def _prepare(db: sqlite3.Connection, synchronous: str) -> None:
    if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous.upper()}")
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'seen'").fetchone() is None:
        db.executescript(_SCHEMA)


def _dump(attributes: Mapping[str, str]) -> str:
    return json.dumps(dict(attributes), separators=(",", ":")) if attributes else "{}"


def _delivery(row: tuple[Any, ...], token: str) -> Delivery:
    seq, message_id, body, attributes, enqueued_at, receive_count = row
    return Delivery(
        message_id=message_id,
        body=bytes(body),
        attributes=json.loads(attributes),
        attempt=receive_count,
        enqueued_at=enqueued_at,
        handle=(seq, token),
    )


def _notify(key: str) -> None:
    with _waiters_lock:
        waiting = _waiters.pop(key, set())
    for future in waiting:
        future.get_loop().call_soon_threadsafe(_wake, future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class LocalSource:
    """A consumer of a ``local://`` queue."""

    def __init__(self, queue: SqliteQueue, *, lease_s: float, poll_ms: float) -> None:
        self.queue = queue
        self._lease_s = lease_s
        self._poll_s = poll_ms / 1000

    @property
    def lease_s(self) -> float:
        return self._lease_s

    async def open(self) -> None:
        await self.queue.open()

    async def receive(self, max_messages: int, wait_s: float) -> list[Delivery]:
        deadline = time.time() + wait_s
        while True:
            waiter = self.queue.waiter()
            try:
                taken, next_at = await self.queue.receive(max_messages, self._lease_s)
                if taken or time.time() >= deadline:
                    return taken
                await self._sleep(waiter, deadline=deadline, next_at=next_at)
            finally:
                self.queue.forget(waiter)

    async def _sleep(
        self, waiter: asyncio.Future[None], *, deadline: float, next_at: float | None
    ) -> None:
        """Until a publish in this process, the next delayed message, the next poll or the
        deadline (epoch seconds), whichever comes first."""
        now = time.time()
        sleep_s = min(deadline - now, self._poll_s)
        if next_at is not None:
            sleep_s = min(sleep_s, max(0.0, next_at - now))
        if sleep_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, sleep_s)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        await self.queue.ack([d.handle for d in deliveries])

    async def release(self, delivery: Delivery, delay_s: float) -> None:
        await self.queue.set_visible([delivery.handle], delay_s, release=True)

    async def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        await self.queue.set_visible([d.handle for d in deliveries], lease_s, release=False)

    async def backlog(self) -> int:
        """The rows ready to be received now (leased rows and delayed retries not counted):
        one ``COUNT`` on the file."""
        total, hidden = await self.queue.counts()
        return total - hidden

    async def close(self) -> None:
        await self.queue.close()


class LocalSink:
    """A publisher to a ``local://`` queue."""

    def __init__(self, queue: SqliteQueue) -> None:
        self.queue = queue

    async def open(self) -> None:
        await self.queue.open()

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        if messages:
            await self.queue.publish(messages)

    async def close(self) -> None:
        await self.queue.close()


def make_source(url: str, ctx: ConnectorContext) -> LocalSource:
    """A source on the queue file ``ctx.data_dir/queues/NAME.sqlite``."""
    options = LocalOptions.from_url(url)
    queue = SqliteQueue(options.path(ctx.data_dir), synchronous=options.synchronous)
    return LocalSource(queue, lease_s=options.lease_s, poll_ms=options.poll_ms)


def shared_source(url: str) -> bool:
    """False: the queue file is in one machine's data directory, so a listener on it runs on
    one node at a time (see :mod:`modelbus.connectors.base`)."""
    LocalOptions.from_url(url)
    return False


def make_sink(url: str, ctx: ConnectorContext) -> LocalSink:
    """A sink on the queue file ``ctx.data_dir/queues/NAME.sqlite``."""
    options = LocalOptions.from_url(url)
    return LocalSink(SqliteQueue(options.path(ctx.data_dir), synchronous=options.synchronous))
