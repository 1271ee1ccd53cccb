"""The first hour: after README.md's first command, every shell line it shows works when
pasted, in order, and so do the lines ``modelbus demo`` prints and those of docs/demo.md.

One ``modelbus demo`` runs as ``scripts/demo`` runs it (from a folder holding ``examples/``
and ``.venv/``, with the default data directory ``demo-data``), on a free port; the shell
blocks run in bash with ``set -euo pipefail`` and a PATH without ``modelbus``, so that
their own ``. .venv/bin/activate`` is what finds it. Only the port differs from a user's:
``MODELBUS_URL`` is set and the URLs in the blocks point at the demo's port.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import MODELBUS, clean_env, free_port

from .conftest import eventually

ROOT = Path(__file__).resolve().parents[2]
READY = "modelbus demo is ready"
DEFAULT_URL = "http://127.0.0.1:8470"
BLOCK_TIMEOUT_S = 600.0


def fenced(markdown: Path, language: str) -> list[str]:
    """The fenced blocks of ``markdown`` in ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", markdown.read_text(), re.S | re.M)


def test_readme_starts_with_the_install_and_demo_command() -> None:
    first = fenced(ROOT / "README.md", "sh")[0]
    commands = [line for line in first.splitlines() if line and not line.startswith("#")]
    assert commands == ["scripts/demo"]
    assert "scripts/install all" in (ROOT / "scripts" / "demo").read_text()


class Demo:
    """``modelbus demo`` on a free port in ``workdir`` (as ``scripts/demo`` runs it)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = workdir / "demo.log"
        port = self.url.rsplit(":", 1)[1]
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [MODELBUS, "demo", "--port", port],
                cwd=workdir,
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

        return eventually(ready, timeout_s=900.0, poll_s=0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def shell(self, block: str) -> subprocess.CompletedProcess[str]:
        """Run ``block`` in bash as a user pastes it, from the work folder."""
        script = "set -euo pipefail\n" + block.replace(DEFAULT_URL, self.url)
        return subprocess.run(
            ["bash", "-c", script],
            cwd=self.workdir,
            env=self.user_env(),
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
            check=False,
        )

    def user_env(self) -> dict[str, str]:
        """A user's shell: no modelbus on the PATH, no key; the demo's URL (its port)."""
        env = clean_env({"MODELBUS_URL": self.url})
        env.pop("VIRTUAL_ENV", None)
        folders = env.get("PATH", os.defpath).split(os.pathsep)
        env["PATH"] = os.pathsep.join(f for f in folders if not Path(f, "modelbus").exists())
        return env


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    workdir = tmp_path_factory.mktemp("checkout")
    (workdir / "examples").symlink_to(ROOT / "examples")
    (workdir / ".venv").symlink_to(Path(sys.executable).parent.parent)
    started = Demo(workdir)
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


def ran(result: subprocess.CompletedProcess[str], block: str) -> str:
    assert result.returncode == 0, (
        f"{block}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_every_readme_shell_line_after_the_first_command_works(demo: Demo) -> None:
    assert shutil.which("modelbus", path=demo.user_env()["PATH"]) is None
    # pasted in order into one shell, as a user does
    script = "\n".join(fenced(ROOT / "README.md", "sh")[1:])
    assert "modelbus call" in script
    output = ran(demo.shell(script), script)
    assert '"greeting": "Hello, Ada!"' in output
    assert output.count("Analytical Street") >= 4  # the OCR read the sample: call, job, file, curl
    assert (demo.workdir / "demo-data" / "outbox" / "sample.png.json").is_file()
    clients = [b for b in fenced(ROOT / "README.md", "python") if "modelbus.Client" in b]
    assert clients
    for block in clients:
        script = block.strip().splitlines()
        script[-1] = f"print({script[-1]})"
        env = {**demo.user_env(), "MODELBUS_API_KEY": demo_key(demo)}
        result = subprocess.run(
            [sys.executable, "-c", "\n".join(script)],
            cwd=demo.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
            check=False,
        )
        assert "Analytical Street" in ran(result, block)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_lines_the_demo_prints_work_when_pasted(demo: Demo) -> None:
    printed = demo.log().split("next, in another shell", 1)[1].split("Ctrl-C stops", 1)[0]
    lines = [line.strip() for line in printed.splitlines()[1:] if line.strip()]
    assert lines[0].startswith(". ") and lines[0].split()[1].endswith("/bin/activate")
    assert any(line.startswith(f"export MODELBUS_URL={demo.url} ") for line in lines)
    assert any(line.startswith('export MODELBUS_API_KEY="$(cat ') for line in lines)
    calls = [line for line in lines if line.startswith("modelbus call ")]
    assert any("--text" in c for c in calls) and any("--file" in c for c in calls)
    assert any("--async" in line for line in lines)
    script = "\n".join(lines)
    output = ran(demo.shell(script), script)
    assert "Hello, Ada!" in output and '"digit": 7' in output
    # docs/demo.md says the same, with the paths of a checkout
    script = "\n".join(fenced(ROOT / "docs" / "demo.md", "sh")[1:])
    if shutil.which("node") is None:
        script = "\n".join(b for b in script.splitlines() if "node-sentiment" not in b)
    output = ran(demo.shell(script), script)
    assert "Hello, Ada!" in output and '"digit": 7' in output


def demo_key(demo: Demo) -> str:
    return (demo.workdir / "demo-data" / "admin.key").read_text().strip()
