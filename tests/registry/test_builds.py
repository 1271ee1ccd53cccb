"""Builds: launch checks, and real virtualenvs made with uv (or venv + pip), built once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from modelbus.errors import BuildError
from modelbus.registry import builds
from modelbus.registry.builds import READY_MARKER, Builder, import_problem, launch_problem
from modelbus.registry.launch import ImportFailure
from modelbus.registry.manifest import Manifest

MakeModel = Callable[..., Path]

APPLY = "def apply(x):\n    return x\n"
SIX = 'entrypoint = "model:apply"\nrequirements = ["six==1.17.0"]'


def runs(python: str, code: str) -> bool:
    return subprocess.run([python, "-c", code], capture_output=True, timeout=60).returncode == 0


def problem(folder: Path) -> str | None:
    return launch_problem(Manifest.load(folder), folder)


def test_launch_check_python(make_model: MakeModel) -> None:
    assert problem(make_model()) is None
    assert "model.py not found" in str(problem(make_model(files={})))
    assert "defines no 'apply'" in str(
        problem(make_model(files={"model.py": "def other(): ...\n"}))
    )
    assert "does not compile" in str(problem(make_model(files={"model.py": "def apply(:\n"})))
    nested = 'entrypoint = "pkg.model:apply"\nload = "pkg.model:setup"'
    files = {"pkg/__init__.py": "", "pkg/model.py": "def apply(x): ...\ndef setup(): ...\n"}
    assert problem(make_model(runtime=nested, files=files)) is None
    package = 'entrypoint = "pkg:apply"'
    imported = {"pkg/__init__.py": "from .impl import apply\n", "pkg/impl.py": APPLY}
    assert problem(make_model(runtime=package, files=imported)) is None
    bad_load = 'entrypoint = "model:apply"\nload = "model:load"'
    assert "[runtime] load = 'model:load'" in str(problem(make_model(runtime=bad_load)))


def test_launch_check_accepts_dynamic_modules(make_model: MakeModel) -> None:
    star = {"model.py": "from impl import *\n", "impl.py": "def apply(x): ...\n"}
    assert problem(make_model(files=star)) is None
    getattr_module = {"model.py": "def __getattr__(name): ...\n"}
    assert problem(make_model(files=getattr_module)) is None
    assigned = {"model.py": "import functools\napply = functools.partial(print)\n"}
    assert problem(make_model(files=assigned)) is None
    guarded = {"model.py": "try:\n    import x\nexcept ImportError:\n    def apply(v): ...\n"}
    assert problem(make_model(files=guarded)) is None


def test_launch_check_exec(make_model: MakeModel) -> None:
    assert problem(make_model(runtime='kind = "exec"\ncommand = ["sh", "-c", "true"]')) is None
    missing = make_model(runtime='kind = "exec"\ncommand = ["no-such-program-xyz"]')
    assert "'no-such-program-xyz' not found on PATH" in str(problem(missing))
    script = make_model(
        runtime='kind = "exec"\ncommand = ["./run.sh"]', files={"run.sh": "#!/bin/sh\n"}
    )
    assert "is not executable" in str(problem(script))
    (script / "run.sh").chmod(0o755)
    assert problem(script) is None
    absent = make_model(runtime='kind = "exec"\ncommand = ["./gone.sh"]')
    assert "not found in the model folder" in str(problem(absent))


async def test_build_without_requirements_uses_the_server_interpreter(
    make_model: MakeModel, tmp_path: Path
) -> None:
    folder = make_model()
    outcome = await Builder(tmp_path / "data").build(Manifest.load(folder), folder)
    assert outcome.python == sys.executable and outcome.env_hash is None
    assert not (tmp_path / "data" / "envs").exists()


async def test_build_refuses_an_unlaunchable_model(make_model: MakeModel, tmp_path: Path) -> None:
    folder = make_model(files={"model.py": "x = 1\n"})
    with pytest.raises(BuildError, match="defines no 'apply'") as info:
        await Builder(tmp_path / "data").build(Manifest.load(folder), folder)
    assert "error:" in info.value.log


def test_env_hash_depends_on_the_set_of_requirements() -> None:
    h = Builder.env_hash
    assert h(["six", "idna"]) == h(["idna", "six", "six"])
    assert h(["six"]) != h(["six==1.17.0"])
    assert h([]) != h(["six"])


@pytest.mark.slow
async def test_requirements_get_a_real_isolated_env_built_once(
    make_model: MakeModel, tmp_path: Path
) -> None:
    builder = Builder(tmp_path / "data")
    lines: list[str] = []
    first = make_model("first", runtime=SIX)
    outcome = await builder.build(Manifest.load(first), first, progress=lines.append)

    assert outcome.python and outcome.env_hash and not outcome.env_reused
    env_dir = builder.env_dir(outcome.env_hash)
    assert outcome.python == str(env_dir / "bin" / "python")
    assert runs(outcome.python, "import six; assert six.__version__ == '1.17.0'")
    assert not runs(outcome.python, "import sqlalchemy")  # none of the server's packages
    assert any(" venv " in line for line in lines)
    assert outcome.log.splitlines() == lines  # streamed line by line, and all kept

    # Another model with the same requirements reuses the environment without rebuilding.
    marker_mtime = (env_dir / READY_MARKER).stat().st_mtime_ns
    second = make_model("second", runtime=SIX, files={"model.py": "def apply(x): return 2\n"})
    again = await builder.build(Manifest.load(second), second)
    assert again.env_reused and again.env_hash == outcome.env_hash
    assert "reusing environment" in again.log and " venv " not in again.log
    assert (env_dir / READY_MARKER).stat().st_mtime_ns == marker_mtime


@pytest.mark.slow
async def test_concurrent_builds_of_one_env_build_it_once(tmp_path: Path) -> None:
    """Two builders (as two processes would) on one data dir, building at the same time."""
    builders = [Builder(tmp_path / "data"), Builder(tmp_path / "data")]
    requirements = ["six==1.17.0"]
    outcomes = await asyncio.gather(
        builders[0].ensure_env(requirements),
        builders[1].ensure_env(requirements),
        builders[0].ensure_env(requirements),
    )
    assert sorted(o.env_reused for o in outcomes) == [False, True, True]
    assert len({o.python for o in outcomes}) == 1
    assert runs(str(outcomes[0].python), "import six")


@pytest.mark.slow
async def test_failed_install_raises_with_the_log_and_leaves_no_env(
    make_model: MakeModel, tmp_path: Path
) -> None:
    builder = Builder(tmp_path / "data")
    runtime = 'entrypoint = "model:apply"\nrequirements = ["modelbus-no-such-package-4d1e==1.0"]'
    folder = make_model(runtime=runtime)
    with pytest.raises(BuildError, match=r"installing the requirements failed.*not found") as info:
        await builder.build(Manifest.load(folder), folder)
    assert "modelbus-no-such-package-4d1e" in info.value.log
    assert "== build of tests/hello" in info.value.log  # the whole log, not just the install
    env_hash = builder.env_hash(["modelbus-no-such-package-4d1e==1.0"])
    assert not builder.env_dir(env_hash).exists()
    assert not builder.env_ready(env_hash)


@pytest.mark.slow
async def test_an_unusable_uv_falls_back_to_venv_and_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builds, "_find_uv", lambda: "/bin/false")  # a uv that cannot run
    outcome = await Builder(tmp_path / "data").ensure_env(["six==1.17.0"])
    assert outcome.python and runs(outcome.python, "import six")
    assert "uv is unusable (uv --version exited with status 1)" in outcome.log
    assert "-m venv" in outcome.log and "-m pip install" in outcome.log
    with pytest.raises(BuildError, match="uv is required"):
        await Builder(tmp_path / "other", installer="uv").ensure_env(["six==1.17.0"])


@pytest.mark.slow
async def test_a_half_built_env_is_rebuilt(tmp_path: Path) -> None:
    builder = Builder(tmp_path / "data")
    env_hash = builder.env_hash(["six==1.17.0"])
    (builder.env_dir(env_hash) / "bin").mkdir(parents=True)  # an interrupted build's leftovers
    outcome = await builder.ensure_env(["six==1.17.0"])
    assert not outcome.env_reused and outcome.python and runs(outcome.python, "import six")


async def test_a_module_the_environment_lacks_fails_the_build_naming_the_requirement(
    make_model: MakeModel, tmp_path: Path
) -> None:
    builder = Builder(tmp_path / "data")
    folder = make_model(files={"model.py": "import no_such_package_xyz\n" + APPLY})
    with pytest.raises(BuildError) as info:
        await builder.build(Manifest.load(folder), folder)
    assert info.value.message == (
        "the model cannot be launched: model imports `no_such_package_xyz`, which its "
        "environment lacks: add `no_such_package_xyz` to [runtime] requirements in modelbus.toml"
    )
    assert "import no_such_package_xyz" in info.value.log  # the model's own traceback
    assert "importlib" not in info.value.log  # not the machinery's


def test_a_missing_module_is_told_by_the_package_to_require(tmp_path: Path) -> None:
    def told(missing: str, requirements: list[str]) -> str:
        failure = ImportFailure(module="model", missing=missing, error="", trace="", output="")
        return import_problem(failure, tmp_path, requirements)

    assert "add `scikit-learn` to [runtime] requirements" in told("sklearn", [])
    assert "add `pillow` to" in told("PIL", ["numpy"])
    assert "although `scikit-learn` is in [runtime] requirements" in told(
        "sklearn", ["scikit_learn>=1"]
    )
    (tmp_path / "helpers.py").write_text("")  # the model's own module: not a requirement
    assert told("helpers", []).startswith("importing model failed")


async def test_a_model_failing_on_import_fails_the_build(
    make_model: MakeModel, tmp_path: Path
) -> None:
    folder = make_model(
        files={"model.py": "print('starting')\nraise ValueError('no config')\n" + APPLY}
    )
    with pytest.raises(BuildError, match="importing model failed: ValueError: no config") as info:
        await Builder(tmp_path / "data").build(Manifest.load(folder), folder)
    assert "starting" in info.value.log  # what the import printed is in the build log


async def test_the_import_check_runs_the_model_folder_with_the_runner_env(
    make_model: MakeModel, tmp_path: Path
) -> None:
    files = {
        "model.py": "import helper\nimport os\nassert os.environ['GREETING'] == 'hi'\n"
        "from modelbus_runner import PermanentError\n" + APPLY,
        "helper.py": "",
    }
    folder = make_model(
        runtime='entrypoint = "model:apply"\nenv = { GREETING = "hi" }', files=files
    )
    outcome = await Builder(tmp_path / "data").build(Manifest.load(folder), folder)
    assert "import check passed: model" in outcome.log
    assert not list(folder.rglob("__pycache__"))  # the model folder is left as it was


@pytest.mark.slow
async def test_the_import_check_uses_the_models_own_environment(
    make_model: MakeModel, tmp_path: Path
) -> None:
    # sqlalchemy is in the server's environment, not in one built for six alone
    folder = make_model(runtime=SIX, files={"model.py": "import six\nimport sqlalchemy\n" + APPLY})
    with pytest.raises(BuildError) as info:
        await Builder(tmp_path / "data").build(Manifest.load(folder), folder)
    assert "model imports `sqlalchemy`, which its environment lacks: add `sqlalchemy`" in str(
        info.value.message
    )
