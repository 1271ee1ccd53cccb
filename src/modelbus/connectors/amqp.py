"""RabbitMQ (AMQP 0-9-1): a Source and a Sink, on aio-pika (``pip install 'modelbus[amqp]'``).

URLs::

    amqp://USER:PASSWORD@HOST:PORT/VHOST?queue=NAME
    amqp://USER:PASSWORD@HOST:PORT/VHOST?exchange=EXCHANGE&binding_key=orders.%23
    amqps://...                                       (TLS, port 5671 by default)

The path is the virtual host, URL-encoded (``/%2F`` or no path at all is the default ``/``);
user and password default to RabbitMQ's ``guest``/``guest``, the port to 5672.

Query options:

* ``queue``: source: the queue to consume. Sink: publish to it (through the default
  exchange) unless ``exchange`` is given.
* ``exchange``: source: fan-out. The listener consumes its *own* durable queue (``queue``,
  default ``modelbus.<listener>``), declared and bound to the exchange with ``binding_key``
  when the source opens: two listeners on one exchange each receive every message, the
  replicas of one listener compete on its queue. Sink: publish to this exchange with
  ``routing_key``.
* ``binding_key`` (source with ``exchange``; default ``#``, which a fanout exchange ignores).
* ``routing_key`` (sink with ``exchange``; default empty).
* ``queue_type=classic|quorum``: the type of the queues the connector declares (the
  listener's fan-out queue, ``create=true`` queues, and the delay queues). Default classic.
* ``create=true``: declare a missing queue (durable, of ``queue_type``) or exchange (durable,
  ``exchange_type``, default ``topic``). For tests and demos; in production queues and
  exchanges are infrastructure, and a missing one is a ConnectorConfigError.
* ``prefetch``: the channel's ``basic.qos`` prefetch count (see below).
* ``mandatory=false`` (sink): accept that a message no queue is bound for is dropped. By
  default such a message fails the publish, since nothing holds it durably.
* ``timeout_s``: the deadline of every network operation (default 10).
* ``heartbeat_s``: the AMQP heartbeat (default 5; 0 turns it off). Both ends send a
  heartbeat every half of it; a connection that brings no frame for three heartbeats is
  dropped, so a silent network (a black-holed connection: no error, no bytes) is noticed
  within about 20 s and the listener says ``degraded`` instead of waiting on an empty queue.
  RabbitMQ recommends 5 to 20 s.

Source. Consumes with manual acks. The prefetch count is ``prefetch``, else the largest
``max_messages`` a ``receive`` call asked for: the listener runtime asks for
``max_in_flight`` on its first call, so the broker never hands this consumer more than the
runtime may hold (and the rest stays available to the other replicas).
``Delivery.message_id`` is the AMQP ``message_id`` property, or, for a message published
without one, ``sha256:`` of its routing key, headers, timestamp and body (so identical messages
without ids look like duplicates: publishers should set ``message_id``; modelbus sinks do).
``attributes`` are the message's headers as text (modelbus's own ``x-modelbus-*`` and
RabbitMQ's ``x-death``/``x-delivery-count`` left out) plus ``content-type``,
``amqp-exchange`` and ``amqp-routing-key`` (those the message was first published with, also
on a released copy).

Attempts. ``attempt`` is the ``x-modelbus-attempt`` header (1 if absent; a release carries it
over, one higher) plus the redeliveries by the broker: a quorum queue's ``x-delivery-count``
header counts them exactly; a classic queue only flags a redelivery, so several crashes of
consumers holding the same message count as one attempt there. Use quorum queues (whose
``x-delivery-limit`` also stops a message that keeps crashing its consumers) where that matters.

Leases. RabbitMQ has none: a delivery stays with its consumer until acked or its channel
closes, so :attr:`AmqpSource.lease_s` is None and :meth:`AmqpSource.extend` does nothing by
design (nobody else can get the delivery meanwhile). The broker's ``consumer_timeout``
(30 minutes by default) closes a channel holding a delivery longer than that; its deliveries
are then redelivered. Closing the source (or losing the connection) hands every unacked
delivery back to the queue at once.

``release(delivery, delay_s)`` republishes a copy (same body, properties and ``message_id``,
``x-modelbus-attempt`` one higher) with publisher confirms, THEN acks the original:

* ``delay_s <= 0``: straight back to the work queue (through the default exchange);
* else to a delay queue ``<queue>.modelbus-delay.<ms>``: durable, ``x-message-ttl=<ms>``,
  dead-lettering back to the work queue, deleted by RabbitMQ once unused for
  ``<ms>`` + 10 minutes (``x-expires``). Delays are rounded *up* to two significant digits
  (1234 ms -> 1300 ms) so that backoff with jitter uses a bounded set of queues. Delay queues
  of a quorum work queue are quorum queues with ``at-least-once`` dead-lettering.

A release costs one confirmed publish, one ack and, the first time a bucket is used (and every
few minutes after), one queue declaration. A crash between the publish and the ack leaves
both the copy and the original (redelivered): at-least-once, and the shared ``message_id``
lets the runtime's dedupe drop one. If the republish fails, the original is handed back to
the queue at once (``basic.nack`` with requeue) and ConnectorError is raised. RabbitMQ's
dead-letter exchanges are not used for modelbus's dead letters: the listener's error sink is
the dead-letter path.

Sink. Publishes persistent messages (``delivery_mode=2``), ``message_id`` = ``OutMessage.id``,
``attributes`` as headers (``content-type`` also as the content type property), all of a batch
at once on a channel with publisher confirms, and returns when RabbitMQ has confirmed every
one. A message no queue takes (returned as unroutable) fails the publish unless
``mandatory=false``. ``OutMessage.key`` is not used: RabbitMQ queues have no partitions.

Errors. Bad credentials, a missing virtual host, queue or exchange, refused permissions and
a queue declared with other arguments raise ConnectorConfigError; an unreachable broker,
timeouts and lost connections raise ConnectorError. Both name the listener. A lost
connection is not repaired behind the runtime's back: ``receive``, ``ack``, ``release`` and
``publish`` raise, and the runtime closes and reopens. Acks of deliveries from a previous
connection are skipped (RabbitMQ already requeued them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote, unquote, urlsplit

from modelbus.connectors.base import Backlog, ConnectorContext, Delivery, OutMessage
from modelbus.connectors.urls import parse_bool, parse_int, parse_query, redact_url
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError, MissingExtra

if TYPE_CHECKING:
    import aio_pika
    from aio_pika.abc import (
        AbstractChannel,
        AbstractConnection,
        AbstractExchange,
        AbstractIncomingMessage,
        AbstractQueue,
    )

__all__ = [
    "ATTEMPT_HEADER",
    "AmqpHandle",
    "AmqpSettings",
    "AmqpSink",
    "AmqpSource",
    "backlog",
    "delay_bucket_ms",
    "make_sink",
    "make_source",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPT_HEADER = "x-modelbus-attempt"
EXCHANGE_HEADER = "x-modelbus-exchange"
ROUTING_KEY_HEADER = "x-modelbus-routing-key"
AMQP_OPTIONS = frozenset(
    {
        "queue",
        "exchange",
        "exchange_type",
        "binding_key",
        "routing_key",
        "queue_type",
        "create",
        "prefetch",
        "mandatory",
        "timeout_s",
        "heartbeat_s",
    }
)
DEFAULT_TIMEOUT_S = 10
DEFAULT_HEARTBEAT_S = 5
MAX_PREFETCH = 65535
DELAY_EXPIRES_MARGIN_MS = 10 * 60 * 1000
# A delay queue is declared again (resetting its x-expires clock) when older than this.
_REDECLARE_AFTER_S = 60.0
_BROKER_HEADERS = ("x-death", "x-delivery-count", "x-first-death", "x-last-death")
_LOST = object()  # put in the buffer when the channel closes, to wake a waiting receive


@dataclass(frozen=True, kw_only=True, slots=True)
class AmqpSettings:
    """An ``amqp://`` URL, parsed and checked (see the module docstring for the options)."""

    host: str
    port: int
    user: str
    password: str
    vhost: str
    tls: bool = False
    queue: str | None = None
    exchange: str | None = None
    exchange_type: str = "topic"
    binding_key: str = "#"
    routing_key: str = ""
    queue_type: Literal["classic", "quorum"] = "classic"
    create: bool = False
    prefetch: int | None = None
    mandatory: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S
    heartbeat_s: int = DEFAULT_HEARTBEAT_S

    @classmethod
    def from_url(cls, url: str) -> AmqpSettings:
        """Parse ``amqp(s)://...``. Raises DefinitionError if malformed."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("amqp", "amqps"):
            raise DefinitionError(f"{redact_url(url)!r} is not an amqp:// or amqps:// URL")
        query = parse_query(url, AMQP_OPTIONS)
        tls = parts.scheme.lower() == "amqps"
        try:
            port = parts.port or (5671 if tls else 5672)
        except ValueError:
            raise DefinitionError(f"{redact_url(url)!r}: the port is not a number") from None
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            user=unquote(parts.username) if parts.username else "guest",
            password=unquote(parts.password) if parts.password else "guest",
            vhost=_vhost(parts.path),
            tls=tls,
            queue=query.get("queue") or None,
            exchange=query.get("exchange") or None,
            exchange_type=_choice(query, "exchange_type", ("topic", "direct", "fanout", "headers")),
            binding_key=query.get("binding_key", "#"),
            routing_key=query.get("routing_key", ""),
            queue_type=_queue_type(query),
            create=parse_bool(query, "create"),
            prefetch=parse_int(query, "prefetch", low=1, high=MAX_PREFETCH),
            mandatory=parse_bool(query, "mandatory", default=True),
            timeout_s=parse_int(query, "timeout_s", low=1, high=3600) or DEFAULT_TIMEOUT_S,
            heartbeat_s=_heartbeat(query),
        )

    def where(self) -> str:
        """The broker, for messages (never the password)."""
        return f"RabbitMQ at {self.host}:{self.port} vhost {self.vhost!r}"

    def queue_for(self, listener: str) -> str:
        """The queue ``listener``'s source consumes: the URL's ``queue``, else (with an
        ``exchange``) the listener's own ``modelbus.LISTENER``; empty when the URL names
        neither (the source refuses to open)."""
        return self.queue or (f"modelbus.{listener}" if self.exchange else "")

    def connection_url(self) -> str:
        """``amqp(s)://USER:PASSWORD@HOST:PORT/VHOST``: where and as whom the connector
        connects, defaults applied (a credential: never print it unredacted)."""
        scheme = "amqps" if self.tls else "amqp"
        login = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"{scheme}://{login}@{self.host}:{self.port}/{quote(self.vhost, safe='')}"


def _vhost(path: str) -> str:
    if path in ("", "/"):
        return "/"
    return unquote(path[1:])


def _choice(query: Mapping[str, str], name: str, choices: Sequence[str]) -> str:
    value = query.get(name) or choices[0]
    if value not in choices:
        raise DefinitionError(f"option {name}={value!r} must be one of {', '.join(choices)}")
    return value


def _queue_type(query: Mapping[str, str]) -> Literal["classic", "quorum"]:
    return (
        "quorum" if _choice(query, "queue_type", ("classic", "quorum")) == "quorum" else "classic"
    )


def _heartbeat(query: Mapping[str, str]) -> int:
    value = parse_int(query, "heartbeat_s", low=0, high=3600)
    return DEFAULT_HEARTBEAT_S if value is None else value


def delay_bucket_ms(delay_s: float) -> int:
    """``delay_s`` in whole milliseconds, rounded up to two significant digits (0 for none)."""
    delay_ms = math.ceil(delay_s * 1000)
    if delay_ms <= 0:
        return 0
    step: int = 10 ** max(0, len(str(delay_ms)) - 2)
    return math.ceil(delay_ms / step) * step


def require_aio_pika() -> None:
    """Raise MissingExtra unless aio-pika is installed."""
    try:
        import aio_pika  # noqa: F401
    except ImportError as exc:
        raise MissingExtra("amqp", "aio-pika") from exc


# --- errors ---------------------------------------------------------------------------------


def _translate(exc: BaseException, doing: str, listener: str) -> ConnectorError:
    """The modelbus error for a client exception raised while ``doing``."""
    from aiormq import exceptions as amqp_errors

    context = f"listener {listener!r}: {doing}"
    if isinstance(exc, amqp_errors.ProbableAuthenticationError | amqp_errors.AuthenticationError):
        return ConnectorConfigError(f"{context}: the broker refused the credentials ({exc})")
    if isinstance(exc, amqp_errors.ChannelNotFoundEntity):
        return ConnectorConfigError(
            f"{context}: {_reply_text(exc)} (create it, or add create=true)"
        )
    if isinstance(exc, amqp_errors.ChannelAccessRefused | amqp_errors.ChannelPreconditionFailed):
        return ConnectorConfigError(f"{context}: {_reply_text(exc)}")
    if isinstance(exc, amqp_errors.ProtocolSyntaxError | amqp_errors.ConnectionNotAllowed):
        return ConnectorConfigError(
            f"{context}: the broker closed the connection while opening it; check that the "
            f"virtual host exists and the user may use it ({exc})"
        )
    if isinstance(exc, TimeoutError):
        return ConnectorError(f"{context}: timed out")
    return ConnectorError(f"{context}: {type(exc).__name__}: {exc}")


def _reply_text(exc: BaseException) -> str:
    text = str(exc.args[-1]) if exc.args else str(exc)
    return text.split(": ", 1)[-1] if "NOT_FOUND" not in text else text[text.find("NOT_FOUND") :]


class _Edge:
    """Runs client calls under a deadline, translating their exceptions."""

    def __init__(self, settings: AmqpSettings, listener: str) -> None:
        self.settings = settings
        self.listener = listener

    async def call(self, doing: str, awaitable: Awaitable[T], timeout_s: float | None = None) -> T:
        """Await ``awaitable`` within ``timeout_s`` (default the URL's ``timeout_s``)."""
        try:
            return await asyncio.wait_for(awaitable, timeout_s or self.settings.timeout_s)
        except ConnectorError:
            raise
        except Exception as exc:  # TimeoutError included
            raise _translate(exc, doing, self.listener) from exc

    async def connect(self, role: str) -> AbstractConnection:
        """A new connection named ``modelbus <listener> <role>`` (as the management UI and
        ``rabbitmqctl list_connections`` show it)."""
        import aio_pika

        s = self.settings
        connecting = aio_pika.connect(
            host=s.host,
            port=s.port,
            login=s.user,
            password=s.password,
            virtualhost=s.vhost,
            ssl=s.tls,
            timeout=s.timeout_s,
            heartbeat=s.heartbeat_s,
            client_properties={"connection_name": f"modelbus {self.listener} {role}"},
        )
        return await self.call(f"connecting to {s.where()}", connecting)


# --- source ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AmqpHandle:
    """The handle of an AMQP delivery: the message as received and the channel it came on
    (its delivery tag means something only there)."""

    message: AbstractIncomingMessage
    channel: AbstractChannel


class AmqpSource:
    """Consumes one RabbitMQ queue (see the module docstring). Safe to call concurrently
    (receive, ack and release may overlap)."""

    def __init__(self, settings: AmqpSettings, ctx: ConnectorContext) -> None:
        self.settings = settings
        self._listener = ctx.listener
        self._edge = _Edge(settings, ctx.listener)
        self.queue_name = settings.queue_for(ctx.listener)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._buffer: asyncio.Queue[Any] = asyncio.Queue()
        self._prefetch = 0
        self._consuming = False
        self._delay_queues: dict[int, float] = {}  # bucket ms -> when declared (monotonic)

    @property
    def lease_s(self) -> None:
        """None: RabbitMQ holds a delivery for its consumer until ack or channel close."""
        return None

    async def open(self) -> None:
        """Connect, check the queue (or declare and bind the listener's queue to
        ``exchange``). Raises ConnectorConfigError for bad credentials, a missing vhost,
        queue or exchange; ConnectorError if the broker cannot be reached."""
        await self.close()
        buffer: asyncio.Queue[Any] = asyncio.Queue()
        self._buffer = buffer
        self._connection = await self._edge.connect("source")
        try:
            channel = await self._edge.call("opening a channel", self._connection.channel())
            for closing in (channel.close_callbacks, self._connection.close_callbacks):
                closing.add(lambda _sender, _exc: buffer.put_nowait(_LOST))
            self._channel = channel
            self._queue = await self._declare(channel)
        except BaseException:
            await self.close()
            raise

    async def _declare(self, channel: AbstractChannel) -> AbstractQueue:
        s = self.settings
        if not self.queue_name:
            raise ConnectorConfigError(
                f"listener {self._listener!r}: {s.where()}: give queue=NAME or exchange=NAME"
            )
        doing = f"declaring queue {self.queue_name!r} on {s.where()}"
        if s.exchange:
            exchange = await _exchange(self._edge, channel, s)
            queue = await self._edge.call(doing, self._declare_own(channel))
            await self._edge.call(f"binding {doing}", queue.bind(exchange, s.binding_key))
            return queue
        passive = not s.create
        arguments = None if passive else _queue_arguments(s.queue_type)
        declaring = channel.declare_queue(
            self.queue_name, durable=True, passive=passive, arguments=arguments
        )
        return await self._edge.call(doing, declaring)

    def _declare_own(self, channel: AbstractChannel) -> Awaitable[AbstractQueue]:
        return channel.declare_queue(
            self.queue_name, durable=True, arguments=_queue_arguments(self.settings.queue_type)
        )

    async def receive(self, max_messages: int, wait_s: float) -> list[Delivery]:
        """Up to ``max_messages`` deliveries, waiting at most ``wait_s`` for the first.
        Starts consuming on the first call (prefetch: see the module docstring). Raises
        ConnectorError if the connection or channel is lost."""
        await self._consume(self._require_channel(), max_messages)
        try:
            first = await asyncio.wait_for(self._buffer.get(), max(wait_s, 0.0))
        except TimeoutError:
            return []
        items = [first]
        while len(items) < max_messages and items[-1] is not _LOST and not self._buffer.empty():
            items.append(self._buffer.get_nowait())
        if items[-1] is _LOST:
            self._buffer.put_nowait(_LOST)  # every later call fails too, until reopened
            items.pop()
            if not items:
                raise ConnectorError(f"listener {self._listener!r}: {self._lost()}")
        return [_delivery(message, on) for message, on in items]

    def _require_channel(self) -> AbstractChannel:
        channel = self._channel
        if channel is None or channel.is_closed:
            raise ConnectorError(f"listener {self._listener!r}: {self._lost()}")
        return channel

    def _lost(self) -> str:
        return f"the channel to queue {self.queue_name!r} on {self.settings.where()} is closed"

    async def _consume(self, channel: AbstractChannel, max_messages: int) -> None:
        wanted = min(self.settings.prefetch or max(max_messages, 1), MAX_PREFETCH)
        if wanted > self._prefetch:
            await self._edge.call("setting the prefetch count", channel.set_qos(wanted))
            self._prefetch = wanted
        if not self._consuming and self._queue is not None:
            doing = f"consuming queue {self.queue_name!r}"
            consuming = self._queue.consume(partial(_buffered, self._buffer, channel))
            await self._edge.call(doing, consuming)
            self._consuming = True

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Ack the deliveries (``basic.ack``; RabbitMQ does not answer acks, so a connection
        lost just after may still redeliver them). Deliveries from an earlier connection
        are skipped: RabbitMQ requeued them when it closed. Idempotent."""
        live = [h for h in map(_handle, deliveries) if not self._is_stale(h)]
        if live:  # one deadline for the batch: a wait_for per ack cost a task each
            await self._edge.call("acking", _ack_all(live))

    def _is_stale(self, handle: AmqpHandle) -> bool:
        message = handle.message
        return handle.channel is not self._channel or handle.channel.is_closed or message.processed

    async def release(self, delivery: Delivery, delay_s: float) -> None:
        """Republish a copy with the next attempt number, to the work queue or (``delay_s``
        > 0) to a delay queue that dead-letters it back after the delay, wait for the
        publisher confirm, then ack the original. Raises ConnectorError if that fails (the
        original is then requeued at once)."""
        handle = _handle(delivery)
        if self._is_stale(handle):
            return  # RabbitMQ requeued it already, when the old channel closed
        copy = _copy(handle.message, attempt=delivery.attempt + 1, message_id=delivery.message_id)
        try:
            routing_key = await self._delay_queue(handle.channel, delay_bucket_ms(delay_s))
            publishing = handle.channel.default_exchange.publish(copy, routing_key, mandatory=True)
            await self._edge.call(f"releasing to {routing_key!r}", publishing)
        except ConnectorError:
            await self._requeue(handle)
            raise
        await self._edge.call("acking a released delivery", handle.message.ack())

    async def _requeue(self, handle: AmqpHandle) -> None:
        if self._is_stale(handle):
            return
        try:
            await self._edge.call("requeueing", handle.message.nack(requeue=True))
        except ConnectorError:
            log.warning("listener %s: could not requeue a delivery", self._listener, exc_info=True)

    async def _delay_queue(self, channel: AbstractChannel, delay_ms: int) -> str:
        """The routing key (through the default exchange) that gets a message back into the
        work queue after ``delay_ms``; declares the delay queue when needed."""
        if delay_ms <= 0:
            return self.queue_name
        name = f"{self.queue_name}.modelbus-delay.{delay_ms}"
        declared_at = self._delay_queues.get(delay_ms)
        if declared_at is None or time.monotonic() - declared_at > _REDECLARE_AFTER_S:
            arguments = _delay_arguments(self.queue_name, delay_ms, self.settings.queue_type)
            declaring = channel.declare_queue(name, durable=True, arguments=arguments)
            await self._edge.call(f"declaring delay queue {name!r}", declaring)
            self._delay_queues[delay_ms] = time.monotonic()
        return name

    async def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        """Nothing to do: RabbitMQ has no leases (:attr:`lease_s` is None); a delivery stays
        with this consumer until it is acked or released, or the channel closes."""

    async def backlog(self) -> int:
        """The queue's ready messages (``message_count`` of a passive ``queue.declare``):
        those delivered and not acked yet, and retries waiting in delay queues, are not
        counted. Asked on a channel of its own, so that a failure never closes the
        consuming channel."""
        connection = self._connection
        if connection is None or connection.is_closed:
            raise ConnectorError(f"listener {self._listener!r}: the AMQP source is not open")
        doing = f"reading the depth of queue {self.queue_name!r} on {self.settings.where()}"
        channel = await self._edge.call(doing, connection.channel())
        try:
            declaring = channel.declare_queue(self.queue_name, passive=True)
            queue = await self._edge.call(doing, declaring)
            return int(queue.declaration_result.message_count or 0)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), self.settings.timeout_s)

    async def close(self) -> None:
        """Close the connection; RabbitMQ requeues every unacked delivery at once."""
        connection, self._connection = self._connection, None
        self._channel, self._queue, self._consuming, self._prefetch = None, None, False, 0
        self._delay_queues.clear()
        if connection is not None and not connection.is_closed:
            try:
                await asyncio.wait_for(connection.close(), self.settings.timeout_s)
            except Exception as exc:  # closing is best effort: the broker notices anyway
                log.info("listener %s: closing the AMQP connection: %r", self._listener, exc)


async def _buffered(
    buffer: asyncio.Queue[Any], channel: AbstractChannel, message: AbstractIncomingMessage
) -> None:
    """The consumer callback: hand the message (and the channel it came on) to ``receive``."""
    buffer.put_nowait((message, channel))


def _queue_arguments(queue_type: str) -> dict[str, Any]:
    return {"x-queue-type": queue_type}


def _delay_arguments(work_queue: str, delay_ms: int, queue_type: str) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "x-queue-type": queue_type,
        "x-message-ttl": delay_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": work_queue,
        "x-expires": delay_ms + DELAY_EXPIRES_MARGIN_MS,
    }
    if queue_type == "quorum":
        arguments |= {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
    return arguments


async def _exchange(edge: _Edge, channel: AbstractChannel, s: AmqpSettings) -> AbstractExchange:
    assert s.exchange is not None
    doing = f"declaring exchange {s.exchange!r} on {s.where()}"
    declaring = channel.declare_exchange(
        s.exchange, s.exchange_type, durable=True, passive=not s.create
    )
    return await edge.call(doing, declaring)


def _handle(delivery: Delivery) -> AmqpHandle:
    if not isinstance(delivery.handle, AmqpHandle):
        raise ConnectorError(f"delivery {delivery.message_id!r} did not come from RabbitMQ")
    return delivery.handle


def _delivery(message: AbstractIncomingMessage, channel: AbstractChannel) -> Delivery:
    headers = dict(message.headers or {})
    return Delivery(
        message_id=message.message_id or _content_id(message, headers),
        body=message.body,
        attributes=_attributes(message, headers),
        attempt=_attempt(message, headers),
        enqueued_at=message.timestamp.timestamp() if message.timestamp else None,
        handle=AmqpHandle(message, channel),
    )


def _attempt(message: AbstractIncomingMessage, headers: Mapping[str, Any]) -> int:
    carried = _int(headers.get(ATTEMPT_HEADER), default=1)
    if "x-delivery-count" in headers:  # quorum queues count redeliveries exactly
        return carried + _int(headers["x-delivery-count"], default=0)
    return carried + (1 if message.redelivered else 0)


def _int(value: Any, *, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _attributes(message: AbstractIncomingMessage, headers: Mapping[str, Any]) -> dict[str, str]:
    attributes = {
        name: _text(value)
        for name, value in headers.items()
        if not name.startswith("x-modelbus-") and name not in _BROKER_HEADERS
    }
    if message.content_type:
        attributes.setdefault("content-type", message.content_type)
    exchange, routing_key = _origin(message, headers)
    attributes["amqp-exchange"], attributes["amqp-routing-key"] = exchange, routing_key
    return attributes


def _origin(message: AbstractIncomingMessage, headers: Mapping[str, Any]) -> tuple[str, str]:
    """The exchange and routing key the message was first published with (a released copy
    carries them in headers: it travels through the default exchange and a delay queue)."""
    exchange = headers.get(EXCHANGE_HEADER, message.exchange or "")
    routing_key = headers.get(ROUTING_KEY_HEADER, message.routing_key or "")
    return _text(exchange), _text(routing_key)


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _content_id(message: AbstractIncomingMessage, headers: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    stamp = message.timestamp.isoformat() if message.timestamp else ""
    own = {k: _text(v) for k, v in headers.items() if k not in _BROKER_HEADERS}
    meta = json.dumps([message.routing_key, stamp, own], sort_keys=True)
    digest.update(meta.encode())
    digest.update(message.body)
    return f"sha256:{digest.hexdigest()}"


def _copy(message: AbstractIncomingMessage, *, attempt: int, message_id: str) -> aio_pika.Message:
    import aio_pika

    headers = {k: v for k, v in (message.headers or {}).items() if k not in _BROKER_HEADERS}
    headers[EXCHANGE_HEADER], headers[ROUTING_KEY_HEADER] = _origin(message, headers)
    headers[ATTEMPT_HEADER] = attempt
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


# --- sink -----------------------------------------------------------------------------------


class AmqpSink:
    """Publishes to one RabbitMQ exchange or queue (see the module docstring)."""

    def __init__(self, settings: AmqpSettings, ctx: ConnectorContext) -> None:
        if not (settings.queue or settings.exchange):
            raise DefinitionError("an amqp:// sink needs queue=NAME or exchange=NAME")
        self.settings = settings
        self._listener = ctx.listener
        self._edge = _Edge(settings, ctx.listener)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._routing_key = settings.routing_key if settings.exchange else settings.queue or ""

    async def open(self) -> None:
        """Connect and check the exchange (or queue) exists, declaring it with
        ``create=true``. Raises like :meth:`AmqpSource.open`."""
        await self.close()
        self._connection = await self._edge.connect("sink")
        try:
            channel = await self._edge.call(
                "opening a channel",
                self._connection.channel(publisher_confirms=True, on_return_raises=True),
            )
            self._channel = channel
            self._exchange = await self._destination(channel)
        except BaseException:
            await self.close()
            raise

    async def _destination(self, channel: AbstractChannel) -> AbstractExchange:
        s = self.settings
        if s.exchange:
            return await _exchange(self._edge, channel, s)
        doing = f"checking queue {s.queue!r} on {s.where()}"
        declaring = channel.declare_queue(
            s.queue,
            durable=True,
            passive=not s.create,
            arguments=_queue_arguments(s.queue_type) if s.create else None,
        )
        await self._edge.call(doing, declaring)
        return channel.default_exchange

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Publish every message (persistent), all at once, and return when RabbitMQ has
        confirmed each. Raises ConnectorError if one is nacked, returned as unroutable
        (unless ``mandatory=false``) or the connection fails; the runtime retries the whole
        batch and the ids let consumers drop what arrived twice."""
        if not messages:
            return
        exchange = self._exchange
        if exchange is None or self._channel is None or self._channel.is_closed:
            raise ConnectorError(f"listener {self._listener!r}: the sink is not open")
        publishing = [
            exchange.publish(_message(m), self._routing_key, mandatory=self.settings.mandatory)
            for m in messages
        ]
        where = self.settings.exchange or self.settings.queue
        doing = f"publishing {len(messages)} message(s) to {where!r}"
        timeout_s = self.settings.timeout_s + len(messages) * 0.01
        await self._edge.call(doing, _all(publishing), timeout_s)

    async def close(self) -> None:
        """Close the connection."""
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None and not connection.is_closed:
            try:
                await asyncio.wait_for(connection.close(), self.settings.timeout_s)
            except Exception as exc:
                log.info("listener %s: closing the AMQP connection: %r", self._listener, exc)


async def _ack_all(handles: Sequence[AmqpHandle]) -> None:
    """``basic.ack`` each (frames RabbitMQ does not answer: each returns once written)."""
    for handle in handles:
        await handle.message.ack()


async def _all(awaitables: Sequence[Awaitable[Any]]) -> None:
    """Await all; raise the first failure once all are done (none left unawaited)."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _message(message: OutMessage) -> aio_pika.Message:
    import aio_pika

    return aio_pika.Message(
        message.body,
        headers=dict(message.attributes),
        content_type=message.attributes.get("content-type"),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.id,
        timestamp=time.time(),
    )


def backlog(url: str, listener: str) -> Backlog:
    """Where ``listener``'s backlog is: the messages ready in the queue its source consumes
    (:meth:`AmqpSettings.queue_for`). ``where``: ``host``, ``port``, ``vhost``, ``tls``
    (``true``/``false``), ``queue``; ``secrets``: ``url``, the connection URL with the user
    and password (:meth:`AmqpSettings.connection_url`). Messages waiting in delay queues
    are not part of it. Raises DefinitionError for a malformed URL or one naming neither a
    queue nor an exchange."""
    settings = AmqpSettings.from_url(url)
    queue = settings.queue_for(listener)
    if not queue:
        raise DefinitionError(f"{redact_url(url)!r}: give queue=NAME or exchange=NAME")
    return Backlog(
        broker="amqp",
        where={
            "host": settings.host,
            "port": str(settings.port),
            "vhost": settings.vhost,
            "tls": "true" if settings.tls else "false",
            "queue": queue,
        },
        secrets={"url": settings.connection_url()},
    )


def make_source(url: str, ctx: ConnectorContext) -> AmqpSource:
    """An unopened AmqpSource for ``url``. Raises DefinitionError for a malformed URL,
    MissingExtra without aio-pika (``pip install 'modelbus[amqp]'``)."""
    settings = AmqpSettings.from_url(url)
    require_aio_pika()
    return AmqpSource(settings, ctx)


def make_sink(url: str, ctx: ConnectorContext) -> AmqpSink:
    """An unopened AmqpSink for ``url``; raises like :func:`make_source`."""
    settings = AmqpSettings.from_url(url)
    require_aio_pika()
    return AmqpSink(settings, ctx)
