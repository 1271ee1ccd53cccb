"""docs/tutorial.md, run as written: its own ``bash`` blocks for the local stand-in, in
order, in one bash process, against the real ``moto_server`` and ``modelbus serve`` that
those blocks start (on free loopback ports instead of the page's 5000 and 8470), with the
real OCR example (its environment built by the registry: from the uv cache once warm).

Every block must succeed, and what the page says a block prints (the ``text`` block after
it) must be in that block's output; the test also checks the story's facts in the output
itself (the text read, the dead letter's error, the redrive).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.server import clean_env, free_port

from .tutorial import TUTORIAL, Block, blocks, outputs, script, shows

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VENV_BIN = Path(sys.executable).parent
# About 60 s on a quiet machine with a warm uv cache (each aws or modelbus command costs a
# Python start); a cold cache downloads ~400 MB, a machine shared by many takes longer.
RUN_TIMEOUT_S = 600.0


def only(found: list[Block], snippet: str) -> Block:
    matching = [block for block in found if snippet in block.code]
    assert len(matching) == 1, f"{len(matching)} blocks contain {snippet!r}"
    return matching[0]


def test_the_page_marks_its_blocks_for_aws_and_the_local_stand_in() -> None:
    found = blocks(TUTORIAL.read_text())
    local = [block for block in found if block.targets == ("local",)]
    aws = [block for block in found if block.targets == ("aws",)]
    both = [block for block in found if len(block.targets) == 2]
    assert len(local) >= 2 and aws and len(both) > 2 * (len(local) + len(aws))
    # The two ways of starting the server differ only by the loopback allowance.
    serve_aws = only(aws, "modelbus serve").code
    serve_local = only(local, "modelbus serve").code
    assert serve_local.replace(" --allow-hosts 127.0.0.1", "") == serve_aws


def test_markers_and_expected_output_are_parsed_strictly() -> None:
    page = "<!-- tutorial: local -->\n```bash\necho hi\n```\n\n```text\nhi\n```\n"
    (block,) = blocks(page)
    assert block.targets == ("local",) and block.expected == ("hi",)
    with pytest.raises(ValueError, match="unknown target"):
        blocks("<!-- tutorial: gcp -->\n```bash\ntrue\n```\n")
    with pytest.raises(ValueError, match="never closed"):
        blocks("```bash\ntrue\n")
    assert shows("a: 1 succeeded, b", "a: ... succeeded")
    assert not shows("succeeded a:", "a: ... succeeded")


def _environment() -> dict[str, str]:
    """A user's shell: the venv's commands first, no AWS settings or files, no loopback
    allowance (the page must give it), one worker process (2 cores shared by the test run).
    HOME stays: the OCR environment is built from the user's warm uv cache."""
    env = {k: v for k, v in clean_env().items() if not k.startswith("AWS_")}
    del env["MODELBUS_ALLOW_HOSTS"]
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        COLUMNS="200",
    )
    return env


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM what the script left running (its servers and their runners), then SIGKILL."""
    for sig, grace_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 0.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_the_tutorial_runs_on_the_local_stand_in(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(EXAMPLES)
    run = work / "tutorial.sh"
    run.write_text(script("local", moto_port=free_port(), server_port=free_port()))
    log_path = tmp_path / "tutorial.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", str(run)],
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_environment(),
            start_new_session=True,
        )
    try:
        returncode = process.wait(RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        returncode = None
    finally:
        _stop_group(process)
    log = log_path.read_text(errors="replace")
    server_log = (work / "serve.log").read_text(errors="replace")[-4000:]
    assert returncode == 0, f"{log[-8000:]}\n--- serve.log ---\n{server_log}"

    found = [block for block in blocks(TUTORIAL.read_text()) if "local" in block.targets]
    printed = outputs(log)
    assert sorted(printed) == [block.line for block in found]  # every block ran, once
    for block in found:
        for line in block.expected:
            assert shows(printed[block.line], line), (block.line, line, printed[block.line])

    def out(snippet: str) -> str:
        return printed[only(found, snippet).line]

    assert "INVOICE2024-117" in out("modelbus call")
    assert "examples/ocr 1.0.0 published" in out("modelbus models push")
    assert "created: scans" in out("modelbus listeners apply")
    read = out("field Body > result.json")
    assert "incoming/invoice-117.png read by examples/ocr@1.* 1.0.0" in read
    assert "Total due: 42.50 EUR" in read
    letter = out("aws s3 cp minutes.txt")
    assert "PermanentError" in letter and "not an image" in letter
    assert "minutes.png" in letter  # the original S3 event, as the body
    assert "dead_lettered" in out("modelbus runs list scans --status dead_lettered")
    assert "shorter than 1024 bytes" in out("MaximumMessageSize=1024")
    redriven = out("dead-letters redrive scans --id")
    assert "1 succeeded" in redriven and "incoming/invoice-118.png 2" in redriven
    pending = out("modelbus runs list scans\nmodelbus dead-letters list scans --pending")
    assert "not an image" in pending and "shorter than" not in pending  # only the minutes
