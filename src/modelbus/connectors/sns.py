"""Amazon SNS: a Sink (SNS delivers to subscribers; modelbus receives through SQS).

URLs::

    sns://TOPIC_NAME?region=us-east-1&endpoint_url=http://127.0.0.1:4566
    sns://arn:aws:sns:REGION:ACCOUNT:TOPIC_NAME?...

Query options: ``endpoint_url``, ``region``, ``profile`` (see :mod:`modelbus.connectors.aws`;
a topic ARN gives the region), ``group_id`` (FIFO topics: the MessageGroupId of messages
without a ``key``), ``create=true`` (create a missing topic; a ``.fifo`` name makes a FIFO
topic; tests and demos only).

``open`` resolves a topic name to its ARN (the caller's account, from STS
GetCallerIdentity) and checks that the topic exists (GetTopicAttributes).

``publish`` is PublishBatch, at most 10 messages and 256 KiB per batch, every entry of the
answer checked. Bodies and message attributes follow the SQS convention of
:mod:`modelbus.connectors.aws` (text as is, other bytes base64 with ``modelbus-encoding``,
attributes beyond 10 packed in ``modelbus-attributes``): a subscribed SQS queue with raw
message delivery hands the SQS source exactly what was published; a wrapped delivery
(``{"Type": "Notification", ...}``) is undone by :func:`unwrap_notification`. A message over
256 KiB once encoded is refused with a permanent ConnectorError. On a FIFO topic,
MessageDeduplicationId is ``OutMessage.id`` and MessageGroupId is ``OutMessage.key``, else
``group_id``, else the message's own id, as for SQS FIFO queues.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from modelbus.connectors.aws import (
    AWS_OPTIONS,
    AwsClient,
    AwsOptions,
    BatchEntry,
    batches,
    decode_message,
    encode_message,
    error_codes,
    fifo_id,
    raise_for_failed,
    require_aiobotocore,
    with_ids,
)
from modelbus.connectors.base import ConnectorContext, OutMessage
from modelbus.connectors.urls import parse_bool, parse_query
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError

__all__ = ["SnsSettings", "SnsSink", "make_sink", "unwrap_notification"]

SNS_OPTIONS = AWS_OPTIONS | {"group_id", "create"}
MAX_BATCH = 10
MAX_MESSAGE_BYTES = 256 * 1024
_READ_TIMEOUT_S = 20.0

_TOPIC_NAME = re.compile(r"[A-Za-z0-9_\-]{1,256}|[A-Za-z0-9_\-]{1,251}\.fifo")
_TOPIC_ARN = re.compile(
    r"arn:(?P<partition>[\w-]+):sns:(?P<region>[\w-]+):(?P<account>\d+):(?P<name>.+)"
)
_MISSING_TOPIC = frozenset({"NotFound", "NotFoundException", "ResourceNotFound"})


@dataclass(frozen=True, kw_only=True, slots=True)
class SnsSettings:
    """An ``sns://`` URL, parsed and checked."""

    topic_name: str
    topic_arn: str | None = None
    aws: AwsOptions = field(default_factory=AwsOptions)
    group_id: str | None = None
    create: bool = False

    @property
    def fifo(self) -> bool:
        """Whether the name is a FIFO topic's (``.fifo``)."""
        return self.topic_name.endswith(".fifo")

    @classmethod
    def from_url(cls, url: str) -> SnsSettings:
        """Parse ``sns://NAME_OR_ARN?...``. Raises DefinitionError if malformed."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "sns" or parts.path not in ("", "/"):
            raise DefinitionError(f"{url!r}: write sns://TOPIC_NAME or sns://TOPIC_ARN")
        query = parse_query(url, SNS_OPTIONS)
        aws = AwsOptions.from_query(query)
        arn = _TOPIC_ARN.fullmatch(parts.netloc)
        name = arn["name"] if arn else parts.netloc
        if not _TOPIC_NAME.fullmatch(name):
            raise DefinitionError(
                f"{name!r} is not an SNS topic name: up to 256 letters, digits, '-' or '_' "
                "(a FIFO topic's name ends in .fifo)"
            )
        if arn and not aws.region:
            aws = replace(aws, region=arn["region"])
        return cls(
            topic_name=name,
            topic_arn=parts.netloc if arn else None,
            aws=aws,
            group_id=query.get("group_id") or None,
            create=parse_bool(query, "create"),
        )


class SnsSink:
    """Publishes to one SNS topic (see the module docstring)."""

    def __init__(self, settings: SnsSettings, ctx: ConnectorContext) -> None:
        self.settings = settings
        self._listener = ctx.listener
        self._client = AwsClient(
            "sns", settings.aws, listener=ctx.listener, read_timeout_s=_READ_TIMEOUT_S
        )
        self._what = f"SNS topic {settings.topic_name!r}"
        self.topic_arn = settings.topic_arn or ""

    async def open(self) -> None:
        """Resolve the topic's ARN (creating the topic if ``create=true``) and check it
        exists. Raises ConnectorConfigError naming the listener and topic if it does not,
        ConnectorError if the endpoint cannot be reached."""
        await self._client.open()
        try:
            self.topic_arn = await self._resolve()
        except BaseException:
            await self._client.close()
            raise

    async def _resolve(self) -> str:
        if self.settings.create:
            attributes = {"FifoTopic": "true"} if self.settings.fifo else {}
            name = self.settings.topic_name
            answer = await self._client.call(
                "create_topic", self._what, Name=name, Attributes=attributes
            )
            return str(answer["TopicArn"])
        arn = self.settings.topic_arn or await self._arn_in_own_account()
        try:
            await self._client.call("get_topic_attributes", self._what, TopicArn=arn)
        except ConnectorError as exc:
            if not error_codes(exc.__cause__ or exc) & _MISSING_TOPIC:
                raise
            raise ConnectorConfigError(
                self._client.context(f"{self._what} ({arn}) does not exist")
                + "; create it, or add create=true to the URL (tests and demos)"
            ) from exc
        return arn

    async def _arn_in_own_account(self) -> str:
        sts = AwsClient(
            "sts", self.settings.aws, listener=self._listener, read_timeout_s=_READ_TIMEOUT_S
        )
        await sts.open()
        try:
            identity = await sts.call("get_caller_identity", "the caller's identity")
        finally:
            await sts.close()
        partition = str(identity["Arn"]).split(":")[1]
        region = self._client.region
        return f"arn:{partition}:sns:{region}:{identity['Account']}:{self.settings.topic_name}"

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Publish ``messages`` (PublishBatch, in order); returns once SNS accepted every one.
        Raises ConnectorError(permanent=True) before publishing anything if a message is over
        256 KiB encoded, ConnectorError if an entry fails (permanent if SNS blames it)."""
        entries = [self._entry(message) for message in messages]
        for batch in batches(entries, max_count=MAX_BATCH, max_bytes=MAX_MESSAGE_BYTES):
            answer = await self._client.call(
                "publish_batch",
                self._what,
                TopicArn=self.topic_arn,
                PublishBatchRequestEntries=with_ids(batch),
            )
            context = self._client.context(f"PublishBatch on {self._what}")
            raise_for_failed(answer.get("Failed") or [], context, total=len(batch))

    def refusal(self, message: OutMessage) -> str | None:
        """Why SNS will never take ``message`` (over its size limit), or None (see
        ``SqsSink.refusal``)."""
        size = encode_message(message.body, message.attributes).size_bytes
        if size <= MAX_MESSAGE_BYTES:
            return None
        return (
            f"listener {self._listener!r}: message {message.id!r} is {size} bytes as "
            f"published to {self._what} (binary bodies are base64-encoded), over SNS's limit "
            f"of {MAX_MESSAGE_BYTES} bytes; store large payloads elsewhere (S3) and publish "
            "a reference"
        )

    def _entry(self, message: OutMessage) -> BatchEntry:
        encoded = encode_message(message.body, message.attributes)
        if encoded.size_bytes > MAX_MESSAGE_BYTES:
            raise ConnectorError(self.refusal(message) or "too large", permanent=True)
        request: dict[str, Any] = {"Message": encoded.body}
        if encoded.attributes:
            request["MessageAttributes"] = encoded.attributes
        if self.settings.fifo:
            group = message.key or self.settings.group_id or message.id
            request["MessageGroupId"] = fifo_id(group)
            request["MessageDeduplicationId"] = fifo_id(message.id)
        return BatchEntry(request, encoded.size_bytes)

    async def close(self) -> None:
        """Close the client."""
        await self._client.close()


def unwrap_notification(body: bytes) -> tuple[bytes, dict[str, str]] | None:
    """The published body and attributes inside an SNS notification as SNS delivers it to a
    subscribed SQS queue without raw message delivery (``{"Type": "Notification",
    "Message": ..., "MessageAttributes": {name: {"Type", "Value"}}}``), with the modelbus
    body and attribute convention undone; None if ``body`` is not such a notification."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):  # too deeply nested is not JSON either
        return None
    if not isinstance(envelope, dict) or envelope.get("Type") != "Notification":
        return None
    message = envelope.get("Message")
    if not isinstance(message, str):
        return None
    return decode_message(message, _envelope_attributes(envelope.get("MessageAttributes")))


def _envelope_attributes(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        return {}
    return {
        str(name): str(value["Value"])
        for name, value in raw.items()
        if isinstance(value, Mapping) and "Value" in value
    }


def make_sink(url: str, ctx: ConnectorContext) -> SnsSink:
    """An unopened SnsSink for ``url``. Raises DefinitionError for a malformed URL,
    MissingExtra without aiobotocore (``pip install 'modelbus[sqs]'``)."""
    settings = SnsSettings.from_url(url)
    require_aiobotocore()
    return SnsSink(settings, ctx)
