"""The publish stage: results to every output sink, dead letters to the error sink.

Each sink sits in a :class:`SinkSlot` with a group publisher
(:class:`~modelbus.listeners.coalescer.Coalescer`): a batch's results, and what concurrent
batches publish to one sink meanwhile, go in one broker call (or one transaction).
:meth:`Sinks.publish_to` returns once the broker has the messages durably, and raises
otherwise:

* a step that runs past its timeout (``open_timeout_s``, ``publish_timeout_s``) raises that
  sink's transient :class:`ConnectorError`, never a bare TimeoutError;
* a sink that failed is marked ``sink URL`` in the listener's problems and, unless it refused
  for good, is closed and reopened before its next publish; it is cleared when one succeeds;
* if a sink refuses a group for good, each delivery's messages are tried alone, so that one
  message the broker will never take does not fail the others.

A result over an output sink's size limit (or the claim check's ``over_bytes``) goes to the
listener's claim check store first, and the sinks get a reference to it
(:mod:`modelbus.listeners.claimcheck`); without a claim check it fails its delivery for good.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from modelbus.connectors import ConnectorContext, make_sink, redact_url
from modelbus.connectors.base import Delivery, OutMessage, Sink
from modelbus.errors import ConnectorError
from modelbus.listeners.claimcheck import (
    CLAIM_CHECK_ATTRIBUTE,
    Reference,
    reference_result,
    stored_object,
)
from modelbus.listeners.coalescer import Coalescer
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.envelopes import Correlation, encode_result, event_time, output_id
from modelbus.listeners.health import Health
from modelbus.listeners.outcomes import Failed, Invoked, Succeeded
from modelbus.runtime.invocation import Result

__all__ = ["SinkSlot", "Sinks"]


@dataclass(eq=False, kw_only=True, slots=True)
class SinkSlot:
    """A sink, whether it needs reopening, and the group publisher in front of it."""

    url: str
    sink: Sink
    broken: bool = False
    publisher: Coalescer[Sequence[OutMessage]] = field(init=False)
    # the sink's size check, if it has one (connectors.base.Sink)
    refusal: Callable[[OutMessage], str | None] | None = field(init=False, default=None)


class Sinks:
    """The output sinks and the error sink of the listener ``definition``. Opening and
    closing them is the lifecycle's; ``close_quietly`` is how a broken one is closed."""

    def __init__(
        self,
        definition: ListenerDefinition,
        ctx: ConnectorContext,
        health: Health,
        *,
        open_timeout_s: float,
        publish_timeout_s: float,
        close_quietly: Callable[[Awaitable[None]], Awaitable[None]],
    ) -> None:
        self._definition = definition
        self._health = health
        self._open_timeout_s = open_timeout_s
        self._publish_timeout_s = publish_timeout_s
        self._close_quietly = close_quietly
        self.outputs = [self._slot(url, ctx) for url in definition.outputs]
        self.error = self._slot(definition.error_sink, ctx) if definition.error_sink else None
        check = definition.claim_check
        self.claims = self._slot(check.url, ctx) if check is not None else None
        self._over_bytes = check.over_bytes if check is not None else None

    def all(self) -> list[SinkSlot]:
        """The outputs, the error sink if there is one, the claim check store if any."""
        return [*self.publishing(), *([self.error] if self.error else [])]

    def publishing(self) -> list[SinkSlot]:
        """What a result is written to: the outputs, and the claim check store if any."""
        return [*self.outputs, *([self.claims] if self.claims else [])]

    async def publish(self, delivery: Delivery, invoked: Invoked) -> Succeeded | Failed:
        """Encode the results of ``delivery`` and publish them to every output sink."""
        (outcome,) = await self.publish_all([(delivery, invoked)])
        return outcome

    async def publish_all(
        self, invoked: Sequence[tuple[Delivery, Invoked]]
    ) -> list[Succeeded | Failed]:
        """Publish the results of a batch of deliveries: one group publish per output sink
        for the whole batch; each delivery keeps its own outcome (a message a sink refuses
        for good fails its own delivery alone)."""
        now = event_time()  # one event time for the batch: its results are made together
        groups = [self._encode(delivery, results, now) for delivery, results in invoked]
        errors: list[Exception | None] = [None] * len(groups)
        if self.claims is not None:
            errors = await self._claim_checked(self.claims, invoked, groups, now)
        errors = [e or self._refusal(g) for g, e in zip(groups, errors, strict=True)]
        # A delivery some sink refuses for good is published to none of them.
        sent = [[] if e is not None else g for g, e in zip(groups, errors, strict=True)]
        per_sink = await asyncio.gather(*(slot.publisher.submit_all(sent) for slot in self.outputs))
        for outcomes in per_sink:
            for i, error in enumerate(outcomes):
                if error is not None and errors[i] is None:
                    errors[i] = error
        return [
            _outcome(results, messages, error)
            for (_, results), messages, error in zip(invoked, groups, errors, strict=True)
        ]

    async def _claim_checked(
        self,
        store: SinkSlot,
        invoked: Sequence[tuple[Delivery, Invoked]],
        groups: list[list[OutMessage]],
        now: str,
    ) -> list[Exception | None]:
        """Store the results of ``groups`` too large for the sinks in the claim check
        ``store`` (one group write), replacing their messages with references; per
        delivery, the error storing one of its results, else None."""
        large = [
            (d, j)
            for d, group in enumerate(groups)
            for j, message in enumerate(group)
            if self._too_large(message)
        ]
        errors: list[Exception | None] = [None] * len(groups)
        if not large:
            return errors
        results = {(d, j): invoked[d][1].results[j] for d, j in large}
        objects = {place: stored_object(results[place][2]) for place in large}
        unique = list({o.id: o for o in objects.values()}.values())
        stored = await store.publisher.submit_all([[o] for o in unique])
        failed = {o.id: e for o, e in zip(unique, stored, strict=True) if e is not None}
        locate: Callable[[OutMessage], str] = getattr(store.sink, "location")  # noqa: B009
        for (d, j), stored_as in objects.items():
            if stored_as.id in failed:
                errors[d] = errors[d] or failed[stored_as.id]
                continue
            reference = Reference(
                url=locate(stored_as),
                size=len(stored_as.body),
                sha256=stored_as.id,
                content_type=stored_as.attributes["content-type"],
            )
            _, correlation, result = results[(d, j)]
            groups[d][j] = self._reference(groups[d][j], correlation, result, reference, now)
        return errors

    def _too_large(self, message: OutMessage) -> bool:
        """Whether ``message`` goes to the claim check store: over ``over_bytes``, or over
        an output sink's limit."""
        if self._over_bytes is not None and len(message.body) > self._over_bytes:
            return True
        return any(s.refusal is not None and s.refusal(message) for s in self.outputs)

    def _reference(
        self,
        message: OutMessage,
        correlation: Correlation,
        result: Result,
        reference: Reference,
        now: str,
    ) -> OutMessage:
        """The message published instead of ``message``: the reference, same id."""
        encoded = encode_result(
            correlation=correlation,
            result=reference_result(result, reference),
            id=message.id,
            mode=self._definition.output_mode,
            time=now,
        )
        attributes = {**encoded.attributes, CLAIM_CHECK_ATTRIBUTE: reference.url}
        return OutMessage(id=encoded.id, body=encoded.body, attributes=attributes, key=message.key)

    def _refusal(self, messages: Sequence[OutMessage]) -> ConnectorError | None:
        """The first output sink's refusal of one of ``messages`` (over its size limit),
        as a permanent error; None when every sink may take them all."""
        for slot in self.outputs:
            if slot.refusal is None:
                continue
            for message in messages:
                reason = slot.refusal(message)
                if reason is not None:
                    return ConnectorError(reason, permanent=True)
        return None

    async def publish_to(self, slot: SinkSlot, messages: Sequence[OutMessage]) -> None:
        """Publish durably, together with what other deliveries publish to the same sink
        meanwhile (one broker call, or one transaction, for many messages)."""
        await slot.publisher.submit(messages)

    def _encode(self, delivery: Delivery, invoked: Invoked, now: str) -> list[OutMessage]:
        name, mode = self._definition.name, self._definition.output_mode
        return [
            encode_result(
                correlation=correlation,
                result=result,
                id=output_id(name, delivery.message_id, item.index),
                mode=mode,
                time=now,
            )
            for item, correlation, result in invoked.results
        ]

    def _slot(self, url: str, ctx: ConnectorContext) -> SinkSlot:
        slot = SinkSlot(url=url, sink=make_sink(url, ctx))
        slot.publisher = Coalescer(functools.partial(self._publish_batches, slot))
        slot.refusal = getattr(slot.sink, "refusal", None)
        return slot

    async def _publish_batches(
        self, slot: SinkSlot, batches: list[Sequence[OutMessage]]
    ) -> list[Exception | None] | None:
        """Reopen a sink that failed before, then publish everything at once. If the sink
        refuses the lot for good, each delivery's messages are tried alone, so that one
        message the broker will never take does not dead-letter the others."""
        part = f"sink {redact_url(slot.url)}"
        try:
            if slot.broken:
                await self._close_quietly(slot.sink.close())
                await _within(slot.sink.open(), self._open_timeout_s, f"opening {part}")
                slot.broken = False
            messages = [m for batch in batches for m in batch]
            await self._publish_within(slot, messages)
        except ConnectorError as exc:
            if exc.permanent and len(batches) > 1:
                return [await self._publish_alone(slot, batch) for batch in batches]
            self._sink_failed(slot, part, exc)
            raise
        except Exception as exc:
            self._sink_failed(slot, part, exc)
            raise
        self._health.clear(part)
        return None

    async def _publish_alone(
        self, slot: SinkSlot, messages: Sequence[OutMessage]
    ) -> Exception | None:
        try:
            await self._publish_within(slot, messages)
        except Exception as exc:
            return exc
        return None

    async def _publish_within(self, slot: SinkSlot, messages: Sequence[OutMessage]) -> None:
        what = f"publishing to sink {redact_url(slot.url)}"
        await _within(slot.sink.publish(messages), self._publish_timeout_s, what)

    def _sink_failed(self, slot: SinkSlot, part: str, exc: Exception) -> None:
        slot.broken = not (isinstance(exc, ConnectorError) and exc.permanent)
        self._health.problem(part, str(exc) or type(exc).__name__)


def _outcome(
    invoked: Invoked, messages: list[OutMessage], error: Exception | None
) -> Succeeded | Failed:
    version = invoked.results[0][2].version
    if error is not None:
        failure = Failed.of(error, "publish")
        return Failed(failure.error, "publish", failure.permanent, version)
    duration_ms = sum(result.duration_ms for _, _, result in invoked.results)
    return Succeeded(messages, version, duration_ms)


async def _within(step: Awaitable[None], timeout_s: float, what: str) -> None:
    """Await a sink's ``step``; running past ``timeout_s`` is that sink's (transient)
    ConnectorError, not a bare TimeoutError that settling would blame on the store."""
    try:
        await asyncio.wait_for(step, timeout_s)
    except TimeoutError:
        raise ConnectorError(f"{what} did not finish within {timeout_s:g} s") from None
