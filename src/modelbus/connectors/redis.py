"""Redis Streams: a Source (consumer groups) and a Sink (``XADD``).

URL::

    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]?stream=NAME&...
    rediss://...                      (TLS; add ca_file=PATH for a private CA)

The password (and ACL user) come from the URL, percent-encoded where needed.

Query options:

* ``stream`` (required): the stream's key.
* ``group`` (source): the consumer group; default ``modelbus-LISTENER``, so every listener on
  a stream gets every message (fan-out) while the replicas of one listener, which share the
  group, compete for them.
* ``consumer`` (source): this consumer's name in the group; default unique per source
  (``HOST-PID-RANDOM``). Consumer names carry no state worth keeping: pending deliveries of a
  consumer that went away are claimed by the others.
* ``lease_s`` (source, default 30): how long a delivery stays with its consumer before
  another consumer of the group may claim it (its idle time in the pending entries list).
* ``start`` (source): where a new group starts: ``all`` (default: everything the stream
  still holds) or ``new`` (only entries added from now on). Ignored for an existing group.
* ``delete_acked`` (source, default false): ``XDEL`` entries once this group acked them.
  Only for a stream read by one group: another listener would lose them.
* ``maxlen`` (sink): trim the stream to about this many entries on every ``XADD``
  (``MAXLEN ~``). Trimming drops the oldest entries whether or not every group has read
  them: size it for the largest backlog you accept.
* ``body_field`` (default ``body``): the field holding the body. Every other field is an
  attribute. An entry without that field (written by another producer as a plain field map)
  is delivered with the JSON object of all its fields as body and no attributes.
* ``create`` (default false): create the stream when it is missing. Without it a missing
  stream is a ConnectorConfigError, as for any broker's missing queue.
* ``wait_replicas`` (sink, default 0): after each batch, ``WAIT`` for this many replicas
  to have it, else fail (transient). With 0, "durable" means what the server's own
  persistence (AOF, RDB) makes of an accepted write.
* ``timeout_s`` (default 10): the deadline of every command (plus the blocking wait of a
  read).
* ``ca_file`` (``rediss://``): a PEM file of CA certificates to verify the server with.

Source. Entries are read with ``XREADGROUP ... COUNT n BLOCK ms``. ``Delivery.message_id``
is the entry id (``1700000000000-0``) and stays the same across releases, ``enqueued_at``
the time in that id, ``attempt`` the entry's delivery count from the group's pending
entries list (1 on the first delivery) plus the attempts carried by a released copy.

* ``ack`` is one pipelined ``XACK`` per stream (with ``XDEL`` where entries are deleted).
* ``extend(lease_s)`` sets the entry's idle time (``XCLAIM ... IDLE ms JUSTID`` to itself,
  in a script that first checks the entry is still this consumer's, so it never takes back
  an entry another consumer has claimed) so that it reaches the URL's ``lease_s``, and a
  claim becomes possible, exactly ``lease_s`` from now. A lease longer than the URL's is
  renewed by the source itself every third of a lease until it is due (it lapses one URL
  lease after the process dies).
* Deliveries of a consumer that died (idle past ``lease_s``) are claimed with
  ``XAUTOCLAIM`` by whichever consumer of the group scans next: every consumer scans every
  quarter lease (at least every 5 s) while receiving, so one live consumer is enough to
  recover them all. Entries trimmed away while pending are logged as lost (the trim
  policy's doing).
* ``release(delay_s)`` cannot leave the entry in the stream (Redis has no per-entry delay,
  and a copy added to the shared stream would reach every other group too). A script,
  atomically, adds a copy of the entry (its fields, the original id and the attempts so
  far) to the group's own *parking* stream, schedules it in the group's *due* sorted set,
  and acks the original: so the message is in exactly one place at every instant. A due
  copy is moved into the group's *retry* stream, read by the group like the main one (about
  once a second, and at once when this consumer knows one is due), and deleted when acked.
  Only the consumer holding the entry can release it; a release of an entry whose lease ran
  out and that another consumer claimed does nothing.

Keys kept per group, beside the stream: ``STREAM:modelbus:GROUP:retry`` (stream),
``...:parking`` (stream) and ``...:due`` (sorted set). On Redis Cluster, put a hash tag in
the stream name (``{orders}``) so they share its slot.

Sink. ``publish`` is one pipelined ``XADD`` per message (``MAXLEN ~`` when ``maxlen`` is
set), body in ``body_field`` and attributes as fields; names ``body_field`` and
``modelbus-redis-*`` are reserved and refused as attribute names. Redis has no publish-side
dedupe: a republished batch adds its entries again (downstream dedupe is by the runtime).

Both ends translate redis-py exceptions at the edge: bad credentials, a wrong key type or a
missing stream or group raise ConnectorConfigError; an unreachable or restarting server
(connection refused, ``LOADING``), a timeout or anything else raise a transient
ConnectorError. Messages name the listener and the stream, never the password.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from modelbus.connectors.base import Backlog, ConnectorContext, Delivery, OutMessage
from modelbus.connectors.leases import Holds
from modelbus.connectors.urls import parse_bool, parse_float, parse_int, parse_query, redact_url
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError, MissingExtra

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = [
    "ATTEMPTS_FIELD",
    "ORIGIN_FIELD",
    "RedisHandle",
    "RedisSettings",
    "RedisSink",
    "RedisSource",
    "backlog",
    "make_sink",
    "make_source",
]

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 30.0
DEFAULT_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
ORIGIN_FIELD = "modelbus-redis-origin"
ATTEMPTS_FIELD = "modelbus-redis-attempts"
_RESERVED = frozenset({ORIGIN_FIELD.encode(), ATTEMPTS_FIELD.encode()})
# How often a receiving consumer moves due retries and reads the group's retry stream.
_TICK_S = 1.0
_MAX_CLAIM_INTERVAL_S = 5.0
_PROMOTE_BATCH = 500
# Consumers with nothing pending and silent this long are removed from the group.
_SWEEP_INTERVAL_S = 300.0
_DEAD_CONSUMER_IDLE_MS = 600_000

_OPTIONS = frozenset(
    {
        "stream",
        "group",
        "consumer",
        "lease_s",
        "start",
        "delete_acked",
        "maxlen",
        "body_field",
        "create",
        "wait_replicas",
        "timeout_s",
        "ca_file",
    }
)

# KEYS: source stream, parking stream, due zset.
# ARGV: group, consumer, entry id, delay ms, delete source entry (0/1), field, value, ...
_RELEASE = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[4])
local parked = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 6))
redis.call('ZADD', KEYS[3], due, parked)
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
if ARGV[5] == '1' then redis.call('XDEL', KEYS[1], ARGV[3]) end
return 1
"""

# KEYS: parking stream, due zset, retry stream. ARGV: limit.
# Returns {moved, ms until the next due copy (or -1)}.
_PROMOTE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do
  local e = redis.call('XRANGE', KEYS[1], id, id)
  if e[1] then
    redis.call('XADD', KEYS[3], '*', unpack(e[1][2]))
    redis.call('XDEL', KEYS[1], id)
  end
  redis.call('ZREM', KEYS[2], id)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local wait = -1
if nxt[2] then wait = math.max(0, tonumber(nxt[2]) - now) end
return {#ids, wait}
"""

# KEYS: main stream, retry stream. ARGV: group, consumer, min idle ms, cursor 1, cursor 2,
# count. For each stream scanned: {next cursor, entries, delivery counts, deleted ids}.
_CLAIM = """
local out = {}
local left = tonumber(ARGV[6])
for i = 1, 2 do
  if left <= 0 then break end
  local r = redis.call('XAUTOCLAIM', KEYS[i], ARGV[1], ARGV[2], ARGV[3], ARGV[3 + i],
                      'COUNT', left)
  local entries, counts = {}, {}
  for _, e in ipairs(r[2]) do
    if e and e[2] then
      local p = redis.call('XPENDING', KEYS[i], ARGV[1], e[1], e[1], 1)
      entries[#entries + 1] = e
      counts[#counts + 1] = p[1] and p[1][4] or 1
    end
  end
  out[i] = {r[1], entries, counts, r[3] or {}}
  left = left - #entries
end
return out
"""

# KEYS: stream. ARGV: group, consumer, idle ms, entry id, ... Returns how many were extended.
_EXTEND = """
local n = 0
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    n = n + 1
  end
end
return n
"""

# KEYS: main stream, retry stream. ARGV: group, consumer (or '' for every silent consumer),
# min idle ms. Removes consumers with nothing pending; returns how many.
_FORGET = """
local n = 0
for i = 1, 2 do
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[i], ARGV[1])) do
    local info = {}
    for j = 1, #c, 2 do info[c[j]] = c[j + 1] end
    local mine = ARGV[2] == '' or info['name'] == ARGV[2]
    if mine and info['pending'] == 0 and info['idle'] >= tonumber(ARGV[3]) then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[i], ARGV[1], info['name'])
      n = n + 1
    end
  end
end
return n
"""


def _require_redis() -> None:
    try:
        import redis.asyncio  # noqa: F401
    except ImportError as exc:
        raise MissingExtra("redis", "redis") from exc


# ------------------------------------------------------------------------------------- URLs


@dataclass(frozen=True, kw_only=True, slots=True)
class RedisSettings:
    """A ``redis://`` or ``rediss://`` URL, parsed and checked (options: module docstring)."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    stream: str
    group: str | None = None
    consumer: str | None = None
    lease_s: float = DEFAULT_LEASE_S
    start: Literal["all", "new"] = "all"
    delete_acked: bool = False
    maxlen: int | None = None
    body_field: str = "body"
    create: bool = False
    wait_replicas: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_url(cls, url: str) -> RedisSettings:
        """Parse ``url``. Raises DefinitionError if it is malformed."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("redis", "rediss"):
            raise DefinitionError(f"{redact_url(url)!r} is not a redis:// or rediss:// URL")
        query = parse_query(url, _OPTIONS)
        stream = query.get("stream", "")
        if not stream:
            raise DefinitionError(f"{redact_url(url)!r}: say which stream: ?stream=NAME")
        try:
            port = parts.port or 6379
        except ValueError:
            raise DefinitionError(f"{redact_url(url)!r}: the port is not a number") from None
        start = query.get("start") or "all"
        if start not in ("all", "new"):
            raise DefinitionError(f"option start={start!r} must be all or new")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            db=_db_of(parts.path, url),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=parts.scheme.lower() == "rediss",
            ca_file=query.get("ca_file") or None,
            stream=stream,
            group=query.get("group") or None,
            consumer=query.get("consumer") or None,
            lease_s=parse_float(query, "lease_s", DEFAULT_LEASE_S, low=0.1, high=86400),
            start="new" if start == "new" else "all",
            delete_acked=parse_bool(query, "delete_acked"),
            maxlen=parse_int(query, "maxlen", low=1, high=2**63 - 1),
            body_field=query.get("body_field") or "body",
            create=parse_bool(query, "create"),
            wait_replicas=parse_int(query, "wait_replicas", low=0, high=1000, default=0) or 0,
            timeout_s=parse_float(query, "timeout_s", DEFAULT_TIMEOUT_S, low=0.1, high=3600),
        )

    def group_for(self, listener: str) -> str:
        """The consumer group of ``listener``'s source: the URL's ``group``, else
        ``modelbus-LISTENER``."""
        return self.group or f"modelbus-{listener}"

    @property
    def address(self) -> str:
        """``redis://HOST:PORT/DB``, with no credentials: for messages and logs."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"


def _db_of(path: str, url: str) -> int:
    text = path.strip("/")
    if not text:
        return 0
    if not text.isdigit():
        raise DefinitionError(f"{redact_url(url)!r}: the path must be a database number, like /0")
    return int(text)


# ------------------------------------------------------------------------------ connection


class _Connection:
    """One redis-py client, with every call under a deadline and its errors translated."""

    def __init__(self, settings: RedisSettings, listener: str) -> None:
        self.settings = settings
        self.listener = listener
        self.what = f"Redis stream {settings.stream!r} at {settings.address}"
        self._client: Redis | None = None

    @property
    def is_open(self) -> bool:
        return self._client is not None

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise ConnectorError(self.context("not open"))
        return self._client

    def context(self, text: str) -> str:
        """``listener 'x': TEXT (Redis stream 's' at redis://...)``."""
        return f"listener {self.listener!r}: {text} ({self.what})"

    async def open(self) -> None:
        """Create the client and check the server answers (and takes the credentials)."""
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        s = self.settings
        tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": s.ca_file} if s.tls else {}
        self._client = Redis(
            host=s.host,
            port=s.port,
            db=s.db,
            username=s.username,
            password=s.password,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=None,  # every call has its own deadline (blocking reads are long)
            # One quick retry replaces a pooled connection that died with a server restart;
            # anything longer is the listener runtime's to retry.
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
            protocol=2,
            **tls,
        )
        try:
            await self.call("PING")
        except BaseException:
            await self.close()
            raise

    def script(self, lua: str) -> AsyncScript:
        """A registered script (redis-py loads it again after a server restart)."""
        return self.client.register_script(lua)

    async def call(self, *args: Any, block_s: float = 0.0, **options: Any) -> Any:
        """One command; ``block_s`` lengthens the deadline for a blocking read."""
        command = self.client.execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return await self.guard(command, args[0], block_s)

    async def guard(self, awaitable: Awaitable[Any], operation: str, block_s: float = 0.0) -> Any:
        """Await ``awaitable`` under the deadline, translating redis-py's exceptions."""
        from redis.exceptions import RedisError

        timeout_s = self.settings.timeout_s + block_s
        try:
            async with asyncio.timeout(timeout_s):
                return await awaitable
        except TimeoutError as exc:
            raise ConnectorError(
                self.context(f"{operation}: no answer in {timeout_s:g} s")
            ) from exc
        except RedisError as exc:
            raise _translate(exc, self.context(f"{operation} failed: {exc}")) from exc
        except OSError as exc:
            raise ConnectorError(self.context(f"{operation} failed: {exc}")) from exc

    async def check_stream(self) -> bool:
        """Whether the stream exists. Raises ConnectorConfigError if the key holds something
        else, or is missing and ``create`` is off."""
        kind = _text(await self.call("TYPE", self.settings.stream))
        if kind == "stream":
            return True
        if kind != "none":
            raise ConnectorConfigError(self.context(f"the key holds a {kind}, not a stream"))
        if not self.settings.create:
            raise ConnectorConfigError(
                self.context("the stream does not exist")
                + "; create it, or add create=true to the URL"
            )
        return False

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    await client.aclose()
            except Exception:
                log.debug("%s: close failed", self.what, exc_info=True)


def _translate(exc: Exception, message: str) -> ConnectorError:
    """redis-py's exception as a ConnectorError (permanent when configuration must change)."""
    from redis import exceptions as rx

    if isinstance(exc, rx.AuthenticationError | rx.AuthorizationError | rx.NoPermissionError):
        return ConnectorConfigError(message)
    text = str(exc)
    code = text.split(" ", 1)[0].upper()
    if isinstance(exc, rx.ResponseError) and (
        code in ("NOAUTH", "WRONGPASS", "NOPERM", "WRONGTYPE", "NOGROUP")
        or "AUTH" in code
        or "without any password configured" in text
    ):
        return ConnectorConfigError(message)
    return ConnectorError(message)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# ----------------------------------------------------------------------------------- source


@dataclass(frozen=True, slots=True)
class RedisHandle:
    """A Redis delivery's handle: the stream key the entry was read from (the main stream
    or the group's retry stream), its entry id there, and its raw fields (a release copies
    them)."""

    stream: str
    entry_id: str
    fields: Mapping[bytes, bytes]


@dataclass(frozen=True, slots=True)
class _Keys:
    main: str
    retry: str
    parking: str
    due: str

    @classmethod
    def of(cls, stream: str, group: str) -> _Keys:
        prefix = f"{stream}:modelbus:{group}"
        return cls(stream, f"{prefix}:retry", f"{prefix}:parking", f"{prefix}:due")


class RedisSource:
    """Receives from one stream through a consumer group (see the module docstring).
    receive, ack, release and extend may run concurrently (each takes its own connection
    from the pool); receive itself is not meant to run twice at once on one source."""

    def __init__(self, settings: RedisSettings, ctx: ConnectorContext) -> None:
        self.settings = settings
        self.group = settings.group_for(ctx.listener)
        self.consumer = settings.consumer or _consumer_name()
        self._keys = _Keys.of(settings.stream, self.group)
        self._redis = _Connection(settings, ctx.listener)
        self._claim_every_s = min(max(settings.lease_s / 4, 0.05), _MAX_CLAIM_INTERVAL_S)
        self._next_claim = 0.0  # time.monotonic() of the next XAUTOCLAIM scan
        self._next_tick = 0.0  # ... of the next promotion of due retries
        self._next_sweep = 0.0
        self._cursors = ["0-0", "0-0"]
        self._scripts: dict[str, AsyncScript] = {}
        self._holds = Holds(settings.lease_s, self._reset_idle, self._redis.what)

    @property
    def lease_s(self) -> float:
        """The URL's ``lease_s``: idle time after which another consumer may claim a delivery."""
        return self.settings.lease_s

    async def open(self) -> None:
        """Connect, check the stream (creating it with ``create=true``) and create the
        group on the stream and on the group's retry stream if missing. Raises
        ConnectorConfigError for bad credentials, a missing stream or a key of another
        type, ConnectorError if the server cannot be reached."""
        await self._redis.open()
        try:
            await self._redis.check_stream()
            start = "$" if self.settings.start == "new" else "0"
            await self._create_group(self._keys.main, start)
            await self._create_group(self._keys.retry, "0")
            self._scripts = {
                name: self._redis.script(lua)
                for name, lua in (
                    ("release", _RELEASE),
                    ("promote", _PROMOTE),
                    ("claim", _CLAIM),
                    ("extend", _EXTEND),
                    ("forget", _FORGET),
                )
            }
        except BaseException:
            await self._redis.close()
            raise

    async def _create_group(self, key: str, start: str) -> None:
        try:
            await self._redis.call("XGROUP", "CREATE", key, self.group, start, "MKSTREAM")
        except ConnectorError as exc:
            if "BUSYGROUP" not in str(exc.__cause__):
                raise

    async def receive(self, max_messages: int, wait_s: float) -> list[Delivery]:
        """Up to ``max_messages`` deliveries, waiting at most ``wait_s`` for the first:
        first the entries of dead consumers (when a claim scan is due), then due retries,
        then new entries (``XREADGROUP BLOCK``). Raises ConnectorError when Redis fails."""
        if max_messages < 1:
            return []
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            now = time.monotonic()
            if now >= self._next_claim:
                got = await self._claim(max_messages)
                if got:
                    return got
            if now >= self._next_tick:
                got = await self._tick(max_messages)
                if got:
                    return got
            block_s = min(deadline, self._next_tick, self._next_claim) - time.monotonic()
            got = await self._read(self._keys.main, max_messages, block_s)
            if got or time.monotonic() >= deadline:
                return got

    async def _read(self, key: str, count: int, block_s: float) -> list[Delivery]:
        args: list[Any] = ["XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count]
        block_ms = int(block_s * 1000)
        if block_ms > 0:  # BLOCK 0 would wait forever
            args += ["BLOCK", block_ms]
        answer = await self._redis.call(*args, "STREAMS", key, ">", block_s=max(block_s, 0))
        return [
            self._delivery(key, entry_id, fields, 1)
            for _stream, entries in answer or []
            for entry_id, fields in entries
            if fields is not None
        ]

    async def _tick(self, count: int) -> list[Delivery]:
        """Move due retries into the retry stream and read it (one round trip)."""
        keys = self._keys
        client = self._redis.client
        async with client.pipeline(transaction=False) as pipe:
            await self._scripts["promote"](
                keys=[keys.parking, keys.due, keys.retry], args=[_PROMOTE_BATCH], client=pipe
            )
            pipe.execute_command(
                "XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count,
                "STREAMS", keys.retry, ">",
            )  # fmt: skip
            (moved, wait_ms), answer = await self._redis.guard(pipe.execute(), "retry")
        now = time.monotonic()
        got = [
            self._delivery(keys.retry, entry_id, fields, 1)
            for _stream, entries in answer or []
            for entry_id, fields in entries
            if fields is not None
        ]
        more = moved >= _PROMOTE_BATCH or len(got) >= count
        wait_s = _TICK_S if wait_ms < 0 else min(_TICK_S, wait_ms / 1000)
        self._next_tick = now if more else now + wait_s
        return got

    async def _claim(self, count: int) -> list[Delivery]:
        """Claim deliveries idle past the lease (their consumer died), both streams."""
        keys = self._keys
        lease_ms = int(self.settings.lease_s * 1000)
        answer = await self._redis.guard(
            self._scripts["claim"](
                keys=[keys.main, keys.retry],
                args=[self.group, self.consumer, lease_ms, *self._cursors, count],
            ),
            "XAUTOCLAIM",
        )
        got: list[Delivery] = []
        for i, (cursor, entries, counts, deleted) in enumerate(answer):
            key = (keys.main, keys.retry)[i]
            self._cursors[i] = _text(cursor)
            for (entry_id, flat), delivered in zip(entries, counts, strict=True):
                got.append(self._delivery(key, entry_id, _pairs(flat), int(delivered)))
            if deleted:
                log.warning(
                    "%s: %d pending entries were trimmed from %s before being acked: lost",
                    self._redis.context("claim"), len(deleted), key,
                )  # fmt: skip
        scan_done = all(c == "0-0" for c in self._cursors)
        now = time.monotonic()
        self._next_claim = now + self._claim_every_s if scan_done else now
        if now >= self._next_sweep:
            await self._forget("", _DEAD_CONSUMER_IDLE_MS)
            self._next_sweep = now + _SWEEP_INTERVAL_S
        return got

    def _delivery(
        self, key: str, entry_id: Any, fields: dict[bytes, bytes], delivered: int
    ) -> Delivery:
        entry = _text(entry_id)
        origin = fields.get(ORIGIN_FIELD.encode())
        carried = fields.get(ATTEMPTS_FIELD.encode())
        message_id = _text(origin) if origin else entry
        body, attributes = _decode_fields(fields, self.settings.body_field.encode())
        return Delivery(
            message_id=message_id,
            body=body,
            attributes=attributes,
            attempt=int(carried or 0) + delivered,
            enqueued_at=_entry_time_s(message_id),
            handle=RedisHandle(stream=key, entry_id=entry, fields=fields),
        )

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Settle deliveries for good: one pipelined ``XACK`` per stream (and ``XDEL`` of
        retry copies, and of main entries with ``delete_acked``). Idempotent; acking an
        entry another consumer has claimed since is harmless. Raises ConnectorError."""
        if not deliveries:
            return
        self._holds.forget(deliveries)
        by_stream = _ids_by_stream(deliveries)
        async with self._redis.client.pipeline(transaction=False) as pipe:
            for key, ids in by_stream.items():
                pipe.execute_command("XACK", key, self.group, *ids)
                if key != self._keys.main or self.settings.delete_acked:
                    pipe.execute_command("XDEL", key, *ids)
            await self._redis.guard(pipe.execute(), "XACK")

    async def release(self, delivery: Delivery, delay_s: float) -> None:
        """Hand the delivery out again, to any consumer of the group, no sooner than
        ``delay_s`` from now, with one more attempt and the same message id (see the module
        docstring). A no-op if the entry is no longer this consumer's. Raises
        ConnectorError."""
        handle = _handle(delivery)
        self._holds.forget([delivery])
        keys = self._keys
        delay_ms = max(0, int(delay_s * 1000))
        delete = handle.stream != keys.main or self.settings.delete_acked
        await self._redis.guard(
            self._scripts["release"](
                keys=[handle.stream, keys.parking, keys.due],
                args=[
                    self.group,
                    self.consumer,
                    handle.entry_id,
                    delay_ms,
                    "1" if delete else "0",
                    *_copy_fields(handle.fields, delivery),
                ],
            ),
            "release",
        )
        # A release this consumer will see due: look for it then rather than a tick later.
        self._next_tick = min(self._next_tick, time.monotonic() + delay_ms / 1000)

    async def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        """Keep the deliveries from other consumers for ``lease_s`` more seconds: their idle
        time is reset so that it reaches the URL's ``lease_s`` exactly then; a longer lease
        is renewed by this source every third of a lease until it is due (see
        :class:`~modelbus.connectors.leases.Holds`). Entries another consumer has claimed
        since are left alone. Raises ConnectorError."""
        if not deliveries:
            return
        now = time.monotonic()
        covered_s = await self._reset_idle(deliveries, lease_s)
        if lease_s > covered_s:
            self._holds.hold(deliveries, until=now + lease_s, covered=now + covered_s)
        else:
            self._holds.forget(deliveries)

    async def _reset_idle(self, deliveries: Sequence[Delivery], lease_s: float) -> float:
        """Set the entries' idle time so a claim can take them in ``lease_s`` (at most one
        URL lease); returns the seconds so covered."""
        covered_s = min(max(0.0, lease_s), self.settings.lease_s)
        idle_ms = int((self.settings.lease_s - covered_s) * 1000)
        async with self._redis.client.pipeline(transaction=False) as pipe:
            for key, ids in _ids_by_stream(deliveries).items():
                await self._scripts["extend"](
                    keys=[key], args=[self.group, self.consumer, idle_ms, *ids], client=pipe
                )
            await self._redis.guard(pipe.execute(), "XCLAIM")
        return covered_s

    async def backlog(self) -> int | None:
        """The group's lag: entries of the stream (and of the group's retry stream, where
        due retries go) not yet delivered to this group, from ``XINFO GROUPS`` (Redis 7+).
        Entries delivered but not acked, and retries not yet due, are not counted. Where
        Redis cannot say (no lag before Redis 7, or after entries were deleted from the
        middle of the stream) and the source deletes what it acks (``delete_acked``), the
        stream's length (``XLEN``) minus the group's pending entries; otherwise None."""
        total = 0
        for key in (self._keys.main, self._keys.retry):
            groups = await self._redis.guard(self._redis.client.xinfo_groups(key), "XINFO")
            group = next((g for g in groups if _text(g.get("name")) == self.group), None)
            if group is None:
                return None
            lag = group.get("lag")
            if lag is None:
                if not self.settings.delete_acked:
                    return None
                length = await self._redis.call("XLEN", key)
                lag = max(0, int(length) - int(group.get("pending") or 0))
            total += int(lag)
        return total

    async def close(self) -> None:
        """Stop renewing leases and disconnect; if nothing is pending for this consumer,
        remove it from the group. Deliveries not acked are claimed by another consumer
        once their lease is over."""
        await self._holds.close()
        if self._redis.is_open:
            try:
                await self._forget(self.consumer, 0)
            except ConnectorError:
                log.debug("%s: consumer not removed", self._redis.what, exc_info=True)
        await self._redis.close()

    async def _forget(self, consumer: str, idle_ms: int) -> None:
        keys = [self._keys.main, self._keys.retry]
        await self._redis.guard(
            self._scripts["forget"](keys=keys, args=[self.group, consumer, idle_ms]), "forget"
        )


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _handle(delivery: Delivery) -> RedisHandle:
    if not isinstance(delivery.handle, RedisHandle):
        raise ConnectorError(f"delivery {delivery.message_id!r} did not come from Redis")
    return delivery.handle


def _ids_by_stream(deliveries: Iterable[Delivery]) -> dict[str, list[str]]:
    by_stream: dict[str, dict[str, None]] = {}
    for delivery in deliveries:
        handle = _handle(delivery)
        by_stream.setdefault(handle.stream, {})[handle.entry_id] = None
    return {key: list(ids) for key, ids in by_stream.items()}


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[0::2], flat[1::2], strict=True))


def _decode_fields(
    fields: Mapping[bytes, bytes], body_field: bytes
) -> tuple[bytes, dict[str, str]]:
    """(body, attributes) of an entry's fields, without the connector's own fields."""
    plain = {k: v for k, v in fields.items() if k not in _RESERVED}
    body = plain.pop(body_field, None)
    if body is None:  # a plain field map from another producer: deliver it as JSON
        document = {_text(k): _text(v) for k, v in plain.items()}
        return json.dumps(document, ensure_ascii=False).encode(), {}
    return bytes(body), {_text(k): _text(v) for k, v in plain.items()}


def _copy_fields(fields: Mapping[bytes, bytes], delivery: Delivery) -> list[bytes]:
    """The fields of a released copy: the entry's own, its original id and attempts so far."""
    flat: list[bytes] = []
    for name, value in fields.items():
        if name not in _RESERVED:
            flat += [name, value]
    flat += [ORIGIN_FIELD.encode(), delivery.message_id.encode()]
    flat += [ATTEMPTS_FIELD.encode(), str(delivery.attempt).encode()]
    return flat


def _entry_time_s(entry_id: str) -> float | None:
    millis = entry_id.split("-", 1)[0]
    return int(millis) / 1000 if millis.isdigit() else None


# ------------------------------------------------------------------------------------- sink


class RedisSink:
    """Appends to one stream (see the module docstring)."""

    def __init__(self, settings: RedisSettings, ctx: ConnectorContext) -> None:
        self.settings = settings
        self._listener = ctx.listener
        self._redis = _Connection(settings, ctx.listener)
        head: list[Any] = ["XADD", settings.stream]
        if not settings.create:
            head.append("NOMKSTREAM")  # a stream deleted meanwhile is an error, not recreated
        if settings.maxlen is not None:
            head += ["MAXLEN", "~", settings.maxlen]
        self._head = [*head, "*"]

    async def open(self) -> None:
        """Connect and check the stream exists (or that ``create=true``). Raises like
        :meth:`RedisSource.open`."""
        await self._redis.open()
        try:
            await self._redis.check_stream()
        except BaseException:
            await self._redis.close()
            raise

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Append ``messages`` in order (one pipelined ``XADD`` each); returns once Redis has
        accepted all of them (and, with ``wait_replicas``, that many replicas have). Raises
        ConnectorError(permanent=True) before sending anything if an attribute name is
        reserved, ConnectorConfigError if the stream is gone, ConnectorError otherwise."""
        if not messages:
            return
        commands = [self._xadd(message) for message in messages]
        async with self._redis.client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            if self.settings.wait_replicas:
                wait_ms = int(self.settings.timeout_s * 1000 / 2)
                pipe.execute_command("WAIT", self.settings.wait_replicas, wait_ms)
            answers = await self._redis.guard(pipe.execute(raise_on_error=False), "XADD")
        self._check(answers[: len(commands)])
        if self.settings.wait_replicas and int(answers[-1]) < self.settings.wait_replicas:
            raise ConnectorError(
                self._redis.context(
                    f"only {answers[-1]} of {self.settings.wait_replicas} replicas have the batch"
                )
            )

    def _xadd(self, message: OutMessage) -> list[Any]:
        command = [*self._head, self.settings.body_field, message.body]
        for name, value in message.attributes.items():
            if name == self.settings.body_field or name.encode() in _RESERVED:
                raise ConnectorError(
                    self._redis.context(
                        f"message {message.id!r}: attribute name {name!r} is reserved"
                    ),
                    permanent=True,
                )
            command += [name, value]
        return command

    def _check(self, answers: Sequence[Any]) -> None:
        from redis.exceptions import RedisError

        for answer in answers:
            if isinstance(answer, RedisError):
                raise _translate(answer, self._redis.context(f"XADD failed: {answer}")) from answer
            if answer is None:
                raise ConnectorConfigError(self._redis.context("the stream no longer exists"))

    async def close(self) -> None:
        """Disconnect."""
        await self._redis.close()


def backlog(url: str, listener: str) -> Backlog:
    """Where ``listener``'s backlog is: the consumer group's lag on the stream (entries not
    yet delivered to the group). ``where``: ``host``, ``port``, ``db``, ``tls`` (``true``/
    ``false``), ``stream``, ``group``; ``secrets``: ``username`` and ``password`` when the
    URL has them. Entries waiting in the group's retry stream are not part of it. Raises
    DefinitionError for a malformed URL."""
    settings = RedisSettings.from_url(url)
    secrets = {"username": settings.username, "password": settings.password}
    return Backlog(
        broker="redis",
        where={
            "host": settings.host,
            "port": str(settings.port),
            "db": str(settings.db),
            "tls": "true" if settings.tls else "false",
            "stream": settings.stream,
            "group": settings.group_for(listener),
        },
        secrets={k: v for k, v in secrets.items() if v is not None},
    )


def make_source(url: str, ctx: ConnectorContext) -> RedisSource:
    """An unopened RedisSource for ``url``. Raises DefinitionError for a malformed URL,
    MissingExtra without redis-py (``pip install 'modelbus[redis]'``)."""
    settings = RedisSettings.from_url(url)
    _require_redis()
    return RedisSource(settings, ctx)


def make_sink(url: str, ctx: ConnectorContext) -> RedisSink:
    """An unopened RedisSink for ``url``; raises like :func:`make_source`."""
    settings = RedisSettings.from_url(url)
    _require_redis()
    return RedisSink(settings, ctx)
