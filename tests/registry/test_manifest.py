"""modelbus.toml: loading, defaults, file references and the error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelbus.errors import ManifestError
from modelbus.registry.manifest import Manifest

MINIMAL = """
[model]
owner = "examples"
name = "hello"

[runtime]
entrypoint = "model:apply"
"""
EXEC_HEAD = '[model]\nowner = "a"\nname = "b"\n[runtime]\nkind = "exec"\n'


def folder_with(tmp_path: Path, toml: str, files: dict[str, str] | None = None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "modelbus.toml").write_text(toml)
    for name, content in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content)
    return folder


def load_error(tmp_path: Path, toml: str, files: dict[str, str] | None = None) -> str:
    with pytest.raises(ManifestError) as info:
        Manifest.load(folder_with(tmp_path, toml, files))
    message = str(info.value)
    assert str(tmp_path / "model" / "modelbus.toml") in message  # always names the file
    return message


def test_minimal_manifest_gets_the_documented_defaults(tmp_path: Path) -> None:
    m = Manifest.load(folder_with(tmp_path, MINIMAL))
    assert (m.owner, m.name, m.model.description) == ("examples", "hello", "")
    assert m.runtime.kind == "python" and m.runtime.requirements == ()
    assert (m.runtime.load, m.runtime.apply_batch, m.runtime.env) == (None, None, {})
    s = m.serving
    assert (s.timeout_s, s.min_runners, s.max_runners, s.idle_timeout_s, s.memory_limit_mb) == (
        60.0,
        0,
        2,
        300.0,
        0,
    )
    assert m.schemas.input is None and m.schemas.output is None


def test_full_manifest_with_files(tmp_path: Path) -> None:
    toml = """
[model]
owner = "acme"
name = "ocr.v2"
description = "Reads documents"

[runtime]
entrypoint = "pkg.model:apply"
load = "pkg.model:load"
apply_batch = "pkg.model:apply_batch"
requirements = "requirements.txt"
env = { OMP_NUM_THREADS = "1" }

[serving]
timeout_s = 5
min_runners = 1
max_runners = 4

[schema]
input = { type = "object", required = ["text"] }
output = "schemas/output.json"
"""
    files = {
        "requirements.txt": "# pinned\nsix==1.17.0  # tiny\n\nidna>=3\n",
        "schemas/output.json": json.dumps({"type": "string"}),
    }
    m = Manifest.load(folder_with(tmp_path, toml, files))
    assert m.runtime.requirements == ("six==1.17.0", "idna>=3")
    assert m.runtime.env == {"OMP_NUM_THREADS": "1"}
    assert m.serving.timeout_s == 5.0 and m.serving.max_runners == 4
    assert m.schemas.input == {"type": "object", "required": ["text"]}
    assert m.schemas.output == {"type": "string"}
    assert Manifest.from_json(json.loads(json.dumps(m.to_json()))) == m


def test_exec_manifest(tmp_path: Path) -> None:
    toml = EXEC_HEAD + 'command = ["node", "runner.js"]\n'
    m = Manifest.load(folder_with(tmp_path, toml))
    assert m.runtime.command == ("node", "runner.js") and m.runtime.entrypoint is None


def test_requirements_are_normalized(tmp_path: Path) -> None:
    toml = MINIMAL.replace('"model:apply"', '"model:apply"\nrequirements = ["Six >= 1.0 ,<2"]')
    assert Manifest.load(folder_with(tmp_path, toml)).runtime.requirements == ("Six<2,>=1.0",)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"modelbus\.toml: not found"):
        Manifest.load(tmp_path)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[model\nowner=", "not valid TOML"),
        ('[runtime]\nentrypoint = "m:f"', r"\[model\]: is required"),
        ('[model]\nname = "x"\n[runtime]\nentrypoint = "m:f"', r"\[model\] owner: is required"),
        (
            MINIMAL.replace('"examples"', '"bad owner!"'),
            r"\[model\] owner: 'bad owner!' is not a valid name",
        ),
        (MINIMAL.replace('"hello"', '"-x"'), r"\[model\] name: .*starting with a letter or digit"),
        (MINIMAL + "\n[serving]\ntimeout = 3\n", r"\[serving\] timeout: unknown key"),
        (MINIMAL + "\n[extras]\nx = 1\n", r"\[extras\]: unknown table"),
        (MINIMAL.replace('entrypoint = "model:apply"', ""), r"\[runtime\]: .*needs entrypoint"),
        (
            MINIMAL.replace('"model:apply"', '"model.apply"'),
            r"\[runtime\] entrypoint: 'model.apply' is not 'module:function'",
        ),
        (
            MINIMAL.replace('"model:apply"', '"model:apply"\ncommand = ["x"]'),
            r"command is only for kind = 'exec'",
        ),
        (EXEC_HEAD, r"needs command"),
        (
            EXEC_HEAD + 'command = ["x"]\nrequirements = ["six"]\n',
            r"requirements: only for kind = 'python'",
        ),
        (
            '[model]\nowner = "a"\nname = "b"\n[runtime]\nkind = "java"\n',
            r"\[runtime\] kind: Input should be 'python', 'exec' or 'adk'",
        ),
        (
            MINIMAL + "\n[serving]\nmin_runners = 3\nmax_runners = 2\n",
            r"min_runners \(3\) must not exceed max_runners \(2\)",
        ),
        (MINIMAL + "\n[serving]\ntimeout_s = 0\n", r"\[serving\] timeout_s: .*greater than 0"),
        (MINIMAL + "\n[serving]\nmax_runners = 0\n", r"\[serving\] max_runners"),
        (
            MINIMAL.replace('"model:apply"', '"model:apply"\nrequirements = ["six>=>1"]'),
            r"requirement #1 'six>=>1' is not a pip requirement",
        ),
        (
            MINIMAL.replace('"model:apply"', '"model:apply"\nenv = { A = 1 }'),
            r"\[runtime\] env\.A: Input should be a valid string",
        ),
    ],
)
def test_errors_name_the_file_key_and_expectation(tmp_path: Path, toml: str, expected: str) -> None:
    import re

    message = load_error(tmp_path, toml)
    assert re.search(expected, message), message


def test_requirements_file_errors(tmp_path: Path) -> None:
    toml = MINIMAL.replace('"model:apply"', '"model:apply"\nrequirements = "reqs.txt"')
    assert "file 'reqs.txt' not found" in load_error(tmp_path, toml)
    message = load_error(tmp_path, toml, {"reqs.txt": "six\n-r other.txt\n"})
    assert "line 2" in message and "-r" in message
    outside = MINIMAL.replace('"model:apply"', '"model:apply"\nrequirements = "../secret.txt"')
    (tmp_path / "secret.txt").write_text("six\n")
    assert "must be a file inside the model folder" in load_error(tmp_path, outside)


def test_schema_file_errors(tmp_path: Path) -> None:
    toml = MINIMAL + '\n[schema]\ninput = "in.json"\n'
    assert "[schema] input: file 'in.json' not found" in load_error(tmp_path, toml)
    assert "in.json is not valid JSON" in load_error(tmp_path, toml, {"in.json": "{nope"})
    assert "must hold a JSON object" in load_error(tmp_path, toml, {"in.json": "[1]"})


def test_manifest_is_immutable(tmp_path: Path) -> None:
    m = Manifest.load(folder_with(tmp_path, MINIMAL))
    with pytest.raises(Exception, match="frozen"):
        m.model.owner = "other"  # type: ignore[misc]


# --- Algorithmia ADK folders (no modelbus.toml) ----------------------------------------------


def test_an_adk_folder_stands_for_an_adk_manifest() -> None:
    from tests.support.fixtures import MODELS_DIR

    manifest = Manifest.load(MODELS_DIR / "adk_greeter")
    assert (manifest.owner, manifest.name) == ("adkuser", "greeter")
    assert manifest.runtime.kind == "adk"
    assert manifest.runtime.entrypoint == "src.Algorithm"
    assert manifest.runtime.requirements == ("algorithmia==2.0.5", "algorithmia-adk==1.2.4")
    assert manifest.runtime.callables() == {}
    renamed = Manifest.load(MODELS_DIR / "adk_plain", name=("team", "hello"))
    assert (renamed.owner, renamed.name) == ("team", "hello")
    assert renamed.runtime.entrypoint == "src.plain"  # src/<algoname>.py


@pytest.mark.parametrize(
    ("runtime", "message"),
    [
        ('kind = "adk"', "kind = 'adk' needs entrypoint = 'package.module'"),
        ('kind = "adk"\nentrypoint = "src.Algorithm:apply"', "only entrypoint = 'package.module'"),
        ('kind = "adk"\nentrypoint = "src.A"\nload = "m:f"', "only entrypoint"),
    ],
)
def test_adk_runtime_is_validated(tmp_path: Path, runtime: str, message: str) -> None:
    (tmp_path / "modelbus.toml").write_text(
        f'[model]\nowner = "a"\nname = "b"\n[runtime]\n{runtime}\n'
    )
    with pytest.raises(ManifestError, match=message):
        Manifest.load(tmp_path)
