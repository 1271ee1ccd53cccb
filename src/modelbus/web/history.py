"""The last hour of figures, for the console's charts and ``GET /v1/.../history``.

:class:`HistoryRecorder` runs in every process that runs listeners or runner pools (the serve
process and each worker process, each a node of the store). Every ``interval_s`` (the
heartbeat interval, 5 s by default) it turns this process's counters into what they counted
since its previous sample, and writes (:mod:`modelbus.store.history`):

* per listener: received, succeeded, retried, dead-lettered, the end-to-end latencies by
  bucket (:data:`~modelbus.listeners.metrics.LATENCY_BUCKETS_S`), and the gauges in flight and
  backlog; a listener running here is sampled every time, another only when it counted
  something;
* per model version run by this process's pools: inputs run, errors and runner busy time,
  when it ran something.

It deletes every node's samples older than ``keep_s`` (an hour) about once a minute; a
sample that cannot be written is logged, and the next one covers its interval too.

:class:`History` reads them back summed over every node (:mod:`modelbus.web.series`), so a
page opened late, on any node, shows the same last hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelbus.listeners.manager import ListenerManager
from modelbus.listeners.metrics import LATENCY_BUCKETS_S
from modelbus.runtime.metrics import VersionMetrics
from modelbus.store.history import HistoryStore, Sample, SeriesKind
from modelbus.web.series import (
    LISTENER_COUNTERS,
    Grid,
    ListenerSeries,
    VersionSeries,
    listener_series,
    version_series,
)

__all__ = ["DEFAULT_STEP_S", "HISTORY_WINDOW_S", "History", "HistoryRecorder"]

log = logging.getLogger(__name__)

HISTORY_WINDOW_S = 3600.0
DEFAULT_STEP_S = 10.0
# The steps the console chooses from: about 360 per window, never shorter than the sampling
# interval (a step without a sample would show its gauges as zero).
CONSOLE_STEPS_S = (1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0)
CONSOLE_POINTS = 360
PRUNE_INTERVAL_S = 60.0
ACTIVE_STATES = frozenset({"running", "degraded", "starting"})

Totals = dict[str, Any]  # figure -> count since this process started (a list: histogram)


class HistoryRecorder:
    """Samples this process's figures into ``store`` as node ``node`` (see the module
    docstring). ``listeners`` and ``versions`` are this process's listener manager and
    pool figures."""

    def __init__(
        self,
        store: HistoryStore,
        node: str,
        *,
        listeners: ListenerManager,
        versions: VersionMetrics,
        interval_s: float,
        keep_s: float = HISTORY_WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._node = node
        self._listeners = listeners
        self._versions = versions
        self._interval_s = interval_s
        self._keep_s = keep_s
        self._clock = clock
        self._since = clock()
        self._pruned_at = -1e18
        self._last: dict[tuple[SeriesKind, str, str], Totals] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Sample every interval, in the background, from now."""
        self._since = self._clock()
        self._task = asyncio.create_task(self._loop(), name="figure-history")

    async def stop(self) -> None:
        """Stop, after one last sample (what was counted since the previous one)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.sample()

    async def sample(self) -> None:
        """Write what was counted since the previous sample; errors are logged."""
        try:
            now = self._clock()
            samples = await self._listener_samples(now) + await self._version_samples(now)
            await self._store.record(samples)
            self._since = now
            if now - self._pruned_at >= PRUNE_INTERVAL_S:
                await self._store.prune(before=now - self._keep_s)
                self._pruned_at = now
        except Exception as exc:
            log.warning("could not record this process's figure history: %s", exc)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.sample()

    async def _listener_samples(self, now: float) -> list[Sample]:
        samples = []
        report = await self._listeners.node_report()
        for name, entry in report.items():
            counters = entry.get("counters") or {}
            totals: Totals = {figure: counters.get(figure, 0) for figure in LISTENER_COUNTERS}
            totals["latency_buckets"] = list(self._listeners.metrics.latency_counts(name))
            counted = self._counted(("listener", name, ""), totals)
            in_flight = _finite(counters.get("in_flight"))
            active = entry.get("state") in ACTIVE_STATES
            if not (active or in_flight or _anything(counted)):
                continue
            figures = {**counted, "in_flight": in_flight, "backlog": entry.get("backlog")}
            samples.append(self._sample("listener", name, "", now, figures))
        self._forget("listener", set(report))
        return samples

    async def _version_samples(self, now: float) -> list[Sample]:
        samples = []
        await self._versions.refresh()
        seen = set()
        for model, version, stats in self._versions.named():
            if not model:  # a build no model is known for (yet): no page to show it on
                continue
            part = version or f"#{stats.key[:12]}"
            seen.add(f"{model}\0{part}")
            totals: Totals = {
                "invocations": stats.invocations,
                "errors": stats.errors,
                "duration_s": stats.duration_s_total,
            }
            counted = self._counted(("version", model, part), totals)
            if _anything(counted):
                samples.append(self._sample("version", model, part, now, counted))
        for key in [k for k in self._last if k[0] == "version"]:
            if f"{key[1]}\0{key[2]}" not in seen:
                del self._last[key]
        return samples

    def _sample(
        self, kind: SeriesKind, name: str, part: str, now: float, figures: Mapping[str, Any]
    ) -> Sample:
        return Sample(
            node=self._node,
            kind=kind,
            name=name,
            part=part,
            since=self._since,
            at=now,
            figures=figures,
        )

    def _counted(self, key: tuple[SeriesKind, str, str], totals: Totals) -> Totals:
        """What ``totals`` counted since the previous sample of series ``key`` (the totals
        themselves when they went down: the counters started again)."""
        previous = self._last.get(key, {})
        self._last[key] = totals
        return {figure: _increase(previous.get(figure), now) for figure, now in totals.items()}

    def _forget(self, kind: SeriesKind, names: set[str]) -> None:
        for key in [k for k in self._last if k[0] == kind and k[1] not in names]:
            del self._last[key]


def _increase(before: Any, now: Any) -> Any:
    if isinstance(now, list):
        if not isinstance(before, list) or len(before) != len(now):
            return list(now)
        if any(n < b for n, b in zip(now, before, strict=True)):
            return list(now)
        return [n - b for n, b in zip(now, before, strict=True)]
    now_value = _finite(now)
    before_value = _finite(before)
    return now_value - before_value if now_value >= before_value else now_value


def _anything(counted: Mapping[str, Any]) -> bool:
    return any(sum(v) if isinstance(v, list) else v for v in counted.values())


def _finite(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return float(value)
    return 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelHistory:
    """A model's versions' series on one grid."""

    grid: Grid
    versions: Sequence[VersionSeries]


@dataclass(frozen=True, kw_only=True, slots=True)
class ListenerHistory:
    """A listener's series on one grid."""

    grid: Grid
    series: ListenerSeries


class History:
    """The figure history summed over nodes (see the module docstring); ``lag_s``: the
    sampling interval (a step is shown once every node has sampled it)."""

    def __init__(
        self, store: HistoryStore, *, lag_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._lag_s = lag_s
        self._clock = clock

    def grid(self, window_s: float = HISTORY_WINDOW_S, step_s: float = DEFAULT_STEP_S) -> Grid:
        """The steps of the last ``window_s`` seconds (at most an hour); raises ValueError
        for a step that is not positive or longer than the window."""
        window_s = min(window_s, HISTORY_WINDOW_S)
        return Grid.last(now=self._clock(), window_s=window_s, step_s=step_s, lag_s=self._lag_s)

    def step_for(self, window_s: float) -> float:
        """The console's step for a window: the shortest of :data:`CONSOLE_STEPS_S` giving
        at most about :data:`CONSOLE_POINTS` steps and no shorter than the sampling
        interval."""
        shortest = max(window_s / CONSOLE_POINTS, self._lag_s)
        return next((s for s in CONSOLE_STEPS_S if s >= shortest), CONSOLE_STEPS_S[-1])

    async def listener(self, name: str, grid: Grid) -> ListenerHistory:
        """Listener ``name``'s figures on ``grid``."""
        samples = await self._store.read("listener", name, after=grid.start)
        return ListenerHistory(grid=grid, series=listener_series(samples, grid, LATENCY_BUCKETS_S))

    async def model(self, model: str, grid: Grid) -> ModelHistory:
        """The figures of every version of ``model`` (``OWNER/NAME``) on ``grid``."""
        samples = await self._store.read("version", model, after=grid.start)
        return ModelHistory(grid=grid, versions=version_series(samples, grid))
