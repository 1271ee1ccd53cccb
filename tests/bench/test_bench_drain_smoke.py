"""bench/bench_drain.py runs end to end (CI never runs the benchmarks themselves): tiny drains
through a real listener, the hand loop and the FastStream peer, the table they print, the
MQTT drain, the fixed-rate latency mode, deadlines and --workers."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_drain.py"
NUMBER = r"([\d,.]+|-)"


def run(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=timeout_s
    )


def row(stdout: str, broker: str, side: str) -> dict[str, str]:
    """One table row: its cells by column name."""
    found = re.search(
        rf"^{broker}\s+{side}\s+(?P<messages>[\d,]+)\s+(?P<rate>{NUMBER})\s+(?P<ratio>{NUMBER})"
        rf"\s+(?P<p50>{NUMBER})\s+(?P<p99>{NUMBER})\s+(?P<delta>[-+\d.]+)\s+(?P<results>[\d,?]+)"
        rf"\s+(?P<cpu>{NUMBER})\s+(?P<rss>[\d/]+|-)\s+(?P<status>.*)$",
        stdout,
        re.MULTILINE,
    )
    assert found is not None, stdout
    return found.groupdict()


def value(cell: str) -> float:
    return float(cell.replace(",", ""))


def lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_drain_on_local_prints_both_sides_their_ratio_results_and_memory() -> None:
    # 2,000: the hand loop spends about 0.1 s of CPU on them, several ticks of the 10 ms
    # clock CPU time is counted in (200 could take under one tick: 0 us/msg)
    done = run("--brokers", "local", "--messages", "2000", "--latency-messages", "20")
    assert done.returncode == 0, done.stderr[-3000:]
    ours, hand = row(done.stdout, "local", "modelbus"), row(done.stdout, "local", "hand")
    assert ours["status"] == hand["status"] == "ok"
    assert ours["results"] == hand["results"] == "2,000"  # counted on the output queue
    assert value(ours["rate"]) > 0 and value(hand["rate"]) > 0
    ratio = value(ours["ratio"])
    assert abs(ratio - value(ours["rate"]) / value(hand["rate"])) < 0.02 + 0.01 * ratio
    assert value(ours["p99"]) >= value(ours["p50"]) > 0
    delta = value(ours["delta"])
    assert abs(delta - (value(ours["p99"]) - value(hand["p99"]))) < 0.15
    server, runners_sum, runners_max = (float(v) for v in ours["rss"].split("/"))
    assert server > 0 and runners_sum >= runners_max > 0  # the 4 behave runners
    assert hand["rss"] == "-"  # memory is the modelbus side's figure
    # CPU per message, of the process and its runners, for both sides, as printed per drain
    drains = {line["side"]: line for line in lines(done.stdout) if line["measure"] == "drain"}
    for side, cells in (("modelbus", ours), ("hand", hand)):
        assert value(cells["cpu"]) > 0
        assert abs(value(cells["cpu"]) - float(drains[side]["cpu_us_per_msg"])) <= 1


def test_latency_rate_sends_at_exactly_that_rate() -> None:
    done = run(
        "--brokers", "local", "--sides", "hand,modelbus", "--messages", "20",
        "--latency-messages", "60", "--latency-rate", "300",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    timed = [line for line in lines(done.stdout) if line["measure"] == "latency"]
    assert {line["side"] for line in timed} == {"hand", "modelbus"}
    for line in timed:
        assert line["status"] == "ok" and line["results"] == 60
        assert line["latency_rate_per_s"] == 300.0  # not lowered to half a drain rate
    assert "60 latency messages at 300 msg/s" in done.stdout


def test_a_measure_past_its_deadline_is_reported_stalled_and_the_run_goes_on() -> None:
    # A deadline of a few milliseconds: no side can drain 200 messages in it.
    done = run(
        "--brokers", "local", "--messages", "200", "--latency-messages", "5",
        "--deadline-min-s", "0.001", "--deadline-rate", "1000000000",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for side in ("hand", "modelbus"):
        status = row(done.stdout, "local", side)["status"]
        assert status.startswith("STALLED: "), status
        assert "/200 acked" in status and "results" in status and "deadline" in status
        assert "latency STALLED" in status
    drains = [line for line in lines(done.stdout) if line["measure"] == "drain"]
    assert [line["status"] for line in drains] == ["stalled", "stalled"]


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")
def test_mqtt_drain_completes_on_the_listeners_own_session() -> None:
    done = run(
        "--brokers", "mqtt", "--sides", "modelbus", "--messages", "200",
        "--latency-messages", "0", "--deadline-min-s", "20",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ours = row(done.stdout, "mqtt", "modelbus")
    assert ours["status"] == "ok" and ours["results"] == "200"


@pytest.mark.skipif(
    importlib.util.find_spec("faststream") is None,
    reason="FastStream is not installed (the bench extra: pip install -e '.[bench]')",
)
def test_faststream_peer_on_redis_drains_every_message_in_both_variants() -> None:
    done = run(
        "--brokers", "redis", "--sides", "hand,faststream", "--messages", "200",
        "--latency-messages", "0", "--deadline-min-s", "20",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Message fetch error" not in done.stdout + done.stderr
    assert "Processed" not in done.stdout + done.stderr  # its per-message INFO lines are off
    hand = row(done.stdout, "redis", "hand")
    for side in ("faststream-each", "faststream-batch"):
        peer = row(done.stdout, "redis", side)
        assert peer["status"] == "ok" and peer["results"] == "200"
        assert abs(value(peer["ratio"]) - value(peer["rate"]) / value(hand["rate"])) < 0.05


def test_workers_drain_through_several_processes() -> None:
    done = run(
        "--brokers", "redis", "--sides", "modelbus", "--messages", "200",
        "--latency-messages", "0", "--workers", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ours = row(done.stdout, "redis", "modelbus")
    assert ours["status"] == "ok" and ours["results"] == "200"
    assert "workers 2" in done.stdout
    assert "[worker 1]" in done.stderr  # the worker process ran (and logged) beside it


def test_a_worker_count_under_one_stops_the_script_at_start_up() -> None:
    done = run("--brokers", "local", "--workers", "0", timeout_s=60)
    assert done.returncode != 0
    assert "--workers 0: at least 1" in done.stderr
    assert "local " not in done.stdout  # nothing was measured
