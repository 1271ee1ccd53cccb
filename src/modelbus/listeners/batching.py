"""Batching with a fixed wait: inputs of several batches grouped into one ``invoke_batch`` call.

The runner pool batches adaptively on its own (inputs that arrive while the runners are busy
go together in the next call; an idle runner takes an input at once), so a listener needs
nothing here by default. :class:`Batcher` serves listeners that set ``batch.max_wait_ms``
over 0: the first input then waits up to that long for more, up to ``max_batch_size``, before
the call goes. Each input still gets its own result or its own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from modelbus.errors import InvocationError
from modelbus.runtime.invocation import Payload, Result

__all__ = ["Batcher"]

Outcomes = list[Result | Exception]
Invoke = Callable[[list[Payload], list[Mapping[str, str]]], Awaitable[Outcomes]]


class _Group:
    __slots__ = ("attributes", "future", "payloads")

    def __init__(self, payloads: list[Payload], attributes: list[Mapping[str, str]]) -> None:
        self.payloads = payloads
        self.attributes = attributes
        self.future: asyncio.Future[Outcomes] = asyncio.get_running_loop().create_future()


class Batcher:
    """Collects inputs into ``invoke`` calls of about ``max_size`` inputs, waiting at most
    ``max_wait_ms`` after the first (whole groups: a group is never split)."""

    def __init__(self, invoke: Invoke, max_size: int, max_wait_ms: int) -> None:
        self._invoke = invoke
        self._max_size = max_size
        self._max_wait_s = max_wait_ms / 1000
        self._pending: list[_Group] = []
        self._count = 0
        self._timer: asyncio.Handle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def submit_all(
        self, payloads: list[Payload], attributes: list[Mapping[str, str]]
    ) -> Outcomes:
        """One Result or InvocationError per input, in order; raises the batch's error."""
        group = _Group(payloads, attributes)
        self._pending.append(group)
        self._count += len(payloads)
        if self._count >= self._max_size:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._max_wait_s, self._flush)
        return await group.future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        groups = [g for g in self._pending if not g.future.done()]
        self._pending.clear()
        self._count = 0
        if groups:
            task = asyncio.create_task(self._run(groups))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, groups: list[_Group]) -> None:
        payloads = [p for g in groups for p in g.payloads]
        attributes = [a for g in groups for a in g.attributes]
        try:
            results = await self._invoke(payloads, attributes)
        except Exception as exc:
            for group in groups:
                if not group.future.done():
                    group.future.set_exception(exc)
            return
        if len(results) != len(payloads):
            error = InvocationError(
                f"invoke_batch returned {len(results)} results for {len(payloads)} inputs"
            )
            results = [error] * len(payloads)
        start = 0
        for group in groups:
            mine = results[start : start + len(group.payloads)]
            start += len(group.payloads)
            if not group.future.done():
                group.future.set_result(mine)

    async def close(self) -> None:
        """Cancel waiting inputs and running batches."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for group in self._pending:
            group.future.cancel()
        self._pending.clear()
        self._count = 0
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
