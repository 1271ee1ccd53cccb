"""What runners write on stderr reaches the server's log clean: no terminal escapes, and
tracebacks at DEBUG (real runner processes, the real logger)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelbus.errors import ModelError, RunnerCrashed
from modelbus.registry.launch import RunnerSpec
from modelbus.runtime.stderr import TracebackLines, clean

from .conftest import SpecFactory

Start = Callable[..., Any]

TRACEBACK = """\
Traceback (most recent call last):
  File "model.py", line 3, in load
    raise KeyError("a")
    ^^^^^^^^^^^^^^^^^^^
KeyError: 'a'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "model.py", line 5, in load
    raise ValueError("b")
ValueError: b
"""


def test_clean_strips_escape_sequences_and_shows_other_controls() -> None:
    assert clean("\x1b[32mINFO\x1b[0m loading") == "INFO loading"
    assert clean("\x1b]0;a window title\x07text") == "text"
    assert clean("bell\x07 and \x1b[2K\x1b[1Gcursor") == "bell\\x07 and cursor"
    assert clean("10%\r50%\r100%\r") == "100%"  # a progress bar: what was drawn last
    assert clean("tab\tkept, ünïcode kept") == "tab\tkept, ünïcode kept"


def test_traceback_lines_are_debug_the_others_info() -> None:
    levels = TracebackLines()
    before = levels.level("loading the weights")
    inside = [levels.level(line) for line in TRACEBACK.splitlines()]
    after = levels.level("model ready")
    assert before == logging.INFO and after == logging.INFO
    assert inside == [logging.DEBUG] * len(TRACEBACK.splitlines())


async def test_a_runner_traceback_is_logged_at_debug_not_info(
    probe: SpecFactory, start_runner: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="modelbus.runner")
    with pytest.raises(ModelError, match="failed to load"):
        await start_runner(probe(extra={"PROBE_FAIL_LOAD": "1"}))
    runner_lines = [r for r in caplog.records if r.name == "modelbus.runner"]
    traceback = [r for r in runner_lines if "Traceback (most recent call last)" in r.getMessage()]
    assert traceback, [r.getMessage() for r in runner_lines]
    info = [r.getMessage() for r in runner_lines if r.levelno >= logging.INFO]
    assert not any("Traceback" in m or 'File "' in m or "RuntimeError" in m for m in info), info


async def test_colour_codes_of_a_runner_never_reach_the_log(
    start_runner: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="modelbus.runner")
    code = (
        "import sys; sys.stderr.write('\\x1b[31mWARN\\x1b[0m weights \\x07missing\\n'); sys.exit(3)"
    )
    spec = RunnerSpec(key="colour", argv=(sys.executable, "-c", code), cwd=Path.cwd())
    with pytest.raises(RunnerCrashed) as caught:
        await start_runner(spec)
    logged = [r.getMessage() for r in caplog.records if r.name == "modelbus.runner"]
    assert any(m.endswith("WARN weights \\x07missing") for m in logged), logged
    assert not any("\x1b" in m or "\x07" in m for m in logged)
    assert "\x1b" not in caught.value.message and "WARN weights" in caught.value.message
