"""Builds: checking a model folder is launchable and giving it its Python environment.

A Python model that declares ``requirements`` runs in its own virtualenv under
``data_dir/envs/<id>/``, where the id comes from the *environment hash*: the hash of the
interpreter (implementation, version, platform) and the normalized, sorted requirements.
Every version needing the same environment shares it: it is built once, on first need, and
reused afterwards. The environment is created with ``uv`` (a core dependency, found with
``uv.find_uv_bin()``); only when uv is unusable, ``python -m venv`` and pip do it.

Concurrent builds of one environment (tasks of this process, or other processes sharing the
data dir) wait for the first: an asyncio lock within the process, a file lock across
processes. A finished environment holds a ``.modelbus-ready`` marker written last, so a build
interrupted half-way is never taken for a good one.

Models without requirements run on the server's interpreter and need no environment; exec
models bring their own program. Either way, a build checks the model can be launched: its
files first (:func:`launch_problem`), then, for a Python model, by importing its modules on
the interpreter and in the environment its runners get, so that a package the model imports
but does not require fails the push, naming the line to add to ``[runtime] requirements``.

A model's requirements are code the server runs (build backends, setup scripts), so build
commands get a minimal environment, like runners (:func:`build_env`): no ``MODELBUS_*``
setting, no secret key, no database URL. Direct URL and path requirements
(``pkg @ https://...``, ``pkg @ file:///...``) are refused unless the operator allows them
(``allow_direct_requirements``, ``serve --allow-direct-requirements``): they fetch code from
anywhere the server can reach, or read its files.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from packaging.requirements import Requirement

from modelbus.errors import BuildError, ManifestError
from modelbus.registry.launch import ImportFailure, import_failure, install_runtime, runner_env
from modelbus.registry.manifest import Manifest, split_callable

ProgressCallback = Callable[[str], Any]
"""Called with each build log line as it happens; may be a plain or an async function."""

Installer = Literal["auto", "uv", "pip"]
READY_MARKER = ".modelbus-ready"
DEFAULT_BUILD_TIMEOUT_S = 1800.0
DEFAULT_IMPORT_TIMEOUT_S = 120.0
_LOCK_POLL_S = 0.2
_UV_CHECK_TIMEOUT_S = 30.0
# What build commands take from the server's environment: the basics runners get, the
# installers' own settings (indexes, caches, certificates) and proxies; nothing else.
_BUILD_INHERITED = (
    "PATH",
    "HOME",
    "LANG",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)
_BUILD_INHERITED_PREFIXES = ("PIP_", "UV_")


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildOutcome:
    """What a successful build gives the runners of a model.

    ``python`` is the interpreter for Python runners (``None`` for exec models);
    ``env_hash`` the shared environment used (``None`` when the model needs none);
    ``env_reused`` is true when that environment existed already and was not rebuilt.
    """

    python: str | None
    env_hash: str | None
    env_reused: bool
    log: str


class BuildLog:
    """The lines of one build, each also handed to the progress callback as it arrives."""

    def __init__(self, progress: ProgressCallback | None = None) -> None:
        self.lines: list[str] = []
        self._progress = progress

    async def add(self, line: str) -> None:
        """Record ``line`` and pass it to the progress callback (awaited if async)."""
        self.lines.append(line)
        if self._progress is not None:
            result = self._progress(line)
            if inspect.isawaitable(result):
                await result

    def text(self) -> str:
        """The whole log so far."""
        return "\n".join(self.lines) + ("\n" if self.lines else "")


class Builder:
    """Builds model environments under ``data_dir/envs``. One per server process."""

    def __init__(
        self,
        data_dir: Path,
        *,
        installer: Installer = "auto",
        timeout_s: float = DEFAULT_BUILD_TIMEOUT_S,
        allow_direct_requirements: bool = False,
        import_timeout_s: float = DEFAULT_IMPORT_TIMEOUT_S,
    ) -> None:
        self.data_dir = data_dir.absolute()
        self.envs_dir = self.data_dir / "envs"
        self.installer = installer
        self.timeout_s = timeout_s
        self.import_timeout_s = import_timeout_s
        self.allow_direct_requirements = allow_direct_requirements
        self._locks: dict[str, asyncio.Lock] = {}

    @staticmethod
    def env_hash(requirements: Sequence[str]) -> str:
        """``sha256:<hex>`` of this interpreter and the sorted, de-duplicated requirements."""
        identity = {
            "python": f"{sys.implementation.name}-{platform.python_version()}",
            "platform": f"{sys.platform}-{platform.machine()}",
            "requirements": sorted(set(requirements)),
        }
        canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def env_dir(self, env_hash: str) -> Path:
        """Where the environment with ``env_hash`` lives (short name: shebang lines are
        limited to 127 bytes on Linux)."""
        return self.envs_dir / env_hash.removeprefix("sha256:")[:32]

    def env_python(self, env_hash: str) -> Path:
        """The interpreter of that environment."""
        return self.env_dir(env_hash) / "bin" / "python"

    def env_ready(self, env_hash: str) -> bool:
        """Whether the environment is completely built on this machine."""
        return (self.env_dir(env_hash) / READY_MARKER).is_file()

    async def build(
        self, manifest: Manifest, model_dir: Path, *, progress: ProgressCallback | None = None
    ) -> BuildOutcome:
        """Check the model in ``model_dir`` is launchable and prepare what it runs on.

        Raises :class:`BuildError` (with the full log) when the check fails, an install
        fails, a module of the model fails to import in its environment (a missing module
        is named, with the requirement to add), or the build runs past the builder's
        timeout; :class:`ManifestError` for a direct URL or path requirement this builder
        does not allow (before running anything).
        """
        self.check_requirements(manifest.runtime.requirements)
        log = BuildLog(progress)
        await log.add(f"== build of {manifest.owner}/{manifest.name}")
        problem = launch_problem(manifest, model_dir)
        if problem:
            await log.add(f"error: {problem}")
            raise BuildError(f"the model cannot be launched: {problem}", log=log.text())
        await log.add("launch check passed")
        outcome = await self._prepare(manifest, log)
        if outcome.python is not None and manifest.runtime.kind == "python":
            await self._check_imports(manifest, model_dir, outcome.python, log)
        return replace(outcome, log=log.text())

    async def _check_imports(
        self, manifest: Manifest, model_dir: Path, python: str, log: BuildLog
    ) -> None:
        """Import the model's modules as its runners will; :class:`BuildError` if one fails.
        (ADK algorithms are not imported: their module starts serving when imported.)"""
        runtime = manifest.runtime
        modules = sorted({split_callable(ref)[0] for ref in runtime.callables().values()})
        runtime_dir = await asyncio.to_thread(install_runtime, self.data_dir)
        env = runner_env(model_dir=model_dir, runtime_dir=runtime_dir, extra=runtime.env)
        try:
            failure = await import_failure(
                python, modules, cwd=model_dir, env=env, timeout_s=self.import_timeout_s
            )
        except TimeoutError:
            await log.add(
                f"import check: still importing after {self.import_timeout_s:.0f} s; "
                "not checked (the runners will import it)"
            )
            return
        except OSError as exc:
            await log.add(f"error: cannot run {python}: {exc}")
            raise BuildError(f"cannot run {python}: {exc}", log=log.text()) from None
        if failure is None:
            await log.add(f"import check passed: {', '.join(modules)}")
            return
        for line in (failure.output + "\n" + failure.trace).strip().splitlines():
            await log.add(line)
        problem = import_problem(failure, model_dir, runtime.requirements)
        await log.add(f"error: {problem}")
        raise BuildError(f"the model cannot be launched: {problem}", log=log.text())

    async def ensure_env(
        self, requirements: Sequence[str], *, progress: ProgressCallback | None = None
    ) -> BuildOutcome:
        """The environment for ``requirements``, built now unless it exists already.

        Blocks (asynchronously) while another task or process builds the same one.
        Raises :class:`BuildError` with the log if the install fails, and
        :class:`ManifestError` for a direct requirement this builder does not allow.
        """
        self.check_requirements(requirements)
        log = BuildLog(progress)
        env_hash = self.env_hash(requirements)
        try:
            async with asyncio.timeout(self.timeout_s):
                reused = await self._ensure(env_hash, requirements, log)
        except TimeoutError:
            await log.add(f"error: the build took longer than {self.timeout_s:.0f} s")
            raise BuildError(
                f"building the environment took longer than {self.timeout_s:.0f} s",
                log=log.text(),
            ) from None
        return BuildOutcome(
            python=str(self.env_python(env_hash)),
            env_hash=env_hash,
            env_reused=reused,
            log=log.text(),
        )

    def check_requirements(self, requirements: Sequence[str]) -> None:
        """Raise :class:`ManifestError` for the first direct URL or path requirement
        (``pkg @ URL``) unless this builder allows them."""
        if self.allow_direct_requirements:
            return
        for text in requirements:
            if Requirement(text).url is not None:
                raise ManifestError(
                    f"requirement {text!r} installs from a URL or path: direct requirements "
                    "are refused unless the server allows them "
                    "(serve --allow-direct-requirements, MODELBUS_ALLOW_DIRECT_REQUIREMENTS=1); "
                    "require a package by name and version from the package index instead"
                )

    async def _prepare(self, manifest: Manifest, log: BuildLog) -> BuildOutcome:
        runtime = manifest.runtime
        if runtime.kind == "exec":
            await log.add("exec model: no Python environment needed")
            return BuildOutcome(python=None, env_hash=None, env_reused=False, log=log.text())
        if not runtime.requirements:
            await log.add(f"no requirements: runs on the server's interpreter {sys.executable}")
            return BuildOutcome(
                python=sys.executable, env_hash=None, env_reused=False, log=log.text()
            )
        try:
            outcome = await self.ensure_env(runtime.requirements, progress=log.add)
        except BuildError as exc:
            raise BuildError(exc.message, log=log.text()) from None
        return BuildOutcome(
            python=outcome.python,
            env_hash=outcome.env_hash,
            env_reused=outcome.env_reused,
            log=log.text(),
        )

    async def _ensure(self, env_hash: str, requirements: Sequence[str], log: BuildLog) -> bool:
        """Build the environment unless ready; returns True when it was reused."""
        env_dir = self.env_dir(env_hash)
        lock = self._locks.setdefault(env_hash, asyncio.Lock())
        async with lock, _file_lock(env_dir.with_suffix(".lock"), log):
            if self.env_ready(env_hash):
                await log.add(f"reusing environment {env_hash} at {env_dir}")
                return True
            await log.add(f"creating environment {env_hash} at {env_dir}")
            await self._create(env_dir, requirements, log)
            return False

    async def _create(self, env_dir: Path, requirements: Sequence[str], log: BuildLog) -> None:
        await _remove(env_dir)  # leftovers of an interrupted build
        try:
            await self._install(env_dir, requirements, log)
        except BaseException:
            await asyncio.shield(_remove(env_dir))
            raise
        marker = {"requirements": list(requirements), "built_at": time.time()}
        (env_dir / READY_MARKER).write_text(json.dumps(marker, indent=2))
        await log.add("environment ready")

    async def _install(self, env_dir: Path, requirements: Sequence[str], log: BuildLog) -> None:
        python = str(env_dir / "bin" / "python")
        uv = await self._usable_uv(log)
        if uv is not None:
            create = [uv, "venv", "--python", sys.executable, str(env_dir)]
            install = [uv, "pip", "install", "--python", python, "-r", "requirements.txt"]
        else:
            create = [sys.executable, "-m", "venv", str(env_dir)]
            install = [python, "-m", "pip", "install", "--no-input", "-r", "requirements.txt"]
        await _run("creating the virtualenv", create, log, self.envs_dir)
        (env_dir / "requirements.txt").write_text("\n".join(requirements) + "\n")
        await _run("installing the requirements", install, log, env_dir)

    async def _usable_uv(self, log: BuildLog) -> str | None:
        """The uv executable if it is found and runs; else None (pip is used instead).

        Raises :class:`BuildError` when uv is unusable but ``installer="uv"`` demands it.
        """
        if self.installer == "pip":
            await log.add("installer: python -m venv and pip (as configured)")
            return None
        problem = await _uv_problem()
        if problem is None:
            return _find_uv()
        if self.installer == "uv":
            raise BuildError(f"uv is required (installer='uv') but unusable: {problem}")
        await log.add(f"uv is unusable ({problem}): falling back to python -m venv and pip")
        return None


def _find_uv() -> str:
    import uv

    return str(uv.find_uv_bin())


async def _uv_problem() -> str | None:
    """Why uv cannot be used here, or None when ``uv --version`` works."""
    try:
        proc = await asyncio.create_subprocess_exec(
            _find_uv(),
            "--version",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except (ImportError, OSError) as exc:
        return str(exc) or type(exc).__name__
    try:
        async with asyncio.timeout(_UV_CHECK_TIMEOUT_S):
            code = await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return f"uv --version did not answer within {_UV_CHECK_TIMEOUT_S:.0f} s"
    return None if code == 0 else f"uv --version exited with status {code}"


async def _remove(path: Path) -> None:
    await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)


@contextlib.asynccontextmanager
async def _file_lock(path: Path, log: BuildLog) -> AsyncIterator[None]:
    """An exclusive lock on ``path`` across processes, waited for without blocking the loop.

    (Polling a non-blocking ``flock`` keeps the wait cancellable; a thread blocked in
    ``flock`` could not be stopped and would take the lock after its waiter was gone.)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    await log.add(f"waiting for another build of the same environment ({path})")
                    waiting = True
                await asyncio.sleep(_LOCK_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock


async def _run(what: str, argv: list[str], log: BuildLog, cwd: Path) -> None:
    """Run one build command (doing ``what``), streaming its merged output into ``log``.

    Raises :class:`BuildError` when it exits non-zero, quoting its last output line.
    Cancelling kills the process.
    """
    await log.add("$ " + shlex.join(argv))
    first_line = len(log.lines)
    env = build_env()
    await asyncio.to_thread(cwd.mkdir, parents=True, exist_ok=True)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            limit=1024 * 1024,
        )
    except OSError as exc:
        await log.add(f"error: cannot run {argv[0]}: {exc}")
        raise BuildError(f"cannot run {argv[0]}: {exc}", log=log.text()) from None
    try:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            await log.add(raw.decode(errors="replace").rstrip("\r\n"))
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if code != 0:
        output = [line.strip() for line in log.lines[first_line:] if line.strip()]
        await log.add(f"error: command exited with status {code}")
        reason = _failure_reason(output)
        raise BuildError(f"{what} failed (exit status {code}){reason}", log=log.text())


def build_env() -> dict[str, str]:
    """The complete environment of a build command: ``PATH``, ``HOME``, ``LANG``,
    ``TMPDIR``, the user's name, XDG cache and config folders, CA certificate settings,
    proxies and the installers' own ``PIP_*`` and ``UV_*`` settings from the server's
    environment, plus quiet output. Nothing else (no ``MODELBUS_*``, no credentials of the
    server) reaches a build backend."""
    env = {name: os.environ[name] for name in _BUILD_INHERITED if os.environ.get(name)}
    env |= {k: v for k, v in os.environ.items() if k.startswith(_BUILD_INHERITED_PREFIXES)}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    env.update(
        NO_COLOR="1", UV_NO_PROGRESS="1", UV_PYTHON_DOWNLOADS="never", PIP_PROGRESS_BAR="off"
    )
    return env


def _failure_reason(output: list[str]) -> str:
    """The installer's own explanation, as one line: its last ``error`` paragraph (uv and pip
    wrap long messages over several lines), else its last line."""
    starts = [i for i, line in enumerate(output) if line.lower().startswith("error")]
    if not starts:
        return f": {output[-1]}" if output else ""
    paragraph = " ".join(output[starts[-1] : starts[-1] + 6])
    return f": {paragraph[:600]}"


# Modules whose package on the index has another name (the common ones).
_PACKAGE_OF = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "PIL": "pillow",
    "cv2": "opencv-python-headless",
    "yaml": "pyyaml",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "attr": "attrs",
    "dotenv": "python-dotenv",
    "jwt": "pyjwt",
    "Crypto": "pycryptodome",
    "serial": "pyserial",
    "magic": "python-magic",
    "docx": "python-docx",
}


def import_problem(failure: ImportFailure, model_dir: Path, requirements: Sequence[str]) -> str:
    """What to tell about ``failure``: for a module the environment lacks, its name and the
    requirement to add (the package's name on the index when it differs, for common ones);
    else the module that failed and the error."""
    missing = failure.missing
    own = missing is not None and (
        (model_dir / missing).exists() or (model_dir / f"{missing}.py").exists()
    )
    if missing is None or own:
        return f"importing {failure.module} failed: {failure.error}"
    package = _PACKAGE_OF.get(missing, missing)
    required = {Requirement(text).name.lower().replace("_", "-") for text in requirements}
    if package.lower().replace("_", "-") in required:
        return (
            f"model imports `{missing}`, which its environment lacks although `{package}` is "
            "in [runtime] requirements in modelbus.toml: check which package provides it"
        )
    return (
        f"model imports `{missing}`, which its environment lacks: add `{package}` to "
        "[runtime] requirements in modelbus.toml"
    )


def launch_problem(manifest: Manifest, model_dir: Path) -> str | None:
    """Why the model in ``model_dir`` could not be started, or None when it can.

    Python models: each ``module:function`` in the manifest names a module file present in
    the folder, which compiles and (unless it defines names dynamically) binds the function.
    Exec models: the command's program exists (in the folder, or on ``PATH``).
    """
    runtime = manifest.runtime
    if runtime.kind == "exec":
        assert runtime.command
        return _exec_problem(runtime.command[0], model_dir, runtime.env)
    if runtime.kind == "adk":
        assert runtime.entrypoint
        module = model_dir.joinpath(*runtime.entrypoint.split(".")).with_suffix(".py")
        if not module.is_file():
            return f"[runtime] entrypoint: {module.relative_to(model_dir)} not found"
    for key, ref in runtime.callables().items():
        problem = _callable_problem(model_dir, ref)
        if problem:
            return f"[runtime] {key} = {ref!r}: {problem}"
    return None


def _exec_problem(program: str, model_dir: Path, env: dict[str, str]) -> str | None:
    if "/" in program:
        path = (model_dir / program).resolve()
        if not path.is_file():
            return f"[runtime] command: {program!r} not found in the model folder"
        if not os.access(path, os.X_OK):
            return f"[runtime] command: {program!r} is not executable (chmod +x it)"
        return None
    search_path = env.get("PATH", os.environ.get("PATH", os.defpath))
    if shutil.which(program, path=search_path) is None:
        return f"[runtime] command: program {program!r} not found on PATH ({search_path})"
    return None


def _callable_problem(model_dir: Path, ref: str) -> str | None:
    module, function = split_callable(ref)
    base = model_dir.joinpath(*module.split("."))
    candidates = [base.with_suffix(".py"), base / "__init__.py"]
    source_file = next((c for c in candidates if c.is_file()), None)
    if source_file is None:
        return f"module file {candidates[0].relative_to(model_dir)} not found in the model folder"
    rel = source_file.relative_to(model_dir)
    try:
        tree = ast.parse(source_file.read_bytes(), filename=str(rel))
    except (SyntaxError, ValueError) as exc:
        return f"{rel} does not compile: {exc}"
    names = _top_level_names(tree)
    if names is not None and function not in names:
        return f"{rel} defines no {function!r}"
    return None


def _top_level_names(tree: ast.Module) -> set[str] | None:
    """Names bound at module level, or None when the module may bind names dynamically."""
    names: set[str] = set()
    for node in _module_statements(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    dynamic = {"globals", "exec", "vars"}
    if "__getattr__" in names or any(
        isinstance(n, ast.Name) and n.id in dynamic for n in ast.walk(tree)
    ):
        return None
    return names


def _module_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run at import, descending into if/try/with blocks."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If | ast.With | ast.AsyncWith):
            out += _module_statements(node.body) + _module_statements(getattr(node, "orelse", []))
        elif isinstance(node, ast.Try):
            blocks = [node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)]
            for block in blocks:
                out += _module_statements(block)
    return out
