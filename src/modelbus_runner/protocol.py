"""The frame format of docs/runner-protocol.md, written once for both ends.

A frame is a 4-byte big-endian header length, a UTF-8 JSON header, then the blobs whose
lengths the header's ``blobs`` member lists. The runner side uses the blocking
:func:`read_frame` / :func:`write_frame`; the server's asyncio reader is built from
:func:`header_length` and :func:`decode_header`, so both ends share one definition of what a
well-formed frame is.

Standard library only: this module runs inside models' own virtualenvs.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

# 2: the ready frame says ``max_inputs``, call inputs may carry ``attributes``, result outputs
# may carry ``duration_ms``. All additions are optional, so version 1 peers keep working.
PROTOCOL_VERSION = 2
PREFIX_SIZE = 4
# A header is a small JSON object; payloads travel as blobs. The bound stops a stray byte
# stream (say, a model printing to the protocol channel) from being read as a 2 GiB header.
MAX_HEADER_BYTES = 16 * 1024 * 1024

_PREFIX = struct.Struct(">I")


class ProtocolError(ValueError):
    """The peer sent something that is not a well-formed frame."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: the JSON header (with its ``blobs`` member) and the blobs."""

    header: dict[str, Any]
    blobs: list[bytes] = field(default_factory=list)

    @property
    def type(self) -> str:
        """The message type (``ready``, ``call``, ``result``...), ``""`` when missing."""
        kind = self.header.get("type")
        return kind if isinstance(kind, str) else ""


def encode_frame(header: Mapping[str, Any], blobs: Sequence[bytes] = ()) -> bytes:
    """Encode one frame. The header's ``blobs`` member is set from ``blobs``."""
    body = dict(header)
    body["blobs"] = [len(blob) for blob in blobs]
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(f"frame header of {len(raw)} bytes is over {MAX_HEADER_BYTES}")
    return b"".join([_PREFIX.pack(len(raw)), raw, *blobs])


def header_length(prefix: bytes) -> int:
    """The header length announced by a frame's 4-byte prefix; raises ProtocolError."""
    if len(prefix) != PREFIX_SIZE:
        raise ProtocolError(f"frame prefix must be {PREFIX_SIZE} bytes, got {len(prefix)}")
    (size,) = _PREFIX.unpack(prefix)
    if size > MAX_HEADER_BYTES:
        raise ProtocolError(f"frame header of {size} bytes is over {MAX_HEADER_BYTES}")
    return int(size)


def decode_header(raw: bytes) -> tuple[dict[str, Any], list[int]]:
    """Parse a header; return it and its blob lengths. Raises ProtocolError."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise ProtocolError(f"frame header is not UTF-8 JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a JSON object")
    lengths = header.get("blobs", [])
    if not isinstance(lengths, list) or not all(_is_length(n) for n in lengths):
        raise ProtocolError("frame header's 'blobs' is not a list of byte counts")
    return header, lengths


def read_frame(stream: BinaryIO) -> Frame | None:
    """Read one frame, blocking. ``None`` on a clean end of stream between frames;
    ProtocolError on a truncated or malformed frame."""
    prefix = stream.read(PREFIX_SIZE)
    if not prefix:
        return None
    header, lengths = decode_header(_read_exactly(stream, header_length(prefix)))
    return Frame(header, split_blobs(_read_exactly(stream, sum(lengths)), lengths))


def write_frame(stream: BinaryIO, header: Mapping[str, Any], blobs: Sequence[bytes] = ()) -> None:
    """Write one frame and flush it, blocking."""
    stream.write(encode_frame(header, blobs))
    stream.flush()


def split_blobs(data: bytes, lengths: Sequence[int]) -> list[bytes]:
    """Cut the bytes that follow a header into its blobs (read in one go: a call of a
    hundred inputs is one read, not a hundred)."""
    if len(lengths) == 1:
        return [data]
    blobs: list[bytes] = []
    start = 0
    for length in lengths:
        blobs.append(data[start : start + length])
        start += length
    return blobs


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks: list[bytes] = []
    missing = size
    while missing > 0:
        chunk = stream.read(missing)
        if not chunk:
            raise ProtocolError(f"stream ended inside a frame ({size - missing} of {size} bytes)")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def _is_length(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
