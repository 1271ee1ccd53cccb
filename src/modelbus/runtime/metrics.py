"""Per-version figures of the runner pools, for the Prometheus registry of ``/metrics``:

==========================================  =========  ===========================
metric                                      type       labels
==========================================  =========  ===========================
``modelbus_version_invocations_total``      counter    model, version, build
``modelbus_version_errors_total``           counter    model, version, build
``modelbus_version_runner_calls_total``     counter    model, version, build
``modelbus_version_duration_seconds``       summary    model, version, build
``modelbus_version_runners``                gauge      model, version, build
``modelbus_version_runners_busy``           gauge      model, version, build
``modelbus_version_queued``                 gauge      model, version, build
==========================================  =========  ===========================

A pool runs one build; ``version`` is the highest version number pointing at that build
(empty for a build called by hash only). The duration summary's ``_sum`` is the runners'
busy time and its ``_count`` the inputs they ran, so ``rate(_sum) / rate(_count)`` is the
mean time per input, and ``invocations / runner_calls`` the mean inputs per runner call (the
pool batches inputs into calls). ``queued`` counts inputs waiting for a runner. Counters count
since this process started.

"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from modelbus.errors import NotFound
from modelbus.registry.catalog import Registry
from modelbus.runtime.pool import PoolManager, PoolStats

__all__ = ["LABELS", "VersionMetrics"]

LABELS = ("model", "version", "build")
# A build's version numbers rarely change; look them up again after this long.
LABELS_TTL_S = 60.0


class VersionMetrics(Collector):
    """Per-version pool figures for a Prometheus registry.

    Collecting is synchronous, and naming a pool's model and version needs the store: call
    :meth:`refresh` (async) before each exposition; pools it has not named yet are exposed
    with their build hash only."""

    def __init__(self, pools: PoolManager, registry: Registry) -> None:
        self._pools = pools
        self._registry = registry
        self._labels: dict[str, tuple[tuple[str, str], float]] = {}

    async def refresh(self) -> None:
        """Look up the model and version of every pool not named in the last minute."""
        now = time.monotonic()
        for pool in self._pools.pools():
            key = pool.spec.key
            known = self._labels.get(key)
            if known is not None and now - known[1] < LABELS_TTL_S:
                continue
            try:
                build = await self._registry.get_build(key)
            except NotFound:
                names = ("", "")
            else:
                names = (f"{build.owner}/{build.name}", build.versions[0] if build.versions else "")
            self._labels[key] = (names, now)

    def named(self) -> list[tuple[str, str, PoolStats]]:
        """(model ``OWNER/NAME``, version, figures) of every pool, as of the last
        :meth:`refresh` (``""`` for what it has not named, or a build with no version)."""
        named = []
        for pool in self._pools.pools():
            stats = pool.stats()
            (model, version), _ = self._labels.get(stats.key, (("", ""), 0.0))
            named.append((model, version, stats))
        return named

    def collect(self) -> Iterator[Metric]:
        """The families, one sample per pool (see the module docstring)."""
        invocations = CounterMetricFamily(
            "modelbus_version_invocations", "Inputs run by the version's runners.", labels=LABELS
        )
        errors = CounterMetricFamily(
            "modelbus_version_errors", "Inputs that ended in an error.", labels=LABELS
        )
        calls = CounterMetricFamily(
            "modelbus_version_runner_calls",
            "Calls to the version's runners (each carries one or more inputs).",
            labels=LABELS,
        )
        duration = SummaryMetricFamily(
            "modelbus_version_duration_seconds",
            "Runner busy time (sum) over inputs run (count).",
            labels=LABELS,
        )
        runners = GaugeMetricFamily("modelbus_version_runners", "Runners alive.", labels=LABELS)
        busy = GaugeMetricFamily(
            "modelbus_version_runners_busy", "Runners running a call now.", labels=LABELS
        )
        queued = GaugeMetricFamily(
            "modelbus_version_queued", "Inputs waiting for a free runner.", labels=LABELS
        )
        for model, version, stats in self.named():
            labels = [model, version, stats.key]
            invocations.add_metric(labels, stats.invocations)
            errors.add_metric(labels, stats.errors)
            calls.add_metric(labels, stats.calls)
            duration.add_metric(labels, stats.invocations, stats.duration_s_total)
            runners.add_metric(labels, stats.runners_alive)
            busy.add_metric(labels, stats.runners_busy)
            queued.add_metric(labels, stats.queued)
        yield from (invocations, errors, calls, duration, runners, busy, queued)
