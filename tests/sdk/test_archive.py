"""Packing a model folder for a push (modelbus.client.archive): the registry's own packer,
and the owner and name read from modelbus.toml without the server's manifest checks."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import pytest

from modelbus import errors
from modelbus.client import pack_model
from modelbus.registry.artifacts import LocalArtifacts
from tests.support.fixtures import MODELS_DIR


def folder_with(tmp_path: Path, manifest: str) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(MODELS_DIR / "echo", folder)
    (folder / "modelbus.toml").write_text(manifest)
    return folder


def test_packs_what_the_registry_stores(tmp_path: Path) -> None:
    folder = MODELS_DIR / "echo"
    model, archive = pack_model(folder)
    assert (model.owner, model.name) == ("test", "echo")
    digest = "sha256:" + hashlib.sha256(gzip.decompress(archive)).hexdigest()
    assert LocalArtifacts(tmp_path).add_folder(folder) == digest
    assert pack_model(folder)[1] == archive  # deterministic


@pytest.mark.parametrize(
    ("manifest", "says"),
    [
        (None, "modelbus.toml: not found"),
        ("[model\n", "modelbus.toml: not valid TOML"),
        ('[runtime]\nentrypoint = "model:apply"\n', "modelbus.toml: [model]: is required"),
        ('[model]\nname = "x"\n', "modelbus.toml: [model] owner: is required"),
        ('[model]\nowner = "a"\n', "modelbus.toml: [model] name: is required"),
        ('[model]\nowner = "a/b"\nname = "x"\n', "[model] owner: 'a/b' is not a valid name"),
        ('[model]\nowner = "a"\nname = 3\n', "[model] name: 3 is not a valid name"),
    ],
)
def test_a_folder_without_owner_and_name_is_refused(
    tmp_path: Path, manifest: str | None, says: str
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    if manifest is not None:
        (folder / "modelbus.toml").write_text(manifest)
    with pytest.raises(errors.ManifestError) as refused:
        pack_model(folder)
    assert str(refused.value).startswith(str(folder))
    assert says in str(refused.value)


def test_the_rest_of_the_manifest_is_left_to_the_server(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, '[model]\nowner = "test"\nname = "later"\n')
    model, _ = pack_model(folder)
    assert (model.owner, model.name) == ("test", "later")
