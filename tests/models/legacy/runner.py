"""A runner of protocol version 1 in plain Python (no modelbus_runner), as a runner in another
language would be: its ready frame has no ``max_inputs``; ``batch`` is true when LEGACY_BATCH
is set. Every output is JSON ``{"inputs": N, "attributes": {...}, "value": ...}``: how many
inputs its call carried, the call-level attributes, and the input's JSON value."""

import json
import os
import struct
import sys

STDIN, STDOUT = sys.stdin.buffer, sys.stdout.buffer


def send(header, blobs=()):
    raw = json.dumps({**header, "blobs": [len(b) for b in blobs]}).encode()
    STDOUT.write(struct.pack(">I", len(raw)) + raw + b"".join(blobs))
    STDOUT.flush()


def read_exactly(size):
    data = STDIN.read(size)
    if len(data) != size:
        sys.exit(0)
    return data


send({"type": "ready", "protocol": 1, "batch": bool(os.environ.get("LEGACY_BATCH"))})
while True:
    (size,) = struct.unpack(">I", read_exactly(4))
    header = json.loads(read_exactly(size))
    if header["type"] == "shutdown":
        break
    blobs = [read_exactly(n) for n in header["blobs"]]
    count = len(header["inputs"])
    outputs, results = [], []
    for blob in blobs:
        body = {"inputs": count, "attributes": header["attributes"], "value": json.loads(blob)}
        results.append(json.dumps(body).encode())
        outputs.append({"ok": True, "content_type": "json", "mime": None})
    send({"type": "result", "id": header["id"], "outputs": outputs, "stdout": None}, results)
