"""Apache Kafka (and Kafka-protocol brokers): a Source and a Sink, on aiokafka.

URLs::

    kafka://HOST:PORT[,HOST:PORT...]/TOPIC?group=NAME&...
    kafka://USER:PASSWORD@HOST:PORT/TOPIC?security_protocol=SASL_SSL&sasl_mechanism=SCRAM-SHA-512

Query options:

* ``group`` (source): the consumer group; default the listener's name, so every listener
  gets every message of the topic and the replicas of one listener share its partitions.
* ``offset_reset`` (source): where a group with no committed offset starts, ``earliest``
  (default: nothing published before the listener's first start is skipped) or ``latest``.
* ``ordering`` (source): ``key`` (default), ``partition`` or ``none``; see *Ordering* below.
* ``retry_topic`` (source): where released deliveries wait; default ``TOPIC.retry.GROUP``.
* ``prefetch`` (source): records fetched ahead per partition before fetching pauses (500).
* ``session_timeout_s`` (source): the group session timeout (default 10; tests lower it so
  that group joins and rebalances take about a second instead of several).
* ``linger_ms`` (sink): how long the producer waits for more records to send in one request
  (default 0: at once). Under load a few milliseconds put the results of concurrent batches
  in one request per partition; at low rates each publish waits this much longer.
* ``batch_kb`` (sink): the most one request carries per partition, in KiB (default 16, as
  Kafka's ``batch.size``; up to 16384). Records past it go in the next request.
* ``create=true``: create the topic when missing, with ``partitions`` partitions (default 1).
  For tests and demos; in production topics are infrastructure, and a missing one is an error.
* ``security_protocol`` (``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT``, ``SASL_SSL``) and
  ``sasl_mechanism`` (``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``); the SASL user and
  password are the URL's user info.

Source. The consumer joins ``group`` and subscribes to the topic and to the retry topic. A
background task fetches records into a buffer per partition (pausing a partition when
``prefetch`` records wait); :meth:`KafkaSource.receive` hands them out. ``lease_s`` is None:
a delivery stays this consumer's until it is acked or released, or until its partition is
revoked (see *Rebalances*), so there is no lease to extend and ``extend`` does nothing.

``Delivery.message_id`` is ``TOPIC:PARTITION:OFFSET`` of the original record (carried across
retries in a header), ``attributes`` the record's headers (UTF-8), ``enqueued_at`` the
original record's timestamp, ``handle`` a :class:`KafkaHandle`.

Acks and offsets. Kafka remembers one position per partition, so only a contiguous run of
completed records can be committed: ``ack`` marks records done and commits, for every
partition, the offset of its first record not done yet. An ack out of order commits nothing
past a record still in flight; a crash redelivers every record from the committed position
on (at-least-once: some acked records come again, and run dedupe makes that harmless).

Retries. ``release(delivery, delay_s)`` produces a copy of the record to the retry topic
(headers: the original id, ``attempt + 1`` and a not-before time), waits until the broker
has it, then marks the original done. The source consumes the retry topic too and hands a
retried record out no sooner than its not-before time (records wait in the buffer; the
partition pauses when ``prefetch`` of them wait). The retry topic is per group, so one
listener's retries never reach another listener; it is created (with the topic's partition
count) if missing. ``attempt`` counts releases; Kafka keeps no delivery count, so a record
redelivered after a crash or a lost partition comes again with the same attempt number.

Ordering. Kafka orders records per partition; the source keeps that order where the
runtime could break it by running deliveries concurrently:

* ``ordering=key``: at most one record per (partition, key) is in flight; the next record of
  that key is handed out only once the previous one is acked or released. Records without a
  key are handed out freely. Parallelism: distinct keys, across all partitions.
* ``ordering=partition``: at most one record per partition is in flight; records are processed
  strictly in partition order. Parallelism: the number of partitions this consumer owns.
* ``ordering=none``: every fetched record is handed out at once.

A released record gives up its place: later records of its key go ahead while it waits in
the retry topic, and retried records are handed out in no particular order.

Rebalances. When partitions are revoked (another replica joined or left), the source stops
handing out their records, waits up to ``REVOKE_DRAIN_S`` for their in-flight deliveries to
be acked or released, commits what is contiguous and forgets them: their buffered records
and any delivery still in flight go to the new owner from the committed position. Acking or
releasing such a delivery afterwards does nothing (the new owner redelivers it).

A silent connection. aiokafka retries failed fetches by itself and logs them, so a consumer
whose network went silent (a partition: no error, no bytes) would only ever see empty
fetches. After ``PROBE_IDLE_S`` without records, the fetch loop asks the broker for the
end offsets of the partitions it owns (the topic list while it owns none) within
``PROBE_TIMEOUT_S``; no answer makes ``receive`` raise a transient ConnectorError, so the
listener says ``degraded`` and reconnects. An idle consumer costs one small request every
``PROBE_IDLE_S``.

Sink. ``publish`` produces every message (``acks=all``; key ``OutMessage.key``; headers the
attributes plus ``modelbus-id``) and waits for all of them. Idempotent producers and
transactions are not used (some Kafka-protocol brokers lack them); ``OutMessage.id`` in the
``modelbus-id`` header lets consumers drop duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from modelbus.connectors.base import Backlog, ConnectorContext, Delivery, OutMessage
from modelbus.connectors.urls import parse_bool, parse_int, parse_query, redact_url
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError, MissingExtra

__all__ = [
    "KafkaHandle",
    "KafkaSettings",
    "KafkaSink",
    "KafkaSource",
    "backlog",
    "make_sink",
    "make_source",
]

log = logging.getLogger(__name__)

KAFKA_OPTIONS = frozenset(
    {
        "group",
        "offset_reset",
        "ordering",
        "retry_topic",
        "prefetch",
        "session_timeout_s",
        "linger_ms",
        "batch_kb",
        "create",
        "partitions",
        "security_protocol",
        "sasl_mechanism",
    }
)
ORDERINGS = ("key", "partition", "none")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_PREFETCH = 500
DEFAULT_SESSION_TIMEOUT_S = 10
DEFAULT_BATCH_KB = 16
CONNECT_TIMEOUT_S = 15.0
CALL_TIMEOUT_S = 30.0
REVOKE_DRAIN_S = 10.0
FETCH_WAIT_MS = 200
FETCH_MAX_WAIT_MS = 100  # how long the broker may hold a fetch with nothing new
STOP_TIMEOUT_S = 10.0  # a client's stop, then it is left to finish in the background
_STOPPING: set[asyncio.Future[Any]] = set()  # those stops (a reference keeps them alive)
PROBE_IDLE_S = 5.0  # no records for this long: ask the broker something (a silent network?)
PROBE_TIMEOUT_S = 10.0
MAX_REQUEST_BYTES = 16 * 1024 * 1024

# Headers the source reads and strips; everything else is an attribute.
ORIGIN_HEADER = "modelbus-origin"
ATTEMPT_HEADER = "modelbus-attempt"
NOT_BEFORE_HEADER = "modelbus-not-before-ms"
ENQUEUED_HEADER = "modelbus-enqueued-ms"
ID_HEADER = "modelbus-id"
_INTERNAL = frozenset({ORIGIN_HEADER, ATTEMPT_HEADER, NOT_BEFORE_HEADER, ENQUEUED_HEADER})

_TOPIC = re.compile(r"[A-Za-z0-9._\-]{1,249}")
_NOT_TOPIC_CHAR = re.compile(r"[^A-Za-z0-9._\-]")


def _aiokafka() -> Any:
    """The aiokafka module; MissingExtra with the install hint if it is not installed."""
    try:
        import aiokafka
        import aiokafka.admin
        import aiokafka.errors
        import aiokafka.helpers
    except ImportError as exc:
        raise MissingExtra("kafka", "aiokafka") from exc
    return aiokafka


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, kw_only=True, slots=True)
class KafkaSettings:
    """A ``kafka://`` URL, parsed and checked (see the module docstring for the options)."""

    bootstrap_servers: tuple[str, ...]
    topic: str
    group: str | None = None
    offset_reset: str = "earliest"
    ordering: str = "key"
    retry_topic: str | None = None
    prefetch: int = DEFAULT_PREFETCH
    session_timeout_s: int = DEFAULT_SESSION_TIMEOUT_S
    linger_ms: int = 0
    batch_kb: int = DEFAULT_BATCH_KB
    create: bool = False
    partitions: int = 1
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> KafkaSettings:
        """Parse ``kafka://...``. Raises DefinitionError if malformed."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "kafka":
            raise DefinitionError(f"{redact_url(url)!r} is not a kafka:// URL")
        query = parse_query(url, KAFKA_OPTIONS)
        username, password, servers = _netloc(parts.netloc, url)
        return cls(
            bootstrap_servers=servers,
            topic=_topic_of(parts.path, url),
            group=query.get("group") or None,
            offset_reset=_choice(query, "offset_reset", ("earliest", "latest"), "earliest"),
            ordering=_choice(query, "ordering", ORDERINGS, "key"),
            retry_topic=_checked_topic(query["retry_topic"]) if query.get("retry_topic") else None,
            prefetch=parse_int(query, "prefetch", low=1, high=100_000) or DEFAULT_PREFETCH,
            session_timeout_s=parse_int(query, "session_timeout_s", low=1, high=3600)
            or DEFAULT_SESSION_TIMEOUT_S,
            linger_ms=parse_int(query, "linger_ms", low=0, high=60_000, default=0) or 0,
            batch_kb=parse_int(query, "batch_kb", low=1, high=16_384) or DEFAULT_BATCH_KB,
            create=parse_bool(query, "create"),
            partitions=parse_int(query, "partitions", low=1, high=10_000) or 1,
            security_protocol=_choice(
                query, "security_protocol", SECURITY_PROTOCOLS, "PLAINTEXT", upper=True
            ),
            sasl_mechanism=_choice(query, "sasl_mechanism", SASL_MECHANISMS, None, upper=True),
            username=username,
            password=password,
        )

    def group_for(self, listener: str) -> str:
        """The consumer group: the URL's ``group``, else the listener's name."""
        return self.group or listener

    def retry_topic_for(self, group: str) -> str:
        """The retry topic: the URL's ``retry_topic``, else ``TOPIC.retry.GROUP`` (characters
        Kafka refuses in a topic name replaced by ``_``)."""
        if self.retry_topic:
            return self.retry_topic
        return f"{self.topic}.retry.{_NOT_TOPIC_CHAR.sub('_', group)}"[:249]

    def client_options(self) -> dict[str, Any]:
        """Connection options common to aiokafka's consumer, producer and admin client."""
        options: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap_servers),
            "security_protocol": self.security_protocol,
            "request_timeout_ms": int(CALL_TIMEOUT_S * 1000),
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = _aiokafka().helpers.create_ssl_context()
        if self.security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self.password
        return options


def _netloc(netloc: str, url: str) -> tuple[str | None, str | None, tuple[str, ...]]:
    userinfo, _, hosts = netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, _, secret = userinfo.partition(":")
        username, password = unquote(user), unquote(secret)
    servers = tuple(h.strip() for h in hosts.split(",") if h.strip())
    if not servers:
        raise DefinitionError(f"{redact_url(url)!r}: write kafka://HOST:PORT/TOPIC")
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise DefinitionError(f"{redact_url(url)!r}: {server!r} is not HOST:PORT")
    return username, password, servers


def _topic_of(path: str, url: str) -> str:
    topic = path.strip("/")
    if not topic:
        raise DefinitionError(f"{redact_url(url)!r}: name the topic, kafka://HOST:PORT/TOPIC")
    return _checked_topic(topic)


def _checked_topic(topic: str) -> str:
    if not _TOPIC.fullmatch(topic) or topic in (".", ".."):
        raise DefinitionError(
            f"{topic!r} is not a Kafka topic name: up to 249 letters, digits, '.', '_' or '-'"
        )
    return topic


def _choice(
    query: Mapping[str, str],
    name: str,
    allowed: Sequence[str],
    default: str | None,
    *,
    upper: bool = False,
) -> Any:
    raw = query.get(name)
    if not raw:
        return default
    value = raw.upper() if upper else raw.lower()
    if value not in allowed:
        raise DefinitionError(f"option {name}={raw!r} must be one of {', '.join(allowed)}")
    return value


# --------------------------------------------------------------------------- errors


def _translate(exc: BaseException, what: str, listener: str) -> ConnectorError:
    """A ConnectorError (permanent for configuration problems) for a client failure."""
    errors = _aiokafka().errors
    context = f"listener {listener!r}: {what}"
    permanent = (
        errors.AuthenticationFailedError,
        errors.SaslAuthenticationFailed,
        errors.UnsupportedSaslMechanismError,
        errors.TopicAuthorizationFailedError,
        errors.GroupAuthorizationFailedError,
        errors.ClusterAuthorizationFailedError,
        errors.UnknownTopicOrPartitionError,
        errors.InvalidTopicError,
    )
    if isinstance(exc, permanent):
        return ConnectorConfigError(f"{context}: {exc}")
    if isinstance(exc, errors.MessageSizeTooLargeError):
        return ConnectorError(f"{context}: message too large for the broker: {exc}", permanent=True)
    if isinstance(exc, TimeoutError):
        return ConnectorError(f"{context}: timed out" + (f" ({exc})" if str(exc) else ""))
    return ConnectorError(f"{context}: {type(exc).__name__}: {exc}")


async def _guarded(awaitable: Any, what: str, listener: str, timeout_s: float) -> Any:
    """Await a client call with a timeout, translating its failures."""
    errors = _aiokafka().errors
    try:
        return await asyncio.wait_for(awaitable, timeout_s)
    except (errors.KafkaError, OSError, TimeoutError) as exc:
        raise _translate(exc, what, listener) from exc


async def _start(client: Any, what: str, listener: str) -> None:
    """Start an aiokafka client (bootstrap); stop it again if that fails."""
    try:
        await _guarded(client.start(), f"connecting to {what}", listener, CONNECT_TIMEOUT_S)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), CALL_TIMEOUT_S)
        raise


async def _stop(client: Any) -> None:
    """Stop an aiokafka client, waiting at most STOP_TIMEOUT_S. A consumer whose group
    coordinator went away can take much longer, and ignores cancellation while it does (it
    waits for its own coordination task): such a stop is left to finish in the background
    rather than hold up a reconnect. The group forgets the member when its session times out."""
    if client is None:
        return
    stopping = asyncio.ensure_future(client.stop())
    done, _ = await asyncio.wait({stopping}, timeout=STOP_TIMEOUT_S)
    if not done:
        log.warning(
            "a Kafka client did not stop within %g s; it stops in the background", STOP_TIMEOUT_S
        )
        _STOPPING.add(stopping)
        stopping.add_done_callback(_STOPPING.discard)
    elif stopping.cancelled():  # seen when the group coordinator had gone away mid-stop
        log.warning("stopping a Kafka client was cancelled inside the client")
    elif stopping.exception() is not None:
        log.warning("stopping a Kafka client failed: %r", stopping.exception())


async def _ensure_topics(
    settings: KafkaSettings, listener: str, wanted: Mapping[str, bool], consumer: Any
) -> None:
    """Check each topic of ``wanted`` (name -> may be created) exists; create the missing
    ones that may be created; raise ConnectorConfigError for the others."""
    existing = await _guarded(consumer.topics(), "listing topics", listener, CALL_TIMEOUT_S)
    missing = [t for t in wanted if t not in existing]
    refused = [t for t in missing if not wanted[t]]
    if refused:
        raise ConnectorConfigError(
            f"listener {listener!r}: Kafka topic {refused[0]!r} does not exist on "
            f"{','.join(settings.bootstrap_servers)}; create it, or add create=true to the URL "
            "(tests and demos)"
        )
    if missing:
        partitions = consumer.partitions_for_topic(settings.topic) or range(settings.partitions)
        await _create_topics(settings, listener, missing, len(partitions))


async def _create_topics(
    settings: KafkaSettings, listener: str, topics: Sequence[str], partitions: int
) -> None:
    admin_module = _aiokafka().admin
    admin = admin_module.AIOKafkaAdminClient(**settings.client_options())
    await _start(admin, "Kafka (admin)", listener)
    try:
        new = [admin_module.NewTopic(t, partitions, 1) for t in topics]
        answer = await _guarded(
            admin.create_topics(new), f"creating {topics}", listener, CALL_TIMEOUT_S
        )
    finally:
        await asyncio.wait_for(admin.close(), CALL_TIMEOUT_S)
    for topic, code, message in answer.topic_errors:
        if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (another replica was quicker)
            raise ConnectorConfigError(
                f"listener {listener!r}: cannot create Kafka topic {topic!r} ({code}: {message})"
            )


# --------------------------------------------------------------------------- source


@dataclass(eq=False, slots=True)
class _Partition:
    """What the source knows of one partition it owns, for one assignment.

    ``outstanding`` holds, in offset order, every fetched record not completed yet (buffered
    or in flight); the committable position is its head, else ``fetched_upto``."""

    tp: Any
    retry: bool
    buffered: list[Any] = field(default_factory=list)
    outstanding: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    in_flight: dict[int, Any] = field(default_factory=dict)  # offset -> ordering token
    busy: set[Any] = field(default_factory=set)  # ordering tokens in flight
    fetched_upto: int | None = None
    committed: int | None = None
    paused: bool = False
    revoking: bool = False
    gone: bool = False
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def position(self) -> int | None:
        """The offset to commit: the first record not completed."""
        return self.outstanding[0] if self.outstanding else self.fetched_upto

    def add(self, records: Iterable[Any]) -> None:
        for record in records:
            if self.fetched_upto is not None and record.offset < self.fetched_upto:
                continue  # fetched again after a seek: already known
            self.buffered.append(record)
            self.outstanding.append(record.offset)
            self.fetched_upto = record.offset + 1

    def complete(self, offset: int) -> bool:
        """Mark the in-flight record at ``offset`` done; False if it was not in flight."""
        if offset not in self.in_flight:
            return False
        self.busy.discard(self.in_flight.pop(offset))
        self.done.add(offset)
        while self.outstanding and self.outstanding[0] in self.done:
            self.done.discard(self.outstanding.popleft())
        if not self.in_flight:
            self.drained.set()
        return True


@dataclass(frozen=True, slots=True)
class KafkaHandle:
    """The handle of a Kafka delivery: the record's topic, partition, offset and key, and
    the assignment it was handed out under (a later assignment makes it stale)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    owner: _Partition


class KafkaSource:
    """Consumes one topic (and its retry topic) in a consumer group; see the module
    docstring. Safe to call concurrently (receive, ack and release may overlap)."""

    def __init__(self, settings: KafkaSettings, ctx: ConnectorContext) -> None:
        self.settings = settings
        self.listener = ctx.listener
        self.group = settings.group_for(ctx.listener)
        self.retry_topic = settings.retry_topic_for(self.group)
        self._consumer: Any = None
        self._producer: Any = None
        self._fetcher: asyncio.Task[None] | None = None
        self._partitions: dict[Any, _Partition] = {}
        self._wakeup = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._failure: ConnectorError | None = None
        self._rotation = 0

    @property
    def lease_s(self) -> None:
        """None: a delivery stays this consumer's until acked or released (or its partition
        is revoked); nothing to extend."""
        return None

    @property
    def assignment(self) -> frozenset[str]:
        """The partitions this consumer owns now, as ``TOPIC:PARTITION`` (for status and
        tests; empty until the group has assigned some)."""
        return frozenset(f"{tp.topic}:{tp.partition}" for tp in self._partitions)

    async def open(self) -> None:
        """Connect, check the topic exists (creating it and the retry topic as allowed),
        join the group and start fetching. Raises ConnectorConfigError for a missing topic
        or refused credentials, ConnectorError if no broker answers."""
        aiokafka = _aiokafka()
        self._failure = None  # the last connection's; a reopened source starts afresh
        self._consumer = aiokafka.AIOKafkaConsumer(**self._consumer_options())
        self._producer = aiokafka.AIOKafkaProducer(**_producer_options(self.settings))
        try:
            await _start(self._consumer, self._what, self.listener)
            wanted = {self.settings.topic: self.settings.create, self.retry_topic: True}
            await _ensure_topics(self.settings, self.listener, wanted, self._consumer)
            await _start(self._producer, self._what, self.listener)
            self._consumer.subscribe(
                [self.settings.topic, self.retry_topic], listener=_rebalance_listener(self)
            )
        except BaseException:
            await self.close()
            raise
        self._fetcher = asyncio.create_task(self._fetch_loop(), name=f"kafka-fetch-{self.group}")

    @property
    def _what(self) -> str:
        return f"Kafka topic {self.settings.topic!r} at {','.join(self.settings.bootstrap_servers)}"

    def _consumer_options(self) -> dict[str, Any]:
        session_ms = self.settings.session_timeout_s * 1000
        return self.settings.client_options() | {
            "group_id": self.group,
            "enable_auto_commit": False,
            "auto_offset_reset": self.settings.offset_reset,
            "session_timeout_ms": session_ms,
            "heartbeat_interval_ms": max(100, min(3000, session_ms // 4)),
            "metadata_max_age_ms": 30_000,
            "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        }

    # ---- fetching

    async def _fetch_loop(self) -> None:
        """Fetch forever into the partition buffers, so that the group sees this consumer
        poll however slowly the runtime takes deliveries."""
        errors = _aiokafka().errors
        heard_at = time.monotonic()  # the broker last answered with records or to a probe
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=FETCH_WAIT_MS)
                if not batch and time.monotonic() - heard_at >= PROBE_IDLE_S:
                    await self._probe()
                    heard_at = time.monotonic()
                    self._failure = None
            except asyncio.CancelledError:
                raise
            except (errors.KafkaError, TimeoutError) as exc:
                self._failure = _translate(exc, f"fetching from {self._what}", self.listener)
                log.warning("%s", self._failure)
                self._wakeup.set()
                await asyncio.sleep(1.0)
                continue
            if batch:
                heard_at = time.monotonic()
                self._failure = None
            for tp, records in batch.items():
                state = self._partitions.get(tp)
                if state is not None and not state.revoking:
                    state.add(records)
                    self._pause_if_full(state)
            if batch:
                self._wakeup.set()

    async def _probe(self) -> None:
        """One request the broker must answer (see *A silent connection*); raises
        TimeoutError or a KafkaError if it does not within PROBE_TIMEOUT_S."""
        owned = list(self._consumer.assignment())
        asking = self._consumer.end_offsets(owned) if owned else self._consumer.topics()
        try:
            await asyncio.wait_for(asking, PROBE_TIMEOUT_S)
        except TimeoutError:
            raise TimeoutError(f"no answer to a probe in {PROBE_TIMEOUT_S:g} s") from None

    def _pause_if_full(self, state: _Partition) -> None:
        if not state.paused and len(state.buffered) >= self.settings.prefetch:
            self._consumer.pause(state.tp)
            state.paused = True

    def _resume_if_room(self, state: _Partition) -> None:
        if (
            state.paused
            and len(state.buffered) < self.settings.prefetch // 2 + 1
            and not state.gone
        ):
            self._consumer.resume(state.tp)
            state.paused = False

    # ---- handing out

    async def receive(self, max_messages: int, wait_s: float) -> list[Delivery]:
        """Up to ``max_messages`` deliveries, waiting at most ``wait_s`` for the first
        (see *Ordering* for which buffered records may go out). Raises ConnectorError while
        fetching fails (broker unreachable, authorization lost)."""
        deadline = time.monotonic() + wait_s
        while True:
            deliveries = self._hand_out(max_messages)
            if deliveries:
                return deliveries
            if self._failure is not None:
                raise self._failure
            now = time.monotonic()
            if now >= deadline:
                return []
            self._wakeup.clear()
            wake_in_s = min(deadline - now, self._next_due_s(time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wake_in_s)

    def _hand_out(self, max_messages: int) -> list[Delivery]:
        states = [s for s in self._partitions.values() if not s.revoking]
        if not states:
            return []
        self._rotation = (self._rotation + 1) % len(states)
        states = states[self._rotation :] + states[: self._rotation]  # fairness
        now_ms = time.time() * 1000
        deliveries: list[Delivery] = []
        for state in states:
            deliveries += self._take(state, max_messages - len(deliveries), now_ms)
            if len(deliveries) >= max_messages:
                break
        return deliveries

    def _take(self, state: _Partition, limit: int, now_ms: float) -> list[Delivery]:
        taken: list[Delivery] = []
        kept: list[Any] = []
        for index, record in enumerate(state.buffered):
            if len(taken) >= limit:
                kept += state.buffered[index:]
                break
            token = self._token(state, record)
            busy = token is not None and token in state.busy
            if busy or (state.retry and _not_before_ms(record) > now_ms):
                kept.append(record)
                continue
            state.in_flight[record.offset] = token
            if token is not None:
                state.busy.add(token)
            state.drained.clear()
            taken.append(self._delivery(state, record))
        state.buffered = kept
        self._resume_if_room(state)
        return taken

    def _token(self, state: _Partition, record: Any) -> Any:
        """What must not be in flight twice: the key, the partition, or nothing."""
        if state.retry or self.settings.ordering == "none":
            return None
        if self.settings.ordering == "partition":
            return ""
        return record.key

    def _delivery(self, state: _Partition, record: Any) -> Delivery:
        headers = _headers(record.headers)
        attempt = int(headers.get(ATTEMPT_HEADER) or 1)
        origin = headers.get(ORIGIN_HEADER) or f"{record.topic}:{record.partition}:{record.offset}"
        enqueued_ms = headers.get(ENQUEUED_HEADER) or record.timestamp
        return Delivery(
            message_id=origin,
            body=record.value if record.value is not None else b"",
            attributes={k: v for k, v in headers.items() if k not in _INTERNAL},
            attempt=attempt,
            enqueued_at=float(enqueued_ms) / 1000 if enqueued_ms is not None else None,
            handle=KafkaHandle(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                owner=state,
            ),
        )

    def _next_due_s(self, now_s: float) -> float:
        """Seconds until the earliest waiting retry is due (an hour if none waits)."""
        due = [
            _not_before_ms(r) / 1000
            for s in self._partitions.values()
            if s.retry
            for r in s.buffered
        ]
        return max(0.0, min(due, default=now_s + 3600) - now_s)

    # ---- settling

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Mark the deliveries done and commit every partition's contiguous done prefix.
        Idempotent; a delivery of a partition this consumer no longer owns is ignored (the
        new owner redelivers it). Raises ConnectorError if the commit fails (the records
        stay done and the next ack or release commits them)."""
        for delivery in deliveries:
            self._complete(_handle(delivery))
        await self._commit()

    async def release(self, delivery: Delivery, delay_s: float) -> None:
        """Produce a copy of the record to the retry topic with ``attempt + 1`` and a
        not-before time ``delay_s`` from now, wait until the broker has it, then mark the
        original done. Raises ConnectorError if the retry topic refuses the copy (the
        original stays in flight; releasing again is safe)."""
        handle = _handle(delivery)
        if handle.owner.gone:
            log.info(
                "%s: release of %s ignored: partition revoked", self._what, delivery.message_id
            )
            return
        not_before_ms = math.ceil((time.time() + max(0.0, delay_s)) * 1000)
        headers = [(k, v.encode()) for k, v in delivery.attributes.items()]
        headers += [
            (ORIGIN_HEADER, delivery.message_id.encode()),
            (ATTEMPT_HEADER, str(delivery.attempt + 1).encode()),
            (NOT_BEFORE_HEADER, str(not_before_ms).encode()),
        ]
        if delivery.enqueued_at is not None:
            headers.append((ENQUEUED_HEADER, str(int(delivery.enqueued_at * 1000)).encode()))
        sent = self._producer.send_and_wait(
            self.retry_topic, delivery.body, key=handle.key, headers=headers
        )
        await _guarded(sent, f"producing to {self.retry_topic!r}", self.listener, CALL_TIMEOUT_S)
        self._complete(handle)
        await self._commit()

    async def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        """Nothing to do: ``lease_s`` is None (deliveries are held until settled)."""

    def _complete(self, handle: KafkaHandle) -> None:
        state = handle.owner
        if state.gone or not state.complete(handle.offset):
            return
        self._wakeup.set()  # its key may hand out the next record now

    async def _commit(self, states: Iterable[_Partition] | None = None) -> None:
        """Commit the position of every owned partition (or of ``states``) that moved."""
        errors = _aiokafka().errors
        async with self._commit_lock:
            chosen = [s for s in (self._partitions.values() if states is None else states)]
            chosen = [s for s in chosen if not s.gone]
            if states is None:
                chosen = [s for s in chosen if not s.revoking]
            offsets = {s.tp: s.position() for s in chosen if s.position() != s.committed}
            offsets = {tp: offset for tp, offset in offsets.items() if offset is not None}
            if not offsets:
                return
            try:
                await asyncio.wait_for(self._consumer.commit(offsets), CALL_TIMEOUT_S)
            except (errors.CommitFailedError, errors.IllegalStateError) as exc:
                log.info("%s: commit skipped, group rebalancing (%s)", self._what, exc)
                return
            except (errors.KafkaError, OSError, TimeoutError) as exc:
                raise _translate(exc, f"committing offsets of {self._what}", self.listener) from exc
            for state in chosen:
                if state.tp in offsets:
                    state.committed = offsets[state.tp]

    # ---- rebalances

    def _assigned(self, assigned: Iterable[Any]) -> None:
        for tp in assigned:
            self._partitions[tp] = _Partition(tp=tp, retry=tp.topic == self.retry_topic)
        self._wakeup.set()

    async def _revoked(self, revoked: Iterable[Any]) -> None:
        states = [self._partitions[tp] for tp in revoked if tp in self._partitions]
        for state in states:
            state.revoking = True
        waits = [s.drained.wait() for s in states if s.in_flight]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), REVOKE_DRAIN_S)
        try:
            await self._commit(states)
        except ConnectorError as exc:
            log.warning("%s: commit on revoke failed: %s", self._what, exc)
        for state in states:
            state.gone = True
            self._partitions.pop(state.tp, None)

    async def backlog(self) -> int | None:
        """The group's lag over every partition of the topic and of its retry topic (not
        only those this consumer owns): end offset minus the group's committed offset (a
        partition with no commit yet counts from its first offset with ``offset_reset=
        earliest``, as nothing with ``latest``). Records handed out but not committed yet,
        and retries waiting in the retry topic, are counted too: Kafka only knows offsets.
        None before the topic's partitions are known."""
        consumer = self._consumer
        if consumer is None:
            raise ConnectorError(f"listener {self.listener!r}: {self._what} is not open")
        partitions = [
            _aiokafka().TopicPartition(topic, p)
            for topic in (self.settings.topic, self.retry_topic)
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return None
        what, timeout_s = f"reading the lag of {self._what}", CALL_TIMEOUT_S
        ends = await _guarded(consumer.end_offsets(partitions), what, self.listener, timeout_s)
        committed = await _guarded(
            asyncio.gather(*(consumer.committed(tp) for tp in partitions)),
            what,
            self.listener,
            timeout_s,
        )
        starts: dict[Any, int] = {}
        if any(c is None for c in committed) and self.settings.offset_reset == "earliest":
            starts = await _guarded(
                consumer.beginning_offsets(partitions), what, self.listener, timeout_s
            )
        lag = 0
        for tp, done in zip(partitions, committed, strict=True):
            start = done if done is not None else starts.get(tp, ends[tp])
            lag += max(0, ends[tp] - start)
        return lag

    async def close(self) -> None:
        """Stop fetching, commit what is contiguous, leave the group and disconnect.
        Deliveries not settled are redelivered (to this group) from the committed position."""
        if self._fetcher is not None:
            self._fetcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fetcher
            self._fetcher = None
        if self._consumer is not None and self._partitions:
            try:
                await self._commit()
            except ConnectorError as exc:
                log.warning("%s: commit on close failed: %s", self._what, exc)
        consumer, producer = self._consumer, self._producer
        self._consumer = self._producer = None
        for state in self._partitions.values():
            state.gone = True
        self._partitions.clear()
        await _stop(consumer)
        await _stop(producer)


def _rebalance_listener(source: KafkaSource) -> Any:
    """aiokafka's rebalance callbacks, forwarded to ``source`` (subscribe() wants a subclass
    of aiokafka's ConsumerRebalanceListener, which exists only once aiokafka is imported)."""

    class _Rebalance(_aiokafka().ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            await source._revoked(revoked)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            source._assigned(assigned)

    return _Rebalance()


def _headers(raw: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", errors="replace") for k, v in (raw or ())}


def _not_before_ms(record: Any) -> float:
    for key, value in record.headers or ():
        if key == NOT_BEFORE_HEADER:
            with contextlib.suppress(ValueError):
                return float(value or b"0")
    return 0.0


def _handle(delivery: Delivery) -> KafkaHandle:
    if not isinstance(delivery.handle, KafkaHandle):
        raise ConnectorError(f"delivery {delivery.message_id!r} did not come from Kafka")
    return delivery.handle


# --------------------------------------------------------------------------- sink


def _producer_options(settings: KafkaSettings) -> dict[str, Any]:
    return settings.client_options() | {
        "acks": "all",
        "enable_idempotence": False,
        "max_request_size": MAX_REQUEST_BYTES,
        "linger_ms": settings.linger_ms,
        "max_batch_size": settings.batch_kb * 1024,
    }


class KafkaSink:
    """Produces to one topic; see the module docstring."""

    def __init__(self, settings: KafkaSettings, ctx: ConnectorContext) -> None:
        self.settings = settings
        self.listener = ctx.listener
        self._producer: Any = None

    @property
    def _what(self) -> str:
        return f"Kafka topic {self.settings.topic!r} at {','.join(self.settings.bootstrap_servers)}"

    async def open(self) -> None:
        """Connect and check the topic exists (creating it if ``create=true``). Raises
        ConnectorConfigError for a missing topic or refused credentials, ConnectorError if
        no broker answers."""
        aiokafka = _aiokafka()
        probe = aiokafka.AIOKafkaConsumer(**self.settings.client_options())
        await _start(probe, self._what, self.listener)
        try:
            wanted = {self.settings.topic: self.settings.create}
            await _ensure_topics(self.settings, self.listener, wanted, probe)
        finally:
            await _stop(probe)
        self._producer = aiokafka.AIOKafkaProducer(**_producer_options(self.settings))
        await _start(self._producer, self._what, self.listener)

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Produce every message (acks=all) and wait until the broker has them all. Raises
        ConnectorError if any fails (permanent for a message too large for the broker)."""
        if self._producer is None:
            raise ConnectorError(f"listener {self.listener!r}: {self._what} sink is not open")
        what = f"producing to {self._what}"
        await _guarded(self._produce(messages), what, self.listener, CALL_TIMEOUT_S)

    async def _produce(self, messages: Sequence[OutMessage]) -> None:
        pending = []
        for message in messages:
            headers = [(k, v.encode()) for k, v in message.attributes.items()]
            headers.append((ID_HEADER, message.id.encode()))
            key = message.key.encode() if message.key is not None else None
            send = self._producer.send(self.settings.topic, message.body, key=key, headers=headers)
            pending.append(await send)
        await asyncio.gather(*pending)

    async def close(self) -> None:
        """Flush and disconnect."""
        producer, self._producer = self._producer, None
        await _stop(producer)


def backlog(url: str, listener: str) -> Backlog:
    """Where ``listener``'s backlog is: its consumer group's lag on the topic (records past
    the group's committed offsets). ``where``: ``bootstrap_servers`` (comma-separated),
    ``topic``, ``group`` (:meth:`KafkaSettings.group_for`), ``offset_reset``,
    ``security_protocol``, ``sasl_mechanism`` (empty without SASL); ``secrets``:
    ``username`` and ``password`` under SASL. Records waiting in the retry topic are not
    part of it. Raises DefinitionError for a malformed URL."""
    settings = KafkaSettings.from_url(url)
    sasl = settings.security_protocol.startswith("SASL")
    secrets = {"username": settings.username, "password": settings.password} if sasl else {}
    return Backlog(
        broker="kafka",
        where={
            "bootstrap_servers": ",".join(settings.bootstrap_servers),
            "topic": settings.topic,
            "group": settings.group_for(listener),
            "offset_reset": settings.offset_reset,
            "security_protocol": settings.security_protocol,
            "sasl_mechanism": (settings.sasl_mechanism or "PLAIN") if sasl else "",
        },
        secrets={k: v for k, v in secrets.items() if v is not None},
    )


def make_source(url: str, ctx: ConnectorContext) -> KafkaSource:
    """A :class:`KafkaSource` for ``url`` (unopened). Raises DefinitionError if the URL is
    malformed, MissingExtra if aiokafka is not installed."""
    settings = KafkaSettings.from_url(url)
    _aiokafka()
    return KafkaSource(settings, ctx)


def make_sink(url: str, ctx: ConnectorContext) -> KafkaSink:
    """A :class:`KafkaSink` for ``url`` (unopened); raises like :func:`make_source`."""
    settings = KafkaSettings.from_url(url)
    _aiokafka()
    return KafkaSink(settings, ctx)
