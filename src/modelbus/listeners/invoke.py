"""The invoke stage: a batch of deliveries' inputs run on the model, each with its correlation.

:meth:`Caller.invoke_all` sends every input of a batch of deliveries in **one**
``invoke_batch`` call (the runner pool splits it over its runners, many inputs per runner
call, and batches adaptively with what other callers send meanwhile; ``batch.max_batch_size``
caps the inputs of one runner call). With ``batch.max_wait_ms`` over 0 the inputs first wait in
the :class:`~modelbus.listeners.batching.Batcher` for more to arrive (only for the listener's
own model reference; a redrive to another version never waits).

Every input carries its own context to the model: its message's id, attempt, trace context
and origin, and the object's bucket and key (:meth:`Correlation.attributes`), plus the
incoming CloudEvent's ``type``/``source``/``id`` and the message's user attributes.

Each delivery keeps its own outcome, told as soon as it is known (typically once per runner
call), so a slow input holds back only the deliveries that came back in its call. A delivery
is :class:`Invoked` when every one of its inputs succeeded; otherwise it fails with its first
permanent error if there is one, else its first error, so that one input the model will never
take dead-letters its delivery at once and never its neighbours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from modelbus.client.refs import ModelRef
from modelbus.connectors.base import Delivery
from modelbus.errors import NotFound, VersionSpecError
from modelbus.listeners.batching import Batcher
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.envelopes import Correlation, Item
from modelbus.listeners.health import Health
from modelbus.listeners.outcomes import Failed, Invoked, is_permanent
from modelbus.runtime import telemetry
from modelbus.runtime.invocation import CallOptions, Invoker, OnResults, Payload, Result

__all__ = ["Caller"]

Work = tuple[Delivery, list[Item]]
# Told the outcomes of some deliveries of a batch: their indexes in the work, one outcome each.
Done = Callable[[list[int], list[Invoked | Failed]], None]


class Caller:
    """Calls the model of the listener ``definition`` through ``invoker``; ``ref`` is the
    listener's own (parsed) model reference, the only one the batcher holds back. :meth:`close`
    cancels what the batcher still holds."""

    def __init__(
        self,
        definition: ListenerDefinition,
        invoker: Invoker,
        ref: ModelRef,
        health: Health | None = None,
    ) -> None:
        self._definition = definition
        self._invoker = invoker
        self._ref = ref
        self._health = health
        batch = definition.batch
        self._options = CallOptions(
            timeout_s=definition.timeout_s,
            attributes={"listener": definition.name},
            max_batch_size=batch.max_batch_size,
        )
        self._batcher = (
            Batcher(self._invoke, batch.max_batch_size, batch.max_wait_ms)
            if batch.max_wait_ms > 0
            else None
        )

    async def invoke_all(self, work: Sequence[Work], ref: ModelRef, done: Done) -> None:
        """Run the (decoded, fetched) inputs of every delivery in ``work`` on ``ref``, and
        tell ``done`` the outcomes of deliveries as soon as they are known: the indexes in
        ``work`` and one outcome each, typically once per runner call. Every delivery is told
        exactly once before this returns."""
        calls = _Calls(self._definition, work, done)
        try:
            if self._batcher is not None and ref == self._ref:
                results = await self._batcher.submit_all(calls.payloads, calls.attributes)
            else:
                results = await self._invoke(calls.payloads, calls.attributes, ref, calls.ran)
        except Exception as exc:  # resolution: unknown model or version, bad spec
            unresolved = isinstance(exc, NotFound | VersionSpecError)
            if self._health is not None and unresolved and ref == self._ref:
                # the model was deleted or its spec matches no version any more: say so
                self._health.problem("model", f"{ref} resolves to no version: {exc}")
            calls.fail(Failed.of(exc, "invoke"))
            return
        if self._health is not None and ref == self._ref:
            self._health.clear("model")
        calls.finish(results)

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()

    async def _invoke(
        self,
        payloads: list[Payload],
        attributes: list[Mapping[str, str]],
        ref: ModelRef | None = None,
        on_results: OnResults | None = None,
    ) -> list[Result | Exception]:
        return await self._invoker.invoke_batch(
            ref or self._ref,
            payloads,
            self._options,
            attributes=attributes,
            on_results=on_results,
        )


class _Calls:
    """The inputs of a batch's deliveries, and which delivery each result completes."""

    def __init__(self, definition: ListenerDefinition, work: Sequence[Work], done: Done) -> None:
        self._done = done
        self._items = [items for _, items in work]
        self._correlations = [
            [
                Correlation.of(
                    listener=definition.name,
                    model=definition.model,
                    delivery=d,
                    item=item,
                    traceparent=_traceparent(d),
                )
                for item in items
            ]
            for d, items in work
        ]
        self.payloads: list[Payload] = []
        self.attributes: list[Mapping[str, str]] = []
        self._owner: list[int] = []  # input -> its delivery's index in work
        self._first: list[int] = []  # delivery -> index of its first input
        for d, (items, correlated) in enumerate(zip(self._items, self._correlations, strict=True)):
            self._first.append(len(self.payloads))
            for item, correlation in zip(items, correlated, strict=True):
                assert item.payload is not None
                self.payloads.append(item.payload)
                self.attributes.append(_context(item, correlation))
                self._owner.append(d)
        self._results: list[Result | Exception | None] = [None] * len(self.payloads)
        self._remaining = [len(items) for items in self._items]

    def ran(self, indexes: Sequence[int], results: Sequence[Result | Exception]) -> None:
        """Some inputs are done: tell ``done`` about the deliveries they complete."""
        finished: list[int] = []
        for i, result in zip(indexes, results, strict=True):
            if self._results[i] is not None:
                continue
            self._results[i] = result
            owner = self._owner[i]
            self._remaining[owner] -= 1
            if self._remaining[owner] == 0:
                finished.append(owner)
        if finished:
            self._done(finished, [self._outcome(d) for d in finished])

    def finish(self, results: Sequence[Result | Exception]) -> None:
        """The call returned: whatever was not told yet is told now."""
        untold = [i for i, r in enumerate(self._results) if r is None]
        if untold:
            self.ran(untold, [results[i] for i in untold])

    def fail(self, failure: Failed) -> None:
        """The call failed as a whole: every delivery not told yet fails with it."""
        pending = [d for d, left in enumerate(self._remaining) if left > 0]
        for d in pending:
            self._remaining[d] = 0
        if pending:
            self._done(pending, [failure] * len(pending))

    def _outcome(self, d: int) -> Invoked | Failed:
        first = self._first[d]
        items = self._items[d]
        results = [r for r in self._results[first : first + len(items)] if r is not None]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            worst = next((e for e in errors if is_permanent(e)), errors[0])
            return Failed.of(worst, "invoke")
        return Invoked(
            [
                (item, correlation, result)
                for item, correlation, result in zip(
                    items, self._correlations[d], results, strict=True
                )
                if isinstance(result, Result)
            ]
        )


def _context(item: Item, correlation: Correlation) -> dict[str, str]:
    """What the model's context gets for ``item``: the message's own attributes (user
    attributes, CloudEvent ``type``/``source``/``id`` as ``ce-*``...), then the correlation."""
    return {**item.attributes, **correlation.attributes()}


def _traceparent(delivery: Delivery) -> str | None:
    """The delivery's span, as its results' ``traceparent`` (tracing on), else None."""
    if not telemetry.enabled:
        return None
    trace = telemetry.trace_of(delivery)
    return trace.traceparent() if trace is not None else None
