"""The figure history: the store's samples, and how they become per-step series summed over
nodes (rates spread over the steps an interval covers, gauges, latency percentiles)."""

from __future__ import annotations

import pytest

from modelbus.listeners.metrics import LATENCY_BUCKETS_S, Metrics
from modelbus.store.database import Database
from modelbus.store.history import HistoryStore, Sample
from modelbus.web.series import Grid, listener_series, quantile, version_series

BUCKETS = len(LATENCY_BUCKETS_S) + 1


def latencies(**at_bound: int) -> list[int]:
    """A latency histogram: ``b0_1=3`` puts 3 observations in the bucket up to 0.1 s."""
    counts = [0] * BUCKETS
    for name, count in at_bound.items():
        counts[LATENCY_BUCKETS_S.index(float(name[1:].replace("_", ".")))] += count
    return counts


def sample(node: str, since: float, at: float, **figures: object) -> Sample:
    return Sample(node=node, kind="listener", name="l", since=since, at=at, figures=figures)


def test_the_grid_ends_at_the_last_step_every_node_sampled() -> None:
    grid = Grid.last(now=1000.0, window_s=60, step_s=10, lag_s=5)
    assert (grid.start, grid.end, grid.points) == (930.0, 990.0, 6)
    assert grid.times() == [940.0, 950.0, 960.0, 970.0, 980.0, 990.0]
    assert grid.index(930.0) is None and grid.index(930.5) == 0
    assert grid.index(940.0) == 0 and grid.index(990.0) == 5 and grid.index(991) is None
    with pytest.raises(ValueError):
        Grid.last(now=1000.0, window_s=5, step_s=10, lag_s=5)


def test_an_interval_is_spread_over_the_steps_it_covers() -> None:
    grid = Grid(end=100.0, step_s=10.0, points=10)
    assert list(grid.spread(35.0, 45.0)) == [(3, 0.5), (4, 0.5)]
    assert list(grid.spread(40.0, 50.0)) == [(4, 1.0)]
    # Outside the grid on one side: only the part inside counts.
    assert list(grid.spread(95.0, 105.0)) == [(9, 0.5)]
    assert list(grid.spread(-5.0, 5.0)) == [(0, 0.5)]
    assert list(grid.spread(100.0, 110.0)) == []


def test_quantiles_interpolate_inside_the_bucket() -> None:
    bounds = (0.1, 0.2, 0.5)
    assert quantile(0.5, bounds, [0, 0, 0, 0]) is None
    assert quantile(0.5, bounds, [10, 0, 0, 0]) == pytest.approx(0.05)
    assert quantile(0.5, bounds, [5, 5, 0, 0]) == pytest.approx(0.1)
    assert quantile(0.75, bounds, [5, 5, 0, 0]) == pytest.approx(0.15)
    assert quantile(0.99, bounds, [50, 49, 1, 0]) == pytest.approx(0.2)
    assert quantile(0.99, bounds, [1, 0, 0, 99]) == 0.5  # above the last bound: the last bound


def test_a_steady_stream_sampled_off_the_steps_shows_a_steady_rate() -> None:
    # 4 per second, sampled every 3 s by one node and every 7 s by another, 10-s steps.
    grid = Grid(end=120.0, step_s=10.0, points=12)
    samples = [sample("a", t - 3, t, received=12) for t in range(3, 124, 3)]
    samples += [sample("b", t - 7, t, received=28) for t in range(7, 127, 7)]
    rates = listener_series(samples, grid, LATENCY_BUCKETS_S).rates["received"]
    assert rates[1:] == pytest.approx([8.0] * 11)


def test_nodes_are_summed_gauges_are_last_readings_and_latency_percentiles() -> None:
    grid = Grid(end=20.0, step_s=10.0, points=2)
    samples = [
        sample(
            "a",
            0,
            5,
            received=10,
            succeeded=10,
            in_flight=9,
            backlog=4,
            latency_buckets=latencies(b0_1=10),
        ),
        sample(
            "a",
            5,
            10,
            received=10,
            succeeded=8,
            retried=2,
            in_flight=2,
            backlog=3,
            latency_buckets=latencies(b0_1=8),
        ),
        sample(
            "b",
            0,
            10,
            received=20,
            succeeded=19,
            dead_lettered=1,
            in_flight=5,
            backlog=None,
            latency_buckets=latencies(b0_1=10, b1=10),
        ),
    ]
    series = listener_series(samples, grid, LATENCY_BUCKETS_S)
    assert series.times == [10.0, 20.0]
    assert series.rates["received"] == [4.0, 0.0]
    assert series.rates["succeeded"] == [3.7, 0.0]
    assert series.rates["retried"] == [0.2, 0.0]
    assert series.rates["dead_lettered"] == [0.1, 0.0]
    assert series.in_flight == [7.0, 0.0]  # a's last reading (2) + b's (5)
    assert series.backlog == [3.0, None]  # the largest of the readings; none in step 2
    # 28 at most 0.1 s (linear inside (0.05, 0.1]) and 10 in (0.5, 1]: p50 in the first.
    assert series.latency_p50_s[0] == pytest.approx(0.05 + 0.05 * 19 / 28, abs=1e-6)
    assert series.latency_p99_s[0] == pytest.approx(0.5 + 0.5 * (0.99 * 38 - 28) / 10, abs=1e-6)
    assert series.latency_p50_s[1] is None
    assert series.totals["received"] == 40 and series.totals["dead_lettered"] == 1


def test_versions_are_series_of_their_own_highest_first() -> None:
    grid = Grid(end=10.0, step_s=10.0, points=1)
    samples = [
        Sample(node="a", kind="version", name="o/m", part=part, since=0, at=10, figures=f)
        for part, f in (
            ("1.2.0", {"invocations": 20, "errors": 2, "duration_s": 1.0}),
            ("1.10.0", {"invocations": 10, "errors": 0, "duration_s": 3.0}),
            ("#abcdef012345", {"invocations": 1, "errors": 1, "duration_s": 0.0}),
        )
    ]
    found = version_series(samples, grid)
    assert [v.version for v in found] == ["1.10.0", "1.2.0", "#abcdef012345"]
    assert found[1].calls_per_s == [2.0] and found[1].errors_per_s == [0.2]
    assert found[0].duration_mean_s == [0.3]
    assert found[1].totals == {"calls": 20, "errors": 2, "duration_mean_s": 0.05}


def test_latency_counts_are_per_bucket() -> None:
    from prometheus_client import CollectorRegistry

    metrics = Metrics(CollectorRegistry())
    listener = metrics.listener("l")
    for latency_s in (0.001, 0.005, 0.3, 0.3, 4000.0):
        listener.settled(latency_s)
    counts = metrics.latency_counts("l")
    assert counts[0] == 2  # up to 0.005 s, the bound included
    assert counts[LATENCY_BUCKETS_S.index(0.5)] == 2
    assert counts[-1] == 1  # above the last bound
    assert metrics.latency_counts("unknown") == (0,) * BUCKETS


async def test_samples_are_stored_read_back_by_series_and_pruned(db: Database) -> None:
    store = HistoryStore(db)
    await store.record(
        [
            sample("a", 0, 5, received=3, latency_buckets=[1, 2]),
            sample("b", 0, 6, received=4),
            Sample(
                node="a",
                kind="version",
                name="o/m",
                part="1.0.0",
                since=0,
                at=5,
                figures={"invocations": 3},
            ),
            sample("a", 5, 3600, received=1),
        ]
    )
    found = await store.read("listener", "l", after=0)
    assert [(s.node, s.at, s.figures["received"]) for s in found] == [
        ("a", 5, 3),
        ("b", 6, 4),
        ("a", 3600, 1),
    ]
    assert found[0].figures["latency_buckets"] == [1, 2]
    assert [s.at for s in await store.read("listener", "l", after=5)] == [6, 3600]
    [version] = await store.read("version", "o/m", after=0)
    assert version.part == "1.0.0"
    assert await store.prune(before=100) == 3
    assert [s.at for s in await store.read("listener", "l", after=0)] == [3600]
