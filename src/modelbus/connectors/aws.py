"""What the Amazon connectors (:mod:`~modelbus.connectors.sqs`, :mod:`~modelbus.connectors.sns`,
:mod:`~modelbus.connectors.s3`) share: URL options, one client factory, error translation and
the message-attribute convention of SQS and SNS.

URL options common to ``sqs://``, ``sns://`` and ``s3://`` (query parameters):

* ``endpoint_url``: talk to this endpoint instead of AWS (moto, a VPC endpoint...). Else
  botocore's own chain: ``AWS_ENDPOINT_URL_<SERVICE>`` / ``AWS_ENDPOINT_URL`` environment,
  then the profile's configuration, then the public endpoint of the region.
* ``region``: else botocore's chain (``AWS_DEFAULT_REGION`` / ``AWS_REGION``, the profile).
* ``profile``: a named profile of the shared AWS config files.

Credentials always come from botocore's normal chain (environment, profile, container or
instance role); a URL never carries them.

Timeouts and retries, decided once for every AWS call of modelbus:

* connect timeout :data:`CONNECT_TIMEOUT_S` (5 s); read timeout per service, longer than SQS's
  20 s long poll for SQS;
* botocore's ``standard`` retry mode with :data:`MAX_ATTEMPTS` (3) attempts in all: it retries
  throttling, 5xx and connection errors with jittered exponential backoff, so a brief hiccup
  costs no redelivery; anything longer surfaces as a transient ConnectorError and the listener
  runtime, which alone decides retries of deliveries, takes over;
* and every call runs under an overall deadline (:data:`CALL_TIMEOUT_S`, plus the long-poll
  wait for receives and transfer time for large objects), so no await can hang.

Message attributes (SQS and SNS). Those services take at most :data:`MAX_NATIVE_ATTRIBUTES`
(10) message attributes, with non-empty values and names of a restricted form. A sink sends
as many of a message's attributes natively as fit, ``traceparent`` and ``tracestate`` first,
then in the order given; the rest (and any that the service would refuse) travel as one JSON
object in the attribute :data:`OVERFLOW_ATTRIBUTE`, which the SQS source unpacks again, so
attributes round-trip exactly between modelbus connectors.

Bodies (SQS and SNS). Those services carry text only. A body that is not valid UTF-8 text of
the characters SQS accepts is sent base64-encoded with the attribute
``modelbus-encoding=base64``; an empty body is sent as ``-`` with ``modelbus-encoding=empty``.
The SQS source reverses both, so any bytes round-trip. Other consumers read the attribute.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from modelbus.errors import (
    ConnectorConfigError,
    ConnectorError,
    MissingExtra,
)

__all__ = [
    "CALL_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "ENCODING_ATTRIBUTE",
    "MAX_ATTEMPTS",
    "MAX_NATIVE_ATTRIBUTES",
    "OVERFLOW_ATTRIBUTE",
    "AwsClient",
    "AwsOptions",
    "BatchEntry",
    "EncodedMessage",
    "batches",
    "chunks",
    "client_errors",
    "decode_message",
    "encode_message",
    "error_codes",
    "fifo_id",
    "raise_for_failed",
    "require_aiobotocore",
    "translate",
    "with_ids",
]

CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 30.0
MAX_ATTEMPTS = 3
MAX_POOL_CONNECTIONS = 20

ENCODING_ATTRIBUTE = "modelbus-encoding"
OVERFLOW_ATTRIBUTE = "modelbus-attributes"
MAX_NATIVE_ATTRIBUTES = 10
_FIRST_ATTRIBUTES = ("traceparent", "tracestate")
_EMPTY_BODY = "-"

AWS_OPTIONS = frozenset({"endpoint_url", "region", "profile"})

# Characters SQS accepts in a body or attribute value (its documented XML character set).
_SQS_TEXT = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
_FIFO_ID = re.compile(r"[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}")
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")

# Error codes meaning "fix the configuration", not "try again later".
_CONFIG_ERROR_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "403",  # HEAD requests (S3 HeadBucket/HeadObject) answer with the bare status
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSecurity",
        "MissingAuthenticationToken",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
        "RequestLimitExceeded",
        "KMSThrottlingException",
    }
)

T = TypeVar("T")


def require_aiobotocore() -> None:
    """Raise MissingExtra with the install hint unless aiobotocore can be imported."""
    try:
        import aiobotocore.session  # noqa: F401
    except ImportError as exc:
        raise MissingExtra("sqs", "aiobotocore") from exc


@dataclass(frozen=True, kw_only=True, slots=True)
class AwsOptions:
    """Where and as whom to call AWS; None leaves the choice to botocore's chain."""

    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> AwsOptions:
        """The options named in a URL's query; other keys are ignored."""
        return cls(
            region=query.get("region") or None,
            endpoint_url=query.get("endpoint_url") or None,
            profile=query.get("profile") or None,
        )

    @classmethod
    def from_url(cls, url: str) -> AwsOptions:
        """The options of any modelbus AWS URL (``sqs://``, a queue URL, ``sns://``,
        ``s3://``): its query, plus the region (and, off AWS, the endpoint) that a queue URL
        such as ``https://sqs.eu-west-1.amazonaws.com/123/q`` implies."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        options = cls.from_query(query)
        if parts.scheme.lower() not in ("http", "https"):
            return options
        host = (parts.hostname or "").lower()
        region = options.region
        endpoint = options.endpoint_url
        if host.startswith("sqs.") and host.endswith(".amazonaws.com"):
            region = region or host.split(".")[1]
        elif host.endswith((".amazonaws.com", ".amazonaws.com.cn")):
            pass
        else:
            endpoint = endpoint or f"{parts.scheme}://{parts.netloc}"
        return cls(region=region, endpoint_url=endpoint, profile=options.profile)


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """One entry of a send batch (SQS SendMessageBatch, SNS PublishBatch), without its Id,
    and its size as the service counts it."""

    request: dict[str, Any]
    size_bytes: int


def batches(
    entries: Sequence[BatchEntry], *, max_count: int, max_bytes: int
) -> list[list[BatchEntry]]:
    """``entries`` in order, cut into batches of at most ``max_count`` entries and
    ``max_bytes`` in total (an entry larger than that alone makes a batch)."""
    result: list[list[BatchEntry]] = []
    size = 0
    for entry in entries:
        if not result or len(result[-1]) == max_count or size + entry.size_bytes > max_bytes:
            result.append([])
            size = 0
        result[-1].append(entry)
        size += entry.size_bytes
    return result


def with_ids(batch: Sequence[BatchEntry]) -> list[dict[str, Any]]:
    """The batch's requests, each with an ``Id`` (its position) as batch APIs want."""
    return [{"Id": str(i), **entry.request} for i, entry in enumerate(batch)]


def raise_for_failed(failed: Sequence[Mapping[str, Any]], context: str, *, total: int) -> None:
    """Raise ConnectorError if a batch answer has failed entries: permanent if the service
    blames the sender for every one of them (the same request would fail again)."""
    if not failed:
        return
    detail = "; ".join(f"{f.get('Code')}: {f.get('Message')}" for f in failed[:3])
    raise ConnectorError(
        f"{context}: {len(failed)} of {total} entries failed ({detail})",
        permanent=all(bool(f.get("SenderFault")) for f in failed),
    )


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fifo_id(value: str) -> str:
    """``value`` if SQS and SNS take it as a FIFO group or deduplication id (1-128
    printable ASCII characters), else its SHA-256 in hex."""
    if _FIFO_ID.fullmatch(value):
        return value
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def error_codes(exc: BaseException) -> frozenset[str]:
    """The AWS error codes of a botocore ClientError (JSON-protocol services give both the
    new code and the older query-protocol one); empty for other exceptions."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return frozenset()
    error = response.get("Error") or {}
    return frozenset(str(error[k]) for k in ("Code", "QueryErrorCode") if error.get(k))


def _http_status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return 0
    return int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)


def translate(exc: BaseException, context: str) -> ConnectorError:
    """A modelbus ConnectorError for an exception raised by botocore / aiobotocore.

    Bad credentials, missing region or profile and access denials are
    ConnectorConfigError (permanent); throttling, 5xx, connection problems and timeouts are
    transient; other 4xx answers (the request itself is refused) are permanent."""
    import botocore.exceptions as bx

    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, TimeoutError):
        return ConnectorError(f"{context}: no answer within the deadline")
    detail = str(exc) or type(exc).__name__
    config_errors = (bx.NoCredentialsError, bx.PartialCredentialsError, bx.NoRegionError)
    if isinstance(exc, (*config_errors, bx.ProfileNotFound, bx.ParamValidationError)):
        return ConnectorConfigError(f"{context}: {detail}")
    if isinstance(exc, bx.ClientError):
        codes = error_codes(exc)
        if codes & _CONFIG_ERROR_CODES:
            return ConnectorConfigError(f"{context}: {detail}")
        status = _http_status(exc)
        transient = bool(codes & _THROTTLING_CODES) or status >= 500 or status in (0, 429)
        return ConnectorError(f"{context}: {detail}", permanent=not transient)
    return ConnectorError(f"{context}: {detail}")


_RECOVERABLE: tuple[type[BaseException], ...] = (TimeoutError, OSError)


def client_errors() -> tuple[type[BaseException], ...]:
    """What botocore / aiobotocore calls raise on failure (for ``except`` at the edge)."""
    import botocore.exceptions as bx

    return (bx.BotoCoreError, bx.ClientError, *_RECOVERABLE)


class AwsClient:
    """One aiobotocore client for one source, sink or reader: opened once, closed once.

    Every call goes through :meth:`call`, which puts it under a deadline and translates
    botocore's exceptions into ConnectorError naming the listener and the resource.
    """

    def __init__(
        self,
        service: str,
        options: AwsOptions,
        *,
        listener: str,
        read_timeout_s: float,
    ) -> None:
        self.service = service
        self.options = options
        self.listener = listener
        self._read_timeout_s = read_timeout_s
        self._stack: AsyncExitStack | None = None
        self._client: Any = None

    @property
    def region(self) -> str | None:
        """The region the client signs for (resolved by botocore once opened)."""
        if self._client is not None:
            return str(self._client.meta.region_name)
        return self.options.region

    def context(self, what: str) -> str:
        """``listener 'x': SQS queue 'q' at <endpoint>``: the prefix of every error message."""
        endpoint = self.options.endpoint_url
        if self._client is not None:
            endpoint = str(self._client.meta.endpoint_url)
        where = endpoint or "the AWS endpoint"
        return f"listener {self.listener!r}: {what} (at {where}, region {self.region})"

    async def open(self) -> None:
        """Create the client. Idempotent. Raises ConnectorConfigError for a bad profile or a
        missing region, MissingExtra without aiobotocore."""
        if self._client is not None:
            return
        require_aiobotocore()
        from aiobotocore.config import AioConfig
        from aiobotocore.session import AioSession

        config = AioConfig(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=self._read_timeout_s,
            retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
            max_pool_connections=MAX_POOL_CONNECTIONS,
            warm_up_loader_caches=True,
        )
        stack = AsyncExitStack()
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                session = AioSession(profile=self.options.profile)
                creator = session.create_client(
                    self.service,
                    region_name=self.options.region,
                    endpoint_url=self.options.endpoint_url,
                    config=config,
                )
                self._client = await stack.enter_async_context(creator)
        except client_errors() as exc:
            await stack.aclose()
            raise translate(exc, self.context(f"creating the {self.service} client")) from exc
        self._stack = stack

    async def call(
        self, operation: str, what: str, /, *, timeout_s: float = CALL_TIMEOUT_S, **params: Any
    ) -> dict[str, Any]:
        """Call the client method ``operation`` (snake_case) with ``params`` within
        ``timeout_s``; ``what`` names the resource for error messages. Raises ConnectorError
        (see :func:`translate`)."""
        if self._client is None:
            raise ConnectorError(self.context(f"{what}: the connector is not open"))
        method = getattr(self._client, operation)
        try:
            async with asyncio.timeout(timeout_s):
                response: dict[str, Any] = await method(**params)
        except client_errors() as exc:
            raise translate(exc, self.context(f"{operation} on {what}")) from exc
        return response

    async def close(self) -> None:
        """Close the client's connections. Idempotent; never raises for a broken connection."""
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    await stack.aclose()
            except client_errors():
                pass


# ---------------------------------------------------------------- message attributes and bodies


@dataclass(frozen=True, slots=True)
class EncodedMessage:
    """A message as SQS and SNS take it: text body, API-shaped attributes, and its size as
    those services count it (body + attribute names, types and values, in UTF-8 bytes)."""

    body: str
    attributes: dict[str, dict[str, str]]
    size_bytes: int


def _is_sqs_text(text: str) -> bool:
    return _SQS_TEXT.fullmatch(text) is not None


def _native_name(name: str) -> bool:
    lowered = name.lower()
    return (
        len(name) <= 256
        and _ATTRIBUTE_NAME.fullmatch(name) is not None
        and not lowered.startswith(("aws.", "amazon."))
        and name not in (ENCODING_ATTRIBUTE, OVERFLOW_ATTRIBUTE)
    )


def _attribute_order(attributes: Mapping[str, str]) -> list[str]:
    first = [name for name in _FIRST_ATTRIBUTES if name in attributes]
    return first + [name for name in attributes if name not in _FIRST_ATTRIBUTES]


def _encode_body(body: bytes) -> tuple[str, str | None]:
    if not body:
        return _EMPTY_BODY, "empty"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _is_sqs_text(text):
        return text, None
    return base64.b64encode(body).decode("ascii"), "base64"


def _string_attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _attribute_bytes(name: str, value: dict[str, str]) -> int:
    return sum(len(s.encode("utf-8")) for s in (name, value["DataType"], value["StringValue"]))


def encode_message(body: bytes, attributes: Mapping[str, str]) -> EncodedMessage:
    """``body`` and ``attributes`` in the SQS/SNS form described in the module docstring."""
    text, encoding = _encode_body(body)
    native: dict[str, dict[str, str]] = {}
    if encoding is not None:
        native[ENCODING_ATTRIBUTE] = _string_attribute(encoding)
    sendable = [
        name
        for name in _attribute_order(attributes)
        if _native_name(name) and attributes[name] and _is_sqs_text(attributes[name])
    ]
    room = MAX_NATIVE_ATTRIBUTES - len(native)
    if len(sendable) > room:
        room -= 1  # one slot for the overflow attribute
    chosen = sendable[: max(room, 0)]
    native.update((name, _string_attribute(attributes[name])) for name in chosen)
    overflow = {name: value for name, value in attributes.items() if name not in chosen}
    if overflow:
        native[OVERFLOW_ATTRIBUTE] = _string_attribute(json.dumps(overflow))
    size = len(text.encode("utf-8")) + sum(_attribute_bytes(n, v) for n, v in native.items())
    return EncodedMessage(body=text, attributes=native, size_bytes=size)


def attributes_from_api(message_attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Message attributes as returned by SQS, as strings: String and Number values as they
    are, Binary values base64-encoded."""
    result: dict[str, str] = {}
    for name, value in message_attributes.items():
        if "StringValue" in value:
            result[name] = str(value["StringValue"])
        elif "BinaryValue" in value:
            result[name] = base64.b64encode(bytes(value["BinaryValue"])).decode("ascii")
    return result


def _json_object(text: str) -> dict[str, str] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # too deeply nested is not JSON either
        return None
    if not isinstance(value, dict):
        return None
    return {str(k): str(v) for k, v in value.items()}


def decode_message(body: str, attributes: Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
    """Reverse :func:`encode_message`: the original bytes and attributes. A message from
    another producer (no modelbus attributes) comes back as its UTF-8 body and attributes."""
    remaining = dict(attributes)
    encoding = remaining.pop(ENCODING_ATTRIBUTE, None)
    overflow = remaining.pop(OVERFLOW_ATTRIBUTE, None)
    if overflow is not None:
        extra = _json_object(overflow)
        if extra is None:
            remaining[OVERFLOW_ATTRIBUTE] = overflow
        else:
            remaining.update(extra)
    if encoding == "empty":
        return b"", remaining
    if encoding == "base64":
        try:
            return base64.b64decode(body, validate=True), remaining
        except binascii.Error:
            remaining[ENCODING_ATTRIBUTE] = encoding
    elif encoding is not None:
        remaining[ENCODING_ATTRIBUTE] = encoding
    # surrogatepass: a lone surrogate (a JSON \ud800 escape in an SNS envelope) is kept
    # as the bytes it stands for instead of failing; the body then decodes as binary.
    return body.encode("utf-8", "surrogatepass"), remaining
