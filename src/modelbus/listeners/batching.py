"""Adaptive batching: inputs of concurrent deliveries grouped into ``invoke_batch`` calls.

:class:`Batcher` is used by the invoke stage when a listener's ``batch.max_batch_size`` is
over 1. It adds no latency to an idle listener beyond ``max_wait_ms``; each input still gets
its own result or its own error, so each delivery keeps its own outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from modelbus.errors import InvocationError
from modelbus.runtime.invocation import Payload, Result

__all__ = ["Batcher"]


class Batcher:
    """Collects inputs into ``invoke_batch`` calls: up to ``max_size``, waiting at most
    ``max_wait_ms`` after the first (0: whatever arrived in the same loop iteration)."""

    def __init__(
        self,
        invoke: Callable[[list[Payload]], Awaitable[list[Result | Exception]]],
        max_size: int,
        max_wait_ms: int,
    ) -> None:
        self._invoke = invoke
        self._max_size = max_size
        self._max_wait_s = max_wait_ms / 1000
        self._pending: list[tuple[Payload, asyncio.Future[Result]]] = []
        self._timer: asyncio.Handle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, payload: Payload) -> Result:
        """The result for ``payload``; raises its InvocationError (or the batch's error)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((payload, future))
        if len(self._pending) >= self._max_size:
            self._flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._max_wait_s, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = [(p, f) for p, f in self._pending[: self._max_size] if not f.done()]
        del self._pending[: self._max_size]
        if self._pending and self._timer is None:
            self._timer = asyncio.get_running_loop().call_soon(self._flush)
        if batch:
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[Payload, asyncio.Future[Result]]]) -> None:
        try:
            results: list[Result | Exception] = await self._invoke([p for p, _ in batch])
        except Exception as exc:
            results = [exc] * len(batch)
        if len(results) != len(batch):
            error = InvocationError(
                f"invoke_batch returned {len(results)} results for {len(batch)} inputs"
            )
            results = [error] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def close(self) -> None:
        """Cancel waiting inputs and running batches."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
