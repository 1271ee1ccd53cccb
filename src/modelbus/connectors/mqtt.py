"""MQTT 3.1.1 and 5: a Source and a Sink, on paho-mqtt 2 (``pip install 'modelbus[mqtt]'``).

URLs::

    mqtt://USER:PASSWORD@HOST:PORT/TOPIC?version=5&group=NAME
    mqtts://...                                       (TLS, port 8883 by default)

The path is the topic (source: a topic filter; URL-encode ``#`` as ``%23``), e.g.
``mqtt://127.0.0.1/sensors/%2B/temperature`` subscribes to ``sensors/+/temperature``.

Query options:

* ``version``: ``5`` (default) or ``3.1.1``.
* ``qos``: ``1``, the only level offered: QoS 0 loses messages, and QoS 2's exchange buys
  nothing over QoS 1 with modelbus's dedupe by message id.
* ``group`` (source): the shared-subscription group, default the listener's name. The source
  subscribes to ``$share/<group>/<topic>``: listeners with different groups each receive
  every message; the replicas of one listener (one group) compete for them.
* ``shared`` (source, default true): ``shared=false`` subscribes to the topic itself, not in
  a group: for a listener run as ONE replica (several would each get every message; with
  several nodes, modelbus runs it on one node at a time) on a broker that forgets shared
  subscriptions when it restarts. Mosquitto 2.0 does: after a
  restart it restores a persistent session's plain subscriptions, and its queued messages,
  but not its shared ones, so what is published between the restart and the listener's
  reconnect (a few seconds) reaches no one. With ``shared=false`` the restored session
  queues it. (A broker crash loses what Mosquitto acknowledged since its last save either
  way: see its ``autosave_interval``.)
* ``client_id`` (source): the prefix of the source's client ids (see "Sessions"); default
  ``modelbus-<listener>-<node>``, ``<node>`` a random id kept in the data directory.
* ``session_expiry_s`` (source, version 5): how long the broker keeps a disconnected
  session and its messages; default 604800 (a week). Version 3.1.1 sessions never expire
  unless the broker says so (Mosquitto's ``persistent_client_expiration``).
* ``inflight`` (source, version 5): the Receive Maximum, the most unacked messages the broker
  hands this client at once (default 20; with 3.1.1 the broker's own limit applies,
  Mosquitto's ``max_inflight_messages``, 20 by default).
* ``retry_topic`` (source): where released messages come back, default
  ``modelbus/retry/<group>`` (the source subscribes to it in its group as well).
* ``envelope=true`` (sink, version 3.1.1): wrap each message in modelbus's envelope so that
  its id and attributes travel (3.1.1 has no message properties); default false: the bare
  body, and the attributes are dropped. The source unwraps envelopes in either version.
* ``keepalive_s`` (default 10, at least 5): the client pings a connection idle this long and
  drops it when the answer does not come within another ``keepalive_s``, so a silent network
  is noticed within about twice this (the broker drops the session after 1.5 times it).
* ``timeout_s``: the deadline of connecting, subscribing and each publish (default 10).

Sessions. A source connects with a persistent session (3.1.1 ``clean_session=0``, 5
``clean_start=0`` with ``session_expiry_s``) under the client id
``<client_id>-<subscriptions>-<slot>``: ``<subscriptions>`` six hex digits of a hash of its
topic filters (so a listener whose topic, group or ``shared`` changes starts a new session,
rather than resuming one that still holds the old subscriptions and their messages), the
slot the lowest number not held by another source of the same data directory (a lock file).
So a replica that restarts gets its session back, and with it the messages it held unacked:
the broker sends them again (flagged DUP). Messages are PUBACKed only when the runtime acks
(paho's manual acks). MQTT has no leases and no redelivery to other clients: a delivery stays
with its session until PUBACKed, so :attr:`MqttSource.lease_s` is None and ``extend`` does
nothing; a replica that dies and never comes back strands what it held (and what the broker
queued for it as a member of the group) until its session expires. Mosquitto drops messages
beyond ``max_queued_messages`` (1000 by default) per session: raise it in production.

Ids and attempts. ``Delivery.message_id`` is the sender's ``modelbus-id`` (a user property
in version 5, the envelope's ``id``), else ``sha256:`` of the session, packet id, topic and
payload (a resend after a reconnect reuses the packet id). ``attempt`` is the carried
``modelbus-attempt`` (1 if absent) plus one if the broker flags the delivery as a resend, so
several crashes of the same replica while holding a message count once.
``attributes`` are the version 5 user properties (but the connector's own ``modelbus-id``,
``modelbus-attempt``, ``modelbus-topic``, ``modelbus-escaped``) and content type,
or the envelope's attributes, plus ``mqtt-topic``, the topic the message was published to.
Brokers refuse control characters in user properties (Mosquitto drops the connection as
"malformed UTF-8"), so the sink percent-escapes an attribute whose name or value holds one
(a stack trace's newlines...) and lists it in the ``modelbus-escaped`` property (a JSON list);
the source unescapes exactly those.

Release: retries kept by modelbus, since MQTT has no redelivery delay.
``release(delivery, delay_s)`` writes a copy (``modelbus-attempt`` one higher, the same
``modelbus-id``, the original topic) to a small SQLite file in the data directory
(``mqtt/<listener>.retries.sqlite3``, synchronous commits), THEN PUBACKs the original. Every
open source of that listener on this node publishes the copies that are due to the retry
topic (QoS 1, waiting for the PUBACK) and deletes them after. Guarantee: the copy is
delivered to some replica of the listener no sooner than ``delay_s`` after the release and,
unless this node's data directory is lost, at least once; it waits (past its due time) while
no source of the listener is open on this node. A crash between publishing and deleting
sends a copy twice (the shared id lets the runtime drop one). A release costs one SQLite
commit, one PUBACK and, when due, one QoS 1 publish.

Sink. A clean session; each message a QoS 1 publish to the topic, its id as the
``modelbus-id`` user property and the attributes as user properties (``content-type`` as
the content type) in version 5; ``publish`` returns when the broker has PUBACKed every one
(Mosquitto acknowledges from memory and writes its persistence file on its own schedule:
``autosave_interval``). ``OutMessage.key`` is not used.

Connections set TCP_NODELAY (paho does not, and a publish-then-ack loop crawls without it).
Errors: refused credentials, a refused client id or subscription raise ConnectorConfigError;
an unreachable broker, timeouts and lost connections raise ConnectorError; both name the
listener. A lost connection is not repaired behind the runtime's back: ``receive``, ``ack``
and ``publish`` raise, and the runtime closes and reopens. Acks of deliveries from an earlier
connection are skipped: the broker sends those again, flagged DUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import re
import socket
import sqlite3
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import unquote, urlsplit

from modelbus.connectors.base import ConnectorContext, Delivery, OutMessage
from modelbus.connectors.urls import parse_bool, parse_int, parse_query, redact_url
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError, MissingExtra

if TYPE_CHECKING:
    from paho.mqtt.client import Client as PahoClient
    from paho.mqtt.client import MQTTMessage
    from paho.mqtt.properties import Properties

__all__ = [
    "ENVELOPE_MAGIC",
    "MqttHandle",
    "MqttSettings",
    "MqttSink",
    "MqttSource",
    "decode_envelope",
    "encode_envelope",
    "make_sink",
    "make_source",
    "shared_source",
]

log = logging.getLogger(__name__)

MQTT_OPTIONS = frozenset(
    {
        "version",
        "qos",
        "group",
        "shared",
        "client_id",
        "session_expiry_s",
        "inflight",
        "retry_topic",
        "envelope",
        "keepalive_s",
        "timeout_s",
    }
)
DEFAULT_TIMEOUT_S = 10
DEFAULT_KEEPALIVE_S = 10
DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600
DEFAULT_INFLIGHT = 20
ID_PROPERTY = "modelbus-id"
ATTEMPT_PROPERTY = "modelbus-attempt"
TOPIC_PROPERTY = "modelbus-topic"
ESCAPED_PROPERTY = "modelbus-escaped"
# What MQTT brokers refuse in a UTF-8 string (U+0000 always; Mosquitto also the other C0 and
# C1 control characters), escaped as %XX with "%" itself (see the module docstring).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# An envelope: this magic, a 4-byte big-endian header length, a JSON header, the body.
ENVELOPE_MAGIC = b"\x00modelbus-envelope/1\n"
# Reason codes (MQTT 5; paho maps 3.1.1 return codes onto them) that no retry can fix.
_PERMANENT_REFUSALS = frozenset({133, 134, 135, 138, 140})
_MISC_INTERVAL_S = 1.0
_PUMP_POLL_S = 1.0  # how often the retry pump looks for rows other processes wrote
_CLAIM_S = 60.0  # a claimed retry not deleted within this is published again
_LOST = object()  # put in the buffer when the connection drops, to wake a waiting receive
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, kw_only=True, slots=True)
class MqttSettings:
    """An ``mqtt://`` URL, parsed and checked (see the module docstring for the options)."""

    host: str
    port: int
    topic: str
    user: str | None = None
    password: str | None = None
    tls: bool = False
    version: int = 5
    group: str | None = None
    shared: bool = True
    client_id: str | None = None
    session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S
    inflight: int = DEFAULT_INFLIGHT
    retry_topic: str | None = None
    envelope: bool = False
    keepalive_s: int = DEFAULT_KEEPALIVE_S
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_url(cls, url: str) -> MqttSettings:
        """Parse ``mqtt(s)://...``. Raises DefinitionError if malformed."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("mqtt", "mqtts"):
            raise DefinitionError(f"{redact_url(url)!r} is not an mqtt:// or mqtts:// URL")
        query = parse_query(url, MQTT_OPTIONS)
        _check_qos(query)
        try:
            port = parts.port or (8883 if scheme == "mqtts" else 1883)
        except ValueError:
            raise DefinitionError(f"{redact_url(url)!r}: the port is not a number") from None
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            topic=_topic(url, parts.path, parts.fragment),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=scheme == "mqtts",
            version=_version(query),
            group=_group(query.get("group")),
            shared=parse_bool(query, "shared", default=True),
            client_id=query.get("client_id") or None,
            session_expiry_s=_int_or(
                query, "session_expiry_s", DEFAULT_SESSION_EXPIRY_S, 2**32 - 1
            ),
            inflight=_int_or(query, "inflight", DEFAULT_INFLIGHT, 65535, low=1),
            retry_topic=query.get("retry_topic") or None,
            envelope=parse_bool(query, "envelope"),
            keepalive_s=_int_or(query, "keepalive_s", DEFAULT_KEEPALIVE_S, 65535, low=5),
            timeout_s=_int_or(query, "timeout_s", DEFAULT_TIMEOUT_S, 3600, low=1),
        )

    def where(self) -> str:
        """The broker, for messages (never the password)."""
        return f"MQTT broker at {self.host}:{self.port}"


def _check_qos(query: Mapping[str, str]) -> None:
    if query.get("qos", "1") != "1":
        raise DefinitionError(
            "option qos must be 1: QoS 0 loses messages, and QoS 2 adds nothing to QoS 1 "
            "with modelbus's dedupe"
        )


def _topic(url: str, path: str, fragment: str) -> str:
    topic = unquote(path[1:] if path.startswith("/") else path)
    if fragment == "" and url.endswith("#"):
        topic += "#"  # an unencoded trailing '#' would otherwise vanish as a fragment
    elif fragment:
        raise DefinitionError(f"{redact_url(url)!r}: write '#' in a topic filter as %23")
    if not topic:
        raise DefinitionError(f"{redact_url(url)!r}: give the topic as the URL's path")
    return topic


def _version(query: Mapping[str, str]) -> int:
    raw = query.get("version") or "5"
    if raw in ("5", "5.0"):
        return 5
    if raw in ("3.1.1", "311", "4"):
        return 4
    raise DefinitionError(f"option version={raw!r} must be 5 or 3.1.1")


def _group(raw: str | None) -> str | None:
    if raw and any(c in raw for c in "/+#"):
        raise DefinitionError(f"option group={raw!r} must not contain '/', '+' or '#'")
    return raw or None


def _int_or(query: Mapping[str, str], name: str, default: int, high: int, *, low: int = 0) -> int:
    value = parse_int(query, name, low=low, high=high)
    return default if value is None else value


def require_paho() -> None:
    """Raise MissingExtra unless paho-mqtt is installed."""
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError as exc:
        raise MissingExtra("mqtt", "paho-mqtt") from exc


# --- envelopes (MQTT 3.1.1 has no message properties) ----------------------------------------


def encode_envelope(body: bytes, header: Mapping[str, Any]) -> bytes:
    """``body`` wrapped with ``header`` (JSON: ``id``, ``attempt``, ``topic``,
    ``attributes``) in modelbus's envelope."""
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return ENVELOPE_MAGIC + struct.pack(">I", len(encoded)) + encoded + body


def decode_envelope(payload: bytes) -> tuple[bytes, dict[str, Any]] | None:
    """(body, header) of an envelope, or None if ``payload`` is not one."""
    if not payload.startswith(ENVELOPE_MAGIC):
        return None
    start = len(ENVELOPE_MAGIC) + 4
    try:
        (length,) = struct.unpack(">I", payload[len(ENVELOPE_MAGIC) : start])
        header = json.loads(payload[start : start + length])
    except (struct.error, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    return payload[start + length :], header


# --- the client: paho driven by the asyncio loop -------------------------------------------


class _Connection:
    """One paho client connection, driven by the running asyncio loop (no paho thread).

    paho connects with a blocking socket call, so that runs in a worker thread; every other
    call into paho happens on the loop. Socket callbacks paho makes from the worker thread
    are handed to the loop with ``call_soon_threadsafe``."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        listener: str,
        client_id: str,
        persistent: bool,
        on_message: Callable[[MQTTMessage], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        from paho.mqtt.client import Client
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self.settings = settings
        self.listener = listener
        self.client_id = client_id
        self._persistent = persistent
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        protocol = (
            MQTTProtocolVersion.MQTTv5 if settings.version == 5 else MQTTProtocolVersion.MQTTv311
        )
        self.paho: PahoClient = Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if settings.version == 5 else not persistent,
            protocol=protocol,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        self._on_message = on_message
        self._on_lost = on_lost
        self._connected: asyncio.Future[None] = self._loop.create_future()
        # A connection lost before anyone awaited the CONNACK is no news to log at exit
        self._connected.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._acks: dict[int, asyncio.Future[None]] = {}
        self.lost = asyncio.Event()
        self.session_present = False
        self._fd: int | None = None
        self._misc: asyncio.Task[None] | None = None
        self._configure()

    def _configure(self) -> None:
        s, paho = self.settings, self.paho
        if s.user is not None:
            paho.username_pw_set(s.user, s.password)
        if s.tls:
            paho.tls_set_context(ssl.create_default_context())
        paho.connect_timeout = s.timeout_s
        paho.on_socket_open = self._socket_open
        paho.on_socket_close = self._socket_close
        paho.on_socket_register_write = self._register_write
        paho.on_socket_unregister_write = self._unregister_write
        paho.on_connect = self._on_connect
        paho.on_disconnect = self._on_disconnect
        paho.on_publish = self._on_ack
        paho.on_subscribe = self._on_subscribe
        if self._on_message is not None:
            paho.on_message = self._message

    # socket plumbing -------------------------------------------------------------------------

    def _soon(self, function: Callable[..., Any], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            function(*args)
        else:
            self._loop.call_soon_threadsafe(function, *args)

    def _socket_open(self, _client: Any, _userdata: Any, sock: Any) -> None:
        with contextlib.suppress(OSError):  # not a TCP socket (unix, websocket wrappers)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fd = sock.fileno()
        self._fd = fd
        self._soon(self._loop.add_reader, fd, self._read)

    def _socket_close(self, _client: Any, _userdata: Any, _sock: Any) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            self._soon(self._remove, fd)

    def _remove(self, fd: int) -> None:
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)

    def _register_write(self, _client: Any, _userdata: Any, sock: Any) -> None:
        fd = self._fd
        if fd is not None:
            self._soon(self._loop.add_writer, fd, self._write)

    def _unregister_write(self, _client: Any, _userdata: Any, _sock: Any) -> None:
        fd = self._fd
        if fd is not None:
            self._soon(self._loop.remove_writer, fd)

    def _read(self) -> None:
        self.paho.loop_read(max_packets=100)

    def _write(self) -> None:
        self.paho.loop_write()

    async def _misc_loop(self) -> None:
        while not self.lost.is_set():
            await asyncio.sleep(_MISC_INTERVAL_S)
            self.paho.loop_misc()

    # connecting ------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and wait for the CONNACK. Raises ConnectorConfigError if the broker
        refuses the credentials or client id, ConnectorError otherwise."""
        s = self.settings
        self.paho.connect_async(
            s.host,
            s.port,
            s.keepalive_s,
            clean_start=not self._persistent,
            properties=self._props(),
        )
        doing = f"connecting to {s.where()} as {self.client_id!r}"
        try:
            await asyncio.wait_for(asyncio.to_thread(self.paho.reconnect), s.timeout_s)
            self._misc = asyncio.create_task(self._misc_loop(), name=f"mqtt-misc:{self.client_id}")
            await asyncio.wait_for(asyncio.shield(self._connected), s.timeout_s)
        except ConnectorError:
            self.close_now()
            raise
        except Exception as exc:  # OSError, TimeoutError, paho's ValueError for a bad host
            self.close_now()
            raise ConnectorError(f"listener {self.listener!r}: {doing}: {_describe(exc)}") from exc

    def _props(self) -> Properties | None:
        if self.settings.version != 5:
            return None
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.session_expiry_s if self._persistent else 0
        if self._on_message is not None:
            props.ReceiveMaximum = self.settings.inflight
        return props

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _props: Any) -> None:
        if self._connected.done():
            return
        if not reason.is_failure:
            self.session_present = bool(flags.session_present)
            self._connected.set_result(None)
            return
        context = f"listener {self.listener!r}: {self.settings.where()} refused {self.client_id!r}"
        error_type = ConnectorConfigError if reason.value in _PERMANENT_REFUSALS else ConnectorError
        self._connected.set_exception(error_type(f"{context}: {reason}"))

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.lost.set()
        error = ConnectorError(
            f"listener {self.listener!r}: connection to {self.settings.where()} lost ({reason})"
        )
        if not self._connected.done():
            self._connected.set_exception(error)
        self._cancel_waits()
        if self._on_lost is not None:
            self._on_lost()

    # subscribing, publishing, acking ---------------------------------------------------------

    async def subscribe(self, filters: Sequence[str]) -> None:
        """Subscribe to ``filters`` at QoS 1 and wait for the SUBACK. Raises
        ConnectorConfigError if the broker refuses one."""
        if self.settings.version == 5:
            from paho.mqtt.subscribeoptions import SubscribeOptions

            topics: list[Any] = [(f, SubscribeOptions(qos=1)) for f in filters]
        else:
            topics = [(f, 1) for f in filters]
        result, mid = self.paho.subscribe(topics)
        self._check(result, "subscribing")
        assert mid is not None
        future = self._acks[mid] = self._loop.create_future()
        await self._settle([future], f"subscribing to {list(filters)}")

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[Any], _props: Any) -> None:
        future = self._acks.pop(mid, None)
        if future is None or future.done():
            return
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            context = f"listener {self.listener!r}: {self.settings.where()} refused a subscription"
            future.set_exception(ConnectorConfigError(f"{context}: {', '.join(refused)}"))
        else:
            future.set_result(None)

    def publish(self, topic: str, payload: bytes, props: Properties | None) -> asyncio.Future[None]:
        """Send one QoS 1 PUBLISH; the future resolves on its PUBACK."""
        info = self.paho.publish(topic, payload, qos=1, properties=props)
        self._check(info.rc, f"publishing to {topic!r}")
        future = self._acks[info.mid] = self._loop.create_future()
        return future

    def _on_ack(self, _c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
        future = self._acks.pop(mid, None)
        if future is None or future.done():
            return
        if reason.is_failure:
            future.set_exception(
                ConnectorError(
                    f"listener {self.listener!r}: the broker refused a message: {reason}"
                )
            )
        else:
            future.set_result(None)

    async def wait_acks(self, futures: Sequence[asyncio.Future[None]], doing: str) -> None:
        """Wait for every PUBACK in ``futures`` (the deadline grows with their number)."""
        await self._settle(futures, doing, self.settings.timeout_s + len(futures) * 0.01)

    async def _settle(
        self, futures: Sequence[asyncio.Future[None]], doing: str, timeout_s: float | None = None
    ) -> None:
        """Wait for ``futures`` (acks by the broker); raise the first refusal, or
        ConnectorError if the connection is lost or the deadline passes first."""
        if not futures:
            return
        done, pending = await asyncio.wait(futures, timeout=timeout_s or self.settings.timeout_s)
        context = f"listener {self.listener!r}: {doing}"
        if pending:
            raise ConnectorError(f"{context}: no answer from {self.settings.where()} in time")
        if any(future.cancelled() for future in done):
            raise ConnectorError(f"{context}: the connection to {self.settings.where()} is lost")
        for future in done:
            future.result()

    def _cancel_waits(self) -> None:
        for future in self._acks.values():
            future.cancel()
        self._acks.clear()

    def ack(self, mid: int) -> None:
        """PUBACK an incoming QoS 1 message."""
        self._check(self.paho.ack(mid, 1), "acking")

    def _check(self, rc: Any, doing: str) -> None:
        from paho.mqtt.client import error_string
        from paho.mqtt.enums import MQTTErrorCode

        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                self.lost.set()
            raise ConnectorError(f"listener {self.listener!r}: {doing}: {error_string(rc)}")

    def _message(self, _c: Any, _u: Any, message: MQTTMessage) -> None:
        if self._on_message is not None:
            self._on_message(message)

    # closing ---------------------------------------------------------------------------------

    async def disconnect(self) -> None:
        """Send DISCONNECT (best effort) and close the socket."""
        if not self.lost.is_set():
            with contextlib.suppress(Exception):
                self.paho.disconnect()
                self.paho.loop_write()
        self.close_now()

    def close_now(self) -> None:
        """Close the socket at once and stop the keepalive task."""
        self.lost.set()
        if self._misc is not None:
            self._misc.cancel()
        fd, self._fd = self._fd, None
        if fd is not None:
            self._remove(fd)
        sock = self.paho.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self._cancel_waits()
        if self._connected.done() and not self._connected.cancelled():
            self._connected.exception()  # retrieved: connect() may have given up already


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


# --- client identity ------------------------------------------------------------------------


def _safe(name: str) -> str:
    return _NAME_UNSAFE.sub("_", name)


def _node_id(data_dir: Path) -> str:
    """A random id of this node, made once and kept in the data directory."""
    path = data_dir / "mqtt" / "node-id"
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text().strip()
        if existing:
            return existing
    candidate = uuid.uuid4().hex[:8]
    try:
        with path.open("x") as out:
            out.write(candidate)
    except FileExistsError:
        return path.read_text().strip() or candidate
    return candidate


class _Slot:
    """The lowest client-id slot of ``prefix`` that no other process (or source) holds,
    taken with an exclusive lock file; released on close or when the process dies."""

    def __init__(self, data_dir: Path, prefix: str) -> None:
        folder = data_dir / "mqtt" / "slots"
        folder.mkdir(parents=True, exist_ok=True)
        self.number = 0
        self._file: TextIO | None = None
        while self._file is None:
            handle = (folder / f"{_safe(prefix)}-{self.number}.lock").open("w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                self.number += 1
                continue
            self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the lock
            self._file = None


# --- retries kept by modelbus ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class _Retry:
    row_id: int
    topic: str
    payload: bytes
    user_properties: list[tuple[str, str]]
    content_type: str | None


class _RetryStore:
    """Released copies waiting for their time, in a SQLite file of the data directory.
    Several processes of one node may share it: rows are claimed before publishing."""

    _SCHEMA = """
        CREATE TABLE IF NOT EXISTS retries (
            id INTEGER PRIMARY KEY,
            retry_topic TEXT NOT NULL,
            due_at REAL NOT NULL,
            claimed_until REAL NOT NULL DEFAULT 0,
            payload BLOB NOT NULL,
            properties TEXT NOT NULL
        )
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(self._SCHEMA)
        self._lock = threading.Lock()

    async def add(self, retry_topic: str, due_at: float, retry: _Retry) -> None:
        """Store ``retry`` durably (committed with fsync) before returning."""
        properties = json.dumps({"user": retry.user_properties, "content_type": retry.content_type})
        await asyncio.to_thread(
            self._run,
            "INSERT INTO retries (retry_topic, due_at, payload, properties) VALUES (?, ?, ?, ?)",
            (retry_topic, due_at, retry.payload, properties),
        )

    async def claim_due(self, retry_topic: str, limit: int) -> list[_Retry]:
        """Claim up to ``limit`` due rows of ``retry_topic`` for :data:`_CLAIM_S`."""
        now = time.time()
        rows = await asyncio.to_thread(
            self._run,
            "UPDATE retries SET claimed_until = ? WHERE id IN (SELECT id FROM retries"
            " WHERE retry_topic = ? AND due_at <= ? AND claimed_until <= ? ORDER BY due_at"
            " LIMIT ?) RETURNING id, payload, properties",
            (now + _CLAIM_S, retry_topic, now, now, limit),
        )
        return [_retry_of(row, retry_topic) for row in rows]

    async def next_due_s(self, retry_topic: str) -> float | None:
        """Seconds until the next unclaimed row is due (0 if one is), None if none."""
        rows = await asyncio.to_thread(
            self._run,
            "SELECT MIN(MAX(due_at, claimed_until)) FROM retries WHERE retry_topic = ?",
            (retry_topic,),
        )
        due = rows[0][0] if rows else None
        return None if due is None else max(0.0, float(due) - time.time())

    async def delete(self, row_ids: Sequence[int]) -> None:
        """Forget rows that were published."""
        marks = ",".join("?" * len(row_ids))
        await asyncio.to_thread(self._run, f"DELETE FROM retries WHERE id IN ({marks})", row_ids)

    def _run(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _retry_of(row: Sequence[Any], retry_topic: str) -> _Retry:
    properties = json.loads(row[2])
    return _Retry(
        row_id=int(row[0]),
        topic=retry_topic,
        payload=bytes(row[1]),
        user_properties=[(str(k), str(v)) for k, v in properties["user"]],
        content_type=properties["content_type"],
    )


# --- source ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MqttHandle:
    """The handle of an MQTT delivery: the message as received and the connection it came
    on (its packet id means something only there)."""

    message: MQTTMessage
    connection: _Connection
    topic: str = field(default="")


class MqttSource:
    """Receives from one MQTT topic filter in a shared subscription (see the module
    docstring). Safe to call concurrently (receive, ack and release may overlap)."""

    def __init__(self, settings: MqttSettings, ctx: ConnectorContext) -> None:
        self.settings = settings
        self._listener = ctx.listener
        self._data_dir = ctx.data_dir
        self.group = settings.group or _safe(ctx.listener)
        self.retry_topic = settings.retry_topic or f"modelbus/retry/{self.group}"
        topics = (settings.topic, self.retry_topic)
        self.filters = tuple(f"$share/{self.group}/{t}" if settings.shared else t for t in topics)
        subscriptions = hashlib.sha256("\0".join(self.filters).encode()).hexdigest()[:6]
        base = settings.client_id or f"modelbus-{_safe(ctx.listener)}-{{node}}"
        self._prefix = f"{base}-{subscriptions}"
        self._connection: _Connection | None = None
        self._slot: _Slot | None = None
        self._store: _RetryStore | None = None
        self._buffer: asyncio.Queue[Any] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._released = asyncio.Event()

    @property
    def lease_s(self) -> None:
        """None: the broker keeps a delivery with this session until it is PUBACKed."""
        return None

    @property
    def client_id(self) -> str | None:
        """The client id of the open connection (None while closed)."""
        return self._connection.client_id if self._connection else None

    async def open(self) -> None:
        """Take a client-id slot, connect with the persistent session, subscribe to the topic
        and the retry topic in the group, and start publishing due retries. Raises
        ConnectorConfigError if the broker refuses the credentials or the subscription,
        ConnectorError if it cannot be reached."""
        await self.close()
        prefix = self._prefix.replace("{node}", _node_id(self._data_dir))
        self._slot = _Slot(self._data_dir, prefix)
        self._store = _RetryStore(
            self._data_dir / "mqtt" / f"{_safe(self._listener)}.retries.sqlite3"
        )
        buffer: asyncio.Queue[Any] = asyncio.Queue()
        self._buffer = buffer
        try:
            self._connection = await self._connect(f"{prefix}-{self._slot.number}", buffer)
        except BaseException:
            await self.close()
            raise
        self._pump = asyncio.create_task(
            self._pump_retries(), name=f"mqtt-retries:{self._listener}"
        )

    async def _connect(self, client_id: str, buffer: asyncio.Queue[Any]) -> _Connection:
        connection = _Connection(
            self.settings,
            listener=self._listener,
            client_id=client_id,
            persistent=True,
            on_message=lambda message: buffer.put_nowait((message, connection)),
            on_lost=lambda: buffer.put_nowait(_LOST),
        )
        await connection.connect()
        try:
            await connection.subscribe(self.filters)
        except BaseException:
            connection.close_now()
            raise
        if not connection.session_present:
            log.info("listener %s: new MQTT session %s", self._listener, client_id)
        return connection

    async def receive(self, max_messages: int, wait_s: float) -> list[Delivery]:
        """Up to ``max_messages`` deliveries, waiting at most ``wait_s`` for the first.
        Raises ConnectorError if the connection is lost."""
        connection = self._require_connection()
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
                raise ConnectorError(f"listener {self._listener!r}: {self._lost(connection)}")
        return [_delivery(message, on) for message, on in items]

    def _require_connection(self) -> _Connection:
        connection = self._connection
        if connection is None or connection.lost.is_set():
            raise ConnectorError(f"listener {self._listener!r}: {self._lost(connection)}")
        return connection

    def _lost(self, connection: _Connection | None) -> str:
        if connection is None:
            return "the MQTT source is not open"
        return f"the connection to {self.settings.where()} is lost"

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """PUBACK the deliveries. Deliveries from an earlier connection are skipped (the
        broker sends them again, flagged DUP, and the runtime's dedupe settles them).
        Idempotent. Raises ConnectorError if the connection is lost."""
        for delivery in deliveries:
            handle = _handle(delivery)
            if handle.connection is self._connection and not handle.connection.lost.is_set():
                handle.connection.ack(handle.message.mid)

    async def release(self, delivery: Delivery, delay_s: float) -> None:
        """Keep a copy (next attempt, same id) in the data directory's retry file, due in
        ``delay_s``, then PUBACK the original; a retry pump publishes it to the retry topic
        when due. Raises ConnectorError if the copy cannot be stored (the original stays
        unacked, with this session)."""
        handle = _handle(delivery)
        if handle.connection is not self._connection or self._store is None:
            return  # from an earlier connection: the broker sends it again anyway
        retry = _retry_copy(delivery, handle, version=self.settings.version)
        try:
            await self._store.add(self.retry_topic, time.time() + max(delay_s, 0.0), retry)
        except sqlite3.Error as exc:
            raise ConnectorError(
                f"listener {self._listener!r}: cannot keep a retry in {self._store.path}: {exc}"
            ) from exc
        self._released.set()
        await self.ack([delivery])

    async def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        """Nothing to do: MQTT has no leases (:attr:`lease_s` is None); a delivery stays
        with this session until it is PUBACKed."""

    async def _pump_retries(self) -> None:
        """Publish due retries to the retry topic, until closed."""
        while True:
            self._released.clear()  # before looking, so that no release is missed
            try:
                wait_s = await self._pump_once()
            except Exception as exc:  # the connection is lost: receive reports it
                log.warning("listener %s: publishing retries: %s", self._listener, exc)
                wait_s = _PUMP_POLL_S
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel of close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._released.wait()

    async def _pump_once(self) -> float:
        connection, store = self._require_connection(), self._store
        assert store is not None
        while due := await store.claim_due(self.retry_topic, 100):
            futures = [connection.publish(r.topic, r.payload, _props(r)) for r in due]
            await connection.wait_acks(futures, f"publishing retries to {self.retry_topic!r}")
            await store.delete([r.row_id for r in due])
        next_s = await store.next_due_s(self.retry_topic)
        return _PUMP_POLL_S if next_s is None else min(next_s, _PUMP_POLL_S)

    async def backlog(self) -> None:
        """None: an MQTT broker does not tell a subscriber how many messages its session
        holds for it (neither MQTT 3.1.1 nor 5 has a way to ask)."""
        return None

    async def close(self) -> None:
        """Disconnect (the session stays with the broker, with what it holds unacked), stop
        publishing retries and release the client-id slot."""
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._slot is not None:
            self._slot.release()
            self._slot = None


def _handle(delivery: Delivery) -> MqttHandle:
    if not isinstance(delivery.handle, MqttHandle):
        raise ConnectorError(f"delivery {delivery.message_id!r} did not come from MQTT")
    return delivery.handle


def _delivery(message: MQTTMessage, connection: _Connection) -> Delivery:
    payload = bytes(message.payload)
    user, content_type = _user_properties(message)
    topic = user.pop(TOPIC_PROPERTY, None) or message.topic
    opened = decode_envelope(payload)
    if opened is not None:
        payload, header = opened
        user |= {str(k): str(v) for k, v in dict(header.get("attributes") or {}).items()}
        user |= {
            ID_PROPERTY: str(header.get("id", "")),
            ATTEMPT_PROPERTY: str(header.get("attempt", 1)),
        }
        topic = str(header.get("topic") or topic)
    message_id = user.pop(ID_PROPERTY, "") or _content_id(message, connection.client_id, payload)
    carried = _int(user.pop(ATTEMPT_PROPERTY, None), default=1)
    attributes = dict(user)  # the connector's own properties were popped above
    if content_type:
        attributes.setdefault("content-type", content_type)
    attributes["mqtt-topic"] = topic
    return Delivery(
        message_id=message_id,
        body=payload,
        attributes=attributes,
        attempt=carried + (1 if message.dup else 0),
        handle=MqttHandle(message, connection, topic),
    )


def _user_properties(message: MQTTMessage) -> tuple[dict[str, str], str | None]:
    props = message.properties
    if props is None:
        return {}, None
    pairs = getattr(props, "UserProperty", None) or []
    return _unescaped(pairs), getattr(props, "ContentType", None)


def _escaped(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """User properties a broker accepts: pairs with control characters percent-escaped and
    named in ``modelbus-escaped``."""
    out: list[tuple[str, str]] = []
    escaped: list[str] = []
    for key, value in pairs:
        if _CONTROL.search(key) or _CONTROL.search(value):
            key, value = _escape(key), _escape(value)
            escaped.append(key)
        out.append((key, value))
    if escaped:
        out.append((ESCAPED_PROPERTY, json.dumps(escaped)))
    return out


def _escape(text: str) -> str:
    return _CONTROL.sub(lambda m: f"%{ord(m.group()):02X}", text.replace("%", "%25"))


def _unescaped(pairs: Sequence[tuple[Any, Any]]) -> dict[str, str]:
    user = {str(k): str(v) for k, v in pairs}
    try:
        escaped = json.loads(user.pop(ESCAPED_PROPERTY, "[]"))
    except ValueError:
        escaped = []
    if not isinstance(escaped, list):
        return user
    for key in escaped:
        if isinstance(key, str) and key in user:
            user[unquote(key)] = unquote(user.pop(key))
    return user


def _int(value: Any, *, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _content_id(message: MQTTMessage, client_id: str, payload: bytes) -> str:
    digest = hashlib.sha256(f"{client_id}\0{message.mid}\0{message.topic}\0".encode())
    digest.update(payload)
    return f"sha256:{digest.hexdigest()}"


def _retry_copy(delivery: Delivery, handle: MqttHandle, *, version: int) -> _Retry:
    attributes = {k: v for k, v in delivery.attributes.items() if k != "mqtt-topic"}
    content_type = attributes.pop("content-type", None)
    attempt = delivery.attempt + 1
    if version == 5:
        marks = {ID_PROPERTY: delivery.message_id, ATTEMPT_PROPERTY: str(attempt)}
        user = [*attributes.items(), *marks.items(), (TOPIC_PROPERTY, handle.topic)]
        return _Retry(
            row_id=0,
            topic="",
            payload=delivery.body,
            user_properties=user,
            content_type=content_type,
        )
    if content_type:
        attributes["content-type"] = content_type
    header = {
        "id": delivery.message_id,
        "attempt": attempt,
        "topic": handle.topic,
        "attributes": attributes,
    }
    payload = encode_envelope(delivery.body, header)
    return _Retry(row_id=0, topic="", payload=payload, user_properties=[], content_type=None)


def _props(retry: _Retry) -> Properties | None:
    if not retry.user_properties and not retry.content_type:
        return None
    return _publish_props(retry.user_properties, retry.content_type)


def _publish_props(user: Sequence[tuple[str, str]], content_type: str | None) -> Properties:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if user:
        props.UserProperty = _escaped(user)
    if content_type:
        props.ContentType = content_type
    return props


# --- sink -----------------------------------------------------------------------------------


class MqttSink:
    """Publishes to one MQTT topic at QoS 1 (see the module docstring)."""

    def __init__(self, settings: MqttSettings, ctx: ConnectorContext) -> None:
        if any(c in settings.topic for c in "+#"):
            raise DefinitionError(
                f"an mqtt:// sink needs a topic without wildcards, not {settings.topic!r}"
            )
        self.settings = settings
        self._listener = ctx.listener
        self._connection: _Connection | None = None

    async def open(self) -> None:
        """Connect (a clean session). Raises ConnectorConfigError if the broker refuses the
        credentials, ConnectorError if it cannot be reached."""
        await self.close()
        client_id = f"modelbus-{_safe(self._listener)}-sink-{uuid.uuid4().hex[:8]}"
        connection = _Connection(
            self.settings, listener=self._listener, client_id=client_id, persistent=False
        )
        await connection.connect()
        self._connection = connection

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Publish every message at QoS 1 and return once the broker PUBACKed each. Raises
        ConnectorError if the connection is lost, a PUBACK does not come in time or the
        broker refuses a message (version 5 reason codes)."""
        connection = self._connection
        if connection is None or connection.lost.is_set():
            raise ConnectorError(f"listener {self._listener!r}: the MQTT sink is not connected")
        topic = self.settings.topic
        futures = [connection.publish(topic, *self._encode(m)) for m in messages]
        await connection.wait_acks(futures, f"publishing {len(messages)} message(s) to {topic!r}")

    def _encode(self, message: OutMessage) -> tuple[bytes, Properties | None]:
        attributes = dict(message.attributes)
        if self.settings.version == 5:
            content_type = attributes.pop("content-type", None)
            user = [*attributes.items(), (ID_PROPERTY, message.id)]
            return message.body, _publish_props(user, content_type)
        if self.settings.envelope:
            header = {"id": message.id, "attempt": 1, "attributes": attributes}
            return encode_envelope(message.body, header), None
        return message.body, None

    async def close(self) -> None:
        """Disconnect."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()


def make_source(url: str, ctx: ConnectorContext) -> MqttSource:
    """An unopened MqttSource for ``url``. Raises DefinitionError for a malformed URL,
    MissingExtra without paho-mqtt (``pip install 'modelbus[mqtt]'``)."""
    settings = MqttSettings.from_url(url)
    require_paho()
    return MqttSource(settings, ctx)


def shared_source(url: str) -> bool:
    """Whether the source subscribes in a shared group (``$share/GROUP/TOPIC``, the default),
    whose members compete for the messages; with ``shared=false`` every subscriber gets
    every message, so the listener runs on one node at a time."""
    return MqttSettings.from_url(url).shared


def make_sink(url: str, ctx: ConnectorContext) -> MqttSink:
    """An unopened MqttSink for ``url``; raises like :func:`make_source`."""
    settings = MqttSettings.from_url(url)
    require_paho()
    return MqttSink(settings, ctx)
