"""A test model that does what each JSON input asks: {"op": "...", ...}.

Text and binary inputs are echoed back unchanged. ``load`` appends this runner's pid to the
file named by PROBE_LOADS_FILE (so tests can count loads) and fails when PROBE_FAIL_LOAD is
set. ``batched`` is the apply_batch used when a test passes ``--batch model:batched``.
"""

import ctypes
import os
import subprocess
import sys
import time

import modelbus_runner
from modelbus_runner import PermanentError


def load():
    loads_file = os.environ.get("PROBE_LOADS_FILE")
    if loads_file:
        with open(loads_file, "a") as file:
            file.write(f"{os.getpid()}\n")
    print("probe: loading (this print must not reach the protocol)")
    if os.environ.get("PROBE_FAIL_LOAD"):
        raise RuntimeError("cannot load: the weights file is missing")
    return {"pid": os.getpid()}


def apply(input, state, context):
    if not isinstance(input, dict) or "op" not in input:
        return input
    return OPS[input["op"]](input, state, context)


def batched(inputs, state, context):
    results = []
    if {"op": "exit"} in inputs:
        os._exit(3)
    for value, ctx in zip(inputs, context, strict=True):
        op = value.get("op") if isinstance(value, dict) else None
        if op == "raise":
            results.append(ValueError(value.get("message", "bad input in a batch")))
        elif op == "context":
            results.append({"batch_size": len(inputs), "attrs": dict(ctx.attributes)})
        else:
            results.append({"batch_size": len(inputs), "pid": state["pid"], "value": value})
    return results


def _print(input, state, context):
    print(input["text"])
    sys.stdout.flush()
    os.write(1, b"written to fd 1\n")
    return "printed"


def _raise(input, state, context):
    raise ValueError(input.get("message", "the model raised"))


def _permanent(input, state, context):
    raise PermanentError("this document type is not supported")


def _sleep(input, state, context):
    time.sleep(input["seconds"])
    return {"slept": input["seconds"], "pid": os.getpid()}


def _exit(input, state, context):
    os._exit(input.get("code", 3))


def _segfault(input, state, context):
    ctypes.string_at(0)


def _spawn(input, state, context):
    return subprocess.Popen(["sleep", "60"]).pid


def _alloc(input, state, context):
    return len(bytearray(input["mb"] * 1024 * 1024))


OPS = {
    "pid": lambda i, s, c: {"pid": os.getpid(), "state_pid": s["pid"]},
    "print": _print,
    "raise": _raise,
    "permanent": _permanent,
    "sleep": _sleep,
    "exit": _exit,
    "segfault": _segfault,
    "alloc": _alloc,
    "spawn": _spawn,
    "env": lambda i, s, c: dict(os.environ),
    "context": lambda i, s, c: {
        "type": c.content_type,
        "mime": c.mime,
        "attrs": dict(c.attributes),
    },
    "runtime": lambda i, s, c: modelbus_runner.__file__,
    "nan": lambda i, s, c: float("nan"),
}
