"""Several nodes over one database and one artifact store (a folder or S3 on moto): a version
pushed on one node runs on another, which fetches, checks and unpacks its archive, builds its
environment, and keeps that build's log in the store. A lost, corrupt or unreachable archive
fails with an error naming the version and the store, and leaves nothing half-made."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from modelbus.client.refs import ModelRef
from modelbus.errors import ArtifactCorrupt, ArtifactMissing, ArtifactUnavailable, BuildError
from modelbus.registry.artifacts import ArtifactStore, FolderStore, LocalArtifacts, open_store
from modelbus.registry.artifacts.base import archive_name
from modelbus.registry.artifacts.s3 import S3Store
from modelbus.registry.builds import Builder
from modelbus.registry.catalog import Registry
from modelbus.store.database import Database

MakeModel = Callable[..., Path]
SIX = 'entrypoint = "model:apply"\nrequirements = ["six==1.17.0"]'
HELLO = ModelRef.parse("tests/hello@1.0.0")


def node(db: Database, data_dir: Path, url: str, name: str, **kwargs: object) -> Registry:
    """A node: its own data directory, the shared database and artifact store."""
    artifacts = LocalArtifacts(data_dir, open_store(url, data_dir))
    return Registry(db, data_dir, artifacts=artifacts, node=name, cache_ttl_s=0.0, **kwargs)  # type: ignore[arg-type]


@asynccontextmanager
async def second_database(url: str) -> AsyncIterator[Database]:
    """Another connection pool on the same database, as another node process has."""
    database = await Database.open(url)
    try:
        yield database
    finally:
        await database.close()


def replace_in_store(store: ArtifactStore, digest: str, data: bytes | None) -> None:
    """Overwrite (or, with None, delete) the stored archive behind the store's back."""
    if isinstance(store, FolderStore):
        path = store.root / archive_name(digest)
        path.unlink()
        if data is not None:
            path.write_bytes(data)
        return
    assert isinstance(store, S3Store)
    s3, key = store._s3(), store.settings.prefix + archive_name(digest)
    if data is None:
        s3.delete_object(Bucket=store.settings.bucket, Key=key)
    else:
        s3.put_object(Bucket=store.settings.bucket, Key=key, Body=data)


def leftovers(data_dir: Path) -> list[str]:
    """What a failed fetch could have left: archives and model folders of this node."""
    found = [*(data_dir / "artifacts").glob("*"), *(data_dir / "models").glob("*")]
    return sorted(p.name for p in found)


async def test_a_version_pushed_on_one_node_runs_on_another(
    db: Database, database_url: str, store_url: str, tmp_path: Path, make_model: MakeModel
) -> None:
    a = node(db, tmp_path / "a", store_url, "a")
    pushed = await a.push(
        make_model(files={"model.py": "def apply(x):\n    return 'A'\n"}), version="1.0.0"
    )
    async with second_database(database_url) as other:
        b = node(other, tmp_path / "b", store_url, "b")
        resolved = await b.resolve(HELLO)
    hex_part = pushed.build_hash.removeprefix("sha256:")
    assert resolved.build_hash == pushed.build_hash
    assert resolved.runner_spec.cwd == tmp_path / "b" / "models" / hex_part
    assert (resolved.runner_spec.cwd / "model.py").read_text() == "def apply(x):\n    return 'A'\n"
    assert b.artifacts.has(pushed.build_hash)  # downloaded, checked, kept
    assert leftovers(tmp_path / "b") == [hex_part, f"{hex_part}.tar.gz"]


async def test_a_missing_archive_names_the_version_and_the_store(
    db: Database, database_url: str, store_url: str, tmp_path: Path, make_model: MakeModel
) -> None:
    a = node(db, tmp_path / "a", store_url, "a")
    pushed = await a.push(make_model(), version="1.0.0")
    replace_in_store(a.artifacts.store, pushed.build_hash, None)
    async with second_database(database_url) as other:
        b = node(other, tmp_path / "b", store_url, "node-b")
        with pytest.raises(ArtifactMissing) as info:
            await b.resolve(HELLO)
        message = info.value.message
        assert "tests/hello 1.0.0" in message and "node-b" in message
        assert b.artifacts.store.describe() in message and pushed.build_hash in message
        assert leftovers(tmp_path / "b") == []
        # Pushing the version again (from its folder, on any node) puts the archive back.
        await a.push(make_model(), version="1.0.0")
        assert (await b.resolve(HELLO)).build_hash == pushed.build_hash


async def test_an_archive_that_does_not_match_its_hash_is_refused(
    db: Database, store_url: str, tmp_path: Path, make_model: MakeModel
) -> None:
    a = node(db, tmp_path / "a", store_url, "a")
    pushed = await a.push(make_model(), version="1.0.0")
    other = make_model(files={"model.py": "import os\nos.system('evil')\n"})
    forged = io.BytesIO()
    with tarfile.open(fileobj=forged, mode="w:gz") as tar:
        tar.add(other, arcname=".")
    for data in (forged.getvalue(), gzip.compress(b"truncated")[:-6]):
        replace_in_store(a.artifacts.store, pushed.build_hash, data)
        b = node(db, tmp_path / "b", store_url, "b")
        with pytest.raises(ArtifactCorrupt, match="does not match its content hash") as info:
            await b.resolve(HELLO)
        assert "tests/hello 1.0.0" in info.value.message and info.value.permanent
        assert leftovers(tmp_path / "b") == []  # nothing of it was kept or unpacked


async def test_a_node_that_cannot_reach_the_store_says_so(
    db: Database, tmp_path: Path, make_model: MakeModel
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    a = node(db, tmp_path / "a", str(share), "a")
    pushed = await a.push(make_model(), version="1.0.0")
    b = node(db, tmp_path / "b", str(share), "b")
    assert (await b.artifact_status()).ok
    share.rename(tmp_path / "unmounted")
    b.store_monitor.max_age_s = 3600  # so what /health says next comes from the call below
    with pytest.raises(ArtifactUnavailable, match=r"tests/hello 1\.0\.0 on node b") as info:
        await b.resolve(HELLO)
    assert f"folder {share}" in info.value.message and not info.value.permanent
    status = await b.artifact_status()
    assert not status.ok and "not mounted" in (status.error or "")
    assert leftovers(tmp_path / "b") == []
    # A push through a node that cannot reach the store records nothing.
    with pytest.raises(ArtifactUnavailable):
        await b.push(
            make_model(files={"model.py": "def apply(x):\n    return 2\n"}), version="2.0.0"
        )
    assert [v.version for v in await a.list_versions("tests", "hello")] == ["1.0.0"]
    (tmp_path / "unmounted").rename(share)
    assert (await b.resolve(HELLO)).build_hash == pushed.build_hash  # no failure was cached
    assert (await a.resolve(HELLO)).build_hash == pushed.build_hash  # a kept its own copy


@pytest.mark.slow
async def test_each_node_builds_the_environment_and_every_node_shows_the_logs(
    db: Database, store_url: str, tmp_path: Path, make_model: MakeModel
) -> None:
    a = node(db, tmp_path / "a", store_url, "a")
    pushed = await a.push(make_model(runtime=SIX), version="1.0.0")
    assert "creating environment" in pushed.log  # a's own build: the push's log
    b = node(db, tmp_path / "b", store_url, "b")
    resolved = await b.resolve(HELLO)
    assert resolved.runner_spec.argv[0].startswith(str(tmp_path / "b" / "envs"))
    # c cannot build it (its builds time out at once): its log says so, for every node.
    c = node(db, tmp_path / "c", store_url, "c", builder=Builder(tmp_path / "c", timeout_s=0))
    with pytest.raises(BuildError, match="took longer than"):
        await c.resolve(HELLO)
    logs = (await a.get_build(pushed.build_hash)).node_logs
    assert logs is not None and sorted(logs) == ["b", "c"]
    assert logs["b"].startswith(f"== environment of tests/hello ({pushed.build_hash}) on b")
    assert "environment ready" in logs["b"]
    assert "error: building the environment took longer than 0 s" in logs["c"]
    assert (await b.get_build(pushed.build_hash)).log == pushed.log  # the push's, from the db
