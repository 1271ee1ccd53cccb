"""Model folders for registry and build tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

MakeModel = Callable[..., Path]

APPLY = "def apply(x):\n    return x\n"


@pytest.fixture
def make_model(tmp_path: Path) -> MakeModel:
    """``make_model(name, *, owner="tests", runtime="...", files={...})`` writes a model folder.

    ``runtime`` is the body of the ``[runtime]`` table (default: ``entrypoint =
    "model:apply"``); ``files`` maps paths to contents (default: a ``model.py`` with
    ``apply``); ``extra`` is appended to the TOML.
    """
    counter = iter(range(1_000_000))

    def make(
        name: str = "hello",
        *,
        owner: str = "tests",
        runtime: str = 'entrypoint = "model:apply"',
        files: dict[str, str] | None = None,
        extra: str = "",
        description: str = "",
    ) -> Path:
        folder = tmp_path / "models" / f"{name}-{next(counter)}"
        folder.mkdir(parents=True)
        toml = (
            f'[model]\nowner = "{owner}"\nname = "{name}"\ndescription = "{description}"\n'
            f"[runtime]\n{runtime}\n{extra}"
        )
        (folder / "modelbus.toml").write_text(toml)
        for path, content in (files if files is not None else {"model.py": APPLY}).items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(content)
        return folder

    return make
