"""Amazon SQS: a Source and a Sink.

URLs::

    sqs://QUEUE_NAME?region=us-east-1&endpoint_url=http://127.0.0.1:4566
    https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE_NAME?...

A queue URL gives the region (and the owner account, for a queue of another account); an
``http(s)`` queue URL off ``amazonaws.com`` (moto, ElasticMQ) also gives the endpoint.

Query options:

* ``endpoint_url``, ``region``, ``profile``: see :mod:`modelbus.connectors.aws`.
* ``visibility_timeout_s`` (source): the lease of each received message, 1-43200; default
  the queue's own ``VisibilityTimeout``, read when the source opens.
* ``wait_s`` (source): the longest long poll of one ReceiveMessage call, 0-20 (default 20);
  :meth:`SqsSource.receive` waits the smaller of this and its own ``wait_s``.
* ``group_id`` (FIFO sink): the MessageGroupId of messages without a ``key``.
* ``create=true``: create the queue when missing (a ``.fifo`` name makes a FIFO queue). For
  tests and demos; in production queues are infrastructure, and a missing one is an error.

Source. ``receive`` makes ReceiveMessage calls of up to 10 messages (another call only while
the previous one came back full), asking for every message attribute and system attribute.
``Delivery.message_id`` is the SQS MessageId, ``attempt`` its ApproximateReceiveCount,
``enqueued_at`` its SentTimestamp, and ``handle`` an :class:`SqsReceipt` (receipt handle,
FIFO message group). ``ack`` is DeleteMessageBatch, ``release(delay_s)`` ChangeMessageVisibility
to ``delay_s`` and ``extend`` ChangeMessageVisibilityBatch; SQS allows a message to stay
hidden at most 12 hours after it was received, so longer delays and leases are capped there.
Settling a delivery whose receipt handle has expired (its lease ran out and SQS handed it out
again) is not an error: the newer delivery settles it.

A receive cancelled during its long poll may leave messages hidden until their lease runs out;
they are then redelivered (at-least-once, never lost).

FIFO queues. Messages of one MessageGroupId come out in order and SQS hands out no message of
a group while an earlier one is in flight. So releasing a FIFO message with a delay holds back
its whole group until the delay is over: that is SQS semantics, and what ordering means.

Sink. ``publish`` is SendMessageBatch in batches of at most 10 messages and at most the
queue's MaximumMessageSize in total (read when the sink opens), checking every entry of the
answer. A message larger than that limit once encoded (bodies and attributes as in
:mod:`modelbus.connectors.aws`; binary bodies grow by a third in base64) is refused with a
permanent ConnectorError before anything is sent: put large payloads in S3 and send a
reference. On a FIFO queue, MessageDeduplicationId is ``OutMessage.id`` (so republishing a
batch within SQS's 5-minute window is harmless) and MessageGroupId is ``OutMessage.key``, else
the URL's ``group_id``, else the message's own id (no ordering asked for: every message its
own group). Ids that SQS would refuse (over 128 characters, other characters) are replaced by
their SHA-256.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from modelbus.connectors.aws import (
    AWS_OPTIONS,
    CALL_TIMEOUT_S,
    AwsClient,
    AwsOptions,
    BatchEntry,
    attributes_from_api,
    batches,
    chunks,
    decode_message,
    encode_message,
    error_codes,
    fifo_id,
    raise_for_failed,
    require_aiobotocore,
    with_ids,
)
from modelbus.connectors.base import Backlog, ConnectorContext, Delivery, OutMessage
from modelbus.connectors.urls import parse_bool, parse_int, parse_query
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError

__all__ = [
    "SqsReceipt",
    "SqsSettings",
    "SqsSink",
    "SqsSource",
    "backlog",
    "make_sink",
    "make_source",
]

log = logging.getLogger(__name__)

SQS_OPTIONS = AWS_OPTIONS | {"visibility_timeout_s", "wait_s", "group_id", "create"}
MAX_BATCH = 10
MAX_WAIT_S = 20
MAX_VISIBILITY_S = 12 * 3600
DEFAULT_VISIBILITY_S = 30
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024
LARGEST_MESSAGE_BYTES = 1024 * 1024
# The 12-hour cap runs from the ReceiveMessage request, which we only know to within a call.
_VISIBILITY_MARGIN_S = 10
_READ_TIMEOUT_S = MAX_WAIT_S + 5

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_\-]{1,80}|[A-Za-z0-9_\-]{1,75}\.fifo")
_MISSING_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
# Failures that only mean "this receipt is no longer the current one".
_STALE_RECEIPT = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
    }
)


@dataclass(frozen=True, kw_only=True, slots=True)
class SqsSettings:
    """An SQS URL, parsed and checked (see the module docstring for the options)."""

    queue_name: str
    account_id: str | None = None
    aws: AwsOptions = field(default_factory=AwsOptions)
    visibility_timeout_s: int | None = None
    max_wait_s: int = MAX_WAIT_S
    group_id: str | None = None
    create: bool = False

    @property
    def fifo(self) -> bool:
        """Whether the name is a FIFO queue's (``.fifo``)."""
        return self.queue_name.endswith(".fifo")

    @classmethod
    def from_url(cls, url: str) -> SqsSettings:
        """Parse ``sqs://NAME?...`` or a queue URL. Raises DefinitionError if malformed."""
        query = parse_query(url, SQS_OPTIONS)
        name, account = _queue_of(url)
        wait_s = parse_int(query, "wait_s", low=0, high=MAX_WAIT_S)
        return cls(
            queue_name=name,
            account_id=account,
            aws=AwsOptions.from_url(url),
            visibility_timeout_s=parse_int(
                query, "visibility_timeout_s", low=1, high=MAX_VISIBILITY_S
            ),
            max_wait_s=MAX_WAIT_S if wait_s is None else wait_s,
            group_id=query.get("group_id") or None,
            create=parse_bool(query, "create"),
        )


def _queue_of(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqs":
        name, account = parts.netloc, None
        if parts.path not in ("", "/"):
            raise DefinitionError(f"{url!r}: write sqs://QUEUE_NAME, with no path")
    elif scheme in ("http", "https"):
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) != 2:
            raise DefinitionError(f"{url!r} is not an SQS queue URL (.../ACCOUNT/QUEUE_NAME)")
        account, name = segments
    else:
        raise DefinitionError(f"{url!r} is not an SQS URL")
    if not _QUEUE_NAME.fullmatch(name):
        raise DefinitionError(
            f"{name!r} is not an SQS queue name: up to 80 letters, digits, '-' or '_' "
            "(a FIFO queue's name ends in .fifo)"
        )
    return name, account


@dataclass(frozen=True, slots=True)
class SqsReceipt:
    """The handle of an SQS delivery: its receipt handle, its FIFO message group (None on a
    standard queue) and when it was received (``time.monotonic()``, for the 12-hour cap)."""

    receipt_handle: str
    group_id: str | None
    received_at: float


class _Queue:
    """The queue a source or a sink talks to: its client, resolved URL and attributes."""

    def __init__(self, settings: SqsSettings, ctx: ConnectorContext) -> None:
        self.settings = settings
        self.client = AwsClient(
            "sqs", settings.aws, listener=ctx.listener, read_timeout_s=_READ_TIMEOUT_S
        )
        self.what = f"SQS queue {settings.queue_name!r}"
        self.url = ""
        self.attributes: dict[str, str] = {}

    async def open(self, attribute_names: Sequence[str]) -> None:
        """Create the client, resolve the queue URL and read ``attribute_names``."""
        await self.client.open()
        try:
            self.url = await self._resolve()
            answer = await self.call("get_queue_attributes", AttributeNames=list(attribute_names))
        except BaseException:
            await self.client.close()
            raise
        self.attributes = dict(answer.get("Attributes") or {})

    async def call(
        self, operation: str, *, timeout_s: float = CALL_TIMEOUT_S, **params: Any
    ) -> dict[str, Any]:
        """One SQS call on this queue (its QueueUrl filled in)."""
        return await self.client.call(
            operation, self.what, timeout_s=timeout_s, QueueUrl=self.url, **params
        )

    async def _resolve(self) -> str:
        params: dict[str, Any] = {"QueueName": self.settings.queue_name}
        if self.settings.account_id:
            params["QueueOwnerAWSAccountId"] = self.settings.account_id
        try:
            answer = await self.client.call("get_queue_url", self.what, **params)
        except ConnectorError as exc:
            if not error_codes(exc.__cause__ or exc) & _MISSING_QUEUE:
                raise
            if not self.settings.create:
                raise ConnectorConfigError(
                    self.client.context(f"{self.what} does not exist")
                    + "; create it, or add create=true to the URL (tests and demos)"
                ) from exc
            answer = await self._create()
        return str(answer["QueueUrl"])

    async def _create(self) -> Any:
        attributes = {"FifoQueue": "true"} if self.settings.fifo else {}
        return await self.client.call(
            "create_queue",
            self.what,
            QueueName=self.settings.queue_name,
            Attributes=attributes,
        )

    def check_entries(self, answer: dict[str, Any], operation: str, *, total: int) -> None:
        """Raise ConnectorError for the failed entries of a batch answer, except stale
        receipts (logged)."""
        failures = answer.get("Failed") or []
        failed = [f for f in failures if not _stale_failure(f)]
        context = self.client.context(f"{operation} on {self.what}")
        if len(failed) < len(failures):
            log.info("%s: %d receipts had expired", context, len(failures) - len(failed))
        raise_for_failed(failed, context, total=total)


def _stale(code: str, message: str) -> bool:
    """Whether an error only means that a receipt handle is no longer the current one."""
    expired = code == "InvalidParameterValue" and "expired" in message.lower()
    return code in _STALE_RECEIPT or expired


def _stale_failure(failure: dict[str, Any]) -> bool:
    return _stale(str(failure.get("Code", "")), str(failure.get("Message", "")))


def _visibility_s(receipt: SqsReceipt, seconds: float) -> int:
    """``seconds`` rounded up, capped so the message stays hidden at most 12 h after receipt."""
    held_s = time.monotonic() - receipt.received_at
    room_s = max(0, int(MAX_VISIBILITY_S - held_s - _VISIBILITY_MARGIN_S))
    wanted_s = max(0, math.ceil(seconds))
    if wanted_s > room_s:
        log.warning("SQS visibility %ss capped at %ss (12 hours after receipt)", wanted_s, room_s)
    return min(wanted_s, room_s)


def _receipt(delivery: Delivery) -> SqsReceipt:
    if not isinstance(delivery.handle, SqsReceipt):
        raise ConnectorError(f"delivery {delivery.message_id!r} did not come from SQS")
    return delivery.handle


class SqsSource:
    """Receives from one SQS queue (see the module docstring). Safe to call concurrently
    (receive, ack, release and extend may overlap)."""

    def __init__(self, settings: SqsSettings, ctx: ConnectorContext) -> None:
        self.settings = settings
        self._queue = _Queue(settings, ctx)
        self._lease_s = float(settings.visibility_timeout_s or DEFAULT_VISIBILITY_S)

    @property
    def lease_s(self) -> float:
        """The URL's ``visibility_timeout_s``, else the queue's VisibilityTimeout (known
        once open; 30 s, the SQS default, before)."""
        return self._lease_s

    async def open(self) -> None:
        """Resolve the queue (creating it if ``create=true``) and read its VisibilityTimeout.
        Raises ConnectorConfigError naming the listener and queue if it does not exist,
        ConnectorError if the endpoint cannot be reached."""
        await self._queue.open(["VisibilityTimeout"])
        if self.settings.visibility_timeout_s is None:
            visibility = self._queue.attributes.get("VisibilityTimeout", DEFAULT_VISIBILITY_S)
            self._lease_s = float(visibility)

    async def receive(self, max_messages: int, wait_s: float) -> list[Delivery]:
        """Up to ``max_messages`` deliveries, long polling at most ``wait_s`` (capped by the
        URL's ``wait_s`` and SQS's 20 s) for the first. Raises ConnectorError if the first
        ReceiveMessage fails; a later failure returns what was already received."""
        deliveries: list[Delivery] = []
        wait_whole_s = max(0, min(int(wait_s), self.settings.max_wait_s))
        while len(deliveries) < max_messages:
            wanted = min(MAX_BATCH, max_messages - len(deliveries))
            try:
                batch = await self._receive_batch(wanted, wait_whole_s)
            except ConnectorError:
                if not deliveries:
                    raise
                log.warning("%s: receive cut short", self._queue.what, exc_info=True)
                break
            deliveries.extend(batch)
            if len(batch) < wanted:
                break
            wait_whole_s = 0  # more calls only fetch what is already waiting
        return deliveries

    async def _receive_batch(self, wanted: int, wait_s: int) -> list[Delivery]:
        params: dict[str, Any] = {
            "MaxNumberOfMessages": wanted,
            "WaitTimeSeconds": wait_s,
            "MessageAttributeNames": ["All"],
            "MessageSystemAttributeNames": ["All"],
        }
        if self.settings.visibility_timeout_s is not None:
            params["VisibilityTimeout"] = self.settings.visibility_timeout_s
        answer = await self._queue.call(
            "receive_message", timeout_s=CALL_TIMEOUT_S + wait_s, **params
        )
        received_at = time.monotonic()
        return [_delivery(message, received_at) for message in answer.get("Messages") or []]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Delete the deliveries' messages (DeleteMessageBatch, 10 at a time). Idempotent;
        expired receipts are not an error. Raises ConnectorError for any other failure."""
        receipts = list({_receipt(d).receipt_handle: None for d in deliveries})
        for batch in chunks(receipts, MAX_BATCH):
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(batch)]
            answer = await self._queue.call("delete_message_batch", Entries=entries)
            self._queue.check_entries(answer, "DeleteMessageBatch", total=len(entries))

    async def release(self, delivery: Delivery, delay_s: float) -> None:
        """Make the message visible again in ``delay_s`` (rounded up to whole seconds, capped
        12 h after receipt) by ChangeMessageVisibility; the next receive counts one more
        attempt. On a FIFO queue this holds back the message's group meanwhile. An expired
        receipt is not an error (SQS already hands the message out again)."""
        receipt = _receipt(delivery)
        try:
            await self._queue.call(
                "change_message_visibility",
                ReceiptHandle=receipt.receipt_handle,
                VisibilityTimeout=_visibility_s(receipt, delay_s),
            )
        except ConnectorError as exc:
            codes = error_codes(exc.__cause__ or exc)
            if not any(_stale(code, str(exc)) for code in codes):
                raise
            log.info("%s: release of an expired receipt ignored", self._queue.what)

    async def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        """Keep the messages hidden ``lease_s`` more seconds from now
        (ChangeMessageVisibilityBatch, capped 12 h after receipt). Expired receipts are
        logged, not raised: those messages are already someone else's."""
        by_handle = {_receipt(d).receipt_handle: _receipt(d) for d in deliveries}
        # Past the 12-hour cap a "longer" lease would be 0 s, i.e. a release: leave those be.
        leases = [(r, _visibility_s(r, lease_s)) for r in by_handle.values()]
        extendable = [(r, s) for r, s in leases if s > 0 or lease_s <= 0]
        for batch in chunks(extendable, MAX_BATCH):
            entries = [
                {"Id": str(i), "ReceiptHandle": r.receipt_handle, "VisibilityTimeout": seconds}
                for i, (r, seconds) in enumerate(batch)
            ]
            answer = await self._queue.call("change_message_visibility_batch", Entries=entries)
            self._queue.check_entries(answer, "ChangeMessageVisibilityBatch", total=len(entries))

    async def backlog(self) -> int:
        """The queue's ``ApproximateNumberOfMessages``: messages available for retrieval
        (in flight and delayed ones not counted), approximate as SQS says, and up to a
        minute behind on a queue that just changed."""
        answer = await self._queue.call(
            "get_queue_attributes", AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int((answer.get("Attributes") or {}).get("ApproximateNumberOfMessages", 0))

    async def close(self) -> None:
        """Close the client. Unacked deliveries come back when their lease runs out."""
        await self._queue.client.close()


def _delivery(message: dict[str, Any], received_at: float) -> Delivery:
    system: dict[str, str] = message.get("Attributes") or {}
    attributes = attributes_from_api(message.get("MessageAttributes") or {})
    body, attributes = decode_message(str(message.get("Body", "")), attributes)
    sent_ms = system.get("SentTimestamp")
    return Delivery(
        message_id=str(message["MessageId"]),
        body=body,
        attributes=attributes,
        attempt=int(system.get("ApproximateReceiveCount") or 1),
        enqueued_at=int(sent_ms) / 1000 if sent_ms else None,
        handle=SqsReceipt(
            receipt_handle=str(message["ReceiptHandle"]),
            group_id=system.get("MessageGroupId"),
            received_at=received_at,
        ),
    )


class SqsSink:
    """Publishes to one SQS queue (see the module docstring)."""

    def __init__(self, settings: SqsSettings, ctx: ConnectorContext) -> None:
        self.settings = settings
        self._listener = ctx.listener
        self._queue = _Queue(settings, ctx)
        self._fifo = settings.fifo
        self._max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES

    async def open(self) -> None:
        """Resolve the queue (creating it if ``create=true``) and read its
        MaximumMessageSize. Raises like :meth:`SqsSource.open`."""
        await self._queue.open(["FifoQueue", "MaximumMessageSize"])
        self._fifo = self._queue.attributes.get("FifoQueue", "false").lower() == "true"
        size = int(self._queue.attributes.get("MaximumMessageSize") or DEFAULT_MAX_MESSAGE_BYTES)
        self._max_message_bytes = min(size, LARGEST_MESSAGE_BYTES)

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Send ``messages`` (SendMessageBatch; batches split by count and size, sent in
        order). Returns once SQS accepted every one. Raises ConnectorError(permanent=True)
        before sending anything if a message is over the queue's size limit, and
        ConnectorError if an entry fails (permanent if SQS blames the message)."""
        entries = [self._entry(message) for message in messages]
        limit = self._max_message_bytes
        for batch in batches(entries, max_count=MAX_BATCH, max_bytes=limit):
            answer = await self._queue.call("send_message_batch", Entries=with_ids(batch))
            self._queue.check_entries(answer, "SendMessageBatch", total=len(batch))

    def refusal(self, message: OutMessage) -> str | None:
        """Why this queue will never take ``message`` (over its size limit), or None: the
        runtime asks every sink before publishing to any, so that a result no sink can
        take is not left in the others."""
        size = encode_message(message.body, message.attributes).size_bytes
        if size <= self._max_message_bytes:
            return None
        return (
            f"listener {self._listener!r}: message {message.id!r} is {size} bytes as sent to "
            f"{self._queue.what} (binary bodies are base64-encoded), over the queue's limit "
            f"of {self._max_message_bytes} bytes; store large payloads elsewhere (S3) and "
            "send a reference"
        )

    def _entry(self, message: OutMessage) -> BatchEntry:
        encoded = encode_message(message.body, message.attributes)
        if encoded.size_bytes > self._max_message_bytes:
            raise ConnectorError(self.refusal(message) or "too large", permanent=True)
        request: dict[str, Any] = {"MessageBody": encoded.body}
        if encoded.attributes:
            request["MessageAttributes"] = encoded.attributes
        if self._fifo:
            group = message.key or self.settings.group_id or message.id
            request["MessageGroupId"] = fifo_id(group)
            request["MessageDeduplicationId"] = fifo_id(message.id)
        return BatchEntry(request, encoded.size_bytes)

    async def close(self) -> None:
        """Close the client."""
        await self._queue.client.close()


def backlog(url: str, listener: str) -> Backlog:
    """Where ``listener``'s backlog is: the queue's messages, visible or in flight (delayed
    ones not counted). ``where``: ``queue`` (its name), ``queue_url`` (the queue URL when the
    source is written as one, else empty), ``region`` and ``endpoint_url`` (empty when
    botocore's chain decides); no ``secrets``: AWS credentials never come from a URL.
    Raises DefinitionError for a malformed URL."""
    settings = SqsSettings.from_url(url)
    parts = urlsplit(url)
    is_queue_url = parts.scheme.lower() in ("http", "https")
    return Backlog(
        broker="sqs",
        where={
            "queue": settings.queue_name,
            "queue_url": urlunsplit(parts._replace(query="", fragment="")) if is_queue_url else "",
            "region": settings.aws.region or "",
            "endpoint_url": settings.aws.endpoint_url or "",
        },
    )


def make_source(url: str, ctx: ConnectorContext) -> SqsSource:
    """An unopened SqsSource for ``url``. Raises DefinitionError for a malformed URL,
    MissingExtra without aiobotocore (``pip install 'modelbus[sqs]'``)."""
    settings = SqsSettings.from_url(url)
    require_aiobotocore()
    return SqsSource(settings, ctx)


def make_sink(url: str, ctx: ConnectorContext) -> SqsSink:
    """An unopened SqsSink for ``url``; raises like :func:`make_source`."""
    settings = SqsSettings.from_url(url)
    require_aiobotocore()
    return SqsSink(settings, ctx)
