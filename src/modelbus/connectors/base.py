"""The connector interface: what every broker gives the listener runtime.

A connector module (one per URL scheme) offers a :class:`Source`, a :class:`Sink`, or both,
through two module-level factories ``make_source(url, ctx)`` and ``make_sink(url, ctx)``
(see :mod:`modelbus.connectors`); a connector whose notifications announce objects (S3, a
folder) also offers an :class:`ObjectReader` through ``make_reader(source_url, ctx)``.
A connector whose source cannot be consumed by several nodes at once (the replicas of a
listener on several machines would not compete for its messages: a folder, a queue file in
the data directory, an MQTT subscription outside a shared group) says so with a module-level
``shared_source(url) -> bool`` answering False; without it a source is shared. Several nodes
then run such a listener on one node at a time (:func:`modelbus.connectors.is_shared_source`).
Connectors carry out decisions; they never make them: the listener runtime alone decides
between ack, release-with-delay and dead-letter
(DESIGN.md, "Only the listener runtime decides").

Every verb means the same on every broker:

* ``ack``: the delivery is settled for good; the broker will not hand it out again.
* ``release(delay_s)``: hand the delivery out again, to any consumer of this listener, no
  sooner than ``delay_s`` from now, with its attempt number one higher. A broker with no
  native delay gets it by republishing (or, where that is impossible, by the connector
  holding the delivery and re-offering it itself), never by ignoring the delay.
* ``extend(lease_s)``: nobody else gets this delivery for ``lease_s`` more seconds.
* ``publish``: returns only once every message is durably accepted by the broker.

Broker client exceptions are translated to :class:`~modelbus.errors.ConnectorError` (transient)
or :class:`~modelbus.errors.ConnectorConfigError` (permanent: bad URL, credentials, missing
queue) at the connector's edge, with the listener's name in the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from modelbus.connectors.policy import ConnectorPolicy


@dataclass(frozen=True, kw_only=True, slots=True)
class Delivery:
    """One received message, as a Source hands it out.

    ``message_id`` is the broker's id for the message, the same on every redelivery (it keys
    run records and dedupe). ``attempt`` is 1 on the first delivery; where the broker counts
    deliveries (SQS ApproximateReceiveCount, Redis/JetStream delivery counts) it is that count.
    ``handle`` is the connector's own token (receipt handle, stream entry id, delivery tag...).
    """

    message_id: str
    body: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 1
    enqueued_at: float | None = None
    handle: Any = None


@dataclass(frozen=True, kw_only=True, slots=True)
class OutMessage:
    """A message for a Sink. ``id`` is deterministic (listener + source message id) so that
    brokers with publish-side dedupe (SQS FIFO, JetStream ``Nats-Msg-Id``) drop duplicates and
    consumers can. ``key`` orders or partitions where the broker supports it (FIFO group id,
    Kafka key)."""

    id: str
    body: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    key: str | None = None


DEAD_LETTER_ID = "modelbus-dead-letter-id"
"""The attribute that marks an :class:`OutMessage` as a dead letter (its value is the letter's
deterministic id; the runtime adds it with the other ``modelbus-*`` attributes). A sink may
keep dead letters in a form of its own: the folder sink keeps a failed file under its name."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectorContext:
    """What a connector may know about the listener using it, and the operator's limits on
    what it may reach (``policy``; default: none beyond the data-directory rule of ``dir://``,
    see :mod:`modelbus.connectors.policy`)."""

    listener: str
    data_dir: Path
    policy: ConnectorPolicy = field(default_factory=ConnectorPolicy)


@dataclass(frozen=True, kw_only=True, slots=True)
class Backlog:
    """Where the backlog of one listener's source can be read by something other than the
    listener itself (an autoscaler such as KEDA), named exactly as the source names it: the
    queue, stream, consumer group or durable consumer it really consumes, defaults applied.

    A connector whose source has such a backlog offers it through a module-level
    ``backlog(url, listener) -> Backlog``, which only parses the URL (no broker is
    contacted, no client library is needed) and documents its keys.

    ``broker``: ``sqs``, ``redis``, ``amqp``, ``kafka``, ``nats`` or ``postgresql``.
    ``where``: the coordinates (addresses, names, options), none of them a credential.
    ``secrets``: what a reader must present to the broker (a password, or a whole
    connection URL carrying one), keyed as the connector documents; hidden from ``repr``.
    """

    broker: str
    where: Mapping[str, str]
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


@runtime_checkable
class Source(Protocol):
    """Where a listener's deliveries come from."""

    @property
    def lease_s(self) -> float | None:
        """Seconds a received delivery stays hidden from other consumers before the broker
        hands it out again unless extended; None where the broker holds it until ack or
        disconnect (no lease to extend)."""
        ...

    async def open(self) -> None:
        """Connect and check the source exists. Raises ConnectorConfigError (permanent: bad
        URL, credentials, missing queue) or ConnectorError (transient: unreachable)."""
        ...

    async def receive(self, max_messages: int, wait_s: float) -> list[Delivery]:
        """Wait up to ``wait_s`` for deliveries and return between 0 and ``max_messages`` of
        them. Each returned delivery is leased to this consumer until acked, released or its
        lease runs out."""
        ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Settle deliveries for good. Idempotent; acking a delivery whose lease ran out is
        not an error (the broker may redeliver it; dedupe makes that harmless)."""
        ...

    async def release(self, delivery: Delivery, delay_s: float) -> None:
        """Hand ``delivery`` out again no sooner than ``delay_s`` from now (see module doc)."""
        ...

    async def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        """Keep ``deliveries`` hidden from other consumers for ``lease_s`` more seconds.
        A no-op only where ``lease_s`` is None (the broker holds deliveries until ack)."""
        ...

    async def backlog(self) -> int | None:
        """How many messages wait at the source for this listener, as the broker counts them
        (each connector's docstring says what it counts: ready messages, lag, pending...);
        None where the broker cannot say. Read by the runtime in a background task every few
        seconds, never on the message path: it may cost one broker round trip, has no effect
        on deliveries, and raises ConnectorError when the broker cannot be asked now."""
        ...

    async def close(self) -> None:
        """Stop receiving and disconnect. Deliveries not acked are redelivered by the broker."""
        ...


@runtime_checkable
class Sink(Protocol):
    """Where results and dead letters go.

    A sink whose broker has a size limit it can check locally also defines
    ``refusal(message) -> str | None``: why it will never take that message, or None. The
    runtime asks every output sink before publishing a delivery's results to any of them,
    so a result one sink refuses for good is written to none (it is dead-lettered, or goes
    to the listener's claim check store when it has one).

    A sink that writes each message as an object (``s3://``, ``dir://``) also defines
    ``location(message) -> str``: the URL the message is written at (``s3://BUCKET/KEY``,
    ``file:///PATH``), which is what makes it usable as a claim check store."""

    async def open(self) -> None:
        """Connect and check the destination exists; raises like :meth:`Source.open`."""
        ...

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Publish ``messages``; returns only when the broker has durably accepted all of them
        (publisher confirms, batch responses checked). Raises ConnectorError otherwise; a
        partial failure raises too (the runtime retries the whole batch; ids dedupe)."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...


class ObjectReader(Protocol):
    """Fetches the object an object-created notification names. A reader holding connections
    may define ``async close()``."""

    async def read(self, bucket: str, key: str) -> tuple[bytes, str | None]:
        """The object's bytes and content type (None if unknown). Raises
        ConnectorError(permanent=True) if it is gone, ConnectorError (transient) otherwise."""
        ...


class Inbox(Protocol):
    """Events pushed to modelbus's own HTTP server (webhooks, ``POST /v1/hooks/NAME``) for
    the listeners whose source receives them: each request is authenticated and queued
    durably for those listeners, whose sources then read it like any queue."""

    def hook_name(self, source_url: str) -> str | None:
        """The NAME a listener with source ``source_url`` receives, or None if it receives
        nothing through the server. Never raises."""
        ...

    async def accept(
        self, listeners: Sequence[tuple[str, str]], headers: Mapping[str, str], body: bytes
    ) -> tuple[str, list[str]]:
        """Authenticate the request for each ``(listener name, source URL)`` and queue it
        for those it is meant for; returns the event's message id and those listeners.
        Raises :class:`~modelbus.errors.Unauthenticated` when it is meant for none. Returns
        only once the event is durably queued."""
        ...

    async def close(self) -> None:
        """Release what :meth:`accept` opened."""
        ...
