"""The worker processes' Prometheus figures, shown by the serve process's ``/metrics``.

Each worker process of ``serve --workers N`` has its own listener and runner-pool metrics
(:mod:`modelbus.listeners.metrics`, :mod:`modelbus.runtime.metrics`). :class:`FigureWriter`
writes them, every heartbeat interval and once more at its stop, to
``DATA_DIR/workers/<serve node id>/<I>.json`` (replaced atomically). The serve process's
``/metrics`` answers with :class:`WorkerFigures`: its own figures labelled ``worker="0"``
and each worker's labelled ``worker="I"``, in the same families, so that
``sum by (listener) (rate(modelbus_listener_succeeded_total[5m]))`` counts every process. A
restarted worker starts its counters again from zero under the same label (a counter
reset, which ``rate()`` handles). The files are as fresh as the workers' last write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

__all__ = ["FigureWriter", "WorkerFigures", "figures_folder"]

log = logging.getLogger(__name__)


def figures_folder(data_dir: Path, parent: str) -> Path:
    """Where the workers of serve node ``parent`` write their figures."""
    return data_dir / "workers" / parent


class FigureWriter:
    """Writes worker ``index``'s ``registry`` to ``folder`` every ``interval_s`` (after
    ``refresh()``, which brings collected-on-read figures up to date)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        folder: Path,
        index: int,
        *,
        interval_s: float,
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._registry = registry
        self._path = folder / f"{index}.json"
        self._interval_s = interval_s
        self._refresh = refresh
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Write now and then every interval, in the background."""
        self._task = asyncio.create_task(self._loop(), name="worker-figures")

    async def stop(self) -> None:
        """Stop, after one last write (the figures as the worker stopped)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.write()

    async def write(self) -> None:
        """Write the figures now; errors are logged (the serve process shows older ones)."""
        try:
            if self._refresh is not None:
                await self._refresh()
            text = json.dumps([_dump(family) for family in self._registry.collect()])
            await asyncio.to_thread(_replace, self._path, text)
        except Exception as exc:
            log.warning("could not write this worker's figures: %s", exc)

    async def _loop(self) -> None:
        while True:
            await self.write()
            await asyncio.sleep(self._interval_s)


class WorkerFigures:
    """A Prometheus collector: ``own`` (the serve process's registry) labelled
    ``worker="0"``, with every worker's figures from ``folder`` (see the module docstring).
    A file that cannot be read is skipped."""

    def __init__(self, own: CollectorRegistry, folder: Path) -> None:
        self._own = own
        self.folder = folder

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for family in self._own.collect():
            _add(families, family, "0")
        for path in sorted(self.folder.glob("*.json")):
            try:
                dumped = json.loads(path.read_text(encoding="utf-8"))
                for family in dumped:
                    _add(families, _load(family), path.stem)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("worker figures %s skipped: %s", path, exc)
        yield from families.values()

    def exposed(self) -> CollectorRegistry:
        """A registry that collects this (what ``/metrics`` answers with)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry

    def forget_others(self, live: Iterable[str]) -> None:
        """Remove the figure folders of serve nodes not in ``live`` (left by a serve
        process that was killed). Blocks."""
        keep = set(live)
        for folder in self.folder.parent.glob("*"):
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)

    def remove(self) -> None:
        """Remove this serve process's figure folder (its workers stopped). Blocks."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _add(families: dict[str, Metric], family: Metric, worker: str) -> None:
    target = families.get(family.name)
    if target is None:
        target = families[family.name] = Metric(
            family.name, family.documentation, family.type, family.unit
        )
    for sample in family.samples:
        labels = {**sample.labels, "worker": worker}
        target.samples.append(Sample(sample.name, labels, sample.value, sample.timestamp))


def _dump(family: Metric) -> dict[str, Any]:
    return {
        "name": family.name,
        "documentation": family.documentation,
        "type": family.type,
        "unit": family.unit,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }


def _load(dumped: dict[str, Any]) -> Metric:
    family = Metric(dumped["name"], dumped["documentation"], dumped["type"], dumped["unit"])
    for name, labels, value in dumped["samples"]:
        family.samples.append(Sample(str(name), dict(labels), float(value)))
    return family


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)
