"""Envelopes: from a delivery to invocation inputs, and from results to messages.

Decoding (:func:`decode`, pure, no I/O) understands, outermost first:

* an SNS notification, wrapped (``{"Type": "Notification", "Message": "...", ...}``, its
  ``MessageAttributes`` becoming attributes) or raw (then it is just the inner message);
* a CloudEvent in structured mode (``content-type: application/cloudevents+json``, or a JSON
  object with ``specversion``, ``id``, ``source`` and ``type``), ``data`` or ``data_base64``;
* a CloudEvent in binary mode (``ce-specversion`` attribute; Kafka's ``ce_`` too);
* an S3-shaped object-created notification (``aws:s3`` or the folder source's
  ``modelbus:dir``): one input per ``ObjectCreated:*`` record, fetched later by
  :func:`fetch` through an :class:`ObjectReader`; ``s3:TestEvent`` and other event names give
  no input at all;
* anything else is a raw body: JSON if it parses, else UTF-8 text, else binary (a
  ``content-type`` attribute, when present, decides instead).

CloudEvent context attributes are exposed to filters as ``ce-NAME`` attributes; objects as
``bucket``, ``key`` and ``size``. A body that claims a format and breaks it raises
:class:`~modelbus.errors.InvalidInput` (permanent: dead-lettered at once).

Encoding: :func:`encode_result` makes a structured CloudEvent (or the raw result) carrying
the correlation (:class:`Correlation`); :func:`encode_dead_letter` keeps the original body
and attributes untouched and adds ``modelbus-*`` attributes describing the failure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from modelbus.connectors import (
    DEAD_LETTER_ID,
    OBJECT_READERS,
    Delivery,
    ObjectReader,
    OutMessage,
)
from modelbus.errors import ConnectorError, InvalidInput
from modelbus.listeners.filters import MISSING
from modelbus.runtime import jsondoc
from modelbus.runtime.invocation import Payload, Result

__all__ = [
    "CLOUDEVENTS_JSON",
    "Correlation",
    "DeadLetterInfo",
    "Item",
    "ObjectReaders",
    "ObjectRef",
    "announced_object",
    "child_traceparent",
    "dead_letter_id",
    "decode",
    "encode_dead_letter",
    "encode_result",
    "fetch",
    "mime_of",
    "output_id",
]

CLOUDEVENTS_JSON = "application/cloudevents+json"
RESULT_TYPE = "dev.modelbus.result"
# eventSource values of the object-created notifications a listener fetches objects for
OBJECT_SOURCES = tuple(OBJECT_READERS)
_OUTPUT_NAMESPACE = uuid.UUID("6f1f3c8e-2a52-5b7e-9d1c-8f0e6c3a4b10")
_MAX_ATTRIBUTE_TEXT = 4096
_MAX_NESTING = 3
# Larger bodies are not looked into for an announced object: an S3 notification is a few KB,
# and an SQS/SNS message at most 256 KiB.
_NOTIFICATION_MAX_BYTES = 256 * 1024


class ObjectReaders:
    """Readers by notification ``eventSource``, built on first use (the S3 reader needs the
    AWS extra; a listener that never sees an S3 event never imports it). Readers holding
    connections may define ``async close()``; :meth:`close` calls it."""

    def __init__(self, factories: Mapping[str, Callable[[], ObjectReader]]) -> None:
        self._factories = dict(factories)
        self._readers: dict[str, ObjectReader] = {}

    def get(self, event_source: str) -> ObjectReader:
        """The reader for ``event_source``; raises ConnectorError(permanent) if there is none."""
        reader = self._readers.get(event_source)
        if reader is None:
            factory = self._factories.get(event_source)
            if factory is None:
                raise ConnectorError(
                    f"this listener cannot fetch objects announced by {event_source!r} events",
                    permanent=True,
                )
            reader = self._readers[event_source] = factory()
        return reader

    async def close(self) -> None:
        """Close the readers built so far (those that have a ``close``)."""
        readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            close = getattr(reader, "close", None)
            if close is not None:
                await close()


@dataclass(frozen=True, kw_only=True, slots=True)
class ObjectRef:
    """The object an object-created notification announces (key already unquoted)."""

    event_source: str
    bucket: str
    key: str
    size: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Item:
    """One invocation input decoded from a delivery.

    ``payload`` is None for an object reference until :func:`fetch` fills it in.
    ``value`` is the parsed JSON body when there is one (filters match on it), else MISSING.
    ``attributes`` are the delivery's attributes plus what the envelopes added.
    ``index`` numbers the inputs of one delivery (an S3 event may announce several objects).
    """

    payload: Payload | None
    attributes: Mapping[str, str]
    value: Any = MISSING
    object: ObjectRef | None = None
    index: int = 0


def decode(delivery: Delivery) -> list[Item]:
    """The invocation inputs in ``delivery`` (possibly none). Pure; raises InvalidInput for a
    body that cannot be decoded (a permanent failure)."""
    items = _decode(delivery.body, dict(delivery.attributes), depth=0)
    if len(items) == 1:
        return items  # index 0 already: most messages hold one input
    return [replace(item, index=i) for i, item in enumerate(items)]


def announced_object(delivery: Delivery) -> str | None:
    """``BUCKET/KEY`` of the first object an object-created notification in ``delivery``
    announces (S3, possibly inside SNS; a ``dir://`` folder's, whose bucket is the folder:
    the file's path), None for any other message or one that cannot be decoded. What run
    records and dead letters are found by; cheap for other messages (no parse)."""
    body = delivery.body
    if len(body) > _NOTIFICATION_MAX_BYTES or b"Records" not in body:
        return None
    try:
        items = _decode(body, {}, depth=0)
    except (InvalidInput, RecursionError, ValueError, TypeError):
        return None
    for item in items:
        if item.object is not None:
            return f"{item.object.bucket}/{item.object.key}"
    return None


async def fetch(item: Item, readers: ObjectReaders) -> Item:
    """``item`` with its object fetched as a binary payload (unchanged if it has a payload)."""
    ref = item.object
    if ref is None or item.payload is not None:
        return item
    data, content_type = await readers.get(ref.event_source).read(ref.bucket, ref.key)
    return replace(item, payload=Payload(data, "binary", content_type))


def _decode(body: bytes, attrs: dict[str, str], *, depth: int) -> list[Item]:
    if depth > _MAX_NESTING:
        raise InvalidInput("envelopes nested too deeply")
    lower = {_header_name(k): v for k, v in attrs.items()}
    content_type = lower.get("content-type")
    if "ce-specversion" in lower:
        return [_binary_cloudevent(body, attrs, lower)]
    if content_type and content_type.lower().startswith(CLOUDEVENTS_JSON):
        return [_structured_cloudevent(_json_object(body, "a structured CloudEvent"), attrs)]
    doc = _maybe_json_object(body) if _could_be_json(content_type) else None
    if doc is None:
        return [_raw_item(body, content_type, attrs)]
    if _is_cloudevent(doc):
        return [_structured_cloudevent(doc, attrs)]
    if doc.get("Type") == "Notification" and "TopicArn" in doc and "Message" in doc:
        return _sns(doc, attrs, depth)
    if doc.get("Event") == "s3:TestEvent":
        return []
    if _is_object_event(doc):
        return _object_items(doc, attrs)
    return [Item(payload=Payload(body, "json"), attributes=attrs, value=doc)]


def _header_name(name: str) -> str:
    lower = name.lower()
    return "ce-" + lower[3:] if lower.startswith("ce_") else lower  # Kafka spells ce_NAME


def _could_be_json(content_type: str | None) -> bool:
    return content_type is None or _is_json_type(content_type)


def _is_json_type(content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return base == "application/json" or base.endswith("+json")


def _maybe_json_object(body: bytes) -> dict[str, Any] | None:
    if body.lstrip()[:1] != b"{":
        return None
    try:
        doc = jsondoc.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = jsondoc.loads(body)
    except ValueError as exc:
        raise InvalidInput(f"{what} must be a JSON object: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return doc


def _raw_item(body: bytes, content_type: str | None, attrs: Mapping[str, str]) -> Item:
    payload, value = _payload(body, content_type)
    return Item(payload=payload, attributes=attrs, value=value)


def _payload(data: bytes, content_type: str | None) -> tuple[Payload, Any]:
    """A body as its content type says, or sniffed (JSON, else text, else binary)."""
    if content_type is None:
        try:
            return Payload(data, "json"), jsondoc.loads(data)
        except ValueError:
            pass
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return Payload(data, "binary"), MISSING
        return Payload(data, "text"), MISSING
    if _is_json_type(content_type):
        try:
            return Payload(data, "json"), jsondoc.loads(data)
        except ValueError as exc:
            raise InvalidInput(f"body declared {content_type} does not parse: {exc}") from None
    if content_type.lower().startswith("text/"):
        return Payload(_as_utf8(data, content_type), "text"), MISSING
    return Payload(data, "binary", content_type), MISSING


def _as_utf8(data: bytes, content_type: str) -> bytes:
    charset = "utf-8"
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "charset" and value:
            charset = value.strip('"').lower()
    try:
        text = data.decode(charset)
        # Some codecs (utf-7, unicode_escape...) decode to lone surrogates, which are not text.
        return data if charset in ("utf-8", "utf8") else text.encode("utf-8")
    except (LookupError, ValueError) as exc:  # UnicodeError is a ValueError
        raise InvalidInput(f"body declared {content_type} does not decode: {exc}") from None


def _is_cloudevent(doc: Mapping[str, Any]) -> bool:
    return isinstance(doc.get("specversion"), str) and all(
        k in doc for k in ("id", "source", "type")
    )


def _structured_cloudevent(doc: Mapping[str, Any], attrs: Mapping[str, str]) -> Item:
    if not _is_cloudevent(doc):
        raise InvalidInput("a CloudEvent needs specversion, id, source and type")
    context = {f"ce-{k}": _text(v) for k, v in doc.items() if k not in ("data", "data_base64")}
    content_type = doc.get("datacontenttype")
    if content_type is not None and not isinstance(content_type, str):
        raise InvalidInput("CloudEvent datacontenttype must be a string")
    if "data_base64" in doc:
        payload, value = _payload(
            _b64(doc["data_base64"]), content_type or "application/octet-stream"
        )
    else:
        payload, value = _cloudevent_data(doc.get("data"), content_type)
    return Item(payload=payload, attributes={**attrs, **context}, value=value)


def _cloudevent_data(data: Any, content_type: str | None) -> tuple[Payload, Any]:
    if content_type is None or _is_json_type(content_type):
        return Payload.from_json(data), data
    if isinstance(data, str):
        return Payload.from_text(data), MISSING
    raise InvalidInput(f"CloudEvent data for {content_type} must be a string (or use data_base64)")


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise InvalidInput("CloudEvent data_base64 must be a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"CloudEvent data_base64 is not base64: {exc}") from None


def _binary_cloudevent(body: bytes, attrs: Mapping[str, str], lower: Mapping[str, str]) -> Item:
    content_type = lower.get("content-type") or lower.get("ce-datacontenttype")
    payload, value = _payload(body, content_type)
    context = {k: v for k, v in lower.items() if k.startswith("ce-")}
    return Item(payload=payload, attributes={**attrs, **context}, value=value)


def _sns(doc: Mapping[str, Any], attrs: Mapping[str, str], depth: int) -> list[Item]:
    message = doc["Message"]
    if not isinstance(message, str):
        raise InvalidInput("SNS notification Message must be a string")
    try:
        inner = message.encode("utf-8")
    except UnicodeEncodeError:  # a JSON \ud800 escape: a lone surrogate is not text
        raise InvalidInput("SNS notification Message is not valid Unicode text") from None
    added: dict[str, str] = {}
    raw_attributes = doc.get("MessageAttributes") or {}
    if not isinstance(raw_attributes, dict):
        raise InvalidInput("SNS notification MessageAttributes must be an object")
    for name, spec in raw_attributes.items():
        if isinstance(spec, dict) and "Value" in spec:
            added[str(name)] = _text(spec["Value"])
    return _decode(inner, {**attrs, **added}, depth=depth + 1)


def _is_object_event(doc: Mapping[str, Any]) -> bool:
    records = doc.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and isinstance(records[0], dict)
        and records[0].get("eventSource") in OBJECT_SOURCES
    )


def _object_items(doc: Mapping[str, Any], attrs: Mapping[str, str]) -> list[Item]:
    items = []
    for record in doc["Records"]:
        if not isinstance(record, dict):
            raise InvalidInput("object notification records must be objects")
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue  # removals, restores...: nothing to run
        ref = _object_ref(record)
        extra = {"bucket": ref.bucket, "key": ref.key}
        if ref.size is not None:
            extra["size"] = str(ref.size)
        items.append(Item(payload=None, attributes={**attrs, **extra}, object=ref))
    return items


def _object_ref(record: Mapping[str, Any]) -> ObjectRef:
    try:
        s3 = record["s3"]
        bucket = s3["bucket"]["name"]
        obj = s3["object"]
        raw_key = obj["key"]
    except (KeyError, TypeError, IndexError) as exc:
        raise InvalidInput(f"object notification record lacks {exc}") from None
    if not isinstance(bucket, str) or not isinstance(raw_key, str) or not bucket or not raw_key:
        raise InvalidInput("object notification record has no bucket name or key")
    key = unquote_plus(raw_key)
    size = obj.get("size") if isinstance(obj, dict) else None
    return ObjectRef(
        event_source=str(record["eventSource"]),
        bucket=bucket,
        key=key,
        size=size if isinstance(size, int) else None,
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


# --- correlation and encoding ---------------------------------------------------------------


def output_id(listener: str, message_id: str, index: int = 0) -> str:
    """The deterministic id of a listener's output for a source message (input ``index`` of
    a delivery with several): the same on every redelivery, so duplicates can be dropped."""
    name = f"{listener}\n{message_id}" + (f"\n{index}" if index else "")
    return _uuid5(name)


def dead_letter_id(listener: str, message_id: str) -> str:
    """The deterministic id of a message's dead letter in a listener (storing it twice, after
    a redelivery, replaces the first)."""
    return _uuid5(f"dead-letter\n{listener}\n{message_id}")


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(_OUTPUT_NAMESPACE, name))``, without building ``UUID`` objects (one
    per result message: the object's int arithmetic cost more than the hash)."""
    digest = bytearray(hashlib.sha1(_OUTPUT_NAMESPACE.bytes + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def child_traceparent(parent: str | None) -> str:
    """A W3C ``traceparent`` for our span: same trace and flags as ``parent`` when it is
    valid, else a new sampled trace."""
    if parent:
        parts = parent.strip().split("-")
        if (
            len(parts) >= 4
            and len(parts[1]) == 32
            and len(parts[3]) == 2
            and _hex(parts[1])
            and parts[1] != "0" * 32
        ):
            return f"00-{parts[1].lower()}-{_span_id()}-{parts[3].lower()}"
    return f"00-{_random_hex(128)}-{_span_id()}-01"


def _span_id() -> str:
    return _random_hex(64)


def _random_hex(bits: int) -> str:
    """Random, never all zeros (W3C trace context), from the process's PRNG as
    OpenTelemetry's SDK draws its ids: trace ids need to be unique, not secret, and a
    system call per message for them was measurable."""
    while True:
        value = random.randbytes(bits // 8)
        if any(value):
            return value.hex()


def _hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, kw_only=True, slots=True)
class Correlation:
    """What ties a result to its source message, hop after hop.

    ``origin_id`` is the first message's id in a pipeline (carried from an upstream
    result's ``originid``), ``traceparent`` our span's W3C trace context. ``event`` holds
    the incoming CloudEvent's ``id``, ``source`` and ``type`` when the message was one: the
    result carries them as ``sourceeventid``, ``sourceeventsource`` and ``sourceeventtype``.
    """

    listener: str
    model: str
    source_message_id: str
    origin_id: str
    attempt: int
    traceparent: str
    bucket: str | None = None
    key: str | None = None
    event: tuple[str, str, str] | None = None

    @classmethod
    def of(
        cls,
        *,
        listener: str,
        model: str,
        delivery: Delivery,
        item: Item,
        traceparent: str | None = None,
    ) -> Correlation:
        """The correlation for input ``item`` of ``delivery``; ``traceparent`` is the
        delivery's span when tracing is on (else a child of the message's own is made)."""
        attrs = item.attributes
        origin = attrs.get("originid") or attrs.get("ce-originid") or delivery.message_id
        parent = attrs.get("traceparent") or attrs.get("ce-traceparent")
        return cls(
            listener=listener,
            model=model,
            source_message_id=delivery.message_id,
            origin_id=origin,
            attempt=delivery.attempt,
            traceparent=traceparent or child_traceparent(parent),
            bucket=item.object.bucket if item.object else None,
            key=item.object.key if item.object else None,
            event=_event_of(attrs),
        )

    def attributes(self, result: Result | None = None) -> dict[str, str]:
        """The correlation as message attributes (names valid as CloudEvent extensions)."""
        attrs = {
            "sourcemessageid": self.source_message_id,
            "originid": self.origin_id,
            "listener": self.listener,
            "model": self.model,
            "attempt": str(self.attempt),
            "traceparent": self.traceparent,
        }
        if result is not None:
            attrs["modelversion"] = result.version
            attrs["durationms"] = f"{result.duration_ms:.3f}"
        if self.bucket is not None and self.key is not None:
            attrs["bucket"] = self.bucket
            attrs["key"] = self.key
        if self.event is not None:
            attrs["sourceeventid"], attrs["sourceeventsource"], attrs["sourceeventtype"] = (
                self.event
            )
        return attrs


def _event_of(attrs: Mapping[str, str]) -> tuple[str, str, str] | None:
    """The incoming CloudEvent's id, source and type (structured or binary mode)."""
    event_id, source, kind = attrs.get("ce-id"), attrs.get("ce-source"), attrs.get("ce-type")
    if event_id is None or source is None or kind is None:
        return None
    return event_id, source, kind


def mime_of(payload: Payload) -> str:
    """The MIME type to label ``payload`` with."""
    if payload.content_type == "json":
        return "application/json"
    if payload.content_type == "text":
        return "text/plain; charset=utf-8"
    return payload.mime or "application/octet-stream"


def encode_result(
    *,
    correlation: Correlation,
    result: Result,
    id: str,
    mode: str = "cloudevent",
    time: str | None = None,
) -> OutMessage:
    """The message publishing ``result``: a structured CloudEvent (``mode="cloudevent"``) or
    the bare result (``"raw"``); attributes carry the correlation either way. ``time`` is
    the event's time (:func:`event_time`); now when not given."""
    attrs = correlation.attributes(result)
    if mode == "raw":
        attrs["content-type"] = mime_of(result.output)
        return OutMessage(id=id, body=result.output.data, attributes=attrs)
    body = _cloudevent(correlation, result, id, attrs, time or event_time())
    attrs["content-type"] = f"{CLOUDEVENTS_JSON}; charset=utf-8"
    return OutMessage(id=id, body=body, attributes=attrs)


def event_time() -> str:
    """Now, as a CloudEvent ``time`` (RFC 3339, milliseconds, UTC)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# One encoder for every result (json.dumps with options builds a new one per call).
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _cloudevent(
    correlation: Correlation, result: Result, id: str, attrs: Mapping[str, str], time: str
) -> bytes:
    output = result.output
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": id,
        "source": f"modelbus/listener/{correlation.listener}",
        "type": RESULT_TYPE,
        "subject": correlation.key or correlation.source_message_id,
        "time": time,
        "datacontenttype": mime_of(output),
        **attrs,
    }
    if output.content_type == "text":
        event["data"] = output.data.decode("utf-8")
    elif output.content_type == "binary":
        event["data_base64"] = base64.b64encode(output.data).decode("ascii")
    head = _JSON.encode(event).encode("utf-8")
    if output.content_type != "json":
        return head
    # Splice the JSON result in as it is: it is valid JSON already, and large results are
    # not worth parsing and re-serialising on every message.
    return head[:-1] + b',"data":' + output.data + b"}"


@dataclass(frozen=True, kw_only=True, slots=True)
class DeadLetterInfo:
    """Why a delivery was dead-lettered (what the error sink message adds to it)."""

    id: str
    listener: str
    model: str
    version: str | None
    error_type: str
    error_message: str
    stacktrace: str
    permanent: bool
    attempts: int
    traceparent: str | None = None  # the delivery's span, when tracing is on


def encode_dead_letter(delivery: Delivery, info: DeadLetterInfo) -> OutMessage:
    """The error-sink message: the original body and attributes untouched, plus
    ``modelbus-*`` attributes (long texts truncated; the full record is in the database)."""
    added = {
        DEAD_LETTER_ID: info.id,
        "modelbus-listener": info.listener,
        "modelbus-model": info.model,
        "modelbus-source-message-id": delivery.message_id,
        "modelbus-error-type": info.error_type,
        "modelbus-error-message": _truncate(info.error_message),
        "modelbus-error-stacktrace": _truncate(info.stacktrace),
        "modelbus-permanent": "true" if info.permanent else "false",
        "modelbus-attempts": str(info.attempts),
    }
    if info.version:
        added["modelbus-version"] = info.version
    if info.traceparent:
        added["modelbus-traceparent"] = info.traceparent
    return OutMessage(id=info.id, body=delivery.body, attributes={**delivery.attributes, **added})


def _truncate(text: str) -> str:
    if len(text) <= _MAX_ATTRIBUTE_TEXT:
        return text
    return text[: _MAX_ATTRIBUTE_TEXT - 20] + "\n...[truncated]"
