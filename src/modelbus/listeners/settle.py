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

Settling runs in a task of its own, shielded by the caller, so that a stop cannot interrupt
it halfway; if even carrying out the fallback fails, the delivery is left to its lease, which
lapses, and the broker hands it out again. Acks are group-committed across deliveries; a
failed ack or release marks the source as a problem but is not the message's failure.
Counters move only once a delivery is settled.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable
from dataclasses import replace

from modelbus.connectors import redact_url
from modelbus.connectors.base import Delivery, Source
from modelbus.errors import ConnectorError, InvocationError
from modelbus.listeners.coalescer import Coalescer
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.envelopes import DeadLetterInfo, dead_letter_id, encode_dead_letter
from modelbus.listeners.health import Health
from modelbus.listeners.leases import Flight
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
from modelbus.listeners.receive import InFlight
from modelbus.listeners.records import RunWriter
from modelbus.store.runs import DeadLetter, RunRecord, RunStatus

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

    async def settle(self, flight: Flight, outcome: Invoked | Outcome) -> None:
        """Publish, decide, and carry the decision out; never raises. Run it in a task of its
        own, shielded from cancellation; ``flight`` leaves ``in_flight`` when it is done."""
        delivery = flight.delivery
        retry = self._definition.retry
        try:
            if isinstance(outcome, Invoked):
                outcome = await self._sinks.publish(delivery, outcome)
            if isinstance(outcome, Failed):
                self._health.error(outcome.stage, f"{_error_type(outcome.error)}: {outcome.error}")
            decision = decide(outcome, delivery.attempt, retry)
            try:
                await self._carry_out(flight, outcome, decision)
            except Exception as exc:
                if not isinstance(exc, ConnectorError):  # sinks report their own problems
                    self._health.problem("store", f"could not settle {delivery.message_id}: {exc}")
                unsettled = Unsettled(exc)
                await self._carry_out(flight, unsettled, decide(unsettled, delivery.attempt, retry))
        except Exception as exc:  # even the fallback failed: the lease will lapse
            log.warning(
                "listener %s: %s left to its lease: %s",
                self._definition.name,
                delivery.message_id,
                exc,
            )
        finally:
            self._in_flight.remove(flight)

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
        final = status in ("succeeded", "dead_lettered")
        record = RunRecord(
            listener=self._definition.name,
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
            return replace(record, version=failed.version, error=_error(failed))
        return record

    def note(self, delivery: Delivery, status: RunStatus, outcome: Outcome | None = None) -> None:
        """Write :meth:`record` behind (nobody waits on an intermediate state)."""
        self._runs.note(self.record(delivery, status, outcome))

    async def _carry_out(self, flight: Flight, outcome: Outcome, decision: Decision) -> None:
        """Make the outcome durable, then tell the broker; counters move once it is done."""
        delivery = flight.delivery
        if isinstance(decision, Release):
            self.note(delivery, "retrying", outcome)
            await self.release(flight, decision.delay_s)
            self._metrics.retried()
            return
        if isinstance(decision, DeadLetterDecision):
            assert isinstance(outcome, Failed)
            await self._dead_letter(delivery, outcome)
            self._health.clear("store")
        elif isinstance(outcome, Succeeded):
            await self._runs.record(self.record(delivery, "succeeded", outcome))
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
        info, letter = self._letter(delivery, failed)
        await self._runs.dead_letter(self.record(delivery, "dead_lettered", failed), letter)
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
        )
        return info, letter

    async def _ack(self, delivery: Delivery) -> None:
        """Ack (group-committed with other acks). A failed ack is not an error for the
        message: its outcome is durable, and its redelivery will be recognised."""
        try:
            await self._acker.submit(delivery)
        except Exception as exc:
            self._health.problem("source", f"ack failed: {exc}")

    async def _ack_now(self, deliveries: list[Delivery]) -> None:
        await asyncio.wait_for(self._source.ack(deliveries), self._op_timeout_s)


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
