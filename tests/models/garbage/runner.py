"""A broken exec runner: says ready, then answers every call with bytes that are no frame."""

import os
import struct
import sys

header = b'{"type":"ready","protocol":1,"batch":false}'
os.write(1, struct.pack(">I", len(header)) + header)
while sys.stdin.buffer.read(1):
    os.write(1, b"\xff\xff\xff\xffthis is not a frame")
    break
sys.stdin.buffer.read()
