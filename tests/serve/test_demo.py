"""``modelbus demo``: the README's command, run as a user would, on a free port."""

from __future__ import annotations

import ast
import difflib
import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import MODELBUS, clean_env, free_port

from .conftest import eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
READY = "modelbus demo is ready"
# A fresh data dir builds the examples' environments (from the uv cache once it is warm).
READY_TIMEOUT_S = 900.0


def expected_ocr_text() -> str:
    tree = ast.parse((EXAMPLES / "ocr" / "make_sample.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "EXPECTED_LINES":
            return " ".join(ast.literal_eval(node.value))
    raise AssertionError("make_sample.py has no EXPECTED_LINES")


class Demo:
    """One ``modelbus demo`` process writing to a log file."""

    def __init__(self, data_dir: Path, inbox: Path, log: Path) -> None:
        self.log_path = log
        self.port = free_port()
        argv = [MODELBUS, "demo", "--data-dir", str(data_dir), "--port", str(self.port)]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*argv, "--folder", str(inbox)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=clean_env({"COLUMNS": "200"}),
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> str:
        def ready() -> str | None:
            assert self.process.poll() is None, self.log()
            return self.log() if READY in self.log() else None

        return eventually(ready, timeout_s=READY_TIMEOUT_S, poll_s=0.5)

    def stop(self) -> None:
        """SIGTERM, as a user's Ctrl-C or a service manager would."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise AssertionError(f"the demo did not stop on SIGTERM:\n{self.log()}") from None


@pytest.fixture
def demos(tmp_path: Path) -> Iterator[list[Demo]]:
    started: list[Demo] = []
    yield started
    for demo in started:
        demo.stop()


def admin_key(log: str) -> str:
    found = re.search(r"admin API key:\s+(mb_\S+)", log)
    assert found, log
    return found[1]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a machine with a cold uv cache downloads ~400 MB
def test_demo_reads_a_dropped_scan_and_starts_again_without_rebuilding(
    tmp_path: Path, demos: list[Demo]
) -> None:
    data, inbox = tmp_path / "demo-data", tmp_path / "drop here"
    demo = Demo(data, inbox, tmp_path / "demo-1.log")
    demos.append(demo)
    log = demo.wait_ready()
    key = admin_key(log)
    assert str(inbox) in log
    assert "modelbus call examples/hello" in log  # the lines to paste next
    for name in ("hello", "digits", "ocr"):
        assert f"examples/{name} 1.0.0 published" in log

    shutil.copy(EXAMPLES / "ocr" / "sample.png", inbox / "sample.png")
    result = data / "outbox" / "sample.png.json"
    eventually(result.exists, timeout_s=180)
    text = json.loads(result.read_text())["text"]
    seen, expected = " ".join(text.split()).lower(), expected_ocr_text().lower()
    assert difflib.SequenceMatcher(None, expected, seen).ratio() > 0.95, text

    # A file the OCR cannot read keeps its name in failed/, beside why (docs/demo.md).
    (inbox / "notes.png").write_text("minutes of the meeting, not a scan")
    error_file = data / "failed" / "notes.png.error.json"
    eventually(error_file.exists, timeout_s=120)
    error = json.loads(error_file.read_text())
    assert error["file"] == "notes.png" and error["listener"] == "demo-ocr"
    assert error["permanent"] is True and "not an image" in error["error_message"]
    assert (data / "failed" / "notes.png").read_text() == "minutes of the meeting, not a scan"
    assert (inbox / "notes.png").exists()

    demo.stop()
    assert "Application shutdown complete" in demo.log()
    assert f"listener {'demo-ocr'} stopped" in demo.log()

    again = Demo(data, inbox, tmp_path / "demo-2.log")
    demos.append(again)
    started = time.monotonic()
    log = again.wait_ready()
    assert time.monotonic() - started < 120  # nothing was rebuilt
    assert "examples/ocr 1.0.0 already published" in log
    assert "environment ready" not in log
    assert "listener demo-ocr ready" in log  # the same listener, not a new one
    assert admin_key(log) == key
    assert [p.name for p in (data / "outbox").iterdir()] == ["sample.png.json"]  # not redone
