"""NATS JetStream: a Source (durable pull consumers) and a Sink (JetStream publish).

URL::

    nats://[USER:PASSWORD@ | TOKEN@]HOST[:PORT][,HOST[:PORT]...]?stream=NAME&subject=SUBJECT&...

Several servers of one cluster are separated by commas; credentials come from the URL
(percent-encoded) or from a ``creds`` file.

Query options:

* ``stream``: the JetStream stream. Required for a source; for a sink, optional (the stream
  is then the one that captures ``subject``, and a PubAck from another stream is refused).
* ``subject``: for a sink, the subject to publish on (required); for a source, a filter
  subject within the stream (default: all of it).
* ``durable`` (source): the durable consumer's name; default ``modelbus-LISTENER`` (``.``,
  ``*``, ``>``, ``/``, ``\\`` and whitespace replaced by ``_``). Every listener has its own
  durable and so gets every message (fan-out); the replicas of one listener share it and
  compete for its messages.
* ``lease_s`` (source, default 30): the consumer's ``ack_wait``.
* ``max_deliver`` (source, default unlimited): JetStream stops delivering a message after
  this many deliveries *without any dead letter*: leave it unset (the listener runtime
  dead-letters after its own ``max_attempts``), or set it above that as a backstop.
* ``max_ack_pending`` (source): the most deliveries out at once across the consumer's
  replicas (server default 1000).
* ``start`` (source): where a new consumer starts: ``all`` (default) or ``new``. Ignored for
  an existing consumer.
* ``create`` (default false): create the stream when missing (file storage, subjects
  ``[subject]``, or ``[STREAM.>]`` without one). Without it a missing stream is a
  ConnectorConfigError. The durable consumer is always created (or updated) by the source.
* ``timeout_s`` (default 10): the deadline of every request (plus a fetch's wait).
* ``ping_s`` (default 5): the client PINGs the server this often and drops the connection
  (then reconnects) when two PINGs in a row get no PONG, so a silent network (a black-holed
  connection: no error, no bytes) is noticed within about three times this and the listener
  says ``degraded`` instead of waiting on what looks like an empty stream.
* ``creds``: a ``.creds`` file (JWT + NKey); ``tls=true`` and ``ca_file=PATH`` for TLS.

Source. ``receive`` is one pull ``fetch`` of up to ``max_messages`` (what is waiting comes
at once; otherwise it waits up to ``wait_s`` for the first). ``Delivery.message_id`` is the
stream sequence (the same on every redelivery), ``attempt`` the delivery count from the
message's metadata, ``enqueued_at`` its stream timestamp, and the attributes its headers
except ``Nats-*`` ones.

* ``ack`` sends ``+ACK`` to each delivery's reply subject, ``release(delay_s)``
  ``-NAK {"delay": ns}`` (JetStream redelivers after the delay, one attempt higher),
  ``extend`` ``+WPI`` (in progress: the ack wait starts again). Each call then flushes the
  connection (PING/PONG) and returns only once the server has read everything sent, so a
  dropped connection is an error the runtime sees rather than an ack silently lost. Why
  not JetStream's "double ack" (``ack_sync``, a request per message): JetStream answers
  every ack with an empty +OK, so the reply says no more than "the consumer got it"; it
  does not make the ack durable either (the consumer's store is written asynchronously);
  a lost ack, nak or +WPI never loses a message, only costs a duplicate that the run
  records absorb; and a request per message (token, future, reply) cost about 15% of a
  batched drain's throughput here, against one round trip per call.
* The lease is ``ack_wait``: ``extend(lease_s)`` grants ``ack_wait`` more seconds from
  now (at least ``lease_s`` when that is shorter); a longer ``lease_s`` is renewed by the
  source itself every third of an ack wait until it is due (it lapses one ack wait after
  the process dies).
* A consumer that dies: JetStream redelivers its deliveries once their ``ack_wait`` runs out.
* Older nats-server releases (Debian's 2.9.10 here) now and then report a message
  redelivered after a delayed ``nak`` as delivery 1 again, when a pull request expired as
  it came due (fixed upstream in 2024 by nats-server pull requests 5305 and 5338). The
  source remembers the attempts it handed out (the last 10,000 messages not yet acked) and
  never reports fewer than one more than it saw, so retry counting holds within a replica;
  across replicas only a fixed server gives exact counts.
* While the connection is down (the client reconnects on its own, forever) ``receive``
  raises a transient ConnectorError at once rather than returning nothing.

Sink. ``publish`` sends every message as an asynchronous JetStream publish (up to 512 in
flight) with ``Nats-Msg-Id`` = ``OutMessage.id`` and waits for every PubAck: the stream drops a
republished id within its duplicate window (2 minutes by default), so retrying a batch is
harmless. Attributes are headers. A header value NATS cannot carry verbatim (line breaks,
leading or trailing spaces, or one that looks like an encoded word) travels as an RFC 2047
encoded word ``=?utf-8?b?BASE64?=``, which the source decodes again; names must be
printable ASCII without ``:`` and must not start with ``Nats-``. A message larger than the
server's ``max_payload`` (1 MiB by default, headers included) is refused with a permanent
ConnectorError before anything is sent; raise ``max_payload`` in the server's configuration
for larger messages.

Errors: bad credentials, a missing stream, a subject no stream captures, a refused consumer
configuration raise ConnectorConfigError; an unreachable server, a disconnection, a timeout
or JetStream being unavailable raise a transient ConnectorError. Messages name the listener.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from modelbus.connectors.base import Backlog, ConnectorContext, Delivery, OutMessage
from modelbus.connectors.leases import Holds
from modelbus.connectors.urls import parse_bool, parse_float, parse_int, parse_query, redact_url
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError, MissingExtra

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

__all__ = [
    "NatsHandle",
    "NatsSettings",
    "NatsSink",
    "NatsSource",
    "backlog",
    "default_durable",
    "make_sink",
    "make_source",
]

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 30.0
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_PING_S = 5.0
MAX_OUTSTANDING_PINGS = 2
CONNECT_TIMEOUT_S = 5
RECONNECT_WAIT_S = 1
# Concurrent publishes (each waits for its PubAck) of one batch.
_PUBLISH_WINDOW = 512
_MIN_FETCH_S = 0.05
_REMEMBERED_ATTEMPTS = 10_000
_HEADER_OVERHEAD_BYTES = 12  # "NATS/1.0\r\n" ... "\r\n"

_ACK = b"+ACK"
_NAK = b"-NAK"
_IN_PROGRESS = b"+WPI"

_OPTIONS = frozenset(
    {
        "stream",
        "subject",
        "durable",
        "lease_s",
        "max_deliver",
        "max_ack_pending",
        "start",
        "create",
        "timeout_s",
        "ping_s",
        "creds",
        "tls",
        "ca_file",
    }
)
_NAME = re.compile(r"[^.*>/\\\s]+")
_NOT_NAME = re.compile(r"[.*>/\\\s]")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII, no ':'
_ENCODED = re.compile(r"=\?utf-8\?b\?([A-Za-z0-9+/=]*)\?=")

T = TypeVar("T")


def _require_nats() -> None:
    try:
        import nats  # noqa: F401
    except ImportError as exc:
        raise MissingExtra("nats", "nats-py") from exc


# ------------------------------------------------------------------------------------- URLs


@dataclass(frozen=True, kw_only=True, slots=True)
class NatsSettings:
    """A ``nats://`` URL, parsed and checked (options: module docstring)."""

    servers: tuple[str, ...]
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds: str | None = None
    tls: bool = False
    ca_file: str | None = None
    stream: str | None = None
    subject: str | None = None
    durable: str | None = None
    lease_s: float = DEFAULT_LEASE_S
    max_deliver: int | None = None
    max_ack_pending: int | None = None
    start: Literal["all", "new"] = "all"
    create: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    ping_s: float = DEFAULT_PING_S

    @classmethod
    def from_url(cls, url: str) -> NatsSettings:
        """Parse ``url``. Raises DefinitionError if it is malformed."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "nats":
            raise DefinitionError(f"{redact_url(url)!r} is not a nats:// URL")
        query = parse_query(url, _OPTIONS)
        userinfo, _, hosts = parts.netloc.rpartition("@")
        user, has_password, password = userinfo.partition(":")
        stream = query.get("stream") or None
        if stream is not None and not _NAME.fullmatch(stream):
            raise DefinitionError(f"stream={stream!r}: no '.', '*', '>', '/', '\\' or spaces")
        start = query.get("start") or "all"
        if start not in ("all", "new"):
            raise DefinitionError(f"option start={start!r} must be all or new")
        durable = query.get("durable") or None
        if durable is not None and not _NAME.fullmatch(durable):
            raise DefinitionError(f"durable={durable!r}: no '.', '*', '>', '/', '\\' or spaces")
        return cls(
            servers=_servers(hosts, url),
            user=unquote(user) if has_password else None,
            password=unquote(password) if has_password else None,
            token=unquote(user) if userinfo and not has_password else None,
            creds=query.get("creds") or None,
            tls=parse_bool(query, "tls"),
            ca_file=query.get("ca_file") or None,
            stream=stream,
            subject=query.get("subject") or None,
            durable=durable,
            lease_s=parse_float(query, "lease_s", DEFAULT_LEASE_S, low=0.1, high=86400),
            max_deliver=parse_int(query, "max_deliver", low=1),
            max_ack_pending=parse_int(query, "max_ack_pending", low=1),
            start="new" if start == "new" else "all",
            create=parse_bool(query, "create"),
            timeout_s=parse_float(query, "timeout_s", DEFAULT_TIMEOUT_S, low=0.1, high=3600),
            ping_s=parse_float(query, "ping_s", DEFAULT_PING_S, low=0.5, high=3600),
        )

    @property
    def address(self) -> str:
        """The servers, with no credentials: for messages and logs."""
        return ",".join(self.servers)

    def durable_for(self, listener: str) -> str:
        """The durable consumer of ``listener``'s source: the URL's ``durable``, else
        :func:`default_durable`."""
        return self.durable or default_durable(listener)


def _servers(hosts: str, url: str) -> tuple[str, ...]:
    servers: list[str] = []
    for host in hosts.split(","):
        address = host.strip() or "127.0.0.1"
        name, colon, port = address.rpartition(":")
        if not colon:
            name, port = address, "4222"
        if not name or not port.isdigit():
            raise DefinitionError(f"{redact_url(url)!r}: {address!r} is not HOST:PORT")
        servers.append(f"nats://{name}:{port}")
    return tuple(servers)


def default_durable(listener: str) -> str:
    """``modelbus-LISTENER`` with the characters a durable name cannot hold replaced."""
    return _NOT_NAME.sub("_", f"modelbus-{listener}")


# ------------------------------------------------------------------------------ connection


class _Connection:
    """One NATS connection and its JetStream context; every call under a deadline, with
    nats-py's exceptions translated."""

    def __init__(self, settings: NatsSettings, listener: str, what: str) -> None:
        self.settings = settings
        self.listener = listener
        self.what = f"{what} at {settings.address}"
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._errors: list[Exception] = []

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ConnectorError(self.context("not open"))
        return self._client

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise ConnectorError(self.context("not open"))
        return self._js

    def context(self, text: str) -> str:
        """``listener 'x': TEXT (NATS stream 's' at nats://...)``."""
        return f"listener {self.listener!r}: {text} ({self.what})"

    async def open(self) -> None:
        """Connect. Raises ConnectorConfigError for refused credentials, ConnectorError if
        no server can be reached."""
        from nats.aio.client import Client

        client = Client()
        self._errors.clear()
        # Two tries per server (see below), each bounded by the connect timeout.
        deadline_s = len(self.settings.servers) * 2 * (CONNECT_TIMEOUT_S + RECONNECT_WAIT_S) + 1
        try:
            async with asyncio.timeout(deadline_s):
                await client.connect(**self._connect_options())
        except Exception as exc:
            await _quietly(client.close())
            if any(_is_auth_error(e) for e in [exc, *self._errors]):
                raise ConnectorConfigError(self.context("credentials refused")) from exc
            last = self._errors[-1] if self._errors else exc
            raise ConnectorError(self.context(f"cannot connect: {_describe(last)}")) from exc
        # Give up after two tries on the first connect (so a wrong address or credentials
        # fail fast), but once connected, reconnect forever: the listener keeps its
        # connection through a broker restart rather than being torn down and rebuilt.
        client.options["max_reconnect_attempts"] = -1
        self._client = client
        self._js = client.jetstream(timeout=self.settings.timeout_s)

    def _connect_options(self) -> dict[str, Any]:
        s = self.settings
        options: dict[str, Any] = {
            "servers": list(s.servers),
            "name": f"modelbus:{self.listener}",
            "connect_timeout": CONNECT_TIMEOUT_S,
            "reconnect_time_wait": RECONNECT_WAIT_S,
            "max_reconnect_attempts": 1,
            "ping_interval": s.ping_s,
            "max_outstanding_pings": MAX_OUTSTANDING_PINGS,
            "error_cb": self._on_error,
            "user": s.user,
            "password": s.password,
            "token": s.token,
        }
        if s.creds:
            options["user_credentials"] = s.creds
        if s.tls or s.ca_file:
            options["tls"] = ssl.create_default_context(cafile=s.ca_file)
        return options

    async def _on_error(self, exc: Exception) -> None:
        self._errors.append(exc)
        del self._errors[:-5]
        log.debug("%s: %s", self.what, exc)

    def check_connected(self) -> None:
        """Raise a transient ConnectorError while the connection is down (reconnecting)."""
        client = self.client
        if client.is_closed:
            raise ConnectorError(self.context("the connection is closed"))
        if not client.is_connected:
            raise ConnectorError(self.context("disconnected from NATS; reconnecting"))

    async def guard(self, awaitable: Awaitable[T], operation: str, wait_s: float = 0.0) -> T:
        """Await ``awaitable`` under the deadline, translating nats-py's exceptions."""
        timeout_s = self.settings.timeout_s + wait_s
        try:
            async with asyncio.timeout(timeout_s):
                return await awaitable
        except TimeoutError as exc:
            raise ConnectorError(
                self.context(f"{operation}: no answer in {timeout_s:g} s")
            ) from exc
        except Exception as exc:
            if isinstance(exc, ConnectorError):
                raise
            raise _translate(exc, self.context(f"{operation} failed: {_describe(exc)}")) from exc

    async def send_all(self, subjects: Sequence[str], payload: bytes, operation: str) -> None:
        """Send ``payload`` to every subject, then a PING: returns once the server has
        read them all (PONG), raises ConnectorError if it cannot tell."""
        if not subjects:
            return
        self.check_connected()
        client = self.client
        await self.guard(_publish_all(client, subjects, payload), operation)

    async def ensure_stream(self, subject: str | None) -> None:
        """Check the stream exists; create it with ``create=true``."""
        from nats.js.errors import NotFoundError

        stream = self.settings.stream
        assert stream is not None
        try:
            await self.guard(self.js.stream_info(stream), "stream info")
        except ConnectorConfigError as exc:
            if not isinstance(exc.__cause__, NotFoundError):
                raise
            if not self.settings.create:
                raise ConnectorConfigError(
                    self.context("the stream does not exist")
                    + "; create it, or add create=true to the URL"
                ) from exc
            subjects = [subject or f"{stream}.>"]
            await self.guard(self.js.add_stream(name=stream, subjects=subjects), "create stream")

    async def close(self) -> None:
        client, self._client, self._js = self._client, None, None
        if client is not None:
            await _quietly(client.close(), timeout_s=self.settings.timeout_s)


async def _publish_all(client: Client, subjects: Sequence[str], payload: bytes) -> None:
    for subject in subjects:
        await client.publish(subject, payload)
    await client.flush()


async def _quietly(awaitable: Awaitable[Any], timeout_s: float = 5.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await awaitable
    except Exception:
        log.debug("NATS close failed", exc_info=True)


def _is_auth_error(exc: BaseException) -> bool:
    from nats.errors import AuthorizationError

    text = str(exc).lower()
    return (
        isinstance(exc, AuthorizationError) or "authorization" in text or "authentication" in text
    )


def _describe(exc: Exception) -> str:
    description = getattr(exc, "description", None)
    return str(description or exc or type(exc).__name__)


def _translate(exc: Exception, message: str) -> ConnectorError:
    """nats-py's exception as a ConnectorError (permanent where configuration must change)."""
    from nats import errors as nx
    from nats.js import errors as jx

    if _is_auth_error(exc):
        return ConnectorConfigError(message)
    if isinstance(exc, jx.NotFoundError | jx.NoStreamResponseError | jx.BadRequestError):
        return ConnectorConfigError(message)
    if isinstance(exc, nx.BadSubjectError | nx.BadHeaderError):
        return ConnectorConfigError(message)
    if isinstance(exc, nx.MaxPayloadError):
        return ConnectorError(message, permanent=True)
    if isinstance(exc, jx.APIError) and exc.code is not None and 400 <= exc.code < 500:
        return ConnectorConfigError(message)
    return ConnectorError(message)


# ----------------------------------------------------------------------------------- source


@dataclass(frozen=True, slots=True)
class NatsHandle:
    """A JetStream delivery's handle: its reply (ack) subject and stream sequence."""

    reply: str
    sequence: int


class NatsSource:
    """Receives from one stream through a durable pull consumer (see the module docstring).
    ack, release and extend may run concurrently with receive; receive itself is not meant
    to run twice at once on one source."""

    def __init__(self, settings: NatsSettings, ctx: ConnectorContext) -> None:
        if settings.stream is None:
            raise DefinitionError(f"listener {ctx.listener!r}: a NATS source needs ?stream=NAME")
        self.settings = settings
        self.stream: str = settings.stream
        self.durable = settings.durable_for(ctx.listener)
        what = f"NATS stream {self.stream!r}, consumer {self.durable!r}"
        self._nats = _Connection(settings, ctx.listener, what)
        self._subscription: JetStreamContext.PullSubscription | None = None
        # stream sequence -> the highest attempt handed out, most recent last
        self._attempts: OrderedDict[int, int] = OrderedDict()
        self._holds = Holds(settings.lease_s, self._in_progress, self._nats.what)

    @property
    def lease_s(self) -> float:
        """The consumer's ``ack_wait`` (the URL's ``lease_s``)."""
        return self.settings.lease_s

    async def open(self) -> None:
        """Connect, check the stream (creating it with ``create=true``), create or update
        the durable consumer and bind a pull subscription to it. Raises
        ConnectorConfigError (credentials, missing stream, refused consumer settings) or
        ConnectorError (unreachable)."""
        await self._nats.open()
        try:
            await self._nats.ensure_stream(self.settings.subject)
            await self._ensure_consumer()
            self._subscription = await self._nats.guard(
                self._nats.js.pull_subscribe_bind(durable=self.durable, stream=self.stream),
                "subscribe",
            )
        except BaseException:
            await self._nats.close()
            raise

    async def _ensure_consumer(self) -> None:
        """Create the durable consumer, or update the settings this URL fixes."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        s = self.settings
        wanted: dict[str, Any] = {
            "ack_wait": s.lease_s,
            "max_deliver": s.max_deliver or -1,
            "filter_subject": s.subject,
            "max_ack_pending": s.max_ack_pending,
        }
        try:
            info = await self._nats.guard(
                self._nats.js.consumer_info(self.stream, self.durable), "consumer info"
            )
        except ConnectorConfigError as exc:
            if not isinstance(exc.__cause__, NotFoundError):
                raise
            policy = DeliverPolicy.NEW if s.start == "new" else DeliverPolicy.ALL
            config = ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=policy,
                **wanted,
            )
        else:
            current = info.config
            if all(getattr(current, k) == v for k, v in wanted.items() if v is not None):
                return
            config = _replace_config(current, wanted)
        await self._nats.guard(self._nats.js.add_consumer(self.stream, config), "create consumer")

    async def receive(self, max_messages: int, wait_s: float) -> list[Delivery]:
        """Up to ``max_messages`` deliveries: what is waiting at once, else the first to
        arrive within ``wait_s``. Raises ConnectorError while disconnected or when the
        consumer is gone (ConnectorConfigError)."""
        if self._subscription is None:
            raise ConnectorError(self._nats.context("not open"))
        if max_messages < 1:
            return []
        self._nats.check_connected()
        fetch_s = max(wait_s, _MIN_FETCH_S)
        messages = await self._nats.guard(
            _fetch(self._subscription, max_messages, fetch_s), "fetch", wait_s=fetch_s
        )
        if not messages:
            self._nats.check_connected()  # nothing came because the connection dropped?
        return [self._delivery(message) for message in messages]

    def _delivery(self, message: Msg) -> Delivery:
        delivery = _delivery(message)
        sequence = int(delivery.message_id)
        # Never report fewer attempts than this source has already seen (server bug, see
        # the module docstring).
        attempt = max(delivery.attempt, self._attempts.pop(sequence, 0) + 1)
        self._attempts[sequence] = attempt
        if len(self._attempts) > _REMEMBERED_ATTEMPTS:
            self._attempts.popitem(last=False)
        return replace(delivery, attempt=attempt)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge every delivery (``+ACK``); returns once the server has read the acks.
        Idempotent. Raises ConnectorError (transient) when the connection is down."""
        self._holds.forget(deliveries)
        await self._nats.send_all(_replies(deliveries), _ACK, "ack")
        for delivery in deliveries:
            self._attempts.pop(int(delivery.message_id), None)

    async def release(self, delivery: Delivery, delay_s: float) -> None:
        """``nak`` with ``delay_s``: JetStream hands the message out again, to any replica,
        no sooner than ``delay_s`` from now, with the next delivery count. Raises
        ConnectorError."""
        self._holds.forget([delivery])
        payload = _NAK
        if delay_s > 0:
            payload += b' {"delay": %d}' % int(delay_s * 1e9)
        await self._nats.send_all(_replies([delivery]), payload, "nak")

    async def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        """``in_progress`` for each: nobody else gets them for ``ack_wait`` more seconds; a
        longer ``lease_s`` is renewed by this source every third of an ack wait until it is
        due (see :class:`~modelbus.connectors.leases.Holds`). Raises ConnectorError."""
        if not deliveries:
            return
        now = time.monotonic()
        covered_s = await self._in_progress(deliveries, lease_s)
        if lease_s > covered_s:
            self._holds.hold(deliveries, until=now + lease_s, covered=now + covered_s)
        else:
            self._holds.forget(deliveries)

    async def _in_progress(self, deliveries: Sequence[Delivery], lease_s: float) -> float:
        await self._nats.send_all(_replies(deliveries), _IN_PROGRESS, "in progress")
        return self.settings.lease_s

    async def backlog(self) -> int:
        """The durable consumer's ``num_pending``: messages of its subject in the stream not
        yet delivered to it. Deliveries awaiting their ack (``num_ack_pending``), retries
        waiting out a nak delay among them, are not counted."""
        info = await self._nats.guard(
            self._nats.js.consumer_info(self.stream, self.durable), "consumer info"
        )
        return int(info.num_pending or 0)

    async def close(self) -> None:
        """Stop renewing leases and disconnect. Unacked deliveries come back once their ack
        wait is over."""
        await self._holds.close()
        self._subscription = None
        await self._nats.close()


async def _fetch(
    subscription: JetStreamContext.PullSubscription, count: int, wait_s: float
) -> list[Msg]:
    """What ``fetch`` gets; nothing if it times out (nats-py raises one of several
    TimeoutErrors when nothing came). Our own deadline cancels it instead."""
    try:
        return await subscription.fetch(batch=count, timeout=wait_s)
    except TimeoutError:
        return []


def _replace_config(current: Any, wanted: Mapping[str, Any]) -> Any:
    return replace(current, **{k: v for k, v in wanted.items() if v is not None})


def _replies(deliveries: Sequence[Delivery]) -> list[str]:
    replies: dict[str, None] = {}
    for delivery in deliveries:
        if not isinstance(delivery.handle, NatsHandle):
            raise ConnectorError(f"delivery {delivery.message_id!r} did not come from NATS")
        replies[delivery.handle.reply] = None
    return list(replies)


def _delivery(message: Msg) -> Delivery:
    metadata = message.metadata
    return Delivery(
        message_id=str(metadata.sequence.stream),
        body=bytes(message.data),
        attributes=_attributes(message.headers or {}),
        attempt=metadata.num_delivered,
        enqueued_at=metadata.timestamp.timestamp(),
        handle=NatsHandle(reply=message.reply, sequence=metadata.sequence.stream),
    )


def _attributes(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name: _decode_value(value)
        for name, value in headers.items()
        if not name.lower().startswith("nats-")
    }


def _decode_value(value: str) -> str:
    match = _ENCODED.fullmatch(value)
    if match is None:
        return value
    try:
        return base64.b64decode(match.group(1), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return value


def _encode_value(value: str) -> str:
    """``value`` as NATS carries it verbatim, else as an RFC 2047 encoded word."""
    plain = (
        value == value.strip()
        and "\r" not in value
        and "\n" not in value
        and not value.startswith("=?")
    )
    if plain:
        return value
    return "=?utf-8?b?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="


# ------------------------------------------------------------------------------------- sink


class NatsSink:
    """Publishes to one subject through JetStream (see the module docstring)."""

    def __init__(self, settings: NatsSettings, ctx: ConnectorContext) -> None:
        if settings.subject is None:
            raise DefinitionError(f"listener {ctx.listener!r}: a NATS sink needs ?subject=NAME")
        self.settings = settings
        self.subject: str = settings.subject
        self._nats = _Connection(settings, ctx.listener, f"NATS subject {self.subject!r}")

    async def open(self) -> None:
        """Connect and check a stream captures the subject (with ``stream``: that stream,
        created with ``create=true``). Raises ConnectorConfigError if none does or the
        credentials are refused, ConnectorError if the server cannot be reached."""
        await self._nats.open()
        try:
            if self.settings.stream is not None:
                await self._nats.ensure_stream(self.subject)
            await self._check_subject()
        except BaseException:
            await self._nats.close()
            raise

    async def _check_subject(self) -> None:
        from nats.js.errors import NotFoundError

        try:
            found = await self._nats.guard(
                self._nats.js.find_stream_name_by_subject(self.subject), "find stream"
            )
        except ConnectorConfigError as exc:
            if isinstance(exc.__cause__, NotFoundError):
                raise ConnectorConfigError(
                    self._nats.context("no JetStream stream captures this subject")
                ) from exc
            raise
        expected = self.settings.stream
        if expected is not None and found != expected:
            raise ConnectorConfigError(
                self._nats.context(f"the subject is captured by stream {found!r}, not {expected!r}")
            )

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Publish ``messages`` (concurrently, ``Nats-Msg-Id`` = id) and return once every
        PubAck is in. Raises ConnectorError(permanent=True) before sending anything for a
        message over ``max_payload`` or an attribute NATS cannot carry, ConnectorError if a
        publish fails (the stream dedupes the ones that did not when the runtime retries)."""
        prepared = [(m, self._headers(m)) for m in messages]
        client = self._nats.client
        for message, headers in prepared:
            self._check_size(message, headers, client.max_payload)
        self._nats.check_connected()
        for start in range(0, len(prepared), _PUBLISH_WINDOW):
            window = prepared[start : start + _PUBLISH_WINDOW]
            await self._nats.guard(self._publish_window(window), "publish")

    async def _publish_window(self, window: Sequence[tuple[OutMessage, dict[str, str]]]) -> None:
        """Send every message of ``window`` and wait for all their PubAcks."""
        js = self._nats.js
        futures: list[asyncio.Future[Any]] = []
        try:
            for message, headers in window:
                futures.append(
                    await js.publish_async(
                        self.subject, message.body, stream=self.settings.stream, headers=headers
                    )
                )
            results = await asyncio.gather(*futures, return_exceptions=True)
        finally:
            for future in futures:  # cancelled or failed half-way: free their slots
                future.cancel()
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]

    def _headers(self, message: OutMessage) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in message.attributes.items():
            if not _HEADER_NAME.fullmatch(name) or name.lower().startswith("nats-"):
                raise ConnectorError(
                    self._nats.context(
                        f"message {message.id!r}: attribute name {name!r} cannot be a NATS "
                        "header (printable ASCII without ':', not starting with Nats-)"
                    ),
                    permanent=True,
                )
            headers[name] = _encode_value(value)
        headers["Nats-Msg-Id"] = message.id
        return headers

    def _check_size(self, message: OutMessage, headers: Mapping[str, str], limit: int) -> None:
        header_bytes = _HEADER_OVERHEAD_BYTES + sum(
            len(k) + len(v.encode()) + 4 for k, v in headers.items()
        )
        size = len(message.body) + header_bytes
        if size > limit:
            raise ConnectorError(
                self._nats.context(
                    f"message {message.id!r} is {size} bytes with its headers, over the "
                    f"server's max_payload of {limit} bytes; raise max_payload in the NATS "
                    "server configuration, or store large payloads elsewhere"
                ),
                permanent=True,
            )

    async def close(self) -> None:
        """Disconnect."""
        await self._nats.close()


def backlog(url: str, listener: str) -> Backlog:
    """Where ``listener``'s backlog is: the messages of the stream (within the URL's
    ``subject`` filter) its durable consumer has not acknowledged, delivered (in flight)
    or not. ``where``: ``servers``
    (comma-separated ``nats://HOST:PORT``), ``stream``, ``durable``
    (:meth:`NatsSettings.durable_for`); no ``secrets`` (JetStream's figures are read from
    the servers' monitoring endpoint, not through a client connection). Raises
    DefinitionError for a malformed URL or one without ``stream``."""
    settings = NatsSettings.from_url(url)
    if settings.stream is None:
        raise DefinitionError(f"{redact_url(url)!r}: a NATS source needs ?stream=NAME")
    return Backlog(
        broker="nats",
        where={
            "servers": settings.address,
            "stream": settings.stream,
            "durable": settings.durable_for(listener),
        },
    )


def make_source(url: str, ctx: ConnectorContext) -> NatsSource:
    """An unopened NatsSource for ``url``. Raises DefinitionError for a malformed URL or one
    without ``stream``, MissingExtra without nats-py (``pip install 'modelbus[nats]'``)."""
    settings = NatsSettings.from_url(url)
    _require_nats()
    return NatsSource(settings, ctx)


def make_sink(url: str, ctx: ConnectorContext) -> NatsSink:
    """An unopened NatsSink for ``url`` (it needs ``subject``); raises like
    :func:`make_source`."""
    settings = NatsSettings.from_url(url)
    _require_nats()
    return NatsSink(settings, ctx)
