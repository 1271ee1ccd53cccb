"""Amazon S3: a Sink writing each message as an object, and the reader of S3 events' objects.

S3 is no source of its own: object-created notifications reach a listener through SQS (or
SNS to SQS), and the listener fetches each object with :func:`make_reader` (see
objects.md and :mod:`modelbus.listeners.envelopes`).

Sink URL::

    s3://BUCKET/PREFIX?region=us-east-1&endpoint_url=http://127.0.0.1:4566

Query options:

* ``endpoint_url``, ``region``, ``profile``: see :mod:`modelbus.connectors.aws`.
* ``key_from``: ``id`` (default) names each object ``PREFIX + OutMessage.id + suffix``;
  ``source`` names it ``PREFIX + attributes["key"] + suffix``, the key of the S3 object the
  result came from (the correlation attribute ``key`` of objects.md), falling back to the
  id when the message has none.
* ``suffix``: appended to every key (``.json``, ``.txt``...); default none.
* ``content_type``: the objects' Content-Type. Default: the message's ``content-type`` (or
  ``datacontenttype`` / ``ce-datacontenttype``) attribute, else ``application/json`` for a
  body that parses as JSON, ``text/plain; charset=utf-8`` for other UTF-8 text,
  ``application/octet-stream`` otherwise.
* ``create=true``: create a missing bucket (tests and demos only).

Every object carries user metadata ``modelbus-id`` (the message id) and the message's
attributes as ``x-amz-meta-*`` (names lower-cased, characters outside ``[a-z0-9-_.]``
replaced by ``-``, non-ASCII values percent-encoded), as many as fit in S3's 2 KB of user
metadata. Keys are deterministic, so a republished result overwrites itself: duplicates are
harmless. ``publish`` puts up to :data:`MAX_CONCURRENT_PUTS` objects at once.
"""

from __future__ import annotations

import asyncio
import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

from modelbus.connectors.aws import (
    AWS_OPTIONS,
    CALL_TIMEOUT_S,
    AwsClient,
    AwsOptions,
    client_errors,
    error_codes,
    require_aiobotocore,
    translate,
)
from modelbus.connectors.base import ConnectorContext, OutMessage
from modelbus.connectors.urls import parse_bool, parse_query
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError

__all__ = ["S3ObjectReader", "S3Settings", "S3Sink", "make_reader", "make_sink"]

S3_OPTIONS = AWS_OPTIONS | {"key_from", "suffix", "content_type", "create"}
MAX_CONCURRENT_PUTS = 8
MAX_METADATA_BYTES = 2048
DEFAULT_MAX_OBJECT_BYTES = 100 * 1024 * 1024
# Deadlines of transfers grow with their size, assuming at least this rate.
MIN_TRANSFER_BYTES_PER_S = 1024 * 1024
_READ_TIMEOUT_S = 30.0

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_METADATA_NAME_CHARS = re.compile(r"[^a-z0-9\-_.]")
_PRINTABLE = "".join(c for c in string.printable if c not in "\t\n\r\x0b\x0c")
_CONTENT_TYPE_ATTRIBUTES = ("content-type", "datacontenttype", "ce-datacontenttype")
_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})


@dataclass(frozen=True, kw_only=True, slots=True)
class S3Settings:
    """An ``s3://`` URL, parsed and checked (see the module docstring for the options)."""

    bucket: str
    prefix: str = ""
    aws: AwsOptions = field(default_factory=AwsOptions)
    key_from: str = "id"
    suffix: str = ""
    content_type: str | None = None
    create: bool = False

    @classmethod
    def from_url(cls, url: str) -> S3Settings:
        """Parse ``s3://BUCKET/PREFIX?...``. Raises DefinitionError if malformed."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "s3" or not _BUCKET.fullmatch(parts.netloc):
            raise DefinitionError(f"{url!r}: write s3://BUCKET/PREFIX with a valid bucket name")
        query = parse_query(url, S3_OPTIONS)
        key_from = query.get("key_from") or "id"
        if key_from not in ("id", "source"):
            raise DefinitionError(f"option key_from={key_from!r} must be id or source")
        return cls(
            bucket=parts.netloc,
            prefix=parts.path.lstrip("/"),
            aws=AwsOptions.from_query(query),
            key_from=key_from,
            suffix=query.get("suffix", ""),
            content_type=query.get("content_type") or None,
            create=parse_bool(query, "create"),
        )


def _transfer_timeout_s(size_bytes: int) -> float:
    return CALL_TIMEOUT_S + size_bytes / MIN_TRANSFER_BYTES_PER_S


def _missing(exc: ConnectorError) -> bool:
    return bool(error_codes(exc.__cause__ or exc) & _MISSING)


class S3Sink:
    """Writes every published message as one object (see the module docstring)."""

    def __init__(self, settings: S3Settings, ctx: ConnectorContext) -> None:
        self.settings = settings
        self._client = AwsClient(
            "s3", settings.aws, listener=ctx.listener, read_timeout_s=_READ_TIMEOUT_S
        )
        self._what = f"S3 bucket {settings.bucket!r}"
        self._puts = asyncio.Semaphore(MAX_CONCURRENT_PUTS)

    async def open(self) -> None:
        """Check the bucket exists (HeadBucket), creating it if ``create=true``. Raises
        ConnectorConfigError naming the listener and bucket if it does not or access is
        denied, ConnectorError if the endpoint cannot be reached."""
        await self._client.open()
        try:
            await self._check_bucket()
        except BaseException:
            await self._client.close()
            raise

    async def _check_bucket(self) -> None:
        try:
            await self._client.call("head_bucket", self._what, Bucket=self.settings.bucket)
        except ConnectorError as exc:
            if not _missing(exc):
                raise
            if not self.settings.create:
                raise ConnectorConfigError(
                    self._client.context(f"{self._what} does not exist")
                    + "; create it, or add create=true to the URL (tests and demos)"
                ) from exc
            await self._create_bucket()

    async def _create_bucket(self) -> None:
        params: dict[str, Any] = {"Bucket": self.settings.bucket}
        region = self._client.region
        if region and region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        await self._client.call("create_bucket", self._what, **params)

    def location(self, message: OutMessage) -> str:
        """``s3://BUCKET/KEY``: where ``message`` is written."""
        return f"s3://{self.settings.bucket}/{self.object_key(message)}"

    def object_key(self, message: OutMessage) -> str:
        """The key ``message`` is written under."""
        name = message.id
        if self.settings.key_from == "source":
            name = message.attributes.get("key") or message.id
        return f"{self.settings.prefix}{name}{self.settings.suffix}"

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Put one object per message (concurrently, at most :data:`MAX_CONCURRENT_PUTS`);
        returns once S3 stored every one. Raises ConnectorError if any put failed (the
        others are stored; putting them again overwrites them with the same content)."""
        results = await asyncio.gather(
            *(self._put(message) for message in messages), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _put(self, message: OutMessage) -> None:
        key = self.object_key(message)
        async with self._puts:
            await self._client.call(
                "put_object",
                f"S3 object s3://{self.settings.bucket}/{key}",
                timeout_s=_transfer_timeout_s(len(message.body)),
                Bucket=self.settings.bucket,
                Key=key,
                Body=message.body,
                ContentType=self._content_type(message),
                Metadata=_metadata(message),
            )

    def _content_type(self, message: OutMessage) -> str:
        if self.settings.content_type:
            return self.settings.content_type
        given = _attribute(message.attributes, _CONTENT_TYPE_ATTRIBUTES)
        return given or _sniff_content_type(message.body)

    async def close(self) -> None:
        """Close the client."""
        await self._client.close()


def _attribute(attributes: Mapping[str, str], names: Sequence[str]) -> str | None:
    lowered = {name.lower(): value for name, value in attributes.items()}
    return next((lowered[n] for n in names if lowered.get(n)), None)


def _sniff_content_type(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    try:
        json.loads(text)
    except (ValueError, RecursionError):  # too deeply nested is not JSON either
        return "text/plain; charset=utf-8"
    return "application/json"


def _metadata(message: OutMessage) -> dict[str, str]:
    """``modelbus-id`` and as many attributes as fit S3's 2 KB of user metadata, as HTTP
    headers can carry them."""
    metadata = {"modelbus-id": quote(message.id, safe=_PRINTABLE)}
    used = sum(len(k) + len(v) for k, v in metadata.items())
    for name, value in message.attributes.items():
        header = _METADATA_NAME_CHARS.sub("-", name.lower())
        encoded = quote(value, safe=_PRINTABLE)
        if header in metadata or used + len(header) + len(encoded) > MAX_METADATA_BYTES:
            continue
        metadata[header] = encoded
        used += len(header) + len(encoded)
    return metadata


class S3ObjectReader:
    """Fetches the objects named by S3 events (the ObjectReader of objects.md).

    The client is created on the first read and kept until :meth:`close` (or the end of an
    ``async with`` block). Safe for concurrent reads."""

    def __init__(
        self,
        aws: AwsOptions,
        *,
        listener: str,
        max_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
    ) -> None:
        self.max_bytes = max_bytes
        self._client = AwsClient("s3", aws, listener=listener, read_timeout_s=_READ_TIMEOUT_S)
        self._opening = asyncio.Lock()
        self._open = False

    async def read(self, bucket: str, key: str) -> tuple[bytes, str | None]:
        """The object's bytes and Content-Type (None if S3 has none). Raises
        ConnectorError(permanent=True) if the object or bucket is gone or the object is
        larger than ``max_bytes``, ConnectorConfigError if access is denied, ConnectorError
        (transient) if S3 cannot be reached."""
        await self._ensure_open()
        what = f"S3 object s3://{bucket}/{key}"
        try:
            answer = await self._client.call("get_object", what, Bucket=bucket, Key=key)
        except ConnectorError as exc:
            if _missing(exc):
                raise ConnectorError(
                    self._client.context(f"{what} does not exist"), permanent=True
                ) from exc
            raise
        return await self._body(answer, what), answer.get("ContentType") or None

    async def _body(self, answer: dict[str, Any], what: str) -> bytes:
        size = int(answer.get("ContentLength") or 0)
        async with answer["Body"] as stream:
            if size > self.max_bytes:
                raise ConnectorError(
                    self._client.context(what)
                    + f": {size} bytes, over the reader's limit of {self.max_bytes}",
                    permanent=True,
                )
            try:
                async with asyncio.timeout(_transfer_timeout_s(size)):
                    data: bytes = await stream.read()
            except client_errors() as exc:
                raise translate(exc, self._client.context(f"reading {what}")) from exc
        return data

    async def _ensure_open(self) -> None:
        async with self._opening:
            if not self._open:
                await self._client.open()
                self._open = True

    async def close(self) -> None:
        """Close the client (idempotent; a later read opens a new one)."""
        async with self._opening:
            self._open = False
            await self._client.close()

    async def __aenter__(self) -> S3ObjectReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def make_sink(url: str, ctx: ConnectorContext) -> S3Sink:
    """An unopened S3Sink for ``url``. Raises DefinitionError for a malformed URL,
    MissingExtra without aiobotocore (``pip install 'modelbus[sqs]'``)."""
    settings = S3Settings.from_url(url)
    require_aiobotocore()
    return S3Sink(settings, ctx)


def make_reader(source_url: str, ctx: ConnectorContext) -> S3ObjectReader:
    """The reader of the objects named by S3 events arriving on the listener's source
    ``source_url`` (``sqs://...`` or a queue URL): it calls S3 with that URL's
    ``endpoint_url``, ``region`` and ``profile`` (else botocore's environment chain).
    Raises MissingExtra without aiobotocore."""
    require_aiobotocore()
    return S3ObjectReader(AwsOptions.from_url(source_url), listener=ctx.listener)
