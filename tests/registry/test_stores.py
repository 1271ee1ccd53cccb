"""The artifact store contract, one body run against the folder store and the S3 store (a
real moto server), plus what each does when it cannot be reached and how URLs pick one."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from modelbus.errors import (
    ArchiveError,
    ArtifactMissing,
    ArtifactUnavailable,
    InvalidInput,
    MissingExtra,
)
from modelbus.registry.artifacts import ArtifactStore, FolderStore, open_store
from modelbus.registry.artifacts.base import MAX_LOG_BYTES
from modelbus.registry.artifacts.s3 import S3Store, S3StoreSettings
from modelbus.registry.artifacts.status import StoreMonitor
from tests.aws.motoserver import MotoServer, free_port

from .conftest import s3_url


def archive(tmp_path: Path, content: bytes) -> tuple[str, Path]:
    """A .tar.gz-shaped file and its content hash (the hash of the uncompressed bytes)."""
    path = tmp_path / f"{hashlib.sha1(content).hexdigest()}.tar.gz"
    path.write_bytes(gzip.compress(content))
    return "sha256:" + hashlib.sha256(content).hexdigest(), path


# --- the contract ------------------------------------------------------------------------------


def test_put_then_download_gives_the_same_bytes(store: ArtifactStore, tmp_path: Path) -> None:
    digest, path = archive(tmp_path, b"model files" * 1000)
    assert not store.exists(digest)
    store.put(digest, path)
    assert store.exists(digest)
    store.download(digest, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == path.read_bytes()
    store.check()


def test_put_is_idempotent_and_never_replaces(store: ArtifactStore, tmp_path: Path) -> None:
    digest, path = archive(tmp_path, b"first")
    store.put(digest, path)
    other = tmp_path / "other.tar.gz"
    other.write_bytes(gzip.compress(b"something else"))
    store.put(digest, other)  # content-addressed: what is stored under digest stays
    store.download(digest, tmp_path / "copy")
    assert gzip.decompress((tmp_path / "copy").read_bytes()) == b"first"


def test_a_missing_archive_is_missing_not_unavailable(store: ArtifactStore, tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    with pytest.raises(ArtifactMissing, match=f"has no archive of build {digest}") as info:
        store.download(digest, tmp_path / "copy")
    assert store.describe() in info.value.message
    assert info.value.permanent  # retrying cannot bring it back


def test_build_logs_by_node(store: ArtifactStore, tmp_path: Path) -> None:
    digest, _ = archive(tmp_path, b"x")
    other, _ = archive(tmp_path, b"y")
    assert store.logs(digest) == {}
    store.put_log(digest, "node-a:8470", "first try\n")
    store.put_log(digest, "node-a:8470", "second try\n")  # replaces that node's log
    store.put_log(digest, "b/ü ../x", "done ✓\n")  # any name, kept exactly, never a path
    store.put_log(other, "node-a:8470", "another build\n")
    assert store.logs(digest) == {"node-a:8470": "second try\n", "b/ü ../x": "done ✓\n"}
    assert store.logs(other) == {"node-a:8470": "another build\n"}


def test_a_huge_log_keeps_its_end(store: ArtifactStore, tmp_path: Path) -> None:
    digest, _ = archive(tmp_path, b"x")
    store.put_log(digest, "n", "x" * MAX_LOG_BYTES + "\nerror: the reason\n")
    kept = store.logs(digest)["n"]
    assert kept.endswith("error: the reason\n") and "earlier lines cut" in kept
    assert len(kept.encode()) < MAX_LOG_BYTES + 100


def test_a_hash_is_never_a_path(store: ArtifactStore, tmp_path: Path) -> None:
    for bad in ("sha256:../../etc/passwd", "md5:abc", "sha256:" + "A" * 64):
        with pytest.raises(ArchiveError, match="not a content hash"):
            store.download(bad, tmp_path / "copy")
        with pytest.raises(ArchiveError, match="not a content hash"):
            store.put_log(bad, "n", "")


# --- stores that cannot be reached -------------------------------------------------------------


def test_an_absent_folder_is_unavailable_and_not_created(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "not-mounted")
    digest, path = archive(tmp_path, b"x")
    for call in (
        store.check,
        lambda: store.put(digest, path),
        lambda: store.download(digest, tmp_path / "copy"),
        lambda: store.put_log(digest, "n", "log"),
    ):
        with pytest.raises(ArtifactUnavailable, match="does not exist or is not mounted"):
            call()
    assert not (tmp_path / "not-mounted").exists()


def test_the_default_folder_is_created(tmp_path: Path) -> None:
    store = open_store(None, tmp_path / "data")
    store.check()
    assert (tmp_path / "data" / "artifacts").is_dir()
    assert store.describe() == f"folder {tmp_path / 'data' / 'artifacts'}"


def test_a_missing_bucket_is_an_outage_not_a_lost_archive(
    moto: MotoServer, aws_credentials: None, tmp_path: Path
) -> None:
    store = open_store(s3_url(moto, "no-such-bucket-4e1f"), tmp_path)
    with pytest.raises(ArtifactUnavailable, match="no-such-bucket-4e1f"):
        store.check()
    with pytest.raises(ArtifactUnavailable):
        store.download("sha256:" + "ab" * 32, tmp_path / "copy")


def test_an_s3_endpoint_that_does_not_answer(aws_credentials: None, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    store = open_store(f"s3://bucket/p?endpoint_url={url}&region=us-east-1", tmp_path)
    digest, path = archive(tmp_path, b"x")
    with pytest.raises(ArtifactUnavailable, match=f"s3://bucket/p/ at {url}") as info:
        store.download(digest, tmp_path / "copy")
    assert "Could not connect" in info.value.message and not info.value.permanent
    with pytest.raises(ArtifactUnavailable, match=r"cannot upload|cannot look up"):
        store.put(digest, path)
    with pytest.raises(ArtifactUnavailable, match="cannot reach the bucket: Could not connect"):
        store.check()


async def test_the_monitor_reports_an_outage_and_the_recovery(tmp_path: Path) -> None:
    root = tmp_path / "share"
    monitor = StoreMonitor(FolderStore(root), max_age_s=3600)
    down = await monitor.status()
    assert not down.ok and "does not exist" in (down.error or "")
    assert down.store == f"folder {root}"
    root.mkdir()
    assert (await monitor.status()) == down  # a recent check is reused...
    monitor.max_age_s = 0
    assert (await monitor.status()).ok  # ...until it is too old
    monitor.max_age_s = 3600
    monitor.failed(ArtifactUnavailable("the store went away"))  # a call found it down
    assert (await monitor.status()).error == "the store went away"


# --- URLs --------------------------------------------------------------------------------------


def test_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path), tmp_path), FolderStore)
    folder = open_store(f"file://{tmp_path}/share", tmp_path)
    assert isinstance(folder, FolderStore) and folder.root == tmp_path / "share"
    s3 = open_store("s3://my-bucket/a/b/?region=eu-west-1&profile=prod", tmp_path)
    assert isinstance(s3, S3Store)
    assert s3.settings == S3StoreSettings(
        bucket="my-bucket", prefix="a/b/", region="eu-west-1", profile="prod"
    )
    assert S3StoreSettings.from_url("s3://b").prefix == ""
    for bad, says in [
        ("redis://x", "not an artifact store"),
        ("s3://key:secret@bucket/p", "credentials do not go in"),
        ("s3://b/p?timeout=3", "unknown S3 artifact store option"),
    ]:
        with pytest.raises(InvalidInput, match=says):
            open_store(bad, tmp_path)


def test_s3_without_boto3_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 -> ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'modelbus\[s3\]'"):
        open_store("s3://bucket/prefix", tmp_path)
