"""The figure history: what each process counted between two of its samples, kept an hour.

Every process that runs listeners or runner pools (a serve node, a worker process) samples its
own figures every few seconds (:class:`modelbus.web.history.HistoryRecorder`) and writes one
:class:`Sample` per listener and per model version that did something: the counts of the
interval ``(since, at]`` (never totals, so a restarted process, which is a new node, needs no
reset handling) and the gauges at ``at``. Readers sum the samples of every node
(:mod:`modelbus.web.series`); a page opened late, or on another node, shows the same hour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import delete, insert, select

from modelbus.store import schema
from modelbus.store.database import Database

__all__ = ["HistoryStore", "Sample", "SeriesKind"]

SeriesKind = Literal["listener", "version"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Sample:
    """What node ``node`` counted in ``(since, at]`` for one series: a listener (``kind``
    ``listener``, ``name`` the listener) or a model version (``version``, ``name`` the model
    ``OWNER/NAME``, ``part`` the version). ``figures`` maps a figure's name to a number, or to
    a list of numbers (a histogram's buckets)."""

    node: str
    kind: SeriesKind
    name: str
    part: str = ""
    since: float
    at: float
    figures: Mapping[str, Any] = field(default_factory=dict)


class HistoryStore:
    """The ``figure_history`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, samples: Sequence[Sample]) -> None:
        """Write ``samples`` in one transaction (nothing for none)."""
        if not samples:
            return
        rows = [
            {
                "node": s.node,
                "kind": s.kind,
                "name": s.name,
                "part": s.part,
                "since": s.since,
                "at": s.at,
                "figures": dict(s.figures),
            }
            for s in samples
        ]
        async with self.db.write() as conn:
            await conn.execute(insert(schema.figure_history), rows)

    async def read(self, kind: SeriesKind, name: str, *, after: float) -> list[Sample]:
        """The samples of series ``kind``/``name`` (every part, every node) whose interval
        ends after ``after``, oldest first."""
        table = schema.figure_history
        query = (
            select(table)
            .where(table.c.kind == kind, table.c.name == name, table.c.at > after)
            .order_by(table.c.at)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Sample(
                node=row.node,
                kind=row.kind,
                name=row.name,
                part=row.part,
                since=row.since,
                at=row.at,
                figures=row.figures,
            )
            for row in rows
        ]

    async def prune(self, *, before: float) -> int:
        """Delete every node's samples that ended before ``before``; how many."""
        table = schema.figure_history
        async with self.db.write() as conn:
            done = await conn.execute(delete(table).where(table.c.at < before))
        return int(done.rowcount or 0)
