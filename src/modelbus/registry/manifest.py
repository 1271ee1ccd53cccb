"""The model folder manifest, ``modelbus.toml`` (format: docs and the manifest brief).

:meth:`Manifest.load` reads a folder's manifest, resolves the files it points at (a
``requirements.txt``, JSON Schema files) and validates everything, so the resulting
:class:`Manifest` is self-contained: it is stored with each build as JSON
(:meth:`Manifest.to_json` / :meth:`Manifest.from_json`) and never needs the folder again.
Every problem raises :class:`~modelbus.errors.ManifestError` naming the file, the key and
what is expected.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from modelbus.client.adk import adk_manifest, is_adk_folder
from modelbus.errors import InvalidInput, ManifestError

MANIFEST_FILE = "modelbus.toml"

_NAME = re.compile(r"^[a-zA-Z0-9][\w.-]*$")
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_CALLABLE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
NAME_FORM = "letters, digits, '_', '.' or '-', starting with a letter or digit, at most 100"
CALLABLE_FORM = "'module:function', e.g. 'model:apply' (module relative to the model folder)"


def check_model_name(owner: str, name: str) -> None:
    """Raise :class:`InvalidInput` unless ``owner`` and ``name`` are valid model names."""
    for value in (owner, name):
        if not _NAME.match(value) or len(value) > 100:
            raise InvalidInput(f"{value!r} is not a valid name ({NAME_FORM} characters)")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSection(_Section):
    """``[model]``: who owns the model and what it is called."""

    owner: str
    name: str
    description: str = ""

    @field_validator("owner", "name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value) or len(value) > 100:
            raise ValueError(f"{value!r} is not a valid name ({NAME_FORM} characters)")
        return value


class RuntimeSection(_Section):
    """``[runtime]``: how a runner for this model is started."""

    kind: Literal["python", "exec", "adk"] = "python"
    entrypoint: str | None = None
    load: str | None = None
    apply_batch: str | None = None
    requirements: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("entrypoint", "load", "apply_batch")
    @classmethod
    def _check_callable(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("kind") == "adk":
            # an ADK algorithm's entrypoint is its module (it makes ADK(apply, load) itself)
            if info.field_name != "entrypoint" or not _MODULE.match(value):
                raise ValueError("kind = 'adk' takes only entrypoint = 'package.module'")
            return value
        if not _CALLABLE.match(value):
            raise ValueError(f"{value!r} is not {CALLABLE_FORM}")
        return value

    @field_validator("requirements")
    @classmethod
    def _normalize_requirements(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_normalize_requirement(i, text) for i, text in enumerate(value))

    @model_validator(mode="after")
    def _check_kind(self) -> RuntimeSection:
        if self.kind in ("python", "adk"):
            if self.entrypoint is None:
                form = "'package.module'" if self.kind == "adk" else CALLABLE_FORM
                raise ValueError(f"kind = {self.kind!r} needs entrypoint = {form}")
            if self.command is not None:
                raise ValueError("command is only for kind = 'exec'")
        else:
            if not self.command:
                raise ValueError("kind = 'exec' needs command = [program, args...]")
            extras = [k for k in ("entrypoint", "load", "apply_batch") if getattr(self, k)]
            if extras or self.requirements:
                keys = ", ".join([*extras, *(["requirements"] if self.requirements else [])])
                raise ValueError(f"{keys}: only for kind = 'python'")
        return self

    def callables(self) -> dict[str, str]:
        """The ``module:function`` references given (entrypoint, load, apply_batch); none
        for an ADK algorithm, whose entrypoint is a module."""
        if self.kind == "adk":
            return {}
        given = {"entrypoint": self.entrypoint, "load": self.load, "apply_batch": self.apply_batch}
        return {k: v for k, v in given.items() if v is not None}


class ServingSection(_Section):
    """``[serving]``: pool policy and the default per-call timeout."""

    timeout_s: float = Field(60.0, gt=0)
    min_runners: int = Field(0, ge=0)
    max_runners: int = Field(2, ge=1)
    idle_timeout_s: float = Field(300.0, ge=0)
    memory_limit_mb: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check_bounds(self) -> ServingSection:
        if self.min_runners > self.max_runners:
            raise ValueError(
                f"min_runners ({self.min_runners}) must not exceed max_runners ({self.max_runners})"
            )
        return self


class SchemaSection(_Section):
    """``[schema]``: optional JSON Schemas for the input and the output (already loaded)."""

    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None


class Manifest(_Section):
    """A validated ``modelbus.toml``. Immutable; requirements and schemas are inline."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    model: ModelSection
    runtime: RuntimeSection
    serving: ServingSection = Field(default_factory=ServingSection)
    schemas: SchemaSection = Field(default_factory=SchemaSection, alias="schema")

    @property
    def owner(self) -> str:
        return self.model.owner

    @property
    def name(self) -> str:
        return self.model.name

    @classmethod
    def load(
        cls, folder: Path, *, label: str | None = None, name: tuple[str, str] | None = None
    ) -> Manifest:
        """Read and validate ``folder/modelbus.toml``; for an Algorithmia ADK folder without
        one, the manifest its ``algorithmia.conf`` stands for (named ``name`` when given; see
        :mod:`modelbus.client.adk`).

        Resolves ``requirements = "file"`` and schema file paths relative to the folder (they
        must stay inside it). Raises :class:`ManifestError` naming the file (as ``label``
        when given, e.g. for an uploaded archive unpacked in a scratch folder), the key and
        the problem.
        """
        file = folder / MANIFEST_FILE
        path = label or str(file)
        if is_adk_folder(folder):
            data = tomllib.loads(adk_manifest(folder, name))
            return cls.from_json(_resolve_files(data, folder, path), source=path)
        if not file.is_file():
            raise ManifestError(
                f"{path}: not found (a model folder needs a {MANIFEST_FILE} with a [model] "
                "table giving owner and name, and a [runtime] table)"
            )
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path}: not valid TOML: {exc}") from None
        data = _resolve_files(data, folder, path)
        return cls.from_json(data, source=path)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str = MANIFEST_FILE) -> Manifest:
        """Validate a manifest given as a mapping (the TOML tables, or :meth:`to_json`).

        Raises :class:`ManifestError` prefixed with ``source``.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ManifestError(_describe(exc, source)) from None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict that :meth:`from_json` turns back into an equal manifest."""
        return self.model_dump(mode="json", by_alias=True)


def split_callable(ref: str) -> tuple[str, str]:
    """``"pkg.model:apply"`` -> ``("pkg.model", "apply")``."""
    module, _, function = ref.partition(":")
    return module, function


def _normalize_requirement(index: int, text: str) -> str:
    try:
        return str(Requirement(text))
    except InvalidRequirement as exc:
        raise ValueError(
            f"requirement #{index + 1} {text!r} is not a pip requirement ({exc})"
        ) from None


def _resolve_files(data: dict[str, Any], folder: Path, path: str) -> dict[str, Any]:
    """Replace file references (requirements file, schema files) by their content."""
    data = dict(data)
    runtime = data.get("runtime")
    if isinstance(runtime, dict) and isinstance(runtime.get("requirements"), str):
        where = f"{path}: [runtime] requirements"
        req_file = _inside(folder, runtime["requirements"], where)
        data["runtime"] = {**runtime, "requirements": _read_requirements(req_file, where)}
    schema = data.get("schema")
    if isinstance(schema, dict):
        data["schema"] = {
            key: _read_json(_inside(folder, value, f"{path}: [schema] {key}"), path, key)
            if isinstance(value, str)
            else value
            for key, value in schema.items()
        }
    return data


def _inside(folder: Path, relative: str, where: str) -> Path:
    root = folder.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise ManifestError(f"{where}: {relative!r} must be a file inside the model folder")
    if not target.is_file():
        raise ManifestError(f"{where}: file {relative!r} not found in the model folder")
    return target


def _read_requirements(req_file: Path, where: str) -> list[str]:
    requirements = []
    for number, raw in enumerate(req_file.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise ManifestError(
                f"{where}: {req_file.name} line {number}: pip options such as {line.split()[0]} "
                "are not supported; list one requirement per line"
            )
        requirements.append(line)
    return requirements


def _read_json(file: Path, path: str, key: str) -> Any:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(
            f"{path}: [schema] {key}: {file.name} is not valid JSON: {exc}"
        ) from None
    if not isinstance(value, dict):
        raise ManifestError(f"{path}: [schema] {key}: {file.name} must hold a JSON object")
    return value


_FRIENDLY = {
    "missing": "is required",
    "extra_forbidden": "unknown key",
}


_SECTIONS: dict[str, type[_Section]] = {
    "model": ModelSection,
    "runtime": RuntimeSection,
    "serving": ServingSection,
    "schema": SchemaSection,
}


def _describe(exc: ValidationError, source: str) -> str:
    """One line per problem: ``file: [table] key: what is wrong``."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        where = f"[{loc[0]}] {'.'.join(loc[1:])}".strip() if loc else "(top level)"
        message = _FRIENDLY.get(error["type"], error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden" and len(loc) == 1:
            message = "unknown table (expected [model], [runtime], [serving], [schema])"
        elif error["type"] == "extra_forbidden" and loc[0] in _SECTIONS:
            keys = ", ".join(_SECTIONS[loc[0]].model_fields)
            message = f"unknown key (expected one of: {keys})"
        lines.append(f"{where}: {message}")
    return f"{source}: " + "; ".join(lines)
