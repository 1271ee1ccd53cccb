from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from modelbus.connectors.base import Delivery
from modelbus.errors import ConnectorError, InvalidInput
from modelbus.listeners.envelopes import (
    Correlation,
    DeadLetterInfo,
    ObjectReaders,
    announced_object,
    child_traceparent,
    dead_letter_id,
    decode,
    encode_dead_letter,
    encode_result,
    fetch,
    output_id,
)
from modelbus.listeners.filters import MISSING
from modelbus.runtime.invocation import Payload, Result

# The namespace every output id has been made in (a change would change every stored id).
OUTPUT_NAMESPACE = uuid.UUID("6f1f3c8e-2a52-5b7e-9d1c-8f0e6c3a4b10")


def delivery(body: bytes | str | dict[str, Any], **attributes: str) -> Delivery:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return Delivery(message_id="m-1", body=body, attributes=attributes, attempt=2)


def s3_event(key: str, source: str = "aws:s3", name: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventSource": source,
                "eventName": name,
                "s3": {"bucket": {"name": "docs"}, "object": {"key": key, "size": 12}},
            }
        ]
    }


def test_raw_bodies_are_json_else_text_else_binary() -> None:
    (item,) = decode(delivery(b"[1, 2]"))
    assert item.payload == Payload(b"[1, 2]", "json") and item.value == [1, 2]
    (item,) = decode(delivery("héllo"))
    assert item.payload == Payload("héllo".encode(), "text") and item.value is MISSING
    (item,) = decode(delivery(b"\xff\xfe\x00"))
    assert item.payload == Payload(b"\xff\xfe\x00", "binary")
    (item,) = decode(delivery({"a": 1}, tenant="t"))
    assert item.value == {"a": 1} and item.attributes == {"tenant": "t"}


def test_a_content_type_attribute_decides() -> None:
    (item,) = decode(delivery(b"123", **{"Content-Type": "text/plain"}))
    assert item.payload.content_type == "text"
    (item,) = decode(
        delivery("caf\xe9".encode("latin-1"), **{"content-type": "text/plain; charset=latin-1"})
    )
    assert item.payload.data == "café".encode()
    (item,) = decode(delivery(b"{}", **{"content-type": "image/png"}))
    assert item.payload == Payload(b"{}", "binary", "image/png")
    with pytest.raises(InvalidInput, match="does not parse"):
        decode(delivery(b"{nope", **{"content-type": "application/json"}))
    with pytest.raises(InvalidInput, match="does not decode"):
        decode(delivery(b"\xff", **{"content-type": "text/plain"}))


def test_structured_cloudevents() -> None:
    event = {"specversion": "1.0", "id": "e", "source": "s", "type": "t.created", "data": {"x": 1}}
    (item,) = decode(delivery(event))
    assert item.payload == Payload.from_json({"x": 1}) and item.value == {"x": 1}
    assert item.attributes["ce-type"] == "t.created" and "ce-data" not in item.attributes
    binary = {
        **event,
        "datacontenttype": "image/png",
        "data_base64": base64.b64encode(b"P").decode(),
    }
    del binary["data"]
    (item,) = decode(delivery(binary))
    assert item.payload == Payload(b"P", "binary", "image/png")
    text = {**event, "datacontenttype": "text/plain", "data": "hi"}
    (item,) = decode(delivery(text))
    assert item.payload == Payload(b"hi", "text")
    (item,) = decode(delivery({k: v for k, v in event.items() if k != "data"}))
    assert item.payload == Payload(b"null", "json")


def test_broken_cloudevents_are_permanent_decode_errors() -> None:
    header = {"content-type": "application/cloudevents+json"}
    with pytest.raises(InvalidInput, match="specversion, id, source and type"):
        decode(delivery({"specversion": "1.0"}, **header))
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        decode(delivery(b"[]", **header))
    event = {"specversion": "1.0", "id": "e", "source": "s", "type": "t", "data_base64": "@@"}
    with pytest.raises(InvalidInput, match="not base64"):
        decode(delivery(event))
    assert InvalidInput("x").permanent


def test_binary_mode_cloudevents() -> None:
    (item,) = decode(
        delivery(b'{"v": 2}', **{"ce-specversion": "1.0", "ce-type": "t", "ce_id": "k"})
    )
    assert item.value == {"v": 2}
    assert item.attributes["ce-type"] == "t" and item.attributes["ce-id"] == "k"
    (item,) = decode(delivery(b"\x01", **{"ce-specversion": "1.0", "content-type": "image/gif"}))
    assert item.payload == Payload(b"\x01", "binary", "image/gif")


def test_sns_notifications_unwrap_with_their_attributes() -> None:
    inner = {"specversion": "1.0", "id": "e", "source": "s", "type": "t", "data": "x"}
    wrapped = {
        "Type": "Notification",
        "TopicArn": "arn:aws:sns:us-east-1:1:t",
        "Message": json.dumps(inner),
        "MessageAttributes": {"tenant": {"Type": "String", "Value": "acme"}},
    }
    (item,) = decode(delivery(wrapped))
    assert item.value == "x" and item.attributes["tenant"] == "acme"
    (item,) = decode(delivery({**wrapped, "Message": "plain text"}))
    assert item.payload == Payload(b"plain text", "text")
    with pytest.raises(InvalidInput):
        decode(delivery({**wrapped, "Message": {"not": "a string"}}))


def test_object_notifications_raw_and_through_sns() -> None:
    (item,) = decode(delivery(s3_event("scans/page+1%2Fa.png")))
    assert item.payload is None
    assert item.object is not None and item.object.key == "scans/page 1/a.png"
    assert (item.attributes["bucket"], item.attributes["size"]) == ("docs", "12")
    wrapped = {"Type": "Notification", "TopicArn": "arn", "Message": json.dumps(s3_event("k"))}
    (item,) = decode(delivery(wrapped))
    assert item.object is not None and item.object.key == "k"
    assert decode(delivery({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []
    assert decode(delivery(s3_event("k", name="ObjectRemoved:Delete"))) == []
    two = s3_event("a")
    two["Records"].append(s3_event("b")["Records"][0])
    assert [(i.index, i.object.key if i.object else None) for i in decode(delivery(two))] == [
        (0, "a"),
        (1, "b"),
    ]
    with pytest.raises(InvalidInput, match="lacks"):
        decode(delivery({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}))


class Reader:
    async def read(self, bucket: str, key: str) -> tuple[bytes, str | None]:
        return f"{bucket}/{key}".encode(), "application/pdf"


async def test_fetch_fills_object_payloads() -> None:
    (item,) = decode(delivery(s3_event("a.pdf")))
    fetched = await fetch(item, ObjectReaders({"aws:s3": Reader}))
    assert fetched.payload == Payload(b"docs/a.pdf", "binary", "application/pdf")
    with pytest.raises(ConnectorError) as info:
        await fetch(item, ObjectReaders({}))
    assert info.value.permanent


def test_output_ids_are_deterministic_per_listener_and_message() -> None:
    assert output_id("l", "m") == output_id("l", "m")
    assert (
        len(
            {
                output_id("l", "m"),
                output_id("l2", "m"),
                output_id("l", "m2"),
                output_id("l", "m", 1),
            }
        )
        == 4
    )


@pytest.mark.parametrize(
    ("listener", "message_id", "index"),
    [("l", "m", 0), ("orders", "1733500000000-0", 3), ("é", "ü/ß\n", 0), ("", "", 7)],
)
def test_output_ids_are_the_rfc_4122_name_based_uuids_they_always_were(
    listener: str, message_id: str, index: int
) -> None:
    # ids already published and stored must not change: they are uuid5 of the same names
    name = f"{listener}\n{message_id}" + (f"\n{index}" if index else "")
    assert output_id(listener, message_id, index) == str(uuid.uuid5(OUTPUT_NAMESPACE, name))
    letter = f"dead-letter\n{listener}\n{message_id}"
    assert dead_letter_id(listener, message_id) == str(uuid.uuid5(OUTPUT_NAMESPACE, letter))


def test_new_traces_and_spans_are_valid_w3c_ids() -> None:
    seen = set()
    for _ in range(200):
        version, trace, span, flags = child_traceparent(None).split("-")
        assert (version, flags) == ("00", "01")
        assert len(trace) == 32 and len(span) == 16
        assert int(trace, 16) and int(span, 16)  # hex, and never all zeros
        seen.add((trace, span))
    assert len(seen) == 200


def test_traceparent_continues_the_trace_or_starts_one() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    child = child_traceparent(parent)
    assert child.split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert child.split("-")[2] != "00f067aa0ba902b7" and child.endswith("-01")
    fresh = child_traceparent("garbage")
    assert len(fresh.split("-")[1]) == 32 and fresh != child_traceparent(None)


def correlation() -> Correlation:
    (item,) = decode(delivery({"a": 1}, originid="first", traceparent="bad"))
    return Correlation.of(listener="l", model="acme/x@1.*", delivery=delivery({"a": 1}), item=item)


@pytest.mark.parametrize(
    ("output", "data_field", "content_type"),
    [
        (Payload.from_json({"r": [1, 2]}), ("data", {"r": [1, 2]}), "application/json"),
        (Payload.from_text("ok"), ("data", "ok"), "text/plain; charset=utf-8"),
        (Payload(b"\x00", "binary", "image/png"), ("data_base64", "AA=="), "image/png"),
    ],
)
def test_results_are_cloudevents_with_correlation(
    output: Payload, data_field: tuple[str, Any], content_type: str
) -> None:
    result = Result(output=output, duration_ms=12.5, version="1.2.3")
    message = encode_result(correlation=correlation(), result=result, id="out-1")
    event = json.loads(message.body)
    assert event[data_field[0]] == data_field[1]
    assert event["datacontenttype"] == content_type
    assert (event["id"], event["sourcemessageid"], event["originid"]) == ("out-1", "m-1", "first")
    assert (event["modelversion"], event["durationms"], event["attempt"]) == (
        "1.2.3",
        "12.500",
        "2",
    )
    assert message.attributes["originid"] == "first" and message.id == "out-1"
    raw = encode_result(correlation=correlation(), result=result, id="out-1", mode="raw")
    assert raw.body == output.data and raw.attributes["content-type"] == content_type


def test_dead_letters_keep_the_original_message() -> None:
    original = delivery(b"\x00raw", tenant="t", **{"modelbus-listener": "upstream"})
    info = DeadLetterInfo(
        id="d",
        listener="l",
        model="a/b@1",
        version=None,
        error_type="X",
        error_message="boom",
        stacktrace="s" * 10_000,
        permanent=True,
        attempts=2,
    )
    message = encode_dead_letter(original, info)
    assert message.body == b"\x00raw" and message.id == "d"
    assert message.attributes["tenant"] == "t"
    assert message.attributes["modelbus-listener"] == "l"
    assert len(message.attributes["modelbus-error-stacktrace"]) <= 4096
    assert "modelbus-version" not in message.attributes


def test_the_announced_object_is_bucket_slash_key_through_any_envelope() -> None:
    assert announced_object(delivery(s3_event("scans/page+1%21.png"))) == "docs/scans/page 1!.png"
    sns = {"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": ""}
    sns["Message"] = json.dumps(s3_event("a/b.pdf"))
    assert announced_object(delivery(sns)) == "docs/a/b.pdf"
    folder = s3_event("sub/x.txt", source="modelbus:dir")
    folder["Records"][0]["s3"]["bucket"]["name"] = "/srv/inbox"
    assert announced_object(delivery(folder)) == "/srv/inbox/sub/x.txt"
    assert announced_object(delivery(s3_event("gone", name="ObjectRemoved:Delete"))) is None
    assert announced_object(delivery({"Records": "not a list"})) is None
    assert announced_object(delivery(b'{"Records": [{"eventSource": "aws:s3"')) is None
    assert announced_object(delivery({"key": "a.png"})) is None
    big = s3_event("big.png")
    big["pad"] = "x" * 300_000  # no notification is that big: not looked into
    assert announced_object(delivery(big)) is None
