"""How a build's runners are launched: the :class:`RunnerSpec`, and for a Python model its
argv, its environment, and the runtime it imports.

The registry builds a :class:`RunnerSpec` for every build it resolves (from these three
functions for a Python model); the pools of :mod:`modelbus.runtime.pool` only execute what
the spec says. A runner never sees the server's environment: it gets
a short allow-list of variables plus the model's own, so broker credentials, API keys and
``MODELBUS_*`` settings stay in the server process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import modelbus
import modelbus_runner


@dataclass(frozen=True, kw_only=True, slots=True)
class RunnerSpec:
    """How to start runners for one build, and the pool's policy for them.

    ``key`` is the build's content hash: pools are keyed by it, so two version numbers that
    point at one build share one pool. ``argv`` starts a process that speaks the runner
    protocol (docs/runner-protocol.md) on stdin/stdout, in ``cwd`` with exactly ``env``.
    ``memory_limit_mb`` None or 0 means no limit; otherwise it is each runner's RLIMIT_AS.
    """

    key: str
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 60.0
    min_runners: int = 0
    max_runners: int = 2
    idle_timeout_s: float = 300.0
    memory_limit_mb: int | None = None
    input_schema: Mapping[str, object] | None = None
    output_schema: Mapping[str, object] | None = None


# Taken from the server's environment when set; everything else is left out.
_INHERITED = ("PATH", "HOME", "LANG", "TMPDIR")
_DEFAULTS = {"PATH": os.defpath, "LANG": "C.UTF-8"}


def python_argv(
    python: str,
    *,
    entrypoint: str,
    load: str | None,
    apply_batch: str | None,
    adk: bool = False,
) -> tuple[str, ...]:
    """``(python, "-m", "modelbus_runner", entrypoint, [--load X], [--batch X])``, or
    ``(..., "--adk", module)`` for an Algorithmia ADK algorithm.

    ``load`` / ``apply_batch`` None lets the runner find functions named ``load`` and
    ``apply_batch`` in the entrypoint's module.
    """
    if adk:
        return (python, "-m", "modelbus_runner", "--adk", entrypoint)
    argv = [python, "-m", "modelbus_runner", entrypoint]
    if load:
        argv += ["--load", load]
    if apply_batch:
        argv += ["--batch", apply_batch]
    return tuple(argv)


def runner_env(
    *, model_dir: Path, runtime_dir: Path | None, extra: Mapping[str, str]
) -> dict[str, str]:
    """The complete environment of a runner.

    ``PATH``, ``HOME``, ``LANG`` and ``TMPDIR`` from the server (``PATH`` and ``LANG`` with
    defaults), ``PYTHONUNBUFFERED=1``, ``PYTHONDONTWRITEBYTECODE=1``,
    ``PYTHONPATH=<runtime_dir>:<model_dir>`` (only the model folder when ``runtime_dir`` is
    None, as for exec runners), then ``extra`` (the manifest's ``[runtime] env``), which wins.
    Nothing else of the server's environment is passed on.
    """
    env = {name: os.environ[name] for name in _INHERITED if os.environ.get(name)}
    env = {**_DEFAULTS, **env}
    paths = [str(runtime_dir)] if runtime_dir is not None else []
    paths.append(str(model_dir))
    env.update(
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPATH=os.pathsep.join(paths),
    )
    env.update(extra)
    return env


def install_runtime(data_dir: Path) -> Path:
    """Copy the stdlib-only ``modelbus_runner`` package under ``data_dir/runtime/`` and
    return the directory to put on a runner's ``PYTHONPATH``.

    The directory is named after the modelbus version and a hash of the package's sources,
    so an edited runner never reuses a stale copy. Idempotent and safe when several
    processes install at once: the copy is built aside and renamed into place atomically.
    """
    source = Path(modelbus_runner.__file__).resolve().parent
    files = sorted(source.glob("*.py"))
    target = data_dir / "runtime" / f"{modelbus.__version__}-{_digest(files)}"
    if (target / "modelbus_runner" / "__init__.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".install-", dir=target.parent))
    try:
        (staging / "modelbus_runner").mkdir()
        for file in files:
            shutil.copy2(file, staging / "modelbus_runner" / file.name)
        os.rename(staging, target)
    except OSError:
        if not (target / "modelbus_runner" / "__init__.py").is_file():
            raise
        # Another process renamed its copy into place first; theirs is identical.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:12]
