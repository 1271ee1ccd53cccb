"""Pools: the warm runner processes of one model build.

::

    PoolManager ── one Pool per RunnerSpec.key (a build's content hash)
        Pool ── min..max Runners, a fair bounded wait queue, replacement, idle scale-down
            Runner ── one subprocess speaking docs/runner-protocol.md on stdin/stdout

The server never imports model code: every model runs in a runner process, started from
the spec's ``argv`` in its ``cwd`` with exactly its ``env``. A runner is used by one call
at a time. A call that times out gets its runner killed; a runner that dies or writes
garbage fails the call in flight with :class:`~modelbus.errors.RunnerCrashed`; either way
the pool starts a replacement when one is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ctypes
import logging
import os
import resource
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelbus.errors import (
    InvocationError,
    InvocationTimeout,
    ModelError,
    Overloaded,
    RunnerCrashed,
)
from modelbus.registry.launch import RunnerSpec
from modelbus.runtime.invocation import CONTENT_TYPES, CallOptions, Payload, Result
from modelbus_runner import protocol

log = logging.getLogger("modelbus.runtime.pool")
runner_log = logging.getLogger("modelbus.runner")

_STDERR_TAIL_LINES = 30
_STDERR_LINE_CHARS = 2000
_EXIT_WAIT_S = 5.0  # how long to wait for a killed or finished process to be reaped
_EOF_EXIT_WAIT_S = 1.0  # after stdout closes, how long a runner gets to exit by itself
_STREAM_LIMIT_BYTES = 1024 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class PoolSettings:
    """Server-wide pool policy (per-model policy lives in :class:`RunnerSpec`).

    ``max_queue``: callers that may wait for a runner of one pool before :class:`Overloaded`.
    ``queue_timeout_s``: longest wait for a runner (queue plus cold start) before Overloaded.
    ``start_timeout_s``: longest a runner may take to load and say ``ready``.
    ``stop_grace_s``: how long a runner gets to exit after ``shutdown`` before SIGKILL.
    ``max_batch_size``: most inputs sent in one call to a runner that takes batches.
    ``restart_delay_s``: after a runner failed to start, no new start for this long; callers
    get the start error at once meanwhile, so a broken model does not fork in a loop.
    """

    max_queue: int = 256
    queue_timeout_s: float = 300.0
    start_timeout_s: float = 120.0
    stop_grace_s: float = 5.0
    max_batch_size: int = 64
    restart_delay_s: float = 5.0


@dataclass(frozen=True, kw_only=True, slots=True)
class CallReply:
    """What one runner call returned: one output or ModelError per input, in order."""

    outputs: tuple[Payload | ModelError, ...]
    stdout: str | None
    duration_ms: float


@dataclass(frozen=True, kw_only=True, slots=True)
class PoolStats:
    """A pool's figures for metrics. Counters only grow; the rest is the current state."""

    key: str
    runners_alive: int
    runners_busy: int
    runners_starting: int
    queued: int
    invocations: int
    errors: int
    duration_s_total: float
    runners_started: int
    runners_lost: int


class Runner:
    """One runner process. Use :meth:`start`; one :meth:`call` at a time."""

    def __init__(
        self,
        spec: RunnerSpec,
        process: asyncio.subprocess.Process,
        on_exit: Callable[[Runner], None] | None,
    ) -> None:
        self.spec = spec
        self.pid = process.pid
        self.batch = False
        self.last_used = time.monotonic()
        self._process = process
        self._on_exit = on_exit
        self._usable = True
        self._closing = False
        self._in_call = False
        self._next_id = 0
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
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
            runner.batch = _ready(frame)
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
            runner.kill()
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
    ) -> CallReply:
        """Send one call and wait for its result.

        Several payloads only if :attr:`batch`. Model errors come back inside the reply, one
        per input. Raises :class:`InvocationTimeout` past ``timeout_s`` (the runner is killed
        with SIGKILL) and :class:`RunnerCrashed` when the process dies or writes a malformed
        frame (the exit status and the stderr tail are in the message). If the caller is
        cancelled mid-call the runner is killed, since its answer can no longer be matched.
        """
        if self._in_call:
            raise RuntimeError("a runner takes one call at a time")
        if not self.alive:
            raise RunnerCrashed(f"runner {self.pid} is not running")
        self._in_call = True
        try:
            return await self._call(payloads, timeout_s, capture_stdout, attributes or {})
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
        self,
        payloads: Sequence[Payload],
        timeout_s: float,
        capture_stdout: bool,
        attributes: Mapping[str, str],
    ) -> CallReply:
        self._next_id += 1
        header = {
            "type": "call",
            "id": self._next_id,
            "inputs": [{"content_type": p.content_type, "mime": p.mime} for p in payloads],
            "stdout": capture_stdout,
            "attributes": dict(attributes),
        }
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                self._stdin.write(protocol.encode_frame(header, [p.data for p in payloads]))
                await self._stdin.drain()
                frame = await _read_frame(self._stdout)
            outputs = _outputs(frame, self._next_id, len(payloads))
            outputs = tuple(_name_memory_limit(o, self.spec.memory_limit_mb) for o in outputs)
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
        line = raw.decode("utf-8", errors="replace").rstrip("\r")[:_STDERR_LINE_CHARS]
        self._stderr_tail.append(line)
        runner_log.info("[%s pid %d] %s", self.spec.key[:12], self.pid, line, extra=extra)

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


class Pool:
    """The runners of one build: started on demand up to ``max_runners``, ``min_runners``
    kept warm, crashed ones replaced, idle ones above the minimum stopped after
    ``idle_timeout_s``. Callers wait in a fair (FIFO) queue when every runner is busy.

    Construct and use it inside a running event loop.
    """

    def __init__(self, spec: RunnerSpec, settings: PoolSettings | None = None) -> None:
        if spec.max_runners < 1 or not 0 <= spec.min_runners <= spec.max_runners:
            raise ValueError(
                f"need 0 <= min_runners <= max_runners and max_runners >= 1, got "
                f"{spec.min_runners}..{spec.max_runners}"
            )
        self.spec = spec
        self.settings = settings or PoolSettings()
        self._runners: set[Runner] = set()  # every started runner whose exit is not handled
        self._idle: list[Runner] = []  # least recently used first
        self._busy: set[Runner] = set()
        self._starting = 0
        self._waiters: deque[asyncio.Future[Runner]] = deque()
        self._starts: set[asyncio.Task[None]] = set()  # cancelled by close()
        self._stops: set[asyncio.Task[None]] = set()  # awaited by close()
        self._start_error: InvocationError | None = None
        self._restart_at = 0.0
        self._restart_timer: asyncio.TimerHandle | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self._invocations = 0
        self._errors = 0
        self._duration_s = 0.0
        self._started = 0
        self._lost = 0

    def __repr__(self) -> str:
        return f"<Pool {self.spec.key[:12]} {len(self._idle) + len(self._busy)} runners>"

    async def invoke(
        self, payloads: Sequence[Payload], options: CallOptions, *, version: str
    ) -> list[Result | InvocationError]:
        """Run inputs; return one Result or InvocationError per input, in order.

        ``version`` is the resolved version label put on each Result (and on each error's
        ``version``): one build may be published under several numbers. Inputs go to the
        runners in batches of up to ``max_batch_size`` when the model takes batches, else
        one call each, spread over up to ``max_runners`` runners. ``options.timeout_s``
        (default: the spec's) bounds each runner call; waiting for a free runner is bounded
        by ``queue_timeout_s`` and ``max_queue`` (-> :class:`Overloaded`). Never raises an
        InvocationError: errors are returned in place of their input's Result.
        """
        results: list[Result | InvocationError | None] = [None] * len(payloads)
        job = _Job(payloads, options, version, results, deque(range(len(payloads))))
        workers = min(len(payloads), self.spec.max_runners)
        if workers == 1:
            await self._work(job)
        elif workers > 1:
            await asyncio.gather(*(self._work(job) for _ in range(workers)))
        if None in results:
            failure = _stamp(job.failure or Overloaded("no runner was available"), version)
            return [failure if r is None else r for r in results]
        return [r for r in results if r is not None]

    def warm(self) -> None:
        """Start runners up to ``min_runners`` in the background. Returns at once; needs a
        running loop."""
        self._dispatch()

    def stats(self) -> PoolStats:
        """Current figures (for /metrics)."""
        self._prune_idle()
        return PoolStats(
            key=self.spec.key,
            runners_alive=len(self._idle) + len(self._busy),
            runners_busy=len(self._busy),
            runners_starting=self._starting,
            queued=self._queued(),
            invocations=self._invocations,
            errors=self._errors,
            duration_s_total=self._duration_s,
            runners_started=self._started,
            runners_lost=self._lost,
        )

    async def close(self) -> None:
        """Stop every runner: a shutdown frame each, SIGKILL after ``stop_grace_s``.

        Waiting callers get :class:`Overloaded`; calls in flight get their result if the
        runner finishes within the grace period, else :class:`RunnerCrashed`. Idempotent.
        """
        self._closed = True
        if self._restart_timer is not None:
            self._restart_timer.cancel()
        for task in [*self._starts, *([self._reaper] if self._reaper else [])]:
            task.cancel()
        await asyncio.gather(*self._starts, *self._stops, return_exceptions=True)
        self._fail_waiters(Overloaded(f"the pool of {self.spec.key[:12]} is closed"))
        self._idle.clear()
        grace_s = self.settings.stop_grace_s
        # Dead runners too: their exit is awaited so no process or pipe outlives the pool.
        await asyncio.gather(*(r.close(grace_s=grace_s) for r in list(self._runners)))

    # -- running inputs -------------------------------------------------------------------

    async def _work(self, job: _Job) -> None:
        """Take inputs from the job until none is left; one runner per chunk, so callers
        queued behind this job get their turn between chunks."""
        while job.pending:
            try:
                runner = await self._acquire()
            except InvocationError as exc:
                job.failure = exc  # other workers may still finish the rest
                return
            try:
                size = self.settings.max_batch_size if runner.batch else 1
                chunk = [job.pending.popleft() for _ in range(min(size, len(job.pending)))]
                if chunk:
                    await self._run(runner, job, chunk)
            finally:
                self._release(runner)

    async def _run(self, runner: Runner, job: _Job, chunk: list[int]) -> None:
        timeout_s = job.options.timeout_s or self.spec.timeout_s
        try:
            reply = await runner.call(
                [job.payloads[i] for i in chunk],
                timeout_s=timeout_s,
                capture_stdout=job.options.capture_stdout,
                attributes=job.options.attributes,
            )
        except InvocationError as exc:
            self._count(len(chunk), len(chunk), 0.0)
            error = _stamp(exc, job.version)
            for i in chunk:
                job.results[i] = error
            return
        errors = 0
        for i, output in zip(chunk, reply.outputs, strict=True):
            if isinstance(output, Payload):
                job.results[i] = Result(
                    output=output,
                    duration_ms=reply.duration_ms,
                    version=job.version,
                    stdout=reply.stdout,
                )
            else:
                errors += 1
                job.results[i] = _stamp(output, job.version)
        self._count(len(chunk), errors, reply.duration_ms / 1000)

    def _count(self, invocations: int, errors: int, duration_s: float) -> None:
        self._invocations += invocations
        self._errors += errors
        self._duration_s += duration_s

    # -- handing out runners --------------------------------------------------------------

    async def _acquire(self) -> Runner:
        if self._closed:
            raise Overloaded(f"the pool of {self.spec.key[:12]} is closed")
        self._ensure_reaper()
        self._prune_idle()
        if self._idle and not self._queued():
            return self._take_idle()
        if self._queued() >= self.settings.max_queue:
            raise Overloaded(
                f"{self._queued()} calls are already waiting for a runner of {self.spec.key[:12]}"
            )
        waiter: asyncio.Future[Runner] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._dispatch()
        try:
            async with asyncio.timeout(self.settings.queue_timeout_s):
                return await waiter
        except TimeoutError:
            self._give_back(waiter)
            raise Overloaded(
                f"no runner of {self.spec.key[:12]} was free within "
                f"{self.settings.queue_timeout_s:g} s"
            ) from None
        except asyncio.CancelledError:
            self._give_back(waiter)
            raise

    def _take_idle(self) -> Runner:
        runner = self._idle.pop()  # the most recently used: the others may then idle out
        self._busy.add(runner)
        return runner

    def _give_back(self, waiter: asyncio.Future[Runner]) -> None:
        """A waiter gave up: out of the queue; if a runner was handed to it meanwhile, pass
        the runner on."""
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)  # rare (timeouts, cancellations): O(n) is fine
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            self._release(waiter.result())

    def _release(self, runner: Runner) -> None:
        self._busy.discard(runner)
        if runner.alive and not self._closed:
            runner.last_used = time.monotonic()
            self._idle.append(runner)
        elif runner.alive:
            self._stop(runner)
        self._dispatch()

    def _dispatch(self) -> None:
        """Give idle runners to waiters in order, and start runners for the waiters left
        and for ``min_runners``. Called after every change of state."""
        if self._closed:
            return
        self._prune_idle()
        while self._idle and self._queued():
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._take_idle())
        wanted = max(self._queued() - self._starting, self.spec.min_runners - self._total())
        room = self.spec.max_runners - self._total()
        if wanted <= 0 or room <= 0:
            return
        if time.monotonic() < self._restart_at:
            self._wait_for_restart()
            return
        for _ in range(min(wanted, room)):
            self._starting += 1
            self._track(self._starts, self._start_runner())

    def _wait_for_restart(self) -> None:
        """Starting is paused after a failure: fail the waiters when no runner is left to
        serve them, and try again once the delay is over."""
        if self._start_error is not None and self._total() == 0:
            self._fail_waiters(self._start_error)
        if self._restart_timer is None:
            delay_s = max(self._restart_at - time.monotonic(), 0.0)
            self._restart_timer = asyncio.get_running_loop().call_later(delay_s, self._restart)

    def _restart(self) -> None:
        self._restart_timer = None
        self._dispatch()

    async def _start_runner(self) -> None:
        try:
            runner = await Runner.start(
                self.spec,
                start_timeout_s=self.settings.start_timeout_s,
                on_exit=self._on_exit,
            )
        except InvocationError as exc:
            self._starting -= 1
            self._start_failed(exc)
            return
        except BaseException:
            self._starting -= 1
            raise
        self._starting -= 1
        self._started += 1
        self._runners.add(runner)
        if self._closed:
            await runner.close(grace_s=self.settings.stop_grace_s)
            return
        self._idle.append(runner)
        self._dispatch()

    def _start_failed(self, exc: InvocationError) -> None:
        log.error("runner failed to start: %s", exc, extra={"runner_key": self.spec.key})
        self._start_error = exc
        self._restart_at = time.monotonic() + self.settings.restart_delay_s
        self._dispatch()  # waiters keep waiting while another runner may serve them

    def _on_exit(self, runner: Runner) -> None:
        """A runner process exited (any cause): forget it and start a replacement if needed."""
        self._runners.discard(runner)
        if runner in self._idle:
            self._idle.remove(runner)
        if not runner.closing:
            self._lost += 1
        self._dispatch()

    def _fail_waiters(self, exc: InvocationError) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)

    # -- idle scale-down ------------------------------------------------------------------

    def _ensure_reaper(self) -> None:
        if self._reaper is None and not self._closed:
            self._reaper = asyncio.create_task(self._reap_idle())

    async def _reap_idle(self) -> None:
        """Stop runners above ``min_runners`` that have been idle for ``idle_timeout_s``."""
        interval_s = min(max(self.spec.idle_timeout_s / 4, 0.05), 5.0)
        while not self._closed:
            await asyncio.sleep(interval_s)
            deadline = time.monotonic() - self.spec.idle_timeout_s
            excess = max(self._total() - self.spec.min_runners, 0)
            for runner in [r for r in self._idle if r.last_used <= deadline][:excess]:
                self._idle.remove(runner)
                log.info("runner idle; stopping", extra={"runner_pid": runner.pid})
                self._stop(runner)

    # -- bookkeeping ----------------------------------------------------------------------

    def _total(self) -> int:
        return len(self._idle) + len(self._busy) + self._starting

    def _queued(self) -> int:
        """Calls waiting for a runner. A waiter leaves the queue when it is served
        (``_dispatch``), fails (``_fail_waiters``) or gives up (``_give_back``), so this is
        O(1): it used to rebuild the queue on every call, quadratic under a burst."""
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        return len(self._waiters)

    def _prune_idle(self) -> None:
        """Drop idle runners that died and whose exit is still being handled."""
        if not all(runner.alive for runner in self._idle):
            self._idle = [runner for runner in self._idle if runner.alive]

    def _stop(self, runner: Runner) -> None:
        self._track(self._stops, runner.close(grace_s=self.settings.stop_grace_s))

    @staticmethod
    def _track(tasks: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)


class PoolManager:
    """All pools of this process, one per :attr:`RunnerSpec.key`."""

    def __init__(self, settings: PoolSettings | None = None) -> None:
        self.settings = settings or PoolSettings()
        self._pools: dict[str, Pool] = {}

    def get(self, spec: RunnerSpec) -> Pool:
        """The pool for ``spec.key``, created (and warmed to ``min_runners``) on first use.
        A later spec with the same key gets the existing pool. Needs a running loop."""
        pool = self._pools.get(spec.key)
        if pool is None:
            pool = self._pools[spec.key] = Pool(spec, self.settings)
            pool.warm()
        return pool

    def pools(self) -> list[Pool]:
        """The pools created so far."""
        return list(self._pools.values())

    async def remove(self, key: str) -> None:
        """Close and forget the pool of ``key``, if there is one."""
        pool = self._pools.pop(key, None)
        if pool is not None:
            await pool.close()

    async def close(self) -> None:
        """Close every pool (see :meth:`Pool.close`)."""
        pools = list(self._pools.values())
        self._pools.clear()
        await asyncio.gather(*(pool.close() for pool in pools))


@dataclass(slots=True)
class _Job:
    """One invoke(): its inputs, the indexes not yet taken, the results so far."""

    payloads: Sequence[Payload]
    options: CallOptions
    version: str
    results: list[Result | InvocationError | None]
    pending: deque[int]
    failure: InvocationError | None = None


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
    return protocol.Frame(header, [await reader.readexactly(n) for n in lengths])


def _ready(frame: protocol.Frame) -> bool:
    """The ``batch`` flag of a ready frame; _LoadFailed for a failed frame."""
    if frame.type == "failed":
        error = _model_error(frame.header.get("error"), prefix="the model failed to load: ")
        error.permanent = False  # a load may fail for passing reasons; retries back off
        raise _LoadFailed(error)
    if frame.type != "ready":
        raise protocol.ProtocolError(f"expected a ready frame, got {frame.type!r}")
    return bool(frame.header.get("batch", False))


def _outputs(frame: protocol.Frame, call_id: int, count: int) -> tuple[Payload | ModelError, ...]:
    """Decode a result frame into one Payload or ModelError per input; ProtocolError if it
    does not answer this call."""
    outputs = frame.header.get("outputs")
    if frame.type != "result" or frame.header.get("id") != call_id:
        raise protocol.ProtocolError(f"expected the result of call {call_id}")
    if not isinstance(outputs, list) or len(outputs) != count:
        raise protocol.ProtocolError(f"a result needs {count} outputs")
    blobs = iter(frame.blobs)
    decoded = [_output(entry, blobs) for entry in outputs]
    if next(blobs, None) is not None:
        raise protocol.ProtocolError("a result has more blobs than ok outputs")
    return tuple(decoded)


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


def _stamp(exc: InvocationError, version: str) -> InvocationError:
    """A copy of ``exc`` carrying ``version``: one error object (a crash, a failed start)
    may reach callers of several versions that share this build's pool."""
    error = copy.copy(exc)
    error.version = version
    return error


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        try:
            return f"exited with signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"exited with signal {-returncode}"
    return f"exited with code {returncode}"
