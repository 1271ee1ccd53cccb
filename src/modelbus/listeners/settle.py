"""The settle stage: an outcome made durable, then the broker told (DESIGN.md, delivery contract).

:meth:`Settler.settle` publishes what was invoked (:mod:`modelbus.listeners.publish`), asks
:func:`~modelbus.listeners.outcomes.decide` (the one place that decides) what to do, and
carries the decision out, in this order:

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

A batch settles together, each delivery by its own decision: the results of the batch go in
one group publish per sink, its run records and dead letters in one transaction, its acks in
one call (group-committed with other batches'); releases go one by one. A delivery whose
outcome could not be made durable is released alone (``Unsettled``), its neighbours settle.

Settling runs in a task of its own, shielded by the caller, so that a stop cannot interrupt
it halfway; if even carrying out the fallback fails, the deliveries are left to their lease,
which lapses, and the broker hands them out again. A failed ack or release marks the source
as a problem but is not the message's failure. Counters move only once a batch is settled.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Sequence
from typing import Any

from modelbus.connectors import redact_url
from modelbus.connectors.base import Delivery, OutMessage, Source
from modelbus.errors import ConnectorError, InvocationError
from modelbus.listeners.coalescer import Coalescer
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.envelopes import (
    DeadLetterInfo,
    announced_object,
    dead_letter_id,
    encode_dead_letter,
)
from modelbus.listeners.health import Health
from modelbus.listeners.leases import Flight
from modelbus.listeners.metrics import ListenerMetrics
from modelbus.listeners.outcomes import (
    Ack,
    Busy,
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
from modelbus.listeners.receive import InFlight
from modelbus.listeners.records import RunWriter
from modelbus.runtime import telemetry
from modelbus.store.runs import DeadLetter, RunRecord, RunStatus, RunWrite

__all__ = ["Settler"]

# One logger for the runtime of a listener, whichever of its modules speaks.
log = logging.getLogger("modelbus.listeners.lifecycle")


class Settler:
    """Settles the deliveries of the listener ``definition`` received from ``source``, and
    writes their run records through ``runs``."""

    def __init__(
        self,
        definition: ListenerDefinition,
        *,
        source: Source,
        sinks: Sinks,
        runs: RunWriter,
        metrics: ListenerMetrics,
        health: Health,
        in_flight: InFlight,
        op_timeout_s: float,
    ) -> None:
        self._definition = definition
        self._source = source
        self._sinks = sinks
        self._runs = runs
        self._metrics = metrics
        self._health = health
        self._in_flight = in_flight
        self._op_timeout_s = op_timeout_s
        self._locations = tuple(redact_url(u) for u in definition.outputs)
        self._acker: Coalescer[Delivery] = Coalescer(self._ack_now)

    async def settle(self, batch: Sequence[tuple[Flight, Invoked | Outcome]]) -> None:
        """Publish, decide, and carry the decisions out for a batch of deliveries, each
        keeping its own outcome; never raises. Run it in a task of its own, shielded from
        cancellation; the flights leave ``in_flight`` when it is done."""
        flights = [flight for flight, _ in batch]
        decided: list[tuple[Flight, Outcome, Decision]] = []
        try:
            publishing_ns = time.time_ns()
            outcomes = await self._published(batch)
            if telemetry.enabled:
                _mark([f for (f, o) in batch if isinstance(o, Invoked)], "publish", publishing_ns)
            retry = self._definition.retry
            decided = [
                (flight, outcome, decide(outcome, flight.delivery.attempt, retry))
                for flight, outcome in zip(flights, outcomes, strict=True)
            ]
            settling_ns = time.time_ns()
            await self._carry_out(decided)
            if telemetry.enabled:
                _mark(flights, "settle", settling_ns)
        except Exception as exc:  # a bug, or even the fallback failed: the leases will lapse
            log.warning(
                "listener %s: %d deliveries left to their lease: %s",
                self._definition.name,
                len(flights),
                exc,
            )
        finally:
            if telemetry.enabled:
                _finish_traces(flights, decided)
            for flight in flights:
                self._in_flight.remove(flight)

    async def _published(self, batch: Sequence[tuple[Flight, Invoked | Outcome]]) -> list[Outcome]:
        """The outcomes, with the invoked deliveries' results published (one group publish
        per sink for the batch); failures are reported as the listener's last error."""
        invoked = [(f.delivery, o) for f, o in batch if isinstance(o, Invoked)]
        published = iter(await self._sinks.publish_all(invoked) if invoked else [])
        outcomes = [next(published) if isinstance(o, Invoked) else o for _, o in batch]
        for outcome in outcomes:
            if isinstance(outcome, Failed):
                self._health.error(outcome.stage, f"{_error_type(outcome.error)}: {outcome.error}")
        return outcomes

    async def release(self, flight: Flight, delay_s: float) -> None:
        """Hand ``flight`` back to the broker, to be delivered again after ``delay_s``. A
        failure is the source's problem: the lease lapses and the broker hands it out anyway."""
        flight.final = True
        try:
            await asyncio.wait_for(
                self._source.release(flight.delivery, delay_s), self._op_timeout_s
            )
        except Exception as exc:  # its lease will lapse and the broker will hand it out again
            self._health.problem("source", f"release failed: {exc}")

    def drain_acks(self) -> Awaitable[None]:
        """Await it: done once every ack submitted so far was sent (or failed)."""
        return self._acker.drain()

    def record(
        self, delivery: Delivery, status: RunStatus, outcome: Outcome | None = None
    ) -> RunRecord:
        """The run record of ``delivery`` saying ``status``, with what ``outcome`` tells."""
        now = time.time()
        extra: dict[str, Any] = {}
        if isinstance(outcome, Succeeded):
            extra = {
                "version": outcome.version,
                "output_id": outcome.outputs[0].id if outcome.outputs else None,
                "result_location": self._locations,
                "duration_ms": outcome.duration_ms,
            }
        elif isinstance(outcome, Failed | Unsettled):
            failed = (
                outcome if isinstance(outcome, Failed) else Failed(outcome.error, "settle", False)
            )
            extra = {"version": failed.version, "error": _error(failed)}
        return RunRecord(  # one record per message: built once, not copied with replace()
            listener=self._definition.name,
            message_id=delivery.message_id,
            status=status,
            attempts=delivery.attempt,
            first_received_at=now,
            updated_at=now,
            finished_at=now if status in ("succeeded", "dead_lettered") else None,
            object_key=announced_object(delivery),
            **extra,
        )

    def note(self, delivery: Delivery, status: RunStatus, outcome: Outcome | None = None) -> None:
        """Write :meth:`record` behind (nobody waits on an intermediate state)."""
        self._runs.note(self.record(delivery, status, outcome))

    async def _carry_out(self, decided: list[tuple[Flight, Outcome, Decision]]) -> None:
        """Make the outcomes durable (one transaction for the batch), then tell the broker
        (one ack for the batch; releases one by one); counters move once it is done. A
        delivery whose outcome could not be made durable is released instead (Unsettled)."""
        durable = [i for i, (_, o, d) in enumerate(decided) if _needs_record(o, d)]
        errors = await self._make_durable([decided[i] for i in durable])
        retry = self._definition.retry
        for i, error in zip(durable, errors, strict=True):
            if error is not None:
                flight = decided[i][0]
                unsettled = Unsettled(error)
                decided[i] = (flight, unsettled, decide(unsettled, flight.delivery.attempt, retry))
        releases = [(f, o, d) for f, o, d in decided if isinstance(d, Release)]
        acks = [f for f, _, d in decided if not isinstance(d, Release)]
        for flight, outcome, _ in releases:
            if not isinstance(outcome, Busy):  # the run it waits for writes its own record
                self.note(flight.delivery, "retrying", outcome)
        for flight in acks:
            flight.final = True
        await asyncio.gather(
            self._ack([f.delivery for f in acks]),
            *(self.release(f, d.delay_s) for f, _, d in releases if isinstance(d, Release)),
        )
        self._count(decided)

    def _count(self, decided: list[tuple[Flight, Outcome, Decision]]) -> None:
        metrics, now = self._metrics, time.time()
        succeeded = dead = retried = 0
        for flight, outcome, decision in decided:
            if isinstance(decision, Release):
                retried += 1
                continue
            if isinstance(decision, DeadLetterDecision):
                dead += 1
            elif isinstance(outcome, Succeeded):
                succeeded += 1
            elif isinstance(outcome, Skipped):
                metrics.skipped(outcome.reason)
            metrics.settled(now - flight.born_at)
        if succeeded:
            metrics.succeeded(succeeded)
        if dead:
            metrics.dead_lettered(dead)
        if retried:
            metrics.retried(retried)

    async def _make_durable(
        self, entries: list[tuple[Flight, Outcome, Decision]]
    ) -> list[Exception | None]:
        """Store the run records and dead letters of ``entries`` in one transaction, then
        publish the dead letters to the error sink; one error (or None) per entry."""
        if not entries:
            return []
        writes: list[RunWrite] = []
        letters: list[tuple[int, OutMessage]] = []
        infos: list[tuple[Delivery, DeadLetterInfo]] = []
        for i, (flight, outcome, decision) in enumerate(entries):
            delivery = flight.delivery
            if isinstance(decision, DeadLetterDecision):
                assert isinstance(outcome, Failed)
                info, letter = self._letter(delivery, outcome)
                writes += [letter, self.record(delivery, "dead_lettered", outcome)]
                letters.append((i, encode_dead_letter(delivery, info)))
                infos.append((delivery, info))
            else:
                writes.append(self.record(delivery, "succeeded", outcome))
        try:
            await self._runs.write(writes)
        except Exception as exc:
            self._health.problem("store", f"could not settle {len(entries)} deliveries: {exc}")
            return [exc] * len(entries)
        self._health.clear("store")
        errors: list[Exception | None] = [None] * len(entries)
        if letters and self._sinks.error is not None:
            outcomes = await self._sinks.error.publisher.submit_all([[m] for _, m in letters])
            for (i, message), error in zip(letters, outcomes, strict=True):
                if isinstance(error, ConnectorError) and error.permanent:
                    # It never will take it (too big...): the stored dead letter must do.
                    self._health.error(
                        "error sink", f"refused dead letter {message.id} for good: {error}"
                    )
                elif error is not None:
                    errors[i] = error  # released: the error sink will take it later
        for (i, _), (delivery, info) in zip(letters, infos, strict=True):
            if errors[i] is None:
                self._log_dead_letter(delivery, info)
        return errors

    def _log_dead_letter(self, delivery: Delivery, info: DeadLetterInfo) -> None:
        log.warning(
            "listener %s dead-lettered %s after %d attempt(s): %s",
            self._definition.name,
            delivery.message_id,
            delivery.attempt,
            info.error_message,
        )

    def _letter(self, delivery: Delivery, failed: Failed) -> tuple[DeadLetterInfo, DeadLetter]:
        """What the error sink gets, and what the store keeps, for ``delivery``."""
        name, error = self._definition.name, failed.error
        info = DeadLetterInfo(
            id=dead_letter_id(name, delivery.message_id),
            listener=name,
            model=self._definition.model,
            version=failed.version,
            error_type=_error_type(error),
            error_message=str(error),
            stacktrace=_stacktrace(error),
            permanent=failed.permanent,
            attempts=delivery.attempt,
            traceparent=_traceparent(delivery),
        )
        letter = DeadLetter(
            id=info.id,
            listener=name,
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
            object_key=announced_object(delivery),
        )
        return info, letter

    async def _ack(self, deliveries: list[Delivery]) -> None:
        """Ack (group-committed with other batches' acks). A failed ack is not an error for
        the messages: their outcomes are durable, and a redelivery will be recognised."""
        for error in await self._acker.submit_all(deliveries):
            if error is not None:
                self._health.problem("source", f"ack failed: {error}")
                return

    async def _ack_now(self, deliveries: list[Delivery]) -> None:
        await asyncio.wait_for(self._source.ack(deliveries), self._op_timeout_s)


def _needs_record(outcome: Outcome, decision: Decision) -> bool:
    """Whether settling ``outcome`` writes a final run record (and maybe a dead letter)."""
    return isinstance(decision, DeadLetterDecision) or (
        isinstance(decision, Ack) and isinstance(outcome, Succeeded)
    )


def _error_type(exc: BaseException) -> str:
    """The error type a run record, a dead letter and the last error show for ``exc``."""
    return exc.error_type if isinstance(exc, InvocationError) else type(exc).__name__


def _stacktrace(exc: BaseException) -> str:
    if isinstance(exc, InvocationError) and exc.stacktrace:
        return exc.stacktrace
    return "".join(traceback.format_exception(exc))


def _error(failed: Failed) -> dict[str, object]:
    return {
        "type": _error_type(failed.error),
        "message": str(failed.error),
        "permanent": failed.permanent,
        "stage": failed.stage,
    }


# How a trace's ``modelbus.outcome`` names a delivery's decision.
_OUTCOME_NAMES = {"Ack": "acked", "Release": "released", "DeadLetterDecision": "dead_lettered"}


def _traceparent(delivery: Delivery) -> str | None:
    trace = telemetry.trace_of(delivery)
    return trace.traceparent() if trace is not None else None


def _mark(flights: Sequence[Flight], stage: str, start_ns: int) -> None:
    end_ns = time.time_ns()
    for flight in flights:
        if flight.trace is not None:
            flight.trace.mark(stage, start_ns, end_ns)


def _finish_traces(
    flights: Sequence[Flight], decided: Sequence[tuple[Flight, Outcome, Decision]]
) -> None:
    """End each flight's ``process`` span, saying what became of it."""
    how = {id(f): (o, d) for f, o, d in decided}
    for flight in flights:
        trace, flight.trace = flight.trace, None
        if trace is None:
            continue
        telemetry.forget(flight.delivery)
        outcome, decision = how.get(id(flight), (None, None))
        error = outcome.error if isinstance(outcome, Failed | Unsettled) else None
        kind = type(decision).__name__ if decision is not None else "left to its lease"
        try:
            trace.finish(_OUTCOME_NAMES.get(kind, kind), error)
        except Exception as exc:  # tracing must never fail a delivery
            log.warning("listener trace not exported: %s", exc)
