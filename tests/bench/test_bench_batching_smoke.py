"""bench/bench_batching.py runs end to end on examples/digits: both listener definitions
drain every input, the baseline's ratio is 1, and the ratio line is theirs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_batching.py"
# The digits model's environment (scikit-learn) is built once into this data directory and
# reused by later runs (the benchmark's --data-dir).
DATA_DIR = Path.home() / ".cache" / "modelbus-tests" / "bench-batching"


@pytest.mark.slow
def test_batching_drains_both_definitions_and_prints_their_ratio() -> None:
    args = ["--messages", "100", "--latency-messages", "5", "--data-dir", str(DATA_DIR)]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {}
    for name in ("default", "max_batch_size=1"):
        found = re.search(
            rf"^{re.escape(name)}\s+\d+/\d+ ms\s+100\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)"
            r"\s+100\s+ok$",
            done.stdout,
            re.MULTILINE,
        )
        assert found is not None, done.stdout
        rows[name] = [float(v.replace(",", "")) for v in found.groups()]
    (ours, ratio, p50, p99), (base, base_ratio, _, _) = rows["default"], rows["max_batch_size=1"]
    assert base_ratio == 1.0 and p99 >= p50 > 0
    assert abs(ratio - ours / base) < 0.02 + 0.01 * ratio
    printed = re.search(r"^default / max_batch_size=1: ([\d.]+)x$", done.stdout, re.MULTILINE)
    assert printed is not None and abs(float(printed.group(1)) - ours / base) < 0.02 + 0.01 * ratio
