"""The TypeScript SDK (``sdks/typescript``): its own build and tests, run here so CI's one
command covers it. ``scripts/test.sh`` installs the pinned dev tools, compiles the SDK and runs
its tests under Node's test runner against a real ``modelbus serve`` (this environment's), and
this test fails with their output when they fail."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parents[2] / "sdks" / "typescript"
MODELBUS = str(Path(sys.executable).with_name("modelbus"))


def test_every_area_of_the_tests_is_loaded() -> None:
    # The areas run only when test/server.test.ts imports them (in order: they share a server).
    loader = (SDK / "test" / "server.test.ts").read_text()
    loaded = re.findall(r'await import\("\./areas/([\w-]+)\.js"\)', loader)
    assert sorted(loaded) == sorted(p.stem for p in (SDK / "test" / "areas").glob("*.ts"))


@pytest.mark.slow
def test_typescript_sdk_builds_and_passes_its_tests() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    assert not missing, f"the TypeScript SDK's tests need {' and '.join(missing)} (Node 20+)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELBUS_")}
    env["MODELBUS_BIN"] = MODELBUS
    done = subprocess.run(
        [str(SDK / "scripts" / "test.sh")],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=240,
        check=False,
    )
    output = done.stdout.decode(errors="replace")
    assert done.returncode == 0, f"the TypeScript SDK's build or tests failed:\n{output[-20000:]}"
    assert "# fail 0" in output and "# pass 0" not in output, output[-5000:]
