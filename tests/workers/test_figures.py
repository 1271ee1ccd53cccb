"""The worker processes' figures in the serve process's /metrics: written by each worker,
merged with the serve process's own under a ``worker`` label."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelbus.listeners.metrics import Metrics
from modelbus.web.figures import FigureWriter, WorkerFigures, figures_folder


def succeeded(registry: CollectorRegistry) -> dict[str, float]:
    text = generate_latest(registry).decode()
    return {
        sample.labels["worker"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modelbus_listener_succeeded_total"
    }


async def test_each_workers_figures_join_the_serve_processes_under_its_label(
    tmp_path: Path,
) -> None:
    folder = figures_folder(tmp_path, "serve-node")
    own, theirs = CollectorRegistry(), CollectorRegistry()
    Metrics(own).listener("orders").succeeded(3)
    worker = Metrics(theirs).listener("orders")
    worker.succeeded(5)
    writer = FigureWriter(theirs, folder, 1, interval_s=60)
    writer.start()
    await writer.stop()  # wrote at start and once more at the stop
    (folder / "2.json").write_text("{not json")  # a file being replaced, or broken: skipped

    figures = WorkerFigures(own, folder)
    assert succeeded(figures.exposed()) == {"0": 3.0, "1": 5.0}
    worker.succeeded(1)
    assert succeeded(figures.exposed()) == {"0": 3.0, "1": 5.0}  # as of the last write
    await writer.write()
    assert succeeded(figures.exposed()) == {"0": 3.0, "1": 6.0}


def test_figures_of_serve_processes_gone_are_forgotten(tmp_path: Path) -> None:
    for node in ("live", "killed"):
        figures_folder(tmp_path, node).mkdir(parents=True)
    figures = WorkerFigures(CollectorRegistry(), figures_folder(tmp_path, "live"))
    figures.forget_others(["live"])
    assert [p.name for p in (tmp_path / "workers").iterdir()] == ["live"]
    figures.remove()
    assert list((tmp_path / "workers").iterdir()) == []
