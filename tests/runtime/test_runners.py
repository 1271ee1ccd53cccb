"""How Python runners are launched: argv, environment, the installed runtime."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import modelbus_runner
from modelbus.registry.launch import install_runtime, python_argv, runner_env


def test_python_argv_names_only_what_is_given() -> None:
    assert python_argv("/py", entrypoint="model:apply", load=None, apply_batch=None) == (
        "/py",
        "-m",
        "modelbus_runner",
        "model:apply",
    )
    assert python_argv("/py", entrypoint="m:f", load="m:setup", apply_batch="m:many") == (
        "/py",
        "-m",
        "modelbus_runner",
        "m:f",
        "--load",
        "m:setup",
        "--batch",
        "m:many",
    )


def test_runner_env_keeps_secrets_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELBUS_DATABASE_URL", "postgresql://admin:hunter2@db/prod")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA0000")
    monkeypatch.setenv("PATH", "/opt/bin:/usr/bin")
    monkeypatch.setenv("HOME", "/home/server")
    env = runner_env(model_dir=tmp_path / "m", runtime_dir=tmp_path / "rt", extra={"A": "1"})
    assert env == {
        "PATH": "/opt/bin:/usr/bin",
        "HOME": "/home/server",
        "LANG": env["LANG"],
        **({"TMPDIR": env["TMPDIR"]} if "TMPDIR" in env else {}),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": f"{tmp_path / 'rt'}:{tmp_path / 'm'}",
        "A": "1",
    }


def test_runner_env_for_exec_runners_and_extra_wins(tmp_path: Path) -> None:
    env = runner_env(model_dir=tmp_path, runtime_dir=None, extra={"LANG": "de_DE.UTF-8"})
    assert env["PYTHONPATH"] == str(tmp_path)
    assert env["LANG"] == "de_DE.UTF-8"


def test_install_runtime_copies_the_package_once(tmp_path: Path) -> None:
    first = install_runtime(tmp_path)
    assert install_runtime(tmp_path) == first
    source = Path(modelbus_runner.__file__).parent
    for file in source.glob("*.py"):
        assert (first / "modelbus_runner" / file.name).read_bytes() == file.read_bytes()
    assert [p.name for p in (tmp_path / "runtime").iterdir()] == [first.name]


def test_concurrent_installs_agree_and_leave_no_debris(tmp_path: Path) -> None:
    with ThreadPoolExecutor(4) as executor:
        paths = set(executor.map(lambda _: install_runtime(tmp_path), range(8)))
    assert len(paths) == 1
    assert [p.name for p in (tmp_path / "runtime").iterdir()] == [paths.pop().name]


def test_the_installed_runtime_is_what_a_runner_imports(tmp_path: Path) -> None:
    runtime = install_runtime(tmp_path)
    env = runner_env(model_dir=tmp_path, runtime_dir=runtime, extra={})
    code = "import modelbus_runner; print(modelbus_runner.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert Path(out.stdout.strip()).parent == runtime / "modelbus_runner"
