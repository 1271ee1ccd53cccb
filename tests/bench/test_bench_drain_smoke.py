"""bench/bench_drain.py runs end to end (CI never runs the benchmarks themselves): a tiny
drain on local:// through a real listener and the hand loop, and the table it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_drain.py"


def test_drain_on_local_prints_both_sides_and_their_ratio() -> None:
    args = ["--brokers", "local", "--messages", "200", "--latency-messages", "20"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    row = re.search(
        r"^local\s+200\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)",
        done.stdout,
        re.MULTILINE,
    )
    assert row is not None, done.stdout
    ours, _, _, hand, _, _, ratio = (float(v.replace(",", "")) for v in row.groups())
    assert ours > 0 and hand > 0
    assert abs(ratio - ours / hand) < 0.02 + 0.01 * ratio  # the printed ratio is theirs
