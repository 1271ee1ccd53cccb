"""Pytest fixtures around a real ``modelbus serve`` process, shared by the API, CLI and SDK
tests (each test package's conftest imports them).

``modelbus_server`` is one server per test session and package; ``published`` pushes the
test models onto it once:

* ``test/echo`` 1.0.0, 1.1.0 and 2.0.0 (each its own build: ``whoami`` tells them apart),
  plus an unpublished build callable only by hash;
* ``test/strict`` 1.0.0, with an input schema requiring a string ``text``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelbus.client import Client
from tests.support.server import ModelbusServer

MODELS_DIR = Path(__file__).parent / "models"


def model_variant(tmp: Path, model: str, greeting: str) -> Path:
    """A copy of a test model whose ``GREETING`` differs, so it builds to another hash."""
    target = tmp / f"{model}-{greeting}"
    shutil.copytree(MODELS_DIR / model, target, dirs_exist_ok=True)
    source = target / "model.py"
    source.write_text(source.read_text().replace('GREETING = "echo"', f"GREETING = {greeting!r}"))
    return target


def echo_as(tmp: Path, owner: str, name: str, greeting: str) -> Path:
    """The echo test model pushed under another owner/name, with its own content."""
    folder = model_variant(tmp, "echo", greeting)
    manifest = folder / "modelbus.toml"
    text = manifest.read_text().replace('owner = "test"', f'owner = "{owner}"')
    manifest.write_text(text.replace('name = "echo"', f'name = "{name}"'))
    return folder


@dataclass(frozen=True, kw_only=True)
class Published:
    """What ``published`` pushed: build hashes by version, and the unpublished build."""

    echo_builds: dict[str, str]
    unpublished_build: str
    strict_build: str


@pytest.fixture(scope="session")
def modelbus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelbusServer]:
    with ModelbusServer.start(tmp_path_factory.mktemp("server") / "data") as server:
        yield server


@pytest.fixture(scope="session")
def admin(modelbus_server: ModelbusServer) -> Iterator[Client]:
    with modelbus_server.client() as client:
        yield client


@pytest.fixture(scope="session")
def published(admin: Client, tmp_path_factory: pytest.TempPathFactory) -> Published:
    tmp = tmp_path_factory.mktemp("models")
    builds = {}
    for version, greeting in (("1.0.0", "one"), ("1.1.0", "one-one"), ("2.0.0", "two")):
        pushed = admin.push(model_variant(tmp, "echo", greeting), version=version)
        builds[version] = pushed.build
    unpublished = admin.push(model_variant(tmp, "echo", "unpublished"))
    strict = admin.push(MODELS_DIR / "strict", version="1.0.0")
    return Published(
        echo_builds=builds, unpublished_build=unpublished.build, strict_build=strict.build
    )


@pytest.fixture
def server(modelbus_server: ModelbusServer, published: Published) -> ModelbusServer:
    """The session's server with the test models pushed."""
    return modelbus_server
