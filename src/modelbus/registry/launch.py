"""How a build's runners are launched: the :class:`RunnerSpec`, and for a Python model its
argv, its environment, and the runtime it imports.

The registry builds a :class:`RunnerSpec` for every build it resolves (from these three
functions for a Python model); the pools of :mod:`modelbus.runtime.pool` only execute what
the spec says. A build imports a Python model's modules the way its runners will
(:func:`import_failure`: its interpreter, its environment, its folder), so that a package
the model imports but does not require fails the push, not the first call.

A runner never sees the server's environment: it gets a short allow-list of variables plus
the model's own, so broker credentials, API keys and ``MODELBUS_*`` settings stay in the
server process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
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


# What the import check runs: each module in turn; the first failure as one marked JSON line.
_IMPORT_MARK = "modelbus-import-check:"
_IMPORT_SCRIPT = f"""
import importlib, json, sys, traceback
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        shown = traceback.TracebackException.from_exception(exc)
        shown.stack = traceback.StackSummary.from_list(
            [f for f in shown.stack if not f.filename.startswith(("<", importlib.__path__[0]))])
        print({_IMPORT_MARK!r} + json.dumps(
            {{"module": name, "missing": missing, "error": error,
              "trace": "".join(shown.format())}}), flush=True)
        sys.exit(0)
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class ImportFailure:
    """Why importing one of a model's modules failed: ``module`` the model's module,
    ``missing`` the top-level name of a module that was not found (None for another error),
    ``error`` the exception as one line, ``trace`` its traceback, ``output`` what the
    import printed."""

    module: str
    missing: str | None
    error: str
    trace: str
    output: str


async def import_failure(
    python: str,
    modules: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
) -> ImportFailure | None:
    """Import ``modules`` with ``python`` in ``cwd`` with exactly ``env`` (a runner's
    interpreter, folder and :func:`runner_env`), in a process of their own; the first
    failure, or None when all import.

    Runs the modules' import-time code, as a runner's start would. Raises ``TimeoutError``
    when the imports take longer than ``timeout_s`` (the process is killed), ``OSError``
    when ``python`` cannot be run.
    """
    proc = await asyncio.create_subprocess_exec(
        python,
        "-c",
        _IMPORT_SCRIPT,
        *modules,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout_s):
            output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = output.decode("utf-8", errors="replace").splitlines()
    marked = [line for line in lines if line.startswith(_IMPORT_MARK)]
    if not marked and proc.returncode == 0:
        return None
    printed = "\n".join(line for line in lines if not line.startswith(_IMPORT_MARK))
    if not marked:  # the process died without a word (a crash in an extension module)
        return ImportFailure(
            module=", ".join(modules),
            missing=None,
            error=f"the import process exited with status {proc.returncode}",
            trace="",
            output=printed,
        )
    found = json.loads(marked[-1].removeprefix(_IMPORT_MARK))
    missing = found["missing"]
    return ImportFailure(
        module=found["module"],
        missing=missing.split(".")[0] if missing else None,
        error=found["error"],
        trace=found["trace"],
        output=printed,
    )
