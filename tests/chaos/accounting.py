"""Accounting for "nothing is lost": a downstream consumer that takes every result and dead
letter as it comes, and the tally that says where each input ended up.

    collector = Collector(ctx)
    async with collector.running(out_url, dead_url):
        ...                                   # inputs {"n": N, ...} flow through a listener
        await progress_to(count, collector.settled_count)
    tally = Tally.of("redis", inputs, collector)
    tally.check(expected_dead=refused)        # lost == 0, one outcome per input
    print(table([tally]))

Inputs are told apart by ``n`` in their body: a result's ``data.n`` (the e2e ``behave``
model echoes it) and a dead letter's untouched original body carry it back, whatever id the
broker gave the message. Results of one input must all carry one id (the deterministic
output id of listener + source message): a downstream that dedupes on it sees each input
once, which is what "duplicates are harmless" means.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelbus.connectors import ConnectorContext, make_source
from modelbus.connectors.base import Delivery
from modelbus.errors import ConnectorError

__all__ = ["STALL_S", "Collector", "Tally", "progress_to", "table"]

STALL_S = 45.0  # no input settled for this long: the rest is lost (or stuck)
OPEN_S = 60.0  # the collector's sources open within this


@dataclass
class Collector:
    """Takes results and dead letters off their queues (acking them) as they come, keeping
    reading through broker outages (it reconnects). Give it source URLs with a short lease
    where the broker has leases: what it held when a connection broke comes back after it."""

    ctx: ConnectorContext
    results: list[Delivery] = field(default_factory=list)
    letters: list[Delivery] = field(default_factory=list)
    arrived: dict[int, float] = field(default_factory=dict)  # n -> first result, monotonic
    # kept as deliveries come (at 100,000 inputs, parsing them all on every progress poll
    # would take the test's own event loop)
    _result_ns: set[int] = field(default_factory=set)
    _letter_ns: set[int] = field(default_factory=set)
    _settled: set[int] = field(default_factory=set)

    @contextlib.asynccontextmanager
    async def running(self, out_url: str, dead_url: str | None) -> AsyncIterator[None]:
        """Collect until the block ends; it starts once every source is open (MQTT keeps
        nothing for a subscription that does not exist yet)."""
        opened = [asyncio.Event() for _ in range(2 if dead_url else 1)]
        tasks = [asyncio.create_task(self._take(out_url, self.results, True, opened[0]))]
        if dead_url:
            tasks.append(asyncio.create_task(self._take(dead_url, self.letters, False, opened[1])))
        try:
            async with asyncio.timeout(OPEN_S):
                await asyncio.gather(*(event.wait() for event in opened))
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _take(
        self, url: str, into: list[Delivery], results: bool, opened: asyncio.Event
    ) -> None:
        while True:
            source = make_source(url, self.ctx)
            try:
                await source.open()
                opened.set()
                while True:
                    batch = await source.receive(50, 0.3)
                    into += batch  # seen, acked or not: what comes again counts as a duplicate
                    self._count(batch, results)
                    if batch:
                        await source.ack(batch)
            except ConnectorError:
                await asyncio.sleep(0.3)  # the broker is away: read on once it is back
            finally:
                with contextlib.suppress(Exception):
                    await source.close()

    def _count(self, batch: list[Delivery], results: bool) -> None:
        now = time.monotonic()
        for delivery in batch:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                if results:
                    n = result_n(delivery)
                    self._result_ns.add(n)
                    self.arrived.setdefault(n, now)
                else:
                    n = letter_n(delivery)
                    self._letter_ns.add(n)
                self._settled.add(n)

    def result_ns(self) -> set[int]:
        return set(self._result_ns)

    def letter_ns(self) -> set[int]:
        return set(self._letter_ns)

    def settled_count(self) -> int:
        return len(self._settled)


def result_n(delivery: Delivery) -> int:
    """The input number a result answers (CloudEvent ``data.n``)."""
    return int(json.loads(delivery.body)["data"]["n"])


def letter_n(delivery: Delivery) -> int:
    """The input number of a dead letter (its body is the original input)."""
    return int(json.loads(delivery.body)["n"])


async def progress_to(
    target: int, progress: Callable[[], int], *, stall_s: float = STALL_S
) -> bool:
    """Wait until ``progress()`` reaches ``target``; False once it stalls for ``stall_s``."""
    last, moved_at = progress(), time.monotonic()
    while last < target:
        await asyncio.sleep(0.05)
        now = progress()
        if now != last:
            last, moved_at = now, time.monotonic()
        elif time.monotonic() - moved_at > stall_s:
            return False
    return True


@dataclass(frozen=True, kw_only=True)
class Tally:
    """Where every input of one run ended up (one row of the accounting table)."""

    broker: str
    sent: int
    results: int
    unique_results: int
    dead_letters: int
    unique_dead_letters: int
    duplicates_suppressed: int  # deliveries a dedupe on the output id drops
    both: int  # inputs with a result AND a dead letter (must be 0)
    ids_per_input: int  # most distinct output ids for one input's source message (must be 1)
    producer_duplicates: int  # inputs the producer sent twice (two broker messages)
    lost: int
    seconds: float
    events: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        broker: str,
        sent: Sequence[int],
        collector: Collector,
        *,
        seconds: float,
        events: Sequence[str] = (),
    ) -> Tally:
        # A producer that retries a publish the broker had partly taken sends some inputs
        # twice: two broker messages, each rightly with its own output id. The listener's
        # promise is one output id per *source message*, checked per (input, message).
        ids: dict[tuple[int, str], set[str]] = defaultdict(set)
        sources: dict[int, set[str]] = defaultdict(set)
        for delivery in collector.results:
            event = json.loads(delivery.body)
            n, source = result_n(delivery), str(event.get("sourcemessageid"))
            ids[n, source].add(str(event["id"]))
            sources[n].add(source)
        results = Counter(result_n(d) for d in collector.results)
        letters = Counter(letter_n(d) for d in collector.letters)
        return cls(
            broker=broker,
            sent=len(sent),
            results=len(collector.results),
            unique_results=len(results),
            dead_letters=len(collector.letters),
            unique_dead_letters=len(letters),
            duplicates_suppressed=len(collector.results)
            - len(results)
            + len(collector.letters)
            - len(letters),
            both=len(set(results) & set(letters)),
            ids_per_input=max((len(v) for v in ids.values()), default=0),
            producer_duplicates=sum(1 for v in sources.values() if len(v) > 1),
            lost=len(set(sent) - set(results) - set(letters)),
            seconds=seconds,
            events=tuple(events),
        )

    def check(self, *, expected_dead: int) -> None:
        """Nothing lost, one outcome per input, duplicates all carrying one id."""
        assert self.lost == 0, self
        assert self.both == 0, self
        assert self.ids_per_input == 1, self
        assert self.unique_dead_letters == expected_dead, self
        assert self.unique_results + self.unique_dead_letters == self.sent, self


COLUMNS = (
    ("broker", "broker"),
    ("in", "sent"),
    ("results", "results"),
    ("unique", "unique_results"),
    ("dead letters", "unique_dead_letters"),
    ("dups suppressed", "duplicates_suppressed"),
    ("sent twice", "producer_duplicates"),
    ("lost", "lost"),
    ("s", "seconds"),
)


def table(tallies: Sequence[Tally], title: str = "accounting") -> str:
    """The tallies as a fixed-width text table (plus each run's fault timeline)."""
    rows = [[_cell(getattr(t, attr)) for _, attr in COLUMNS] for t in tallies]
    heads = [head for head, _ in COLUMNS]
    widths = [max(len(x) for x in column) for column in zip(heads, *rows, strict=False)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    out = [f"== {title}", line(heads), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    for tally in tallies:
        if tally.events:
            out.append(f"   {tally.broker}: " + "; ".join(tally.events))
    return "\n".join(out)


def _cell(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)
