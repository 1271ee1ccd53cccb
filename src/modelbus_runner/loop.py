"""The runner's main loop: take the protocol channel away from the model, load, serve calls.

``python -m modelbus_runner ENTRYPOINT [--load MODULE:FN] [--batch MODULE:FN]``, or
``python -m modelbus_runner --adk MODULE`` for an Algorithmia ADK algorithm (:mod:`.adk`).

The process's real stdin and stdout become the protocol channel (duplicated to private file
descriptors); file descriptor 0 is then pointed at /dev/null and 1 at stderr, so nothing the
model prints, from Python or from C, can corrupt a frame. When a call asks for its stdout,
fd 1 points at a temporary file for the duration of that call.

Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from modelbus_runner.adk import load_adk
from modelbus_runner.model import Input, Model, Output, error_info
from modelbus_runner.protocol import PROTOCOL_VERSION, Frame, ProtocolError, read_frame, write_frame

# Captured stdout is returned inside a frame header: cut it rather than send megabytes.
MAX_STDOUT_BYTES = 1024 * 1024
# Inputs one call may carry, said in the ready frame. Without apply_batch the runner loops
# ``apply`` over them; the server sizes calls well below this (its own max_batch_size).
MAX_INPUTS = 1024
_CONTENT_TYPES = ("json", "text", "binary")


class Channel:
    """The protocol channel: the process's original stdin and stdout."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    def take_over_stdio(cls) -> Channel:
        """Move fds 0 and 1 to private descriptors; leave /dev/null and stderr in their place."""
        sys.stdout.flush()
        reader = os.fdopen(os.dup(0), "rb")
        writer = os.fdopen(os.dup(1), "wb")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)
        return cls(reader, writer)

    def watch_hangup(self, busy: threading.Event) -> None:
        """Exit the process when the server dies while a call runs (nobody will read the
        answer). The server closing the channel is not enough: a graceful close shuts
        stdin and still waits for the call in flight; only a channel closed *and* a new
        parent process (the server is gone, the runner was re-parented) ends the call. Between
        calls :meth:`receive` sees the end of the stream and the runner exits normally. A
        daemon thread polls for the hang-up without reading, so no frame is taken from the
        main loop. (On Linux the server also arms PR_SET_PDEATHSIG, which is quicker.)"""
        fd = self._reader.fileno()
        parent = os.getppid()

        def watch() -> None:
            poller = select.poll()
            poller.register(fd, 0)  # POLLHUP and POLLERR are always reported
            while not poller.poll():
                pass
            while True:
                if busy.is_set() and os.getppid() != parent:
                    with contextlib.suppress(OSError):  # stderr went with the server
                        print(
                            "modelbus_runner: the server went away during a call", file=sys.stderr
                        )
                    os._exit(1)
                time.sleep(0.1)

        try:
            threading.Thread(target=watch, name="modelbus-hangup", daemon=True).start()
        except RuntimeError:  # no room for a thread (a tight memory limit): EOF still ends us
            print("modelbus_runner: cannot watch for a hang-up", file=sys.stderr)

    def receive(self) -> Frame | None:
        """The next frame, or None when the server closed the channel."""
        return read_frame(self._reader)

    def send(self, header: Mapping[str, Any], blobs: Sequence[bytes] = ()) -> None:
        write_frame(self._writer, header, blobs)


class StdoutCapture:
    """Points fd 1 at a temporary file while a call runs, then back at stderr."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as the runner)

    def start(self) -> None:
        _flush_stdout()
        self._file.seek(0)
        self._file.truncate()
        os.dup2(self._file.fileno(), 1)

    def stop(self) -> str:
        _flush_stdout()
        os.dup2(2, 1)
        size = self._file.seek(0, os.SEEK_END)
        self._file.seek(0)
        text = self._file.read(MAX_STDOUT_BYTES).decode("utf-8", errors="replace")
        if size > MAX_STDOUT_BYTES:
            text += f"\n[modelbus: {size - MAX_STDOUT_BYTES} more bytes of stdout cut]\n"
        return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run a runner; returns the process exit code."""
    args = _parse_args(argv)
    channel = Channel.take_over_stdio()
    try:
        if args.adk:
            model = load_adk(args.adk)
        else:
            model = Model.load(args.entrypoint, load=args.load, batch=args.batch)
    except (Exception, SystemExit) as exc:
        traceback.print_exc()
        channel.send({"type": "failed", "error": error_info(exc)})
        return 1
    ready = {"type": "ready", "protocol": PROTOCOL_VERSION, "batch": model.batch}
    channel.send({**ready, "max_inputs": MAX_INPUTS, "pid": os.getpid()})
    busy = threading.Event()
    if hasattr(select, "poll"):
        channel.watch_hangup(busy)
    try:
        serve(channel, model, busy)
    except ProtocolError as exc:
        print(f"modelbus_runner: protocol error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 1
    return 0


def serve(channel: Channel, model: Model, busy: threading.Event | None = None) -> None:
    """Answer calls until a shutdown frame or the end of stdin; ``busy`` is set while a
    call runs."""
    capture = StdoutCapture()
    busy = busy or threading.Event()
    while True:
        frame = channel.receive()
        if frame is None or frame.type == "shutdown":
            return
        if frame.type != "call":
            print(f"modelbus_runner: ignoring a {frame.type!r} frame", file=sys.stderr)
            continue
        busy.set()
        try:
            reply = answer(frame, model, capture)
        finally:
            busy.clear()
        channel.send(*reply)


def answer(
    frame: Frame, model: Model, capture: StdoutCapture
) -> tuple[dict[str, Any], list[bytes]]:
    """Run one call frame; return the result frame's header and blobs."""
    inputs = _inputs(frame)
    wants_stdout = bool(frame.header.get("stdout"))
    if wants_stdout:
        capture.start()
    try:
        outcomes = model.run(inputs)
    finally:
        stdout = capture.stop() if wants_stdout else None
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for outcome, duration_ms in outcomes:
        if isinstance(outcome, Output):
            outputs.append(
                {
                    "ok": True,
                    "content_type": outcome.content_type,
                    "mime": outcome.mime,
                    "duration_ms": duration_ms,
                }
            )
            blobs.append(outcome.data)
        else:
            outputs.append({"ok": False, "error": outcome, "duration_ms": duration_ms})
    header = {"type": "result", "id": frame.header.get("id"), "outputs": outputs, "stdout": stdout}
    return header, blobs


def _inputs(frame: Frame) -> list[Input]:
    """Each input's context: its kind and MIME type, and the call's attributes with the
    input's own ``attributes`` merged over them."""
    specs = frame.header.get("inputs")
    if not isinstance(specs, list) or len(specs) != len(frame.blobs):
        raise ProtocolError("a call needs one 'inputs' entry per blob")
    attributes = _attributes(frame.header.get("attributes"), "a call's")
    inputs: list[Input] = []
    for spec, blob in zip(specs, frame.blobs, strict=True):
        kind = spec.get("content_type") if isinstance(spec, dict) else None
        if kind not in _CONTENT_TYPES:
            raise ProtocolError(f"unknown input content type {kind!r}")
        own = spec.get("attributes")
        merged = {**attributes, **_attributes(own, "an input's")} if own else attributes
        inputs.append(Input(kind, spec.get("mime"), merged, blob))
    return inputs


def _attributes(value: object, whose: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{whose} 'attributes' must be an object")
    return value


def _flush_stdout() -> None:
    for stream in (sys.stdout, sys.__stdout__):
        if stream is not None:
            # A model may close or replace sys.stdout.
            with contextlib.suppress(OSError, ValueError):
                stream.flush()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m modelbus_runner",
        description="Serve a Python model over the modelbus runner protocol on stdin/stdout.",
    )
    parser.add_argument("entrypoint", nargs="?", help="module:function called for each input")
    parser.add_argument(
        "--adk", metavar="MODULE", help="an Algorithmia ADK algorithm's module, instead"
    )
    parser.add_argument("--load", help="module:function called once at start (default: load)")
    parser.add_argument("--batch", help="module:function for several inputs (default: apply_batch)")
    args = parser.parse_args(argv)
    if not (args.entrypoint or args.adk):
        parser.error("give an entrypoint module:function, or --adk MODULE")
    return args
