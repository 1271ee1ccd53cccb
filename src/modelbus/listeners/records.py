"""Run records and dead letters as the listener runtime writes them: group-committed.

Writes are on the hot path of every message, so concurrent writers share one transaction
(:class:`~modelbus.listeners.coalescer.Coalescer` over
:meth:`modelbus.store.runs.RunStore.write`). :meth:`RunWriter.record` returns once the
record is durable (the runtime settles only after that); :meth:`RunWriter.note` is
write-behind, for the intermediate states nobody waits on.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelbus.listeners.coalescer import Coalescer
from modelbus.store.runs import DeadLetter, RunRecord, RunStore, RunWrite

__all__ = ["RunWriter"]


class RunWriter:
    """Group-committed writes to ``store`` (reads go to ``store`` itself). Call
    :meth:`close` (or at least :meth:`flush`) before closing the store."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._writer: Coalescer[RunWrite] = Coalescer(store.write)

    async def record(self, record: RunRecord) -> None:
        """Write ``record`` and return once it is durable (group-committed)."""
        await self._writer.submit(record)

    async def write(self, items: Sequence[RunWrite]) -> None:
        """Write ``items`` (a batch's run records and dead letters) in one transaction with
        whatever else is written meanwhile; return once durable, else raise the error."""
        for outcome in await self._writer.submit_all(items):
            if outcome is not None:
                raise outcome

    def note(self, record: RunRecord) -> None:
        """Write ``record`` soon, without waiting (intermediate states)."""
        self._writer.submit_nowait(record)

    async def dead_letter(self, record: RunRecord, letter: DeadLetter) -> None:
        """Store ``letter`` (replacing an earlier one with its id) and the run record
        saying ``dead_lettered``; returns once both are durable."""
        await self.write([letter, record])

    async def flush(self) -> None:
        """Wait until every write submitted so far is durable (or failed)."""
        await self._writer.drain()
