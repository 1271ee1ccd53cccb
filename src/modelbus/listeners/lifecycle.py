"""The runtime of one listener: receive -> decode -> filter -> invoke -> publish -> settle.

:class:`ListenerRuntime` wires the stages together and runs them (the manager of all of a
process's listeners is :class:`~modelbus.listeners.manager.ListenerManager`). **The batch is
the unit**: what one receive returns crosses the stages together, in one task up to the
invocation and then one task of its own, shielded from cancellation, that publishes and
settles it, while each delivery keeps its own outcome:

* receive (:mod:`~modelbus.listeners.receive`): the receive loop asks the source only for as
  many deliveries as there are free slots (``max_in_flight``), and admits them as a batch,
  which is first checked for duplicates (one query);
* decode and filter (:mod:`~modelbus.listeners.decode`), per delivery, fetching the objects
  notifications point at; a delivery that cannot be decoded fails alone, at once;
* claim (:mod:`~modelbus.listeners.claims`): the batch's messages claimed in the run store
  (one statement), so that a message whose run is going on elsewhere (another node or
  process) is not run again at once but released (``Busy``);
* invoke (:mod:`~modelbus.listeners.invoke`): every input of the batch in one
  ``invoke_batch`` call, each with its own context (the runner pool batches adaptively);
* publish (:mod:`~modelbus.listeners.publish`): one group publish per sink for the batch;
* settle (:mod:`~modelbus.listeners.settle`): :func:`~modelbus.listeners.outcomes.decide`
  alone turns each delivery's outcome into ack, release or dead-letter; the batch's run
  records and dead letters are made durable in one transaction before the broker hears of
  them (one ack for the batch; DESIGN.md, delivery contract). A failure in a stage is that
  delivery's outcome, classified by :func:`~modelbus.listeners.outcomes.is_permanent`.

Another background task reads the source's backlog every ``backlog_interval_s``
(:mod:`~modelbus.listeners.backlog`), apart from the message path.
While deliveries are in flight a background task extends their leases well before they
lapse (:mod:`~modelbus.listeners.leases`). A failing source puts the listener in
``degraded`` (:mod:`~modelbus.listeners.health`) and is reconnected with backoff; a failing
sink is reopened before its next use. :meth:`ListenerRuntime.stop` stops receiving, drains to
a deadline, releases the rest with no delay, then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from modelbus.client.refs import ModelRef
from modelbus.connectors import (
    ConnectorContext,
    ConnectorPolicy,
    is_shared_source,
    make_source,
    redact_url,
)
from modelbus.connectors.base import Delivery, Source
from modelbus.errors import ConnectorError, DefinitionError
from modelbus.listeners.backlog import DEFAULT_INTERVAL_S, BacklogReader
from modelbus.listeners.claims import DEFAULT_CLAIM_TTL_S, RunClaims
from modelbus.listeners.decode import Decoder
from modelbus.listeners.definition import ListenerDefinition, check_lease
from modelbus.listeners.envelopes import Item
from modelbus.listeners.health import Health, close_quietly
from modelbus.listeners.invoke import Caller
from modelbus.listeners.leases import Flight, LeaseExtender
from modelbus.listeners.metrics import ListenerMetrics
from modelbus.listeners.outcomes import Busy, Failed, Invoked, Outcome, Skipped, Unsettled
from modelbus.listeners.publish import Sinks
from modelbus.listeners.receive import Admission, InFlight
from modelbus.listeners.records import RunWriter
from modelbus.listeners.retry import RetryPolicy
from modelbus.listeners.settle import Settler
from modelbus.runtime import telemetry
from modelbus.runtime.invocation import Invoker
from modelbus.store.runs import DeadLetter, RunRecord

__all__ = ["ListenerRuntime", "ListenerStatus", "RuntimeOptions", "State"]

# A delivery between the stages: its inputs while it is still being worked on, then its outcome.
Step = list[Item] | Invoked | Skipped | Failed
# Told the outcomes of some deliveries of a batch: their indexes, one outcome each.
Done = Callable[[list[int], list[Invoked | Outcome]], None]
# Claims the runs of some deliveries of a batch (their indexes): whether each may run.
Claim = Callable[[list[int]], Coroutine[Any, Any, list[bool]]]

log = logging.getLogger(__name__)

State = Literal["starting", "running", "paused", "degraded", "stopped"]
RUNNING_NOTE_AFTER_S = 1.0
# With a backlog, a listener receives again once 1/RECEIVES_IN_FLIGHT of max_in_flight is free.
RECEIVES_IN_FLIGHT = 2


@dataclass(frozen=True, kw_only=True, slots=True)
class RuntimeOptions:
    """Timing knobs of the runtime (the listener's own policies are in its definition)."""

    receive_wait_s: float = 1.0
    op_timeout_s: float = 30.0
    publish_timeout_s: float = 60.0
    open_timeout_s: float = 30.0
    fetch_timeout_s: float = 120.0
    stop_deadline_s: float = 30.0
    backlog_interval_s: float = DEFAULT_INTERVAL_S
    claim_ttl_s: float = DEFAULT_CLAIM_TTL_S  # a run claim lasts this long unless renewed
    # Claim runs in the store (several replicas may get one message). Off where this
    # process is the only replica there can be (one node on SQLite, no workers): the
    # in-flight set already keeps a message from running twice at once there. Sources run
    # by one owner (local://, dir://, unshared MQTT) never claim.
    claim_runs: bool = True
    reconnect: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            max_attempts=1000, initial_backoff_s=0.5, max_backoff_s=30.0, multiplier=2.0
        )
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class ListenerStatus:
    """What ``listeners status`` shows. ``problems`` maps a failing part (``source``,
    ``sink URL``, ``store``) to its reason while the listener is degraded. ``backlog``: the
    messages waiting at the source as last read from the broker at ``backlog_at`` (epoch
    s; None: not read yet, or the source cannot say)."""

    name: str
    state: State
    last_error: str | None
    last_error_at: float | None
    problems: dict[str, str]
    counters: dict[str, float]
    backlog: int | None = None
    backlog_at: float | None = None


class ListenerRuntime:
    """One running listener. :meth:`start` returns at once; the listener connects in the
    background (``degraded`` while it cannot) and runs until :meth:`stop`. ``policy``: the
    operator's limits on what its connectors reach (none given: the empty policy)."""

    def __init__(
        self,
        definition: ListenerDefinition,
        *,
        invoker: Invoker,
        runs: RunWriter,
        metrics: ListenerMetrics,
        data_dir: Path,
        options: RuntimeOptions | None = None,
        policy: ConnectorPolicy | None = None,
    ) -> None:
        self.definition = definition
        self._runs = runs
        self._metrics = metrics
        self._options = options = options or RuntimeOptions()
        self._ref = definition.ref
        self._health = Health(definition.name)
        self._close_quietly = functools.partial(
            close_quietly, timeout_s=options.op_timeout_s, listener=definition.name
        )
        ctx = ConnectorContext(
            listener=definition.name, data_dir=data_dir, policy=policy or ConnectorPolicy()
        )
        self._decoder = Decoder(definition, ctx, fetch_timeout_s=options.fetch_timeout_s)
        self._source: Source = make_source(definition.source, ctx)
        self._sinks = Sinks(
            definition,
            ctx,
            self._health,
            open_timeout_s=options.open_timeout_s,
            publish_timeout_s=options.publish_timeout_s,
            close_quietly=self._close_quietly,
        )
        self._caller = Caller(definition, invoker, self._ref, self._health)
        self._in_flight = InFlight(definition.max_in_flight)
        self._settler, self._admission, self._leases = self._stages()
        self._claims = (
            RunClaims(
                definition.name,
                runs.store,
                self._health,
                flights=self._in_flight,
                ttl_s=options.claim_ttl_s,
            )
            if options.claim_runs and is_shared_source(definition.source)
            else None
        )
        self._claimer: asyncio.Task[None] | None = None
        self._stop_requested = asyncio.Event()
        self._phase: Literal["starting", "running", "stopped"] = "starting"
        self._main: asyncio.Task[None] | None = None
        self._extender: asyncio.Task[None] | None = None
        self._backlog = BacklogReader(
            definition.name,
            self._source.backlog,
            interval_s=options.backlog_interval_s,
            timeout_s=options.op_timeout_s,
        )
        self._backlog_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._stopping: asyncio.Task[None] | None = None
        metrics.track(lambda: len(self._in_flight), self._in_flight.oldest_age_s)
        metrics.track_backlog(self._backlog.gauge)

    def _stages(self) -> tuple[Settler, Admission, LeaseExtender]:
        """The stages that share the source, the in-flight deliveries and the run store."""
        definition, options, health = self.definition, self._options, self._health
        settler = Settler(
            definition,
            source=self._source,
            sinks=self._sinks,
            runs=self._runs,
            metrics=self._metrics,
            health=health,
            in_flight=self._in_flight,
            op_timeout_s=options.op_timeout_s,
        )
        admission = Admission(
            definition.name,
            source=self._source,
            in_flight=self._in_flight,
            runs=self._runs,
            metrics=self._metrics,
            health=health,
            handle=self._handle,
            system=definition.source_scheme,
        )
        leases = LeaseExtender(
            self._source,
            self._in_flight,
            health,
            enabled=definition.extend_lease,
            op_timeout_s=options.op_timeout_s,
        )
        return settler, admission, leases

    # --- status ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def state(self) -> State:
        """``starting``, ``running``, ``degraded`` (a part is failing) or ``stopped``."""
        if self._phase == "stopped":
            return "stopped"
        return "degraded" if self._health.problems else self._phase

    def status(self) -> ListenerStatus:
        """A snapshot of state, problems, last error and counters."""
        error, at = self._health.last_error or (None, None)
        return ListenerStatus(
            name=self.name,
            state=self.state,
            last_error=error,
            last_error_at=at,
            problems=dict(self._health.problems),
            counters=self._metrics.snapshot(),
            backlog=self._backlog.value,
            backlog_at=self._backlog.read_at,
        )

    async def wait_for_state(self, *states: State, timeout_s: float = 10.0) -> State:
        """Wait until the listener is in one of ``states``; raises TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while self.state not in states:  # noqa: ASYNC110 (state is derived, not an event)
                await asyncio.sleep(0.02)
        return self.state

    # --- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        """Begin connecting and receiving in the background. Not idempotent: call once."""
        if self._main is not None:
            raise RuntimeError(f"listener {self.name} was started already")
        self._main = asyncio.create_task(self._run(), name=f"listener:{self.name}")

    async def stop(self, deadline_s: float | None = None) -> None:
        """Stop receiving, let in-flight deliveries finish until ``deadline_s`` (default
        :attr:`RuntimeOptions.stop_deadline_s`), release the rest with no delay, close.
        Idempotent; concurrent calls wait for the same stop, which cancelling a caller does
        not interrupt."""
        if self._main is None or self._stopped.is_set():
            self._phase = "stopped"
            return
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._stop(deadline_s))
        await asyncio.shield(self._stopping)

    async def _stop(self, deadline_s: float | None) -> None:
        self._stop_requested.set()
        self._in_flight.wake()
        deadline = self._options.stop_deadline_s if deadline_s is None else deadline_s
        await self._stop_receiving()
        await self._drain(deadline)
        await self._release_rest()
        await self._close()
        self._phase = "stopped"
        self._stopped.set()
        log.info("listener %s stopped", self.name)

    async def _stop_receiving(self) -> None:
        assert self._main is not None
        grace_s = self._options.receive_wait_s + self._options.op_timeout_s
        done, _ = await asyncio.wait({self._main}, timeout=grace_s)
        if not done:
            self._main.cancel()
            await asyncio.gather(self._main, return_exceptions=True)

    async def _drain(self, deadline_s: float) -> None:
        tasks = {f.task for f in self._in_flight if f.task is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=deadline_s)

    async def _release_rest(self) -> None:
        """Interrupt what is still working and hand it back to the broker at once."""
        working = [f for f in self._in_flight if f.settling is None]
        for flight in working:
            if flight.task is not None:
                flight.task.cancel()
        await asyncio.gather(*(f.task for f in working if f.task), return_exceptions=True)
        working = [f for f in working if f.settling is None]  # none came back meanwhile
        if self._claims is not None:  # another replica may run them now
            await asyncio.shield(self._claims.end(working))
        await asyncio.shield(asyncio.gather(*(self._settler.release(f, 0.0) for f in working)))
        self._in_flight.forget(working)
        settling = {f.settling for f in self._in_flight if f.settling is not None}
        if settling:
            await asyncio.wait(settling, timeout=self._options.op_timeout_s)

    async def _close(self) -> None:
        for task in (self._extender, self._backlog_task, self._claimer):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self._caller.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._settler.drain_acks(), self._options.op_timeout_s)
        await self._runs.flush()
        await self._close_quietly(self._decoder.close_readers())
        await self._close_quietly(self._source.close())
        for slot in self._sinks.all():
            await self._close_quietly(slot.sink.close())

    # --- connecting --------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if not await self._connect():
                return
            self._extender = asyncio.create_task(self._leases.run(), name=f"leases:{self.name}")
            if self._claims is not None:
                self._claimer = asyncio.create_task(self._claims.run(), name=f"claims:{self.name}")
            self._backlog_task = asyncio.create_task(
                self._backlog.run(), name=f"backlog:{self.name}"
            )
            await self._receive_loop()
        except Exception as exc:  # a bug: say so loudly rather than look "running"
            log.exception("listener %s: receive loop failed", self.name)
            self._health.problem("runtime", f"receive loop failed: {exc!r}")

    async def _connect(self) -> bool:
        """Open the source and sinks, retrying with backoff; False if stopping or refused."""
        attempt = 0
        while not self._stop_requested.is_set():
            try:
                await self._open_all()
            except DefinitionError as exc:
                self._health.error("definition", str(exc))
                await self._close_quietly(self._source.close())
                self._phase = "stopped"
                self._stopped.set()
                return False
            except Exception:  # _open_part said which part failed
                attempt += 1
                await self._pause(self._options.reconnect.backoff_s(attempt))
                continue
            self._phase = "running"
            log.info("listener %s running", self.name)
            return True
        return False

    async def _open_all(self) -> None:
        await self._open_part("source", self._source.open())
        check_lease(self.definition, self._source.lease_s)
        for slot in self._sinks.all():
            await self._open_part(f"sink {redact_url(slot.url)}", slot.sink.open())
            slot.broken = False

    async def _open_part(self, part: str, opening: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(opening, self._options.open_timeout_s)
        except DefinitionError:
            raise
        except Exception as exc:
            self._health.problem(part, f"cannot connect: {exc}")
            raise
        self._health.clear(part)

    async def _reconnect_source(self, reason: BaseException) -> None:
        attempt = 0
        self._health.problem("source", f"{reason}")
        while not self._stop_requested.is_set():
            attempt += 1
            await self._close_quietly(self._source.close())
            await self._pause(self._options.reconnect.backoff_s(attempt))
            try:
                await asyncio.wait_for(self._source.open(), self._options.open_timeout_s)
            except Exception as exc:
                self._health.problem("source", f"cannot reconnect: {exc}")
                continue
            self._health.clear("source")
            log.info("listener %s: source reconnected", self.name)
            return

    async def _pause(self, delay_s: float) -> None:
        """Sleep, but wake at once when a stop is requested."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), delay_s)

    # --- the stages --------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        """Receive into the free slots. While the source has a backlog (the last receive
        filled all it asked for), wait until at least a share of ``max_in_flight`` is free:
        deliveries settle as their runner calls return, and receiving one or two at a time
        then would shrink batches to crumbs. Without a backlog, any free slot is used at once
        (a message never waits for a batch)."""
        wait_s = self._options.receive_wait_s
        most = max(1, -(-self.definition.max_in_flight // RECEIVES_IN_FLIGHT))
        backlog = False
        while not self._stop_requested.is_set():
            free = self._in_flight.free()
            if free <= 0 or (backlog and free < most):
                await self._in_flight.wait_for_slot()
                continue
            asked_ns = time.time_ns()
            try:
                deliveries = await asyncio.wait_for(
                    self._source.receive(free, wait_s), wait_s + self._options.op_timeout_s
                )
            except (ConnectorError, TimeoutError) as exc:
                await self._reconnect_source(exc)
                continue
            backlog = len(deliveries) >= free
            self._health.clear("source")
            if deliveries:
                self._admission.admit(deliveries, asked_ns)

    async def _handle(self, flights: list[Flight]) -> None:
        """One received batch: work on it, settling its deliveries as soon as their outcomes
        are known, each group in a task of its own, shielded from cancellation."""
        try:
            # A message this listener is running already is not run twice at once.
            self._settle([(f, Busy()) for f in flights if f.concurrent])
            flights = [f for f in flights if not f.concurrent]
            duplicates = await self._admission.duplicates(flights)
            self._settle([(f, Skipped("duplicate")) for f in flights if _id(f) in duplicates])
            fresh = [f for f in flights if _id(f) not in duplicates]

            def done(indexes: list[int], outcomes: list[Invoked | Outcome]) -> None:
                self._settle([(fresh[i], o) for i, o in zip(indexes, outcomes, strict=True)])

            claims = self._claims

            async def claim(indexes: list[int]) -> list[bool]:
                assert claims is not None
                return await claims.claim([fresh[i] for i in indexes])

            deliveries = [f.delivery for f in fresh]
            await self._work(
                deliveries,
                self._ref,
                apply_filter=True,
                done=done,
                claim=claim if claims is not None else None,
            )
        except asyncio.CancelledError:
            if self._stop_requested.is_set():
                return  # stop() releases what is not settling
            raise
        except Exception as exc:  # a bug: retry them rather than hold them forever
            log.exception("listener %s: working on a batch failed", self.name)
            self._settle([(f, Failed.of(exc, "runtime")) for f in flights if f.settling is None])

    def _settle(self, batch: list[tuple[Flight, Invoked | Outcome]]) -> None:
        """Settle ``batch`` in a task of its own (a stop waits for it, never cancels it).
        A flight a stop already released (its model call, shared with other callers, may
        still come back) is not settled again."""
        batch = [(f, o) for f, o in batch if f.settling is None and not f.final]
        if not batch:
            return
        settling = asyncio.create_task(self._settler.settle(batch))
        for flight, _ in batch:
            flight.settling = settling

    async def _work(
        self,
        deliveries: list[Delivery],
        ref: ModelRef,
        *,
        apply_filter: bool,
        done: Done,
        claim: Claim | None = None,
    ) -> None:
        """Decode, filter, claim, fetch and invoke a batch, telling ``done`` each delivery's
        outcome (by its index) as soon as it is known: at once for what fails to decode, is
        filtered out or is running elsewhere (``claim`` refused it: Busy), after the model
        for the rest. A failure is its stage's outcome."""
        decoding_ns = time.time_ns()
        steps: list[Step] = [self._prepare(d, apply_filter=apply_filter) for d in deliveries]
        if telemetry.enabled:
            _mark(deliveries, "decode", decoding_ns)
        early = [i for i, step in enumerate(steps) if not isinstance(step, list)]
        if early:
            done(early, [_outcome(steps[i]) for i in early])
        todo = [i for i, step in enumerate(steps) if isinstance(step, list)]
        if todo and claim is not None:
            runnable = await claim(todo)
            busy = [i for i, ok in zip(todo, runnable, strict=True) if not ok]
            if busy:
                done(busy, [Busy()] * len(busy))
                todo = [i for i, ok in zip(todo, runnable, strict=True) if ok]
        if not todo:
            return
        working = {i: deliveries[i] for i in todo}

        def invoked(indexes: list[int], outcomes: list[Invoked | Failed]) -> None:
            told = [todo[j] for j in indexes]
            for i in told:
                working.pop(i, None)
            if telemetry.enabled:
                _mark_invoked([deliveries[i] for i in told], outcomes, invoking_ns)
            done(told, list(outcomes))

        with self._running_note(working):
            if any(self._decoder.must_fetch(_inputs(steps[i])) for i in todo):
                # Only then: a gather and a wait_for cost tasks per message.
                fetched = await asyncio.gather(*(self._fetch(_inputs(steps[i])) for i in todo))
                for i, step in zip(todo, fetched, strict=True):
                    steps[i] = step
                failed = [i for i in todo if not isinstance(steps[i], list)]
                if failed:
                    for i in failed:
                        working.pop(i, None)
                    done(failed, [_outcome(steps[i]) for i in failed])
                todo = [i for i in todo if isinstance(steps[i], list)]
            work = [(deliveries[i], _inputs(steps[i])) for i in todo]
            invoking_ns = time.time_ns()
            await self._caller.invoke_all(work, ref, invoked)

    def _prepare(self, delivery: Delivery, *, apply_filter: bool) -> Step:
        """Decode and filter ``delivery``: its inputs, or why there is nothing to run."""
        stage = "decode"
        try:
            items = self._decoder.decode(delivery)
            if not items:
                return Skipped("no_input")
            if apply_filter:
                stage = "filter"
                items = self._decoder.filter(items)
                if not items:
                    return Skipped("filtered")
        except Exception as exc:
            return Failed.of(exc, stage)
        return items

    async def _fetch(self, items: list[Item]) -> Step:
        """``items`` with the objects they announce read, or the fetch's failure."""
        try:
            if self._decoder.must_fetch(items):
                return await self._decoder.fetch(items)
        except Exception as exc:
            return Failed.of(exc, "fetch")
        return items

    @contextlib.contextmanager
    def _running_note(self, working: dict[int, Delivery]) -> Iterator[None]:
        """Record ``running`` only for work that takes a while: most deliveries settle
        sooner, and their final records are then the only write on the hot path. Only those
        still ``working`` when the timer fires are noted."""
        loop = asyncio.get_running_loop()
        note = loop.call_later(RUNNING_NOTE_AFTER_S, self._note_running, working)
        try:
            yield
        finally:
            note.cancel()

    def _note_running(self, working: dict[int, Delivery]) -> None:
        for delivery in working.values():
            self._settler.note(delivery, "running")

    # --- redrive -----------------------------------------------------------------------------

    async def open_sinks(self) -> None:
        """Open the output sinks and the claim check store (for a redrive while the listener
        is not running)."""
        for slot in self._sinks.publishing():
            await asyncio.wait_for(slot.sink.open(), self._options.open_timeout_s)

    async def close_sinks(self) -> None:
        """Close what :meth:`open_sinks` opened (and object readers a redrive used)."""
        for slot in self._sinks.publishing():
            await self._close_quietly(slot.sink.close())
        await self._close_quietly(self._decoder.close_readers())

    async def redrive(self, letter: DeadLetter, ref: ModelRef) -> RunRecord:
        """Run a dead letter's message again on ``ref`` (filters skipped), publish the result
        to the outputs and record the run. Raises the failure if it fails again."""
        delivery = Delivery(
            message_id=letter.message_id,
            body=letter.body,
            attributes=letter.attributes,
            attempt=letter.attempts + 1,
        )
        told: list[Invoked | Outcome] = []
        await self._work(
            [delivery], ref, apply_filter=False, done=lambda _, outcomes: told.extend(outcomes)
        )
        outcome = told[0]
        if isinstance(outcome, Invoked):
            outcome = await self._sinks.publish(delivery, outcome)
        if isinstance(outcome, Failed | Unsettled):
            raise outcome.error
        record = self._settler.record(delivery, "succeeded", outcome)
        await self._runs.record(record)
        return record


def _inputs(step: Step) -> list[Item]:
    assert isinstance(step, list)
    return step


def _outcome(step: Step) -> Invoked | Outcome:
    assert not isinstance(step, list)
    return step


def _id(flight: Flight) -> str:
    return flight.delivery.message_id


def _mark(deliveries: Sequence[Delivery], stage: str, start_ns: int) -> None:
    """Tracing: ``stage`` of the batch ran from ``start_ns`` until now, for each delivery."""
    end_ns = time.time_ns()
    for delivery in deliveries:
        trace = telemetry.trace_of(delivery)
        if trace is not None:
            trace.mark(stage, start_ns, end_ns)


def _mark_invoked(
    deliveries: Sequence[Delivery], outcomes: Sequence[Invoked | Failed], start_ns: int
) -> None:
    """Tracing: the model call of these deliveries is done (with its own time per input)."""
    _mark(deliveries, "invoke", start_ns)
    for delivery, outcome in zip(deliveries, outcomes, strict=True):
        trace = telemetry.trace_of(delivery)
        if trace is not None and isinstance(outcome, Invoked) and outcome.results:
            result = outcome.results[0][2]
            trace.runner_ms = sum(r.duration_ms for _, _, r in outcome.results)
            trace.version = result.version
