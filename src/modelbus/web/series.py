"""Stored samples (:mod:`modelbus.store.history`) as per-step series summed over nodes.

A :class:`Grid` cuts the window into steps of ``step_s`` seconds, ending at the last step
every node has sampled in full. A sample's counts, which are of its interval ``(since, at]``,
are spread over the steps that interval covers, in proportion, so a steady stream shows a
steady rate whatever the sampling interval and the step. Then, per step:

* counters are summed over nodes and divided by the step: a rate per second;
* gauges (in flight) are each node's last reading in the step, summed over nodes; the backlog
  is the largest reading (every node reads the same broker figure of a shared source);
* latency percentiles are read from the summed histogram buckets with linear interpolation
  inside the bucket (as Prometheus' ``histogram_quantile``); none for a step with no message.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelbus.store.history import Sample

__all__ = [
    "LISTENER_COUNTERS",
    "VERSION_COUNTERS",
    "Grid",
    "ListenerSeries",
    "VersionSeries",
    "listener_series",
    "quantile",
    "version_series",
]

LISTENER_COUNTERS = ("received", "succeeded", "retried", "dead_lettered")
VERSION_COUNTERS = ("invocations", "errors", "duration_s")


@dataclass(frozen=True, kw_only=True, slots=True)
class Grid:
    """``points`` steps of ``step_s`` seconds ending at ``end``: step ``i`` is the interval
    ``(end - (points - i) * step_s, end - (points - i - 1) * step_s]``."""

    end: float
    step_s: float
    points: int

    @classmethod
    def last(cls, *, now: float, window_s: float, step_s: float, lag_s: float) -> Grid:
        """The steps of the last ``window_s`` seconds whose samples are all written: ending
        at a multiple of ``step_s`` at least ``lag_s`` (the sampling interval) before
        ``now``."""
        if step_s <= 0 or window_s < step_s:
            raise ValueError("the step must be positive and at most the window")
        end = math.floor((now - lag_s) / step_s) * step_s
        return cls(end=end, step_s=step_s, points=math.ceil(window_s / step_s))

    @property
    def start(self) -> float:
        return self.end - self.points * self.step_s

    def times(self) -> list[float]:
        """The end of every step (where a chart puts its point)."""
        return [self.start + (i + 1) * self.step_s for i in range(self.points)]

    def index(self, t: float) -> int | None:
        """The step holding time ``t``, or None outside the grid."""
        if not self.start < t <= self.end:
            return None
        return min(self.points - 1, math.ceil((t - self.start) / self.step_s) - 1)

    def spread(self, since: float, at: float) -> Iterator[tuple[int, float]]:
        """(step, fraction of ``(since, at]`` in it) for every step the interval covers."""
        if at <= since:
            i = self.index(at)
            if i is not None:
                yield i, 1.0
            return
        first = max(0, math.floor((since - self.start) / self.step_s))
        last = min(self.points - 1, math.ceil((at - self.start) / self.step_s) - 1)
        for i in range(first, last + 1):
            low = self.start + i * self.step_s
            overlap = min(at, low + self.step_s) - max(since, low)
            if overlap > 0:
                yield i, overlap / (at - since)


def quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The ``q`` quantile (0..1) of a histogram: ``counts[k]`` observations up to
    ``bounds[k]`` (and above ``bounds[k-1]``), then ``counts[len(bounds)]`` above the last
    bound. Linear inside a bucket, from 0 for the first; the last bound for the overflow
    bucket. None when there is no observation."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for k, count in enumerate(counts):
        if count > 0 and seen + count >= rank:
            if k >= len(bounds):
                return bounds[-1]
            lower = bounds[k - 1] if k > 0 else 0.0
            return lower + (bounds[k] - lower) * max(0.0, rank - seen) / count
        seen += count
    return bounds[-1]


@dataclass(frozen=True, kw_only=True, slots=True)
class ListenerSeries:
    """One listener's figures per step, summed over nodes (see the module docstring);
    ``totals`` are the counts of the whole window and its latency percentiles."""

    times: list[float]
    rates: dict[str, list[float]]  # counter -> per second, per step
    in_flight: list[float]
    backlog: list[float | None]
    latency_p50_s: list[float | None]
    latency_p99_s: list[float | None]
    totals: dict[str, float | None]


@dataclass(frozen=True, kw_only=True, slots=True)
class VersionSeries:
    """One model version's figures per step, summed over nodes: inputs run and errors per
    second, and the mean runner time per input (None for a step with no input)."""

    version: str
    calls_per_s: list[float]
    errors_per_s: list[float]
    duration_mean_s: list[float | None]
    totals: dict[str, float | None]


class _Sums:
    """Counters and histogram buckets summed over nodes per step, and each node's last
    gauges per step."""

    def __init__(self, grid: Grid, counters: Sequence[str]) -> None:
        self.grid = grid
        self.counters = {name: [0.0] * grid.points for name in counters}
        self.buckets: list[list[float]] = [[] for _ in range(grid.points)]
        self.gauges: dict[tuple[str, int], tuple[float, Mapping[str, Any]]] = {}

    def add(self, sample: Sample, histogram: str | None = None) -> None:
        figures = sample.figures
        for i, fraction in self.grid.spread(sample.since, sample.at):
            for name, steps in self.counters.items():
                steps[i] += _number(figures.get(name)) * fraction
            counts = figures.get(histogram) if histogram else None
            if isinstance(counts, list):
                _add_into(self.buckets[i], [_number(c) * fraction for c in counts])
        step = self.grid.index(sample.at)
        if step is not None:
            held = self.gauges.get((sample.node, step))
            if held is None or held[0] <= sample.at:
                self.gauges[(sample.node, step)] = (sample.at, figures)

    def rate(self, name: str) -> list[float]:
        return [round(v / self.grid.step_s, 6) for v in self.counters[name]]

    def total(self, name: str) -> float:
        return round(sum(self.counters[name]), 6)

    def per_step(self) -> list[list[Mapping[str, Any]]]:
        """Each step's gauge readings, one per node that sampled in it."""
        steps: list[list[Mapping[str, Any]]] = [[] for _ in range(self.grid.points)]
        for (_, i), (_, figures) in self.gauges.items():
            steps[i].append(figures)
        return steps


def listener_series(
    samples: Sequence[Sample], grid: Grid, latency_bounds_s: Sequence[float]
) -> ListenerSeries:
    """A listener's samples (every node's) as per-step series on ``grid``; the histogram
    ``latency_buckets`` of each sample has the buckets of ``latency_bounds_s``."""
    sums = _Sums(grid, LISTENER_COUNTERS)
    for sample in samples:
        sums.add(sample, histogram="latency_buckets")
    readings = sums.per_step()
    window: list[float] = []
    for counts in sums.buckets:
        _add_into(window, counts)
    totals: dict[str, float | None] = {name: sums.total(name) for name in LISTENER_COUNTERS}
    totals["latency_p50_s"] = _rounded(quantile(0.5, latency_bounds_s, window))
    totals["latency_p99_s"] = _rounded(quantile(0.99, latency_bounds_s, window))
    return ListenerSeries(
        times=grid.times(),
        rates={name: sums.rate(name) for name in LISTENER_COUNTERS},
        in_flight=[sum(_number(r.get("in_flight")) for r in step) for step in readings],
        backlog=[_largest(r.get("backlog") for r in step) for step in readings],
        latency_p50_s=[_rounded(quantile(0.5, latency_bounds_s, c)) for c in sums.buckets],
        latency_p99_s=[_rounded(quantile(0.99, latency_bounds_s, c)) for c in sums.buckets],
        totals=totals,
    )


def version_series(samples: Sequence[Sample], grid: Grid) -> list[VersionSeries]:
    """A model's samples (every version, every node) as per-step series on ``grid``, one
    per version, highest first."""
    parts: dict[str, list[Sample]] = {}
    for sample in samples:
        parts.setdefault(sample.part, []).append(sample)
    return [_version(part, parts[part], grid) for part in sorted(parts, key=_version_key)]


def _version(part: str, samples: Sequence[Sample], grid: Grid) -> VersionSeries:
    sums = _Sums(grid, VERSION_COUNTERS)
    for sample in samples:
        sums.add(sample)
    calls, busy = sums.counters["invocations"], sums.counters["duration_s"]
    calls_total = sums.total("invocations")
    return VersionSeries(
        version=part,
        calls_per_s=sums.rate("invocations"),
        errors_per_s=sums.rate("errors"),
        duration_mean_s=[
            _rounded(b / c) if c > 0 else None for b, c in zip(busy, calls, strict=True)
        ],
        totals={
            "calls": calls_total,
            "errors": sums.total("errors"),
            "duration_mean_s": _rounded(sum(busy) / calls_total) if calls_total > 0 else None,
        },
    )


def _version_key(part: str) -> tuple[int, tuple[int, ...], str]:
    """Versions highest first, then builds called by hash."""
    try:
        numbers = tuple(-int(n) for n in part.split("."))
    except ValueError:
        return (1, (), part)
    return (0, numbers, part)


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return 0.0


def _largest(values: Iterator[Any]) -> float | None:
    read = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return max(read) if read else None


def _add_into(total: list[float], counts: Sequence[float]) -> None:
    if len(total) < len(counts):
        total.extend([0.0] * (len(counts) - len(total)))
    for k, count in enumerate(counts):
        total[k] += count


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
