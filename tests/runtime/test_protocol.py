"""The frame format, both ends: the runner's blocking reader and the server's asyncio one."""

from __future__ import annotations

import asyncio
import io
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelbus.runtime.runner import _read_frame
from modelbus_runner.loop import StdoutCapture, answer
from modelbus_runner.model import Function, Model
from modelbus_runner.protocol import (
    MAX_HEADER_BYTES,
    Frame,
    ProtocolError,
    decode_header,
    encode_frame,
    read_frame,
)

BLOBS = [b"", b"\x00\xff\x10" * 1000, "héllo wörld".encode()]


def test_round_trip_keeps_binary_and_several_blobs_in_order() -> None:
    stream = io.BytesIO(encode_frame({"type": "call", "id": 7, "note": "ünï"}, BLOBS))
    frame = read_frame(stream)
    assert frame is not None
    assert frame.type == "call"
    assert frame.header["id"] == 7
    assert frame.header["note"] == "ünï"
    assert frame.header["blobs"] == [0, 3000, len(BLOBS[2])]
    assert frame.blobs == BLOBS


def test_frames_follow_each_other_and_a_clean_end_is_none() -> None:
    stream = io.BytesIO(encode_frame({"type": "a"}, [b"1"]) + encode_frame({"type": "b"}))
    first, second = read_frame(stream), read_frame(stream)
    assert first is not None and first.type == "a" and first.blobs == [b"1"]
    assert second is not None and second.type == "b" and second.blobs == []
    assert read_frame(stream) is None


@given(
    header=st.dictionaries(
        st.text().filter(lambda k: k != "blobs"),
        st.none() | st.booleans() | st.integers() | st.text(),
        max_size=5,
    ),
    blobs=st.lists(st.binary(max_size=300), max_size=5),
)
def test_any_header_and_blobs_survive_a_round_trip(
    header: dict[str, object], blobs: list[bytes]
) -> None:
    frame = read_frame(io.BytesIO(encode_frame(header, blobs)))
    assert frame is not None
    assert {k: v for k, v in frame.header.items() if k != "blobs"} == header
    assert frame.blobs == blobs


def test_every_truncation_is_a_protocol_error() -> None:
    data = encode_frame({"type": "call"}, [b"abc", b"de"])
    for cut in range(1, len(data)):
        with pytest.raises(ProtocolError):
            read_frame(io.BytesIO(data[:cut]))


def test_a_huge_header_length_is_refused_before_reading_it() -> None:
    with pytest.raises(ProtocolError, match="over"):
        read_frame(io.BytesIO(struct.pack(">I", MAX_HEADER_BYTES + 1) + b"{}"))


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1, 2]", b'{"blobs": "3"}', b'{"blobs": [-1]}', b'{"blobs": [true]}', b"\xff"],
)
def test_malformed_headers_are_refused(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_header(raw)


async def test_the_server_reader_reads_what_the_runner_writes() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(encode_frame({"type": "result", "id": 1}, BLOBS))
    reader.feed_data(encode_frame({"type": "ready"}))
    reader.feed_eof()
    frame = await _read_frame(reader)
    assert frame.header["id"] == 1 and frame.blobs == BLOBS
    assert (await _read_frame(reader)).type == "ready"
    with pytest.raises(asyncio.IncompleteReadError):
        await _read_frame(reader)


async def test_the_server_reader_sees_a_frame_cut_short() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(encode_frame({"type": "result"}, [b"abcdef"])[:-2])
    reader.feed_eof()
    with pytest.raises(asyncio.IncompleteReadError):
        await _read_frame(reader)


def test_the_python_runner_refuses_input_attributes_that_are_not_an_object() -> None:
    model = Model(Function.wrap(lambda value: value), None, None)
    header = {"type": "call", "id": 1, "inputs": [{"content_type": "json", "attributes": [1]}]}
    with pytest.raises(ProtocolError, match="an input's 'attributes' must be an object"):
        answer(Frame(header, [b"1"]), model, StdoutCapture())
    header["inputs"] = [{"content_type": "json", "attributes": {"id": "7"}}]
    result, blobs = answer(Frame(header, [b"1"]), model, StdoutCapture())
    assert result["outputs"][0]["ok"] and blobs == [b"1"]
