"""Peak resident memory (RSS) of the server process and of its runner processes while a
measure runs, sampled with psutil (``pip install -e '.[bench]'``), and the CPU time a
measure cost (:func:`cpu_seconds`).

The server process is the one the node is opened in (the benchmark's own: ``open_node``
opens ``modelbus serve``'s parts in process, so its figure includes the harness, a few MB);
its runner processes are its descendants running ``modelbus_runner``. A sample every
``interval_s`` takes the server's RSS, the sum of the runners' and the largest runner's;
each figure's peak is its largest sample (a peak between two samples is missed).

The sampler runs on the event loop of the process it measures, so it is kept cheap: a
sample every half second, and the runner processes looked up again (a scan of /proc) only
every ``rescan_every`` samples, so that the figures measured beside it move by well under 1%.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from typing import Any

MB = 1024 * 1024
RUNNER_MARK = "modelbus_runner"


@dataclass(frozen=True, kw_only=True)
class PeakRss:
    """Peak RSS in MB: the server process, its runners together, its largest runner."""

    server_mb: float
    runners_sum_mb: float
    runners_max_mb: float
    runners: int  # the most runner processes seen in one sample


def missing() -> str | None:
    """Why memory cannot be sampled (psutil missing), else None."""
    try:
        import psutil  # noqa: F401
    except ImportError:
        return "psutil is not installed (pip install -e '.[bench]')"
    return None


class RssSampler:
    """``async with RssSampler() as sampler: ...`` then ``sampler.peak()``."""

    def __init__(
        self, pid: int | None = None, interval_s: float = 0.5, rescan_every: int = 4
    ) -> None:
        self.pid = pid or os.getpid()
        self.interval_s = interval_s
        self.rescan_every = rescan_every
        self._samples = 0
        self._runners: list[Any] = []
        self._peak = PeakRss(server_mb=0, runners_sum_mb=0, runners_max_mb=0, runners=0)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RssSampler:
        import psutil

        self._process = psutil.Process(self.pid)
        self._sample()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._sample()

    def peak(self) -> PeakRss:
        return self._peak

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self._sample()

    def _sample(self) -> None:
        import psutil

        server = self._process.memory_info().rss / MB
        if self._samples % self.rescan_every == 0:
            self._runners = self._find_runners()
        self._samples += 1
        runners = []
        for runner in self._runners:
            with contextlib.suppress(psutil.Error):  # a runner may have exited since
                runners.append(runner.memory_info().rss / MB)
        old = self._peak
        self._peak = PeakRss(
            server_mb=max(old.server_mb, server),
            runners_sum_mb=max(old.runners_sum_mb, sum(runners)),
            runners_max_mb=max(old.runners_max_mb, max(runners, default=0.0)),
            runners=max(old.runners, len(runners)),
        )

    def _find_runners(self) -> list[Any]:
        import psutil

        found = []
        for child in self._process.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a runner may exit between the two calls
                if RUNNER_MARK in " ".join(child.cmdline()):
                    found.append(child)
        return found


def cpu_seconds(pid: int | None = None) -> float | None:
    """CPU time (user + system, seconds) spent so far by process ``pid`` (default: this
    one), its live descendants (runners, listener workers) and its reaped children; None
    without psutil. Two readings around a drain give the CPU its side spent on it (the
    broker's own CPU is not counted: it serves every side alike)."""
    try:
        import psutil
    except ImportError:
        return None
    process = psutil.Process(pid or os.getpid())
    own = process.cpu_times()
    total = own.user + own.system + own.children_user + own.children_system
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # it may exit between the two calls
            times = child.cpu_times()
            total += times.user + times.system
    return total


def describe(peak: PeakRss | None) -> dict[str, Any]:
    """The JSON form printed per measure (empty when not sampled)."""
    if peak is None:
        return {}
    return {
        "peak_rss_server_mb": round(peak.server_mb, 1),
        "peak_rss_runners_sum_mb": round(peak.runners_sum_mb, 1),
        "peak_rss_runners_max_mb": round(peak.runners_max_mb, 1),
        "runners": peak.runners,
    }
