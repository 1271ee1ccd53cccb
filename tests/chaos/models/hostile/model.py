"""Chaos test model: ``{"op": OP, "n": N}``.

* ``ok``: returns ``{"n": N}``.
* ``raise``: raises ValueError (a transient model error).
* ``hang``: sleeps for an hour (past any timeout).
* ``exit``: ends its own process with ``os._exit(13)``.
* ``segfault``: reads address 0 through ctypes (a real SIGSEGV).
* ``memory``: allocates 2 GiB (past the manifest's ``memory_limit_mb``).
"""

import ctypes
import os
import time


def apply(input):
    op = input["op"]
    if op == "raise":
        raise ValueError(f"input {input['n']} exploded on purpose")
    if op == "hang":
        time.sleep(3600)
    if op == "exit":
        os._exit(13)
    if op == "segfault":
        ctypes.string_at(0)
    if op == "memory":
        hog = bytearray(2 * 1024 * 1024 * 1024)
        return {"n": input["n"], "size": len(hog)}
    return {"n": input["n"]}
