"""Runner processes: one model build's process, spoken to over the runner protocol.

A :class:`Runner` is one subprocess started from a :class:`~modelbus.registry.launch.RunnerSpec`
(its ``argv`` in its ``cwd`` with exactly its ``env``), speaking docs/runner-protocol.md on
stdin/stdout: it loads the model once, says ``ready`` (with how many inputs one call may
carry: ``max_inputs``), then answers one call at a time, each carrying one or more inputs.
A runner that dies or writes garbage fails the call in flight with
:class:`~modelbus.errors.RunnerCrashed`; its stderr tail says why. The pools of
:mod:`modelbus.runtime.pool` start, reuse and replace runners.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import resource
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from modelbus.errors import (
    InputRejected,
    InvocationError,
    InvocationTimeout,
    ModelError,
    RunnerCrashed,
)
from modelbus.registry.launch import RunnerSpec
from modelbus.runtime.invocation import CONTENT_TYPES, Payload
from modelbus.runtime.stderr import TracebackLines, clean
from modelbus_runner import protocol

log = logging.getLogger("modelbus.runtime.runner")
runner_log = logging.getLogger("modelbus.runner")  # what runners write on stderr


_STDERR_TAIL_LINES = 30


_STDERR_LINE_CHARS = 2000


_EXIT_WAIT_S = 5.0  # how long to wait for a killed or finished process to be reaped


_EOF_EXIT_WAIT_S = 1.0  # after stdout closes, how long a runner gets to exit by itself


_STREAM_LIMIT_BYTES = 1024 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class CallReply:
    """What one runner call returned: one output or ModelError per input, in order, and
    the milliseconds each input took (the whole call's time where the runner does not say;
    ``duration_ms`` is the whole call, as the server saw it)."""

    outputs: tuple[Payload | ModelError, ...]
    durations_ms: tuple[float, ...]
    stdout: str | None
    duration_ms: float


class Runner:
    """One runner process. Use :meth:`start`; one :meth:`call` at a time.

    From its ready frame: :attr:`batch` (the model has ``apply_batch``), :attr:`max_inputs`
    (most inputs one call may carry: the frame's ``max_inputs``, else 1, or unbounded for a
    ``batch`` runner) and :attr:`protocol` (the protocol version it speaks).
    """

    def __init__(
        self,
        spec: RunnerSpec,
        process: asyncio.subprocess.Process,
        on_exit: Callable[[Runner], None] | None,
    ) -> None:
        self.spec = spec
        self.pid = process.pid
        self.batch = False
        self.max_inputs = 1
        self.protocol = 1
        self.last_used = time.monotonic()
        self._process = process
        self._on_exit = on_exit
        self._usable = True
        self._closing = False
        self._in_call = False
        self._next_id = 0
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._stderr_levels = TracebackLines()
        self._stderr_task = asyncio.create_task(self._pump_stderr())
        self._exit_task = asyncio.create_task(self._watch_exit())

    def __repr__(self) -> str:
        return f"<Runner {self.spec.key[:12]} pid={self.pid}>"

    @classmethod
    async def start(
        cls,
        spec: RunnerSpec,
        *,
        start_timeout_s: float = 120.0,
        on_exit: Callable[[Runner], None] | None = None,
    ) -> Runner:
        """Start a runner and wait until its model is loaded.

        ``on_exit(runner)`` is called once when the process exits, whatever the cause.
        Raises :class:`ModelError` when the model's ``load`` failed (with its traceback),
        :class:`InvocationTimeout` when it is not ready within ``start_timeout_s`` (it is
        killed), :class:`RunnerCrashed` when it cannot be started or exits before it is ready.
        """
        process = await _spawn(spec)
        runner = cls(spec, process, None)
        error: InvocationError
        try:
            async with asyncio.timeout(start_timeout_s):
                frame = await _read_frame(runner._stdout)
            runner.batch, runner.max_inputs, runner.protocol = _ready(frame)
        except TimeoutError:
            runner.kill()
            await runner._finish()
            report = runner._stderr_report()
            error = InvocationTimeout(
                f"runner {runner.pid} did not load within {start_timeout_s:g} s{report}"
            )
        except _LoadFailed as exc:
            await runner._finish()
            error = exc.error
        except _BROKEN as exc:
            error = await runner._crashed("before it was ready", exc)
        except BaseException:
            # Cancelled (a pool closing while it starts a runner): reap the process and close
            # its pipes before the caller (and maybe the loop) goes away.
            runner.kill()
            with contextlib.suppress(BaseException):
                await runner.wait_closed()
            raise
        else:
            runner._on_exit = on_exit  # only a runner that got ready is the pool's business
            extra = {"runner_pid": runner.pid, "runner_key": spec.key}
            log.info("runner %d ready", runner.pid, extra=extra)
            return runner
        raise error

    @property
    def alive(self) -> bool:
        """True while the process runs and can take calls (not killed, not closing)."""
        return self._usable and self._process.returncode is None

    @property
    def closing(self) -> bool:
        """True once :meth:`close` was called: an exit from here on is not a crash."""
        return self._closing

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has exited (negative: killed by that signal)."""
        return self._process.returncode

    async def call(
        self,
        payloads: Sequence[Payload],
        *,
        timeout_s: float,
        capture_stdout: bool = False,
        attributes: Mapping[str, str] | None = None,
        input_attributes: Sequence[Mapping[str, str] | None] | None = None,
    ) -> CallReply:
        """Send one call and wait for its result.

        Up to :attr:`max_inputs` payloads. ``attributes`` are the call's; ``input_attributes``
        (one entry or None per payload) are merged over them for that input alone.
        ``timeout_s`` bounds the whole call. Model errors come back inside the reply, one
        per input. Raises :class:`InputRejected` when the call's header is too large to send
        (the runner is left as it was), :class:`InvocationTimeout` past ``timeout_s`` (the
        runner is killed with SIGKILL) and :class:`RunnerCrashed` when the process dies or
        writes a malformed frame (the exit status and the stderr tail are in the message).
        If the caller is cancelled mid-call the runner is killed, since its answer can no
        longer be matched. ValueError for more than :attr:`max_inputs` payloads.
        """
        if self._in_call:
            raise RuntimeError("a runner takes one call at a time")
        if not self.alive:
            raise RunnerCrashed(f"runner {self.pid} is not running")
        if len(payloads) > self.max_inputs:
            raise ValueError(f"runner {self.pid} takes at most {self.max_inputs} inputs a call")
        if input_attributes is not None and len(input_attributes) != len(payloads):
            raise ValueError("input_attributes needs one entry per payload")
        if input_attributes is None:
            inputs = [{"content_type": p.content_type, "mime": p.mime} for p in payloads]
        else:
            inputs = [_input(p, own) for p, own in zip(payloads, input_attributes, strict=True)]
        header = {
            "type": "call",
            "inputs": inputs,
            "stdout": capture_stdout,
            "attributes": dict(attributes or {}),
        }
        self._in_call = True
        try:
            return await self._call(header, payloads, timeout_s)
        finally:
            self._in_call = False
            self.last_used = time.monotonic()

    def kill(self) -> None:
        """SIGKILL the runner's process group now; the runner is unusable from here on."""
        self._usable = False
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)

    async def close(self, *, grace_s: float = 5.0) -> None:
        """Stop gracefully: a shutdown frame, then SIGKILL if the process has not exited
        within ``grace_s``. Idempotent; returns once the process is gone."""
        self._usable = False
        self._closing = True
        if self._process.returncode is None:
            if not self._stdin.is_closing():
                with contextlib.suppress(*_BROKEN):
                    self._stdin.write(protocol.encode_frame({"type": "shutdown"}))
                    self._stdin.close()
            if not await self._wait_exit(grace_s):
                log.warning("runner ignored shutdown; killed", extra={"runner_pid": self.pid})
                self.kill()
        await self._finish()

    async def wait_closed(self) -> None:
        """Return once the process has exited and its pipes are released (bounded: a
        process that survives SIGKILL is given up on after a few seconds)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exit_task), _EXIT_WAIT_S)

    @property
    def _stdin(self) -> asyncio.StreamWriter:
        assert self._process.stdin is not None
        return self._process.stdin

    @property
    def _stdout(self) -> asyncio.StreamReader:
        assert self._process.stdout is not None
        return self._process.stdout

    async def _call(
        self, header: dict[str, Any], payloads: Sequence[Payload], timeout_s: float
    ) -> CallReply:
        self._next_id += 1
        header["id"] = self._next_id
        try:
            frame_bytes = protocol.encode_frame(header, [p.data for p in payloads])
        except protocol.ProtocolError as exc:  # attributes too large for a frame header
            raise InputRejected(f"the call cannot be sent to the runner: {exc}") from None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                self._stdin.write(frame_bytes)
                await self._stdin.drain()
                frame = await _read_frame(self._stdout)
            outputs, durations = _outputs(frame, self._next_id, len(payloads))
            if self.spec.memory_limit_mb:
                limit_mb = self.spec.memory_limit_mb
                outputs = tuple(_name_memory_limit(o, limit_mb) for o in outputs)
        except TimeoutError:
            self.kill()
            raise InvocationTimeout(
                f"the call ran past its timeout of {timeout_s:g} s; runner {self.pid} was killed"
            ) from None
        except _BROKEN as exc:
            raise await self._crashed("during a call", exc) from None
        except BaseException:
            self.kill()
            raise
        stdout = frame.header.get("stdout")
        duration_ms = (time.perf_counter() - started) * 1000
        return CallReply(
            outputs=outputs,
            durations_ms=tuple(duration_ms if d is None else d for d in durations),
            stdout=stdout if isinstance(stdout, str) else None,
            duration_ms=duration_ms,
        )

    async def _crashed(self, when: str, exc: BaseException) -> RunnerCrashed:
        """Make sure the process is gone, then describe how it ended."""
        self._usable = False
        if isinstance(exc, protocol.ProtocolError):
            self.kill()
            cause = f"runner {self.pid} wrote a malformed frame {when} ({exc})"
            await self._finish()
        else:
            await self._finish()
            cause = f"runner {self.pid} {_describe_exit(self.returncode)} {when}"
            limit_mb = self.spec.memory_limit_mb
            if limit_mb and any(_MEMORY_HINT in line for line in self._stderr_tail):
                cause += f" after running out of memory (memory_limit_mb = {limit_mb})"
        return RunnerCrashed(cause + self._stderr_report())

    async def _finish(self) -> None:
        """Give the process a moment to exit by itself, kill it otherwise, and wait until
        it is reaped and its stderr read to the end."""
        if not await self._wait_exit(_EOF_EXIT_WAIT_S):
            self.kill()
        await self.wait_closed()

    def _stderr_report(self) -> str:
        if not self._stderr_tail:
            return ""
        return "; stderr ends with:\n" + "\n".join(self._stderr_tail)

    async def _wait_exit(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._process.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _pump_stderr(self) -> None:
        """Forward the runner's stderr to logging, line by line, keeping a tail for errors."""
        assert self._process.stderr is not None
        pending = b""
        extra = {"runner_pid": self.pid, "runner_key": self.spec.key}
        while chunk := await self._process.stderr.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                self._log_line(raw, extra)
            if len(pending) > _STDERR_LINE_CHARS:
                self._log_line(pending, extra)
                pending = b""
        if pending:
            self._log_line(pending, extra)

    def _log_line(self, raw: bytes, extra: Mapping[str, Any]) -> None:
        # Colour codes and other control characters are the model's, not the log's; a
        # traceback is DEBUG: the error reaches the caller (and the log, once) anyway.
        line = clean(raw.decode("utf-8", errors="replace"))[:_STDERR_LINE_CHARS]
        self._stderr_tail.append(line)
        level = self._stderr_levels.level(line)
        runner_log.log(level, "[%s pid %d] %s", self.spec.key[:12], self.pid, line, extra=extra)

    async def _watch_exit(self) -> None:
        returncode = await self._process.wait()
        self._usable = False
        # Processes the model started are left in the runner's group: they go with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._stderr_task), 1.0)
        await self._transport_released()
        if not self._closing:
            log.warning(
                "runner %d %s",
                self.pid,
                _describe_exit(returncode),
                extra={"runner_pid": self.pid, "runner_key": self.spec.key},
            )
        if self._on_exit is not None:
            self._on_exit(self)

    async def _transport_released(self) -> None:
        """Let asyncio close the subprocess transport now (its pipes report their end a few
        loop turns after the exit), rather than from a finalizer after the loop is gone."""
        transport = getattr(self._process, "_transport", None)
        for _ in range(100):
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(0.01)


class _LoadFailed(Exception):
    def __init__(self, error: ModelError) -> None:
        super().__init__(error.message)
        self.error = error


_BROKEN = (asyncio.IncompleteReadError, protocol.ProtocolError, ConnectionError)


async def _spawn(spec: RunnerSpec) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *spec.argv,
            cwd=spec.cwd,
            env=dict(spec.env),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # own process group: killpg reaches the model's children
            preexec_fn=_child_setup((spec.memory_limit_mb or 0) * 1024 * 1024),
            limit=_STREAM_LIMIT_BYTES,
        )
    except OSError as exc:
        raise RunnerCrashed(f"cannot start runner {spec.argv[0]!r}: {exc}") from exc


def _child_setup(limit_bytes: int) -> Callable[[], None]:
    """What runs in the runner between fork and exec: the memory limit (RLIMIT_AS) if any,
    and on Linux a SIGKILL as soon as the server dies. A runner sits in its own session (so
    the server's process group does not reach it): without the death signal, a SIGKILLed
    server would leave runners busy with a long call alive, holding memory and the
    model's resources, until that call ended."""
    parent = os.getpid()
    prctl = _prctl()

    def apply() -> None:
        if limit_bytes > 0:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the server died before the signal was armed
                os._exit(1)

    return apply


_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` on Linux (looked up in the server, not in the forked child), else
    None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return function


async def _read_frame(reader: asyncio.StreamReader) -> protocol.Frame:
    """Read one frame; IncompleteReadError at end of stream, ProtocolError if malformed."""
    size = protocol.header_length(await reader.readexactly(protocol.PREFIX_SIZE))
    header, lengths = protocol.decode_header(await reader.readexactly(size))
    data = await reader.readexactly(sum(lengths)) if lengths else b""
    return protocol.Frame(header, protocol.split_blobs(data, lengths))


def _input(payload: Payload, attributes: Mapping[str, str] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"content_type": payload.content_type, "mime": payload.mime}
    if attributes:
        entry["attributes"] = dict(attributes)
    return entry


def _ready(frame: protocol.Frame) -> tuple[bool, int, int]:
    """``(batch, max_inputs, protocol)`` of a ready frame (``max_inputs`` absent: 1, or
    unbounded for a batch runner, as version 1 of the protocol had it); _LoadFailed for a
    failed frame."""
    if frame.type == "failed":
        error = _model_error(frame.header.get("error"), prefix="the model failed to load: ")
        error.permanent = False  # a load may fail for passing reasons; retries back off
        raise _LoadFailed(error)
    if frame.type != "ready":
        raise protocol.ProtocolError(f"expected a ready frame, got {frame.type!r}")
    batch = bool(frame.header.get("batch", False))
    declared = frame.header.get("max_inputs")
    if _is_count(declared):
        max_inputs = int(declared)
    elif declared is None:
        max_inputs = sys.maxsize if batch else 1
    else:
        raise protocol.ProtocolError(
            f"a ready frame's max_inputs must be a count, got {declared!r}"
        )
    version = frame.header.get("protocol")
    return batch, max_inputs, int(version) if _is_count(version) else 1


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _outputs(
    frame: protocol.Frame, call_id: int, count: int
) -> tuple[tuple[Payload | ModelError, ...], list[float | None]]:
    """Decode a result frame into one Payload or ModelError per input, and each one's
    ``duration_ms`` if the runner gave it; ProtocolError if it does not answer this call."""
    outputs = frame.header.get("outputs")
    if frame.type != "result" or frame.header.get("id") != call_id:
        raise protocol.ProtocolError(f"expected the result of call {call_id}")
    if not isinstance(outputs, list) or len(outputs) != count:
        raise protocol.ProtocolError(f"a result needs {count} outputs")
    blobs = iter(frame.blobs)
    decoded = tuple(_output(entry, blobs) for entry in outputs)
    if next(blobs, None) is not None:
        raise protocol.ProtocolError("a result has more blobs than ok outputs")
    return decoded, [_duration(entry) for entry in outputs]


def _duration(entry: dict[str, Any]) -> float | None:
    value = entry.get("duration_ms")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _output(entry: object, blobs: Any) -> Payload | ModelError:
    if not isinstance(entry, dict):
        raise protocol.ProtocolError("an output must be an object")
    if not entry.get("ok"):
        return _model_error(entry.get("error"))
    kind = entry.get("content_type")
    mime = entry.get("mime")
    data = next(blobs, None)
    if kind not in CONTENT_TYPES or data is None or not isinstance(mime, str | None):
        raise protocol.ProtocolError(f"malformed ok output {entry!r}")
    return Payload(data, kind, mime)


def _model_error(error: object, *, prefix: str = "") -> ModelError:
    info = error if isinstance(error, dict) else {}
    error_type = str(info.get("type") or "ModelError")
    message = str(info.get("message") or error_type)
    return ModelError(
        prefix + message,
        error_type=error_type,
        stacktrace=str(info.get("stacktrace") or ""),
        permanent=bool(info.get("permanent", False)),
    )


_MEMORY_HINT = "MemoryError"


def _name_memory_limit(output: Payload | ModelError, limit_mb: int | None) -> Payload | ModelError:
    """A MemoryError under a memory limit says so: Python's own message is usually empty."""
    if not limit_mb or not isinstance(output, ModelError) or output.error_type != _MEMORY_HINT:
        return output
    detail = f" ({output.message})" if output.message != output.error_type else ""
    return ModelError(
        f"the model exceeded its memory limit: memory_limit_mb = {limit_mb}{detail}",
        error_type=output.error_type,
        stacktrace=output.stacktrace,
        permanent=output.permanent,
    )


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        try:
            return f"exited with signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"exited with signal {-returncode}"
    return f"exited with code {returncode}"
