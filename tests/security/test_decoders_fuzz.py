"""Property-based fuzzing of everything that decodes hostile input: the envelope decoder
(raw bodies, CloudEvents, SNS notifications, S3 object events), the SQS/SNS unwrapping of
the AWS connectors, HTTP request bodies, webhook signature headers and model archives.

The property is the same everywhere: whatever arrives, the decoder either succeeds or raises
its one documented error type (:class:`InvalidInput` and its subclasses, Unauthenticated for
signatures, ArchiveError for archives), and it answers within a deadline (no hang, no
quadratic blow-up). Each input shape is generated on purpose: near-valid envelopes with
fields of every JSON type, lone surrogates, odd charsets, deep nesting, truncated and
bit-flipped archives.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import tarfile
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelbus.connectors.aws import decode_message, encode_message
from modelbus.connectors.base import Delivery
from modelbus.connectors.sns import unwrap_notification
from modelbus.connectors.webhook import sign, verify
from modelbus.errors import ArchiveError, InvalidInput, Unauthenticated, UnsupportedContentType
from modelbus.listeners import envelopes
from modelbus.listeners.filters import MISSING
from modelbus.registry.artifacts import safe_extract
from modelbus.web.api.payloads import payload_from_body

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),  # far above the microseconds a decode takes: a hang
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
    database=None,
)

# --- strategies --------------------------------------------------------------------------

# Text including lone surrogates (what a JSON "\ud800" escape decodes to).
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | texts
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
charsets = st.sampled_from(
    ["utf-8", "latin-1", "utf-7", "utf-16", "idna", "rot13", "base64", "unicode_escape",
     "nope", "", "utf\x00-8", "raw_unicode_escape", "punycode", "zlib"]
)  # fmt: skip
media = st.sampled_from(
    ["application/json", "text/plain", "application/cloudevents+json", "application/x+json",
     "application/octet-stream", "image/png", "multipart/form-data", "", ";;", "text/"]
)  # fmt: skip
content_types = st.one_of(
    media,
    st.builds(lambda m, c: f"{m}; charset={c}", media, charsets),
    texts,
)


def _deep(depth: int, opener: str) -> bytes:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return (opener * depth + "1" + closer * depth).encode()


deep_json = st.builds(
    _deep, st.integers(min_value=1, max_value=20_000), st.sampled_from(["[", '{"a":'])
)


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()  # keeps lone surrogates as escapes


cloudevents = st.fixed_dictionaries(
    {
        "specversion": st.one_of(st.just("1.0"), json_values),
        "id": json_values,
        "source": json_values,
        "type": json_values,
    },
    optional={
        "data": json_values,
        "data_base64": st.one_of(texts, json_values, st.binary().map(_base64)),
        "datacontenttype": st.one_of(content_types, json_values),
        "traceparent": json_values,
    },
)  # fmt: skip
records = st.fixed_dictionaries(
    {"eventSource": st.sampled_from(["aws:s3", "modelbus:dir", "aws:sqs"])},
    optional={
        "eventName": st.one_of(st.just("ObjectCreated:Put"), json_values),
        "s3": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {
                    "bucket": st.one_of(st.fixed_dictionaries({"name": json_values}), json_values),
                    "object": st.one_of(
                        st.fixed_dictionaries({"key": json_values}, optional={"size": json_values}),
                        json_values,
                    ),
                }
            ),
        ),
    },
)
s3_events = st.fixed_dictionaries(
    {"Records": st.one_of(st.lists(st.one_of(records, json_values), max_size=3), json_values)}
)


def _sns(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"Type": st.just("Notification"), "TopicArn": json_values, "Message": inner},
        optional={
            "MessageAttributes": st.one_of(
                json_values,
                st.dictionaries(
                    texts, st.fixed_dictionaries({"Type": texts, "Value": json_values})
                ),
            )
        },
    )


envelope_docs = st.recursive(
    st.one_of(cloudevents, s3_events, json_values, st.just({"Event": "s3:TestEvent"})),
    lambda inner: _sns(st.one_of(inner.map(lambda d: json.dumps(d)), texts, json_values)),
    max_leaves=4,
)
bodies = st.one_of(envelope_docs.map(_encode), st.binary(max_size=200), deep_json)
attribute_names = st.sampled_from(
    ["content-type", "Content-Type", "ce-specversion", "ce_specversion", "ce-datacontenttype",
     "ce_type", "traceparent", "bucket"]
)  # fmt: skip
attributes = st.dictionaries(
    st.one_of(attribute_names, texts), st.one_of(content_types, texts), max_size=4
)


# --- envelopes.decode ----------------------------------------------------------------------


@FUZZ
@given(body=bodies, attrs=attributes)
def test_decode_fails_only_with_invalid_input(body: bytes, attrs: dict[str, str]) -> None:
    delivery = Delivery(message_id="m-1", body=body, attributes=attrs)
    try:
        items = envelopes.decode(delivery)
    except InvalidInput:
        return
    for i, item in enumerate(items):
        assert item.index == i
        if item.payload is None:  # an object reference, fetched later
            assert item.object is not None and item.object.key and item.object.bucket
            continue
        # What decoding accepted is usable downstream: the value parses, attributes are text.
        decoded = item.payload.value()
        if item.payload.content_type == "json" and item.value is not MISSING:
            assert decoded == item.value or decoded != decoded  # NaN is not equal to itself
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in item.attributes.items())


@FUZZ
@given(depth=st.integers(min_value=900, max_value=100_000), opener=st.sampled_from(["[", '{"a":']))
def test_deep_json_is_not_a_crash(depth: int, opener: str) -> None:
    body = _deep(depth, opener)
    for attrs in ({}, {"content-type": "application/json"}, {"ce-specversion": "1.0"}):
        with contextlib.suppress(InvalidInput):
            envelopes.decode(Delivery(message_id="m", body=body, attributes=attrs))
        with contextlib.suppress(InvalidInput):
            payload_from_body(attrs.get("content-type"), body)


def test_sns_wrapping_sns_wrapping_sns_stops_at_the_nesting_limit() -> None:
    doc: Any = {"hello": "world"}
    for _ in range(10):
        doc = {"Type": "Notification", "TopicArn": "arn:t", "Message": json.dumps(doc)}
    try:
        envelopes.decode(Delivery(message_id="m", body=_encode(doc)))
    except InvalidInput as exc:
        assert "nested too deeply" in str(exc)
    else:
        raise AssertionError("ten nested SNS notifications were decoded")


# --- the AWS connectors' unwrapping --------------------------------------------------------


@FUZZ
@given(body=texts, attrs=st.dictionaries(st.one_of(texts, st.sampled_from(
    ["modelbus-encoding", "modelbus-attributes"])), texts, max_size=4))  # fmt: skip
def test_sqs_decode_message_never_raises(body: str, attrs: dict[str, str]) -> None:
    raw, decoded = decode_message(body, attrs)
    assert isinstance(raw, bytes)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in decoded.items())


@FUZZ
@given(body=st.binary(max_size=300), attrs=st.dictionaries(texts, texts, max_size=4))
def test_sqs_encoding_round_trips(body: bytes, attrs: dict[str, str]) -> None:
    encoded = encode_message(body, attrs)
    native = {name: value["StringValue"] for name, value in encoded.attributes.items()}
    assert decode_message(encoded.body, native) == (body, attrs)


@FUZZ
@given(body=st.one_of(bodies, _sns(st.one_of(texts, json_values)).map(_encode)))
def test_sns_unwrap_never_raises(body: bytes) -> None:
    unwrapped = unwrap_notification(body)
    if unwrapped is not None:
        raw, attrs = unwrapped
        assert isinstance(raw, bytes) and isinstance(attrs, dict)


# --- HTTP bodies ---------------------------------------------------------------------------


@FUZZ
@given(content_type=st.one_of(st.none(), content_types), body=bodies)
def test_http_bodies_fail_only_with_400_or_415(content_type: str | None, body: bytes) -> None:
    try:
        payload = payload_from_body(content_type, body)
    except (InvalidInput, UnsupportedContentType):
        return
    payload.value()  # accepted JSON parses again, accepted text is UTF-8


# --- webhook signatures --------------------------------------------------------------------

SECRET = "s" * 32
signature_parts = st.one_of(
    texts,
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["t", "v1", "v0", ""]), texts),
    st.builds(lambda d: f"t={d}", st.text("0123456789\u0661\u00b2", min_size=1, max_size=5000)),
)


@FUZZ
@given(parts=st.lists(signature_parts, max_size=6), body=st.binary(max_size=50))
def test_signature_headers_fail_only_with_unauthenticated(parts: list[str], body: bytes) -> None:
    try:
        verify(SECRET, ",".join(parts), body)
    except Unauthenticated:
        return
    raise AssertionError(f"an unsigned header was accepted: {parts!r}")


@FUZZ
@given(body=st.binary(max_size=100), skew_s=st.integers(min_value=-10_000, max_value=10_000))
def test_signatures_hold_inside_the_window_only(body: bytes, skew_s: int) -> None:
    now = 1_800_000_000
    header = sign(SECRET, body, timestamp=now + skew_s)
    try:
        verify(SECRET, header, body, tolerance_s=300, now=now)
    except Unauthenticated:
        assert abs(skew_s) > 300
    else:
        assert abs(skew_s) <= 300


# --- model archives ------------------------------------------------------------------------


def _archive(compression: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=f"w:{compression}", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("modelbus.toml", b"[model]\n"), ("pkg/model.py", b"x = 1\n" * 50)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


ARCHIVES = {c: _archive(c) for c in ("", "gz", "bz2", "xz")}


@st.composite
def damaged_archives(draw: st.DrawFn) -> bytes:
    data = bytearray(ARCHIVES[draw(st.sampled_from(sorted(ARCHIVES)))])
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        data[at] = draw(st.integers(min_value=0, max_value=255))
    cut = draw(st.integers(min_value=0, max_value=len(data)))
    return bytes(data[: max(cut, len(data) // 2)])


@FUZZ
@given(data=st.one_of(damaged_archives(), st.binary(max_size=2000)))
def test_damaged_archives_fail_only_with_archive_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        try:
            safe_extract(io.BytesIO(data), Path(scratch), max_unpacked_bytes=1 << 20)
        except ArchiveError:
            return
        for path in Path(scratch).rglob("*"):  # what was extracted stayed inside
            assert path.resolve().is_relative_to(Path(scratch).resolve())
