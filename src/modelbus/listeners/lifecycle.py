"""The runtime of one listener: receive -> decode -> filter -> invoke -> publish -> settle.

Each delivery goes through named stages; :func:`~modelbus.listeners.outcomes.decide` alone
turns the outcome into what happens to it, and :meth:`ListenerRuntime._carry_out` makes that
durable before the broker hears of it (DESIGN.md, delivery contract):

===============================  =============  =============================================
outcome                          decision       carried out as
===============================  =============  =============================================
published to every output        ack            run record ``succeeded`` written, then ack
filtered / nothing to run / dup  ack            ack
transient failure, attempts      release        run record ``retrying``; the broker hands it
left                                            out again after ``retry.backoff_s(attempt)``
permanent failure, or transient  dead-letter    dead letter + run record stored, published to
on the last attempt                             the error sink, then ack
outcome not made durable         release        (the store or the error sink failed) retried,
                                                even past ``max_attempts``: never dropped
===============================  =============  =============================================

An error sink that refuses a dead letter *for good* (a permanent ConnectorError, e.g. too
large for it) does not keep the message cycling: the dead letter stored in the database is
then its durable record, and the refusal is reported as the listener's last error.

Which failures are permanent is :func:`~modelbus.listeners.outcomes.is_permanent`'s to say.

While deliveries are in flight a background task extends their leases well before they
lapse; the receive loop asks only for as many deliveries as there are free slots
(``max_in_flight``); batching collects inputs into ``invoke_batch`` calls. A failing source
puts the listener in ``degraded`` and is reconnected with backoff; a failing sink is
reopened before its next use. :meth:`ListenerRuntime.stop` stops receiving, drains to a
deadline, releases the rest with no delay, then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import traceback
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from modelbus.client.refs import ModelRef
from modelbus.connectors import (
    ConnectorContext,
    make_source,
    redact_url,
)
from modelbus.connectors.base import Delivery, Source
from modelbus.errors import (
    ConnectorError,
    DefinitionError,
    InvocationError,
)
from modelbus.listeners.coalescer import Coalescer
from modelbus.listeners.decode import Decoder
from modelbus.listeners.definition import ListenerDefinition, check_lease
from modelbus.listeners.envelopes import (
    DeadLetterInfo,
    dead_letter_id,
    encode_dead_letter,
)
from modelbus.listeners.health import Health, close_quietly
from modelbus.listeners.invoke import Caller
from modelbus.listeners.metrics import ListenerMetrics
from modelbus.listeners.outcomes import (
    DeadLetterDecision,
    Decision,
    Failed,
    Invoked,
    Outcome,
    Release,
    Skipped,
    Succeeded,
    Unsettled,
    decide,
)
from modelbus.listeners.publish import Sinks
from modelbus.listeners.records import RunWriter
from modelbus.listeners.retry import RetryPolicy
from modelbus.runtime.invocation import Invoker
from modelbus.store.runs import DeadLetter, RunRecord, RunStatus

__all__ = ["ListenerRuntime", "ListenerStatus", "RuntimeOptions", "State"]

log = logging.getLogger(__name__)

State = Literal["starting", "running", "paused", "degraded", "stopped"]
RUNNING_NOTE_AFTER_S = 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class RuntimeOptions:
    """Timing knobs of the runtime (the listener's own policies are in its definition)."""

    receive_wait_s: float = 1.0
    op_timeout_s: float = 30.0
    publish_timeout_s: float = 60.0
    open_timeout_s: float = 30.0
    fetch_timeout_s: float = 120.0
    stop_deadline_s: float = 30.0
    reconnect: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            max_attempts=1000, initial_backoff_s=0.5, max_backoff_s=30.0, multiplier=2.0
        )
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class ListenerStatus:
    """What ``listeners status`` shows. ``problems`` maps a failing part (``source``,
    ``sink URL``, ``store``) to its reason while the listener is degraded."""

    name: str
    state: State
    last_error: str | None
    last_error_at: float | None
    problems: dict[str, str]
    counters: dict[str, float]


def _error_type(exc: BaseException) -> str:
    return exc.error_type if isinstance(exc, InvocationError) else type(exc).__name__


def _stacktrace(exc: BaseException) -> str:
    if isinstance(exc, InvocationError) and exc.stacktrace:
        return exc.stacktrace
    return "".join(traceback.format_exception(exc))


# --- the runtime -----------------------------------------------------------------------------


@dataclass(eq=False, kw_only=True, slots=True)
class _Flight:
    delivery: Delivery
    received_at: float  # epoch s
    lease_until: float  # monotonic
    task: asyncio.Task[None] | None = None
    settling: asyncio.Task[None] | None = None
    final: bool = False  # ack/release issued: no more lease extensions

    @property
    def born_at(self) -> float:
        return self.delivery.enqueued_at or self.received_at


class ListenerRuntime:
    """One running listener. :meth:`start` returns at once; the listener connects in the
    background (``degraded`` while it cannot) and runs until :meth:`stop`."""

    def __init__(
        self,
        definition: ListenerDefinition,
        *,
        invoker: Invoker,
        runs: RunWriter,
        metrics: ListenerMetrics,
        data_dir: Path,
        options: RuntimeOptions | None = None,
    ) -> None:
        self.definition = definition
        self._runs = runs
        self._metrics = metrics
        self._options = options or RuntimeOptions()
        self._health = Health(definition.name)
        self._close_quietly = functools.partial(
            close_quietly, timeout_s=self._options.op_timeout_s, listener=definition.name
        )
        self._ref = definition.ref
        ctx = ConnectorContext(listener=definition.name, data_dir=data_dir)
        self._decoder = Decoder(definition, ctx, fetch_timeout_s=self._options.fetch_timeout_s)
        self._source: Source = make_source(definition.source, ctx)
        self._sinks = Sinks(
            definition,
            ctx,
            self._health,
            open_timeout_s=self._options.open_timeout_s,
            publish_timeout_s=self._options.publish_timeout_s,
            close_quietly=self._close_quietly,
        )
        self._locations = tuple(redact_url(u) for u in definition.outputs)
        self._caller = Caller(definition, invoker, self._ref)
        self._acker: Coalescer[Delivery] = Coalescer(self._ack_now)
        self._flights: set[_Flight] = set()
        self._slot_freed = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._phase: Literal["starting", "running", "stopped"] = "starting"
        self._main: asyncio.Task[None] | None = None
        self._extender: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._stopping: asyncio.Task[None] | None = None
        metrics.track(lambda: len(self._flights), self._oldest_age_s)

    # --- lifecycle ---------------------------------------------------------------------------

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
        )

    async def start(self) -> None:
        """Begin connecting and receiving in the background. Not idempotent: call once."""
        if self._main is not None:
            raise RuntimeError(f"listener {self.name} was started already")
        self._main = asyncio.create_task(self._run(), name=f"listener:{self.name}")

    async def wait_for_state(self, *states: State, timeout_s: float = 10.0) -> State:
        """Wait until the listener is in one of ``states``; raises TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while self.state not in states:  # noqa: ASYNC110 (state is derived, not an event)
                await asyncio.sleep(0.02)
        return self.state

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
        self._slot_freed.set()
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
        tasks = {f.task for f in self._flights if f.task is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=deadline_s)

    async def _release_rest(self) -> None:
        """Interrupt what is still working and hand it back to the broker at once."""
        working = [f for f in self._flights if f.settling is None]
        for flight in working:
            if flight.task is not None:
                flight.task.cancel()
        await asyncio.gather(*(f.task for f in working if f.task), return_exceptions=True)
        await asyncio.shield(asyncio.gather(*(self._release(f, 0.0) for f in working)))
        self._flights.difference_update(working)
        settling = {f.settling for f in self._flights if f.settling is not None}
        if settling:
            await asyncio.wait(settling, timeout=self._options.op_timeout_s)

    async def _close(self) -> None:
        if self._extender is not None:
            self._extender.cancel()
            await asyncio.gather(self._extender, return_exceptions=True)
        await self._caller.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._acker.drain(), self._options.op_timeout_s)
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
            self._extender = asyncio.create_task(self._extend_leases(), name=f"leases:{self.name}")
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

    # --- receive -----------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        wait_s = self._options.receive_wait_s
        while not self._stop_requested.is_set():
            free = self.definition.max_in_flight - len(self._flights)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                deliveries = await asyncio.wait_for(
                    self._source.receive(free, wait_s), wait_s + self._options.op_timeout_s
                )
            except (ConnectorError, TimeoutError) as exc:
                await self._reconnect_source(exc)
                continue
            self._health.clear("source")
            if deliveries:
                await self._admit(deliveries)

    async def _admit(self, deliveries: list[Delivery]) -> None:
        self._metrics.received(len(deliveries))
        duplicates = await self._duplicates(deliveries)
        now, lease_s = time.time(), self._source.lease_s or 0.0
        for delivery in deliveries:
            flight = _Flight(
                delivery=delivery, received_at=now, lease_until=time.monotonic() + lease_s
            )
            self._flights.add(flight)
            if delivery.message_id in duplicates:
                flight.settling = asyncio.create_task(self._settle(flight, Skipped("duplicate")))
                flight.task = flight.settling
            else:
                flight.task = asyncio.create_task(self._handle(flight))

    async def _duplicates(self, deliveries: list[Delivery]) -> set[str]:
        try:
            ids = [d.message_id for d in deliveries]
            return await self._runs.store.succeeded(self.name, ids)
        except Exception as exc:  # the store is down: run them; settling will notice
            self._health.error("store", f"dedupe check failed: {exc}")
            return set()

    async def _handle(self, flight: _Flight) -> None:
        try:
            outcome = await self._work(flight.delivery, self._ref, apply_filter=True)
        except asyncio.CancelledError:
            if self._stop_requested.is_set():
                return  # stop() releases it
            raise
        flight.settling = asyncio.create_task(self._settle(flight, outcome))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(flight.settling)

    # --- decode, filter, invoke ----------------------------------------------------------------

    async def _work(
        self, delivery: Delivery, ref: ModelRef, *, apply_filter: bool
    ) -> Invoked | Skipped | Failed:
        """Decode, filter, fetch and invoke; a failure is the outcome of its stage."""
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
            with self._running_note(delivery):
                stage = "fetch"
                if self._decoder.must_fetch(items):
                    # Only then: a gather and a wait_for cost two tasks per message.
                    items = await self._decoder.fetch(items)
                stage = "invoke"
                return await self._caller.invoke(delivery, items, ref)
        except Exception as exc:
            return Failed.of(exc, stage)

    @contextlib.contextmanager
    def _running_note(self, delivery: Delivery) -> Iterator[None]:
        """Record ``running`` only for work that takes a while: most messages settle sooner,
        and their final record is then the only write on the hot path."""
        loop = asyncio.get_running_loop()
        note = loop.call_later(RUNNING_NOTE_AFTER_S, self._note, delivery, "running")
        try:
            yield
        finally:
            note.cancel()

    # --- publish and settle -----------------------------------------------------------------------

    async def _settle(self, flight: _Flight, outcome: Invoked | Outcome) -> None:
        """Publish, decide, and carry the decision out. Runs shielded from cancellation."""
        delivery = flight.delivery
        try:
            if isinstance(outcome, Invoked):
                outcome = await self._sinks.publish(delivery, outcome)
            if isinstance(outcome, Failed):
                self._health.error(outcome.stage, f"{_error_type(outcome.error)}: {outcome.error}")
            decision = decide(outcome, delivery.attempt, self.definition.retry)
            try:
                await self._carry_out(flight, outcome, decision)
            except Exception as exc:
                if not isinstance(exc, ConnectorError):  # sinks report their own problems
                    self._health.problem("store", f"could not settle {delivery.message_id}: {exc}")
                unsettled = Unsettled(exc)
                await self._carry_out(
                    flight, unsettled, decide(unsettled, delivery.attempt, self.definition.retry)
                )
        except Exception as exc:  # even the fallback failed: the lease will lapse
            log.warning(
                "listener %s: %s left to its lease: %s", self.name, delivery.message_id, exc
            )
        finally:
            self._flights.discard(flight)
            self._slot_freed.set()

    async def _carry_out(self, flight: _Flight, outcome: Outcome, decision: Decision) -> None:
        """Make the outcome durable, then tell the broker; counters move once it is done."""
        delivery = flight.delivery
        if isinstance(decision, Release):
            self._note(delivery, "retrying", outcome)
            await self._release(flight, decision.delay_s)
            self._metrics.retried()
            return
        if isinstance(decision, DeadLetterDecision):
            assert isinstance(outcome, Failed)
            await self._dead_letter(delivery, outcome)
            self._health.clear("store")
        elif isinstance(outcome, Succeeded):
            await self._runs.record(self._record(delivery, "succeeded", outcome))
            self._health.clear("store")
        flight.final = True
        await self._ack(delivery)
        if isinstance(decision, DeadLetterDecision):
            self._metrics.dead_lettered()
        elif isinstance(outcome, Succeeded):
            self._metrics.succeeded()
        elif isinstance(outcome, Skipped):
            self._metrics.skipped(outcome.reason)
        self._metrics.settled(time.time() - flight.born_at)

    async def _dead_letter(self, delivery: Delivery, failed: Failed) -> None:
        """Store the dead letter and publish it to the error sink; both before the ack."""
        error = failed.error
        info = DeadLetterInfo(
            id=dead_letter_id(self.name, delivery.message_id),
            listener=self.name,
            model=self.definition.model,
            version=failed.version,
            error_type=_error_type(error),
            error_message=str(error),
            stacktrace=_stacktrace(error),
            permanent=failed.permanent,
            attempts=delivery.attempt,
        )
        letter = DeadLetter(
            id=info.id,
            listener=self.name,
            message_id=delivery.message_id,
            body=delivery.body,
            attributes=dict(delivery.attributes),
            error_type=info.error_type,
            error_message=info.error_message,
            stacktrace=info.stacktrace,
            permanent=info.permanent,
            attempts=info.attempts,
            model=info.model,
            version=info.version,
            created_at=time.time(),
        )
        await self._runs.dead_letter(self._record(delivery, "dead_lettered", failed), letter)
        if self._sinks.error is not None:
            try:
                await self._sinks.publish_to(
                    self._sinks.error, [encode_dead_letter(delivery, info)]
                )
            except ConnectorError as exc:
                if not exc.permanent:
                    raise  # retried: the error sink will take it later
                # It never will (too big for it...): the stored dead letter must do.
                self._health.error("error sink", f"refused dead letter {info.id} for good: {exc}")
        log.warning(
            "listener %s dead-lettered %s after %d attempt(s): %s",
            self.name,
            delivery.message_id,
            delivery.attempt,
            info.error_message,
        )

    def _record(
        self, delivery: Delivery, status: RunStatus, outcome: Outcome | None = None
    ) -> RunRecord:
        now = time.time()
        final = status in ("succeeded", "dead_lettered")
        record = RunRecord(
            listener=self.name,
            message_id=delivery.message_id,
            status=status,
            attempts=delivery.attempt,
            first_received_at=now,
            updated_at=now,
            finished_at=now if final else None,
        )
        if isinstance(outcome, Succeeded):
            return replace(
                record,
                version=outcome.version,
                output_id=outcome.outputs[0].id if outcome.outputs else None,
                result_location=self._locations,
                duration_ms=outcome.duration_ms,
            )
        if isinstance(outcome, Failed | Unsettled):
            failed = (
                outcome if isinstance(outcome, Failed) else Failed(outcome.error, "settle", False)
            )
            error = {
                "type": _error_type(failed.error),
                "message": str(failed.error),
                "permanent": failed.permanent,
                "stage": failed.stage,
            }
            return replace(record, version=failed.version, error=error)
        return record

    def _note(self, delivery: Delivery, status: RunStatus, outcome: Outcome | None = None) -> None:
        self._runs.note(self._record(delivery, status, outcome))

    async def _ack(self, delivery: Delivery) -> None:
        """Ack (group-committed with other acks). A failed ack is not an error for the
        message: its outcome is durable, and its redelivery will be recognised."""
        try:
            await self._acker.submit(delivery)
        except Exception as exc:
            self._health.problem("source", f"ack failed: {exc}")

    async def _ack_now(self, deliveries: list[Delivery]) -> None:
        await asyncio.wait_for(self._source.ack(deliveries), self._options.op_timeout_s)

    async def _release(self, flight: _Flight, delay_s: float) -> None:
        flight.final = True
        try:
            await asyncio.wait_for(
                self._source.release(flight.delivery, delay_s), self._options.op_timeout_s
            )
        except Exception as exc:  # its lease will lapse and the broker will hand it out again
            self._health.problem("source", f"release failed: {exc}")

    # --- leases ------------------------------------------------------------------------------

    async def _extend_leases(self) -> None:
        lease_s = self._source.lease_s
        if lease_s is None or not self.definition.extend_lease:
            return
        interval_s = lease_s / 3
        while True:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            due = [
                f for f in self._flights if not f.final and f.lease_until - now <= 2 * interval_s
            ]
            if not due:
                continue
            try:
                await asyncio.wait_for(
                    self._source.extend([f.delivery for f in due], lease_s),
                    self._options.op_timeout_s,
                )
            except Exception as exc:
                self._health.error("source", f"lease extension failed: {exc}")
                continue
            for flight in due:
                flight.lease_until = now + lease_s

    def _oldest_age_s(self) -> float:
        if not self._flights:
            return 0.0
        return max(0.0, time.time() - min(f.born_at for f in self._flights))

    # --- redrive -----------------------------------------------------------------------------

    async def open_sinks(self) -> None:
        """Open the output sinks (for a redrive while the listener is not running)."""
        for slot in self._sinks.outputs:
            await asyncio.wait_for(slot.sink.open(), self._options.open_timeout_s)

    async def close_sinks(self) -> None:
        """Close what :meth:`open_sinks` opened (and object readers a redrive used)."""
        for slot in self._sinks.outputs:
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
        outcome: Invoked | Outcome = await self._work(delivery, ref, apply_filter=False)
        if isinstance(outcome, Invoked):
            outcome = await self._sinks.publish(delivery, outcome)
        if isinstance(outcome, Failed | Unsettled):
            raise outcome.error
        record = self._record(delivery, "succeeded", outcome)
        await self._runs.record(record)
        return record
