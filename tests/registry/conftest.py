"""Model folders for registry and build tests, and the artifact stores they share."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelbus.registry.artifacts import ArtifactStore, open_store
from tests.aws.motoserver import MotoServer, fake_credentials

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


# --- artifact stores: the folder store and the S3 store on a real moto server -----------------


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """One moto_server for this worker's session (state persists: buckets have unique names)."""
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws_credentials() -> Iterator[None]:
    """Fake AWS credentials, no profile, no endpoint or region from the environment."""
    with fake_credentials():
        yield


@pytest.fixture
def bucket(moto: MotoServer, aws_credentials: None) -> str:
    """A new, empty bucket on moto."""
    import boto3

    name = f"artifacts-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", region_name=moto.region, endpoint_url=moto.endpoint_url)
    s3.create_bucket(Bucket=name)
    return name


def s3_url(moto: MotoServer, bucket: str, prefix: str = "team/models") -> str:
    return f"s3://{bucket}/{prefix}?endpoint_url={moto.endpoint_url}&region={moto.region}"


@pytest.fixture(params=["folder", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty artifact store shared by the nodes of a test: a folder, or a
    bucket on moto (one body of tests runs against both)."""
    if request.param == "folder":
        shared = tmp_path / "shared-artifacts"
        shared.mkdir()
        return str(shared)
    moto: MotoServer = request.getfixturevalue("moto")
    return s3_url(moto, request.getfixturevalue("bucket"))


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> ArtifactStore:
    """The store ``store_url`` names."""
    return open_store(store_url, tmp_path / "unused")
