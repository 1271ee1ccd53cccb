"""Pools: the warm runner processes of one model build, and how inputs reach them.

::

    PoolManager ── one Pool per RunnerSpec.key (a build's content hash)
        Pool ── min..max Runners, one fair queue of inputs, replacement, idle scale-down
            Runner ── one subprocess speaking docs/runner-protocol.md (modelbus.runtime.runner)

The server never imports model code: every model runs in a runner process, started from
the spec's ``argv`` in its ``cwd`` with exactly its ``env``. A runner takes one call at a
time, and a call carries one or many inputs. A call that times out gets its runner killed;
a runner that dies or writes garbage fails the call in flight with
:class:`~modelbus.errors.RunnerCrashed`; either way the pool starts a replacement when one is
needed.

**Adaptive batching.** Every :meth:`Pool.invoke` puts its inputs at the end of the pool's
one FIFO queue (one entry per invoke, not per input). When a runner is idle, the inputs at
the head of the queue go to it at once, in one call; while every runner is busy, what
arrives meanwhile waits and goes together in the next call. Inputs of different callers
share a call when their options are compatible: the same ``timeout_s`` and no stdout
capture (a call's stdout is one text, so a caller that captures it shares calls with
nobody). A call carries at most the smallest of: the ``CallOptions.max_batch_size`` of
each caller in it, ``PoolSettings.max_batch_size``, the runner's ``max_inputs`` and the
chunk bound below. A runner without ``apply_batch`` loops over a call's inputs one after
the other, so for such a model a call also takes no more than its share of the queue,
``ceil(queued / max_runners)`` as it stood when the runners idle at that moment were handed
their calls: 100 inputs on 4 idle runners go 25 to a call. Busy runners count in that share:
they will be free soon, and one call holding everything while another runner waits would
take up to twice as long, when one call more costs only a frame. (As the queue drains the
shares shrink: guided self-scheduling, which keeps the runners finishing together.)

Invokes take turns: an invoke with more inputs than one call takes goes behind the invokes
that arrived meanwhile once it has had a call (round robin), so a big batch does not hold
back a small call that came after it for more than one call.

**Chunk bound.** For the caller, ``timeout_s`` keeps its meaning: the most one input may
take. It is also the deadline of a whole call, so a call is sized to finish well within it:
the pool keeps a moving average (EMA, weight ``EMA_WEIGHT``) of the time one input takes
(a call's time over its inputs) and puts into one call no more inputs than are expected to
take ``CHUNK_BUDGET`` (a quarter) of the timeout. Until a first call is measured, a call
carries one input. A call that timed out counts as ``timeout_s`` over its inputs. An
input's result comes back when its whole call is done, so the bound also bounds the
latency that batching adds to an input.

**Isolation.** One input never fails its neighbours. A model error is already the error of
its input alone. When a call of several inputs fails as a whole (it timed out, or the
runner crashed), each of its inputs is run again alone, one per call with its own full
``timeout_s``, ahead of the queue: only the input that hangs or kills the runner gets
:class:`~modelbus.errors.InvocationTimeout` or :class:`~modelbus.errors.RunnerCrashed`.
The cost is the failed call's time plus one call per input, paid only after a failure.

**Queueing limits.** At most ``max_queue`` invokes may wait with inputs not yet sent;
one more gets :class:`~modelbus.errors.Overloaded`, and so do the unsent inputs of an
invoke that no runner served for ``queue_timeout_s``. Stats count invocations per input.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelbus.errors import (
    InvocationError,
    InvocationTimeout,
    Overloaded,
    RunnerCrashed,
)
from modelbus.registry.launch import RunnerSpec
from modelbus.runtime.invocation import CallOptions, OnResults, Payload, Result
from modelbus.runtime.runner import CallReply, Runner

log = logging.getLogger("modelbus.runtime.pool")

# A call is sized to take at most this share of its timeout at the measured pace.
CHUNK_BUDGET = 0.25
# How much one call's measured time per input moves the average.
EMA_WEIGHT = 0.25


@dataclass(frozen=True, kw_only=True, slots=True)
class PoolSettings:
    """Server-wide pool policy (per-model policy lives in :class:`RunnerSpec`).

    ``max_queue``: invokes that may wait with inputs not yet sent to a runner of one pool
    before :class:`Overloaded`.
    ``queue_timeout_s``: longest an invoke's inputs wait for a runner (queue plus cold start)
    before Overloaded; every call that takes some of them starts the wait anew.
    ``start_timeout_s``: longest a runner may take to load and say ``ready``.
    ``stop_grace_s``: how long a runner gets to exit after ``shutdown`` before SIGKILL.
    ``max_batch_size``: most inputs sent in one runner call, for every model.
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
    """A pool's figures for metrics. Counters only grow; the rest is the current state.

    ``queued``: inputs waiting for a runner. ``invocations`` and ``errors`` count inputs
    (each once, with its final outcome); ``duration_s_total`` is the runners' busy time.
    ``calls`` counts runner calls (several inputs each when batched).
    """

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
    calls: int = 0


class Pool:
    """The runners of one build: started on demand up to ``max_runners``, ``min_runners``
    kept warm, crashed ones replaced, idle ones above the minimum stopped after
    ``idle_timeout_s``. Inputs wait in one fair (FIFO) queue when every runner is busy and
    go to runners in batches (see the module docstring).

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
        self._queue: deque[_Job] = deque()  # invokes with inputs not yet sent, oldest first
        self._unsent = 0  # their inputs not yet sent
        self._alone: deque[_Job] = deque()  # invokes with inputs to run again, one per call
        self._alone_count = 0
        self._calls: set[asyncio.Task[None]] = set()  # calls in flight, awaited by close()
        self._starts: set[asyncio.Task[None]] = set()  # cancelled by close()
        self._stops: set[asyncio.Task[None]] = set()  # awaited by close()
        self._start_error: InvocationError | None = None
        self._restart_at = 0.0
        self._restart_timer: asyncio.TimerHandle | None = None
        self._dispatch_handle: asyncio.Handle | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self._batch_model = False  # the last runner to get ready said it has apply_batch
        self._per_input_s: float | None = None  # moving average of one input's time
        self._invocations = 0
        self._errors = 0
        self._duration_s = 0.0
        self._call_count = 0
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
        ``version``): one build may be published under several numbers. ``attributes``, if
        given, holds one mapping per input, merged over ``options.attributes`` for that
        input. ``on_results(indexes, outcomes)``, if given, is called on the loop as soon as
        some inputs have their outcome (once per runner call, typically); an exception it
        raises is logged. The inputs join the pool's queue and go to the runners in calls of several
        inputs, with other callers' inputs (see the module docstring). ``options.timeout_s``
        (default: the spec's) is the most one input may take; waiting for a runner is
        bounded by ``queue_timeout_s`` and ``max_queue`` (-> :class:`Overloaded`). Never
        raises an InvocationError: errors are returned in place of their input's Result.
        ValueError when ``attributes`` does not have one entry per input. If the caller is
        cancelled, its unsent inputs are dropped, and a call in flight that holds only
        cancelled callers' inputs is stopped (its runner is killed and replaced).
        """
        if attributes is not None and len(attributes) != len(payloads):
            raise ValueError(f"{len(attributes)} attributes for {len(payloads)} inputs")
        if not payloads:
            return []
        refusal = self._refusal()
        if refusal is not None:
            return [_stamp(refusal, version)] * len(payloads)
        loop = asyncio.get_running_loop()
        job = _Job(
            payloads=list(payloads),
            options=options,
            version=version,
            attributes=attributes,
            on_results=on_results,
            timeout_s=options.timeout_s or self.spec.timeout_s,
            cap=options.max_batch_size or self.settings.max_batch_size,
            done=loop.create_future(),
            waiting_since=loop.time(),
        )
        self._enqueue(job)
        try:
            await job.done
        except asyncio.CancelledError:
            await self._abandon(job)
            raise
        return job.outcomes()

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
            queued=self._unsent + self._alone_count,
            invocations=self._invocations,
            errors=self._errors,
            duration_s_total=self._duration_s,
            runners_started=self._started,
            runners_lost=self._lost,
            calls=self._call_count,
        )

    async def close(self) -> None:
        """Stop every runner: a shutdown frame each, SIGKILL after ``stop_grace_s``.

        Waiting inputs get :class:`Overloaded`; calls in flight get their result if the
        runner finishes within the grace period, else :class:`RunnerCrashed`. Idempotent.
        """
        self._closed = True
        if self._restart_timer is not None:
            self._restart_timer.cancel()
        for task in [*self._starts, *([self._reaper] if self._reaper else [])]:
            task.cancel()
        await asyncio.gather(*self._starts, *self._stops, return_exceptions=True)
        self._fail_queued(Overloaded(f"the pool of {self.spec.key[:12]} is closed"))
        self._idle.clear()
        grace_s = self.settings.stop_grace_s
        # Dead runners too: their exit is awaited so no process or pipe outlives the pool.
        await asyncio.gather(*(r.close(grace_s=grace_s) for r in list(self._runners)))
        await asyncio.gather(*self._calls, return_exceptions=True)

    # -- taking inputs from the queue -----------------------------------------------------

    def _refusal(self) -> Overloaded | None:
        """Why a new invoke cannot join the queue, if it cannot."""
        if self._closed:
            return Overloaded(f"the pool of {self.spec.key[:12]} is closed")
        # Idle runners are about to take one queued invoke each: those do not wait.
        if len(self._queue) - len(self._idle) >= self.settings.max_queue:
            return Overloaded(
                f"{len(self._queue)} calls are already waiting for a runner of {self.spec.key[:12]}"
            )
        return None

    def _enqueue(self, job: _Job) -> None:
        """Queue ``job``'s inputs (idle runners take them on this loop iteration) and start
        its queue timer."""
        self._ensure_reaper()
        self._queue.append(job)
        self._unsent += len(job.payloads)
        self._dispatch_soon()
        due = job.waiting_since + self.settings.queue_timeout_s
        job.timer = asyncio.get_running_loop().call_at(due, self._queue_timeout, job)

    def _next_call(self, runner: Runner, share: int) -> _Call:
        """Take the next call's inputs off the queue: one input to run again alone, or as
        many compatible inputs from the head as the limits allow, and no more than
        ``share`` for a runner that loops over them (module docstring)."""
        if self._alone:
            job = self._alone[0]
            index = job.alone.popleft()
            if not job.alone:
                self._alone.popleft()
            self._alone_count -= 1
            return _Call(runner, [(job, index, index + 1)], 1, job.timeout_s)
        if self._queue[0].next and len(self._queue) > 1:
            self._queue.rotate(-1)  # the head had its turn: the invokes behind it go first
        head = self._queue[0]
        limit = min(
            runner.max_inputs, self.settings.max_batch_size, self._chunk_bound(head.timeout_s)
        )
        if not runner.batch:  # the runner loops: leave the other runners their share
            limit = min(limit, share)
        slices: list[tuple[_Job, int, int]] = []
        taken = 0
        now = asyncio.get_running_loop().time()
        while self._queue:
            job = self._queue[0]
            limit = min(limit, job.cap)
            if taken >= limit or job.group != head.group:
                break
            stop = min(len(job.payloads), job.next + limit - taken)
            slices.append((job, job.next, stop))
            taken += stop - job.next
            job.next = stop
            job.waiting_since = now
            if stop < len(job.payloads):
                break
            self._queue.popleft()
            job.disarm()
        self._unsent -= taken
        return _Call(runner, slices, taken, head.timeout_s)

    def _chunk_bound(self, timeout_s: float) -> int:
        """Most inputs expected to run within ``CHUNK_BUDGET`` of ``timeout_s``."""
        if self._per_input_s is None:
            return 1
        return max(1, int(timeout_s * CHUNK_BUDGET / max(self._per_input_s, 1e-9)))

    def _measure(self, per_input_s: float) -> None:
        average = self._per_input_s
        if average is None:
            self._per_input_s = per_input_s
        else:
            self._per_input_s = average + EMA_WEIGHT * (per_input_s - average)

    def _queue_timeout(self, job: _Job) -> None:
        """The timer of a waiting invoke: Overloaded for its unsent inputs once no call has
        taken any of them for ``queue_timeout_s``."""
        job.timer = None
        if job.next >= len(job.payloads) or job.done.done():
            return
        loop = asyncio.get_running_loop()
        due = job.waiting_since + self.settings.queue_timeout_s
        if loop.time() < due:
            job.timer = loop.call_at(due, self._queue_timeout, job)
            return
        error = Overloaded(
            f"no runner of {self.spec.key[:12]} was free within {self.settings.queue_timeout_s:g} s"
        )
        self._settle_unsent(job, _stamp(error, job.version))

    def _settle_unsent(self, job: _Job, error: InvocationError | None) -> None:
        """Take ``job``'s unsent inputs off the queue, each settled with ``error`` (None:
        the caller is gone)."""
        if job.next >= len(job.payloads):
            return
        with contextlib.suppress(ValueError):
            self._queue.remove(job)  # rare (timeouts, cancellations): O(n) is fine
        start, job.next = job.next, len(job.payloads)
        self._unsent -= job.next - start
        job.settle(range(start, job.next), error)

    def _settle_alone(self, job: _Job, error: InvocationError | None) -> None:
        """Take ``job``'s inputs waiting to run alone off the queue, settled with ``error``."""
        if not job.alone:
            return
        with contextlib.suppress(ValueError):
            self._alone.remove(job)
        self._alone_count -= len(job.alone)
        indexes = list(job.alone)
        job.alone.clear()
        job.settle(indexes, error)

    def _fail_queued(self, exc: InvocationError) -> None:
        """Every waiting input gets ``exc`` (the pool closed, or no runner can start)."""
        for job in [*self._alone, *self._queue]:
            error = _stamp(exc, job.version)
            self._settle_alone(job, error)
            self._settle_unsent(job, error)

    async def _abandon(self, job: _Job) -> None:
        """The caller of ``job`` was cancelled: drop its waiting inputs, and stop the calls
        in flight that hold nobody else's inputs (their runners are killed: nobody will
        read the answer)."""
        job.cancelled = True
        self._settle_alone(job, None)
        self._settle_unsent(job, None)
        doomed = [
            call.task
            for call in job.calls
            if call.task is not None and all(j.cancelled for j, _, _ in call.slices)
        ]
        for task in doomed:
            task.cancel()
        if doomed:
            await asyncio.wait(doomed)

    # -- running calls --------------------------------------------------------------------

    def _send(self, runner: Runner, share: int) -> None:
        call = self._next_call(runner, share)
        for job, _, _ in call.slices:
            job.calls.add(call)
        call.task = asyncio.create_task(self._run(call))
        self._calls.add(call.task)
        call.task.add_done_callback(self._calls.discard)

    async def _run(self, call: _Call) -> None:
        attributes, own = call.attributes()
        try:
            reply = await call.runner.call(
                call.payloads(),
                timeout_s=call.timeout_s,
                capture_stdout=call.capture_stdout,
                attributes=attributes,
                input_attributes=own,
            )
        except InvocationError as exc:
            self._failed(call, exc)
        except Exception as exc:  # a bug here must not leave callers waiting forever
            log.exception("a runner call failed in the server", extra={"runner_key": self.spec.key})
            self._failed(call, RunnerCrashed(f"the call failed in the server: {exc!r}"))
        else:
            self._answered(call, reply)
        finally:
            for job, _, _ in call.slices:
                job.calls.discard(call)
            self._release(call.runner)

    def _answered(self, call: _Call, reply: CallReply) -> None:
        outputs, durations, stdout = reply.outputs, reply.durations_ms, reply.stdout
        errors = 0
        k = 0
        for job, start, stop in call.slices:
            results, version = job.results, job.version
            for i in range(start, stop):
                output = outputs[k]
                if isinstance(output, Payload):
                    results[i] = Result(output, durations[k], version, stdout)
                else:
                    errors += 1
                    results[i] = _stamp(output, version)
                k += 1
            job.tell(range(start, stop))
            job.settled(stop - start)
        self._count(call.size, errors, reply.duration_ms / 1000)
        self._measure(reply.duration_ms / 1000 / call.size)

    def _failed(self, call: _Call, exc: InvocationError) -> None:
        """A call failed as a whole: its inputs run again alone if it had several (see
        Isolation in the module docstring), else the input gets ``exc``."""
        self._call_count += 1
        if isinstance(exc, InvocationTimeout):
            self._duration_s += call.timeout_s
            self._measure(call.timeout_s / call.size)
        if call.size > 1 and not self._closed:
            log.info(
                "a call of %d inputs failed; running each alone: %s",
                call.size,
                exc,
                extra={"runner_key": self.spec.key},
            )
            for job, start, stop in call.slices:
                if job.cancelled:
                    continue
                if not job.alone:
                    self._alone.append(job)
                job.alone.extend(range(start, stop))
                self._alone_count += stop - start
            return
        for job, start, stop in call.slices:
            job.settle(range(start, stop), _stamp(exc, job.version))
        self._invocations += call.size
        self._errors += call.size

    def _count(self, invocations: int, errors: int, duration_s: float) -> None:
        self._call_count += 1
        self._invocations += invocations
        self._errors += errors
        self._duration_s += duration_s

    # -- runners --------------------------------------------------------------------------

    def _take_idle(self) -> Runner:
        runner = self._idle.pop()  # the most recently used: the others may then idle out
        self._busy.add(runner)
        return runner

    def _release(self, runner: Runner) -> None:
        self._busy.discard(runner)
        if runner.alive and not self._closed:
            runner.last_used = time.monotonic()
            self._idle.append(runner)
        elif runner.alive:
            self._stop(runner)
        self._dispatch_soon()

    def _dispatch_soon(self) -> None:
        """Dispatch once the callbacks ready now have run: inputs invoked on this loop
        iteration, and the next inputs of callers that a call's results just woke, go
        together rather than the first alone. (Still "at once" for an idle runner: one
        iteration of the loop.)"""
        if self._dispatch_handle is None and not self._closed:
            self._dispatch_handle = asyncio.get_running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        """Give idle runners the queue's next calls, and start runners for what is left
        and for ``min_runners``. Called after every change of state."""
        if self._dispatch_handle is not None:
            self._dispatch_handle.cancel()
            self._dispatch_handle = None
        if self._closed:
            return
        self._prune_idle()
        if self._idle and (self._alone or self._queue):
            # One share for this round, so the runners idle now get equal parts.
            share = max(1, -(-self._unsent // self.spec.max_runners))
            while self._idle and (self._alone or self._queue):
                self._send(self._take_idle(), share)
        wanted = max(self._wanted_calls() - self._starting, self.spec.min_runners - self._total())
        room = self.spec.max_runners - self._total()
        if wanted <= 0 or room <= 0:
            return
        if time.monotonic() < self._restart_at:
            self._wait_for_restart()
            return
        for _ in range(min(wanted, room)):
            self._starting += 1
            self._track(self._starts, self._start_runner())

    def _wanted_calls(self) -> int:
        """How many calls the waiting inputs make: one each for a model that loops, else as
        many as ``max_batch_size`` allows (before a runner said which, as if it loops)."""
        unsent = self._unsent
        if self._batch_model:
            unsent = -(-unsent // self.settings.max_batch_size)
        return self._alone_count + unsent

    def _wait_for_restart(self) -> None:
        """Starting is paused after a failure: fail the waiting inputs when no runner is
        left to serve them, and try again once the delay is over."""
        if self._start_error is not None and self._total() == 0:
            self._fail_queued(self._start_error)
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
        self._batch_model = runner.batch
        self._idle.append(runner)
        self._dispatch()

    def _start_failed(self, exc: InvocationError) -> None:
        log.error("runner failed to start: %s", exc, extra={"runner_key": self.spec.key})
        self._start_error = exc
        self._restart_at = time.monotonic() + self.settings.restart_delay_s
        self._dispatch()  # inputs keep waiting while another runner may serve them

    def _on_exit(self, runner: Runner) -> None:
        """A runner process exited (any cause): forget it and start a replacement if needed."""
        self._runners.discard(runner)
        if runner in self._idle:
            self._idle.remove(runner)
        if not runner.closing:
            self._lost += 1
        self._dispatch()

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


@dataclass(eq=False, kw_only=True, slots=True)
class _Job:
    """One invoke(): its inputs, how far they went, their outcomes, the caller's future."""

    payloads: list[Payload]
    options: CallOptions
    version: str
    attributes: Sequence[Mapping[str, str]] | None  # one per input, over options.attributes
    on_results: OnResults | None  # told each outcome as soon as it is known
    timeout_s: float
    cap: int  # most inputs per runner call
    done: asyncio.Future[None]
    waiting_since: float  # loop time: enqueued, or last taken by a call
    results: list[Result | InvocationError | None] = field(default_factory=list)
    next: int = 0  # index of the first input not yet sent
    outstanding: int = 0  # inputs without an outcome
    alone: deque[int] = field(default_factory=deque)  # inputs to run again, one per call
    calls: set[_Call] = field(default_factory=set)  # calls in flight holding its inputs
    timer: asyncio.TimerHandle | None = None
    cancelled: bool = False

    def __post_init__(self) -> None:
        self.results = [None] * len(self.payloads)
        self.outstanding = len(self.payloads)

    @property
    def group(self) -> object:
        """Invokes whose inputs may share a call have equal groups: the same timeout and no
        stdout capture (a caller capturing stdout is a group of its own)."""
        return self if self.options.capture_stdout else self.timeout_s

    def attributes_of(self, index: int) -> Mapping[str, str]:
        """The attributes of one input: its own merged over the call options'."""
        own = self.attributes[index] if self.attributes is not None else None
        return {**self.options.attributes, **own} if own else self.options.attributes

    def settle(self, indexes: Sequence[int], error: InvocationError | None) -> None:
        """Give ``indexes`` their outcome ``error`` (None: nobody waits for it)."""
        for i in indexes:
            self.results[i] = error
        if error is not None:
            self.tell(indexes)
        self.settled(len(indexes))

    def tell(self, indexes: Sequence[int]) -> None:
        """Tell the caller's ``on_results`` the outcomes of ``indexes``."""
        if self.on_results is None or self.cancelled:
            return
        outcomes = [r for r in (self.results[i] for i in indexes) if r is not None]
        try:
            self.on_results(indexes, outcomes)
        except Exception:  # the caller's bug must not break the pool's books
            log.exception("an on_results callback failed")

    def settled(self, count: int) -> None:
        """``count`` more inputs have their outcome; the caller wakes when all have."""
        self.outstanding -= count
        if self.outstanding <= 0:
            self.disarm()
            if not self.done.done():
                self.done.set_result(None)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def outcomes(self) -> list[Result | InvocationError]:
        return [r if r is not None else _lost(self.version) for r in self.results]


@dataclass(eq=False, slots=True)
class _Call:
    """One runner call: slices ``(job, start, stop)`` of the queue's invokes, in order."""

    runner: Runner
    slices: list[tuple[_Job, int, int]]
    size: int
    timeout_s: float
    task: asyncio.Task[None] | None = None

    @property
    def capture_stdout(self) -> bool:
        return self.slices[0][0].options.capture_stdout

    def payloads(self) -> list[Payload]:
        if len(self.slices) == 1:
            job, start, stop = self.slices[0]
            return job.payloads[start:stop]
        return [p for job, start, stop in self.slices for p in job.payloads[start:stop]]

    def attributes(self) -> tuple[Mapping[str, str], list[Mapping[str, str] | None] | None]:
        """The call's attributes and each input's own (None when no input has any): the
        invokes' shared ``options.attributes`` at the call level, and an input's own
        merged over them by the runner. A call of one input sends its merged attributes
        at the call level, as a runner of protocol version 1 expects them."""
        slices = self.slices
        if self.size == 1:
            job, start, _ = slices[0]
            return job.attributes_of(start), None
        base = slices[0][0].options.attributes
        if any(job.options.attributes != base for job, _, _ in slices[1:]):
            merged = [job.attributes_of(i) for job, a, b in slices for i in range(a, b)]
            return {}, list(merged)
        if all(job.attributes is None for job, _, _ in slices):
            return base, None
        return base, [
            job.attributes[i] if job.attributes is not None else None
            for job, a, b in slices
            for i in range(a, b)
        ]


def _lost(version: str) -> InvocationError:
    """The outcome of an input that never got one (cannot happen while the pool keeps its
    books; said plainly rather than returning None)."""
    return _stamp(RunnerCrashed("the input was lost by the pool"), version)


def _stamp(exc: InvocationError, version: str) -> InvocationError:
    """A copy of ``exc`` carrying ``version``: one error object (a crash, a failed start)
    may reach callers of several versions that share this build's pool."""
    error = copy.copy(exc)
    error.version = version
    return error
