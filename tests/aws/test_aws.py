"""The shared AWS helpers: the body/attribute convention, batching, error translation."""

from __future__ import annotations

import sys
from pathlib import Path

import botocore.exceptions as bx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelbus.connectors.aws import (
    ENCODING_ATTRIBUTE,
    MAX_NATIVE_ATTRIBUTES,
    OVERFLOW_ATTRIBUTE,
    AwsOptions,
    BatchEntry,
    attributes_from_api,
    batches,
    decode_message,
    encode_message,
    fifo_id,
    translate,
)
from modelbus.connectors.base import ConnectorContext
from modelbus.errors import ConnectorConfigError, ConnectorError, MissingExtra


@given(
    body=st.binary(max_size=300) | st.text(max_size=100).map(str.encode),
    attributes=st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=14),
)
def test_any_body_and_attributes_round_trip(body: bytes, attributes: dict[str, str]) -> None:
    encoded = encode_message(body, attributes)
    assert len(encoded.attributes) <= MAX_NATIVE_ATTRIBUTES
    assert encoded.body  # SQS refuses empty bodies
    for value in encoded.attributes.values():
        assert value["StringValue"]  # ...and empty attribute values
    assert decode_message(encoded.body, attributes_from_api(encoded.attributes)) == (
        body,
        attributes,
    )


def test_text_travels_as_text_and_bytes_as_base64() -> None:
    assert encode_message("é".encode(), {}).body == "é"
    assert ENCODING_ATTRIBUTE not in encode_message(b"{}", {}).attributes
    encoded = encode_message(b"\x00", {})
    assert (encoded.body, encoded.attributes[ENCODING_ATTRIBUTE]["StringValue"]) == (
        "AA==",
        "base64",
    )


def test_trace_context_stays_native_when_attributes_overflow() -> None:
    attributes = {f"a{i}": "v" for i in range(12)} | {"traceparent": "00-1-2-01"}
    encoded = encode_message(b"x", attributes)
    assert "traceparent" in encoded.attributes
    assert OVERFLOW_ATTRIBUTE in encoded.attributes
    assert len(encoded.attributes) == MAX_NATIVE_ATTRIBUTES


def test_size_counts_body_and_attributes() -> None:
    encoded = encode_message(b"abcd", {"k": "vv"})
    assert encoded.size_bytes == 4 + len("k") + len("String") + len("vv")


def test_foreign_messages_decode_as_they_are() -> None:
    assert decode_message("hello", {"x": "1"}) == (b"hello", {"x": "1"})
    assert decode_message("not base64!", {ENCODING_ATTRIBUTE: "base64"}) == (
        b"not base64!",
        {ENCODING_ATTRIBUTE: "base64"},
    )


def test_batches_respect_count_and_size() -> None:
    entries = [BatchEntry({"n": i}, 100) for i in range(25)]
    assert [len(b) for b in batches(entries, max_count=10, max_bytes=10_000)] == [10, 10, 5]
    assert [len(b) for b in batches(entries[:5], max_count=10, max_bytes=250)] == [2, 2, 1]
    oversized = [BatchEntry({}, 500), BatchEntry({}, 10)]
    assert [len(b) for b in batches(oversized, max_count=10, max_bytes=100)] == [1, 1]


def test_fifo_ids_are_kept_or_hashed() -> None:
    assert fifo_id("listener/abc-123") == "listener/abc-123"
    assert len(fifo_id("x" * 129)) == 64
    assert fifo_id("with space") != "with space"


def _client_error(code: str, status: int) -> bx.ClientError:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return bx.ClientError(response, "Op")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "kind", "permanent"),
    [
        (_client_error("AccessDenied", 403), ConnectorConfigError, True),
        (_client_error("InvalidClientTokenId", 403), ConnectorConfigError, True),
        (_client_error("ThrottlingException", 400), ConnectorError, False),
        (_client_error("InternalError", 500), ConnectorError, False),
        (_client_error("InvalidParameterValue", 400), ConnectorError, True),
        (bx.NoCredentialsError(), ConnectorConfigError, True),
        (bx.NoRegionError(), ConnectorConfigError, True),
        (bx.EndpointConnectionError(endpoint_url="http://x"), ConnectorError, False),
        (TimeoutError(), ConnectorError, False),
    ],
)
def test_errors_are_classified(exc: BaseException, kind: type, permanent: bool) -> None:
    translated = translate(exc, "listener 'l': op")
    assert type(translated) is kind
    assert translated.permanent is permanent
    assert "listener 'l'" in str(translated)


def test_options_from_urls() -> None:
    assert AwsOptions.from_url("sqs://q?region=r&profile=p") == AwsOptions(region="r", profile="p")
    assert AwsOptions.from_url("https://sqs.us-west-2.amazonaws.com/1/q") == AwsOptions(
        region="us-west-2"
    )
    assert AwsOptions.from_url("http://localhost:9324/000000000000/q") == AwsOptions(
        endpoint_url="http://localhost:9324"
    )


def test_missing_extra_gives_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from modelbus.connectors import s3, sns, sqs

    monkeypatch.setitem(sys.modules, "aiobotocore", None)
    monkeypatch.setitem(sys.modules, "aiobotocore.session", None)
    ctx = ConnectorContext(listener="l", data_dir=tmp_path)
    factories = [
        (sqs.make_source, "sqs://q"),
        (sqs.make_sink, "sqs://q"),
        (sns.make_sink, "sns://t"),
        (s3.make_sink, "s3://bucket"),
        (s3.make_reader, "sqs://q"),
    ]
    for make, url in factories:
        with pytest.raises(MissingExtra, match=r"pip install 'modelbus\[sqs\]'"):
            make(url, ctx)
