"""bench/bench_nodes.py runs end to end (CI never runs the benchmark for figures): a tiny
drain by two nodes prints its row (CPU seconds of both nodes, no 1-node baseline in this
run) and its JSON line, and a run past its deadline is reported as stalled, not hung."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import fresh_database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_nodes.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=240
    )


@pytest.fixture
def postgres() -> Iterator[str]:
    """A database URL on the test server (the benchmark makes its databases beside it)."""
    if importlib.util.find_spec("psutil") is None:
        pytest.skip("psutil is not installed (pip install -e '.[bench]')")
    with fresh_database("modelbus_bench_nodes") as url:  # skips if PostgreSQL is away
        yield url


def rows(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_two_nodes_drain_a_small_backlog(postgres: str) -> None:
    done = run("--nodes", "2", "--messages", "200", "--postgres", postgres)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    (two,) = rows(done.stdout)
    assert two["nodes"] == 2 and two["status"] == "ok" and two["results"] == 200
    cpu = two["cpu_s"]
    assert isinstance(cpu, list) and len(cpu) == 2 and all(c > 0 for c in cpu)
    header, _rule, row = done.stdout.splitlines()[-3:]
    assert header.split()[:3] == ["nodes", "msg/s", "x"]
    cells = row.split()
    assert cells[0] == "2" and cells[2] == "-"  # no 1-node run in this invocation
    assert cells[-2:] == ["200", "ok"]


def test_a_run_past_its_deadline_is_reported_stalled(postgres: str) -> None:
    done = run(
        "--nodes", "1", "--messages", "3000", "--postgres", postgres,
        "--deadline-min-s", "0", "--deadline-rate", "1000000",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    (one,) = rows(done.stdout)
    assert one["status"] == "stalled" and one["results"] < 3000
    assert one["msg_per_s"] is None
    assert "stalled" in done.stdout.splitlines()[-1]
