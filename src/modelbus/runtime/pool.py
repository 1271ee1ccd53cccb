"""Pools: the warm runner processes of one model build.

::

    PoolManager ── one Pool per RunnerSpec.key (a build's content hash)
        Pool ── min..max Runners, a fair bounded wait queue, replacement, idle scale-down
            Runner ── one subprocess speaking docs/runner-protocol.md (modelbus.runtime.runner)

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
import logging
import time
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelbus.errors import (
    InvocationError,
    Overloaded,
)
from modelbus.registry.launch import RunnerSpec
from modelbus.runtime.invocation import CallOptions, OnResults, Payload, Result
from modelbus.runtime.runner import Runner

log = logging.getLogger("modelbus.runtime.pool")


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
        self,
        payloads: Sequence[Payload],
        options: CallOptions,
        *,
        version: str,
        attributes: Sequence[Mapping[str, str]] | None = None,
        on_results: OnResults | None = None,
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
        job = _Job(
            payloads, options, version, results, deque(range(len(payloads))), attributes, on_results
        )
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
                size = min(size, job.options.max_batch_size or size)
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
                attributes=job.attributes_of(chunk),
            )
        except InvocationError as exc:
            self._count(len(chunk), len(chunk), 0.0)
            error = _stamp(exc, job.version)
            for i in chunk:
                job.results[i] = error
            job.tell(chunk)
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
        job.tell(chunk)

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
    attributes: Sequence[Mapping[str, str]] | None = None
    on_results: OnResults | None = None
    failure: InvocationError | None = None

    def tell(self, chunk: list[int]) -> None:
        """Tell the caller that ``chunk`` is done (see ``Invoker.invoke_batch``)."""
        if self.on_results is not None:
            self.on_results(chunk, [r for r in (self.results[i] for i in chunk) if r is not None])

    def attributes_of(self, chunk: list[int]) -> dict[str, str]:
        """The call's attributes for ``chunk``: with one input, its own merged in."""
        if self.attributes is None or len(chunk) != 1:
            return self.options.attributes
        return {**self.options.attributes, **self.attributes[chunk[0]]}


def _stamp(exc: InvocationError, version: str) -> InvocationError:
    """A copy of ``exc`` carrying ``version``: one error object (a crash, a failed start)
    may reach callers of several versions that share this build's pool."""
    error = copy.copy(exc)
    error.version = version
    return error
