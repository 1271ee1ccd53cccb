"""The invoke stage: a delivery's inputs run on the model, each with its correlation.

:meth:`Caller.invoke` calls the model once per input, concurrently, through the
:class:`~modelbus.runtime.invocation.Invoker` (or through the :class:`Batcher` when the listener
batches and the call is for its own model reference; a redrive to another version never
is). Every input must succeed for the delivery to be :class:`Invoked`; otherwise the delivery
fails with the first permanent error if there is one, else the first error, so that one input
the model will never take dead-letters the delivery at once. Cancellation is never swallowed.
"""

from __future__ import annotations

import asyncio

from modelbus.client.refs import ModelRef
from modelbus.connectors.base import Delivery
from modelbus.listeners.batching import Batcher
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.envelopes import Correlation, Item
from modelbus.listeners.outcomes import Failed, Invoked, is_permanent
from modelbus.runtime.invocation import CallOptions, Invoker, Payload, Result

__all__ = ["Caller"]


class Caller:
    """Calls the model of the listener ``definition`` through ``invoker``; ``ref`` is the
    listener's own (parsed) model reference, the only one batched. :meth:`close` cancels what
    the batcher still holds."""

    def __init__(self, definition: ListenerDefinition, invoker: Invoker, ref: ModelRef) -> None:
        self._definition = definition
        self._invoker = invoker
        self._ref = ref
        batch = definition.batch
        self._batcher = (
            Batcher(self._invoke_batch, batch.max_batch_size, batch.max_wait_ms)
            if batch.max_batch_size > 1
            else None
        )

    async def invoke(
        self, delivery: Delivery, items: list[Item], ref: ModelRef
    ) -> Invoked | Failed:
        """Run every input of ``delivery`` on ``ref`` (decoded, fetched ``items``)."""
        calls = [self._call(delivery, item, ref) for item in items]
        results = await asyncio.gather(*calls, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for error in errors:
                if isinstance(error, asyncio.CancelledError):
                    raise error
            worst = next((e for e in errors if is_permanent(e)), errors[0])
            return Failed.of(worst, "invoke")
        return Invoked([r for r in results if not isinstance(r, BaseException)])

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()

    async def _call(
        self, delivery: Delivery, item: Item, ref: ModelRef
    ) -> tuple[Item, Correlation, Result]:
        definition = self._definition
        correlation = Correlation.of(
            listener=definition.name, model=definition.model, delivery=delivery, item=item
        )
        assert item.payload is not None
        if self._batcher is not None and ref == self._ref:
            result = await self._batcher.submit(item.payload)
        else:
            options = CallOptions(
                timeout_s=definition.timeout_s, attributes=correlation.attributes()
            )
            result = await self._invoker.invoke(ref, item.payload, options)
        return item, correlation, result

    async def _invoke_batch(self, payloads: list[Payload]) -> list[Result | Exception]:
        options = CallOptions(
            timeout_s=self._definition.timeout_s, attributes={"listener": self._definition.name}
        )
        return await self._invoker.invoke_batch(self._ref, payloads, options)
