"""Fixtures for runtime tests: real runner processes of the test models and the examples."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from uv import find_uv_bin

from modelbus.registry.launch import RunnerSpec, install_runtime, python_argv, runner_env
from modelbus.runtime.pool import Pool, PoolManager, PoolSettings
from modelbus.runtime.runner import Runner

MODELS = Path(__file__).resolve().parents[1] / "models"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ENV_CACHE = Path.home() / ".cache" / "modelbus-tests" / "envs"

SpecFactory = Callable[..., RunnerSpec]


@pytest.fixture(scope="session")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_runtime(tmp_path_factory.mktemp("data"))


@pytest.fixture
def loads_file(tmp_path: Path) -> Path:
    """The file the probe model's load() appends its pid to."""
    return tmp_path / "loads"


@pytest.fixture
def probe(runtime_dir: Path, loads_file: Path) -> SpecFactory:
    """RunnerSpec factory for tests/models/probe; ``batch=True`` gives it an apply_batch."""

    def make(
        *, batch: bool = False, extra: dict[str, str] | None = None, **policy: Any
    ) -> RunnerSpec:
        model_dir = MODELS / "probe"
        env = runner_env(
            model_dir=model_dir,
            runtime_dir=runtime_dir,
            extra={"PROBE_LOADS_FILE": str(loads_file), **(extra or {})},
        )
        argv = python_argv(
            sys.executable,
            entrypoint="model:apply",
            load=None,
            apply_batch="model:batched" if batch else None,
        )
        key = f"probe-{uuid.uuid4().hex}"
        return RunnerSpec(key=key, argv=argv, cwd=model_dir, env=env, **policy)

    return make


@pytest.fixture
def example_spec(runtime_dir: Path) -> Callable[..., RunnerSpec]:
    """RunnerSpec for a folder under examples/, read from its modelbus.toml (a test-only
    reading of the manifest: the registry owns the real one). ``python`` is the interpreter
    for Python models (the server's own when the model has no requirements)."""

    def make(name: str, *, python: str = sys.executable) -> RunnerSpec:
        folder = EXAMPLES / name
        manifest = tomllib.loads((folder / "modelbus.toml").read_text())
        runtime, serving = manifest["runtime"], manifest.get("serving", {})
        if runtime.get("kind", "python") == "exec":
            argv = tuple(runtime["command"])
            env = runner_env(model_dir=folder, runtime_dir=None, extra=runtime.get("env", {}))
        else:
            argv = python_argv(
                python,
                entrypoint=runtime["entrypoint"],
                load=runtime.get("load"),
                apply_batch=runtime.get("apply_batch"),
            )
            env = runner_env(
                model_dir=folder, runtime_dir=runtime_dir, extra=runtime.get("env", {})
            )
        return RunnerSpec(
            key=f"{name}-{uuid.uuid4().hex}", argv=argv, cwd=folder, env=env, **serving
        )

    return make


@pytest.fixture
async def pools() -> AsyncIterator[Callable[..., Pool]]:
    """Pool factory; every pool made is closed after the test."""
    made: list[Pool] = []

    def make(spec: RunnerSpec, **settings: Any) -> Pool:
        pool = Pool(spec, PoolSettings(**settings))
        made.append(pool)
        return pool

    yield make
    for pool in made:
        await pool.close()


@pytest.fixture
async def managers() -> AsyncIterator[Callable[..., PoolManager]]:
    made: list[PoolManager] = []

    def make(**settings: Any) -> PoolManager:
        manager = PoolManager(PoolSettings(**settings))
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.close()


@pytest.fixture
async def start_runner() -> AsyncIterator[Callable[..., Any]]:
    """``await start_runner(spec)``: a started Runner, closed (or killed) after the test."""
    started: list[Runner] = []

    async def start(spec: RunnerSpec, **kwargs: Any) -> Runner:
        runner = await Runner.start(spec, **kwargs)
        started.append(runner)
        return runner

    yield start
    for runner in started:
        await runner.close(grace_s=2.0)


@pytest.fixture(scope="session")
def model_python() -> Iterator[Callable[[list[str]], str]]:
    """``model_python(requirements)``: the python of a virtualenv with those requirements,
    built with uv once and cached under ~/.cache/modelbus-tests/envs/<hash> (a test stand-in
    for the registry's builder)."""

    def build(requirements: list[str]) -> str:
        spec = "\n".join([sys.version, *sorted(requirements)])
        env_dir = ENV_CACHE / hashlib.sha256(spec.encode()).hexdigest()[:16]
        python = env_dir / "bin" / "python"
        ENV_CACHE.mkdir(parents=True, exist_ok=True)
        with open(f"{env_dir}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # other test runs may build the same env
            if not (env_dir / ".complete").is_file():
                shutil.rmtree(env_dir, ignore_errors=True)
                uv = find_uv_bin()
                subprocess.run([uv, "venv", "-q", "--python", sys.executable, env_dir], check=True)
                install = [uv, "pip", "install", "-q", "--python", python, *requirements]
                subprocess.run(install, check=True, timeout=900)
                (env_dir / ".complete").touch()
        return str(python)

    yield build
