"""Deterministic archives, content hashes and safe unpacking of uploaded archives."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from modelbus.errors import ArchiveError, ArtifactMissing
from modelbus.registry.artifacts import LocalArtifacts, content_hash, pack, safe_extract

MANIFEST = '[model]\nowner = "a"\nname = "b"\n[runtime]\nentrypoint = "model:apply"\n'


def make_folder(root: Path) -> Path:
    folder = root / "model"
    (folder / "pkg").mkdir(parents=True)
    (folder / "modelbus.toml").write_text(MANIFEST)
    (folder / "model.py").write_text("def apply(x):\n    return x\n")
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 100)
    (folder / "empty").mkdir()
    return folder


def packed(folder: Path) -> tuple[str, bytes]:
    out = io.BytesIO()
    digest = pack(folder, out)
    return digest, out.getvalue()


def test_same_folder_same_hash_and_bytes(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    first, first_bytes = packed(folder)
    second, second_bytes = packed(folder)
    assert first == second == content_hash(folder)
    assert first_bytes == second_bytes
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 64


def test_hash_ignores_location_times_and_excluded_folders(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    digest = content_hash(folder)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(folder, copy)
    os.utime(copy / "model.py", (1, 1))
    for excluded in ("__pycache__", ".venv", "node_modules", ".git"):
        (copy / excluded).mkdir()
        (copy / excluded / "junk").write_text("ignored")
    (copy / "pkg" / "__pycache__").mkdir()
    (copy / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert content_hash(copy) == digest


@pytest.mark.parametrize(
    "change",
    [
        lambda f: (f / "model.py").write_text("def apply(x):\n    return 2 * x\n"),
        lambda f: (f / "new.txt").write_text(""),
        lambda f: (f / "empty").rmdir(),
        lambda f: (f / "model.py").rename(f / "model2.py"),
        lambda f: (f / "model.py").chmod(0o755),
    ],
    ids=["content", "added file", "removed folder", "renamed", "made executable"],
)
def test_any_change_changes_the_hash(tmp_path: Path, change) -> None:  # type: ignore[no-untyped-def]
    folder = make_folder(tmp_path)
    before = content_hash(folder)
    change(folder)
    assert content_hash(folder) != before


def test_symlinks_inside_are_kept_and_outside_refused(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    (folder / "alias.py").symlink_to("model.py")
    _, data = packed(folder)
    dest = tmp_path / "out"
    dest.mkdir()
    safe_extract(io.BytesIO(data), dest)
    assert (dest / "alias.py").is_symlink() and (dest / "alias.py").read_text().startswith("def")
    (tmp_path / "secret").write_text("s")
    (folder / "leak").symlink_to(tmp_path / "secret")
    with pytest.raises(ArchiveError, match="leak: symlink points outside the model folder"):
        content_hash(folder)


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes | None], mode: str = "w:gz") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tar:  # type: ignore[call-overload]
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def file_member(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(
    name: str, target: str, kind: bytes = tarfile.SYMTYPE
) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def special_member(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([file_member("../evil.txt")], "unsafe path"),
        ([file_member("ok/../../evil.txt")], "unsafe path"),
        ([file_member("/tmp/evil.txt")], "unsafe path"),
        ([link_member("link", "../../etc/passwd")], "symlink 'link' points outside"),
        ([link_member("sub/link", "../..")], "points outside"),
        ([link_member("link", "/etc/passwd")], "points outside"),
        ([link_member("hard", "../outside", tarfile.LNKTYPE)], "hard link 'hard' points outside"),
        ([special_member("dev", tarfile.CHRTYPE)], "device files"),
        ([special_member("blk", tarfile.BLKTYPE)], "device files"),
        ([special_member("fifo", tarfile.FIFOTYPE)], "device files"),
    ],
)
def test_unsafe_archives_are_refused(tmp_path: Path, members: list, message: str) -> None:  # type: ignore[type-arg]
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ArchiveError, match=message):
        safe_extract(io.BytesIO(tar_bytes(*members)), dest)
    assert not (tmp_path / "evil.txt").exists()


def test_symlink_chains_cannot_point_outside(tmp_path: Path) -> None:
    """``a -> .`` then ``a/b -> ..`` looks inside when read as text but resolves outside."""
    dest = tmp_path / "dest"
    dest.mkdir()
    archive = tar_bytes(link_member("a", "."), link_member("a/b", ".."), file_member("a/b/x"))
    with pytest.raises(ArchiveError, match="unsafe archive entry"):
        safe_extract(io.BytesIO(archive), dest)
    assert not (tmp_path / "x").exists()


def test_oversized_and_overlong_archives_are_refused(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    big = tar_bytes(file_member("a", b"0" * 600), file_member("b", b"0" * 600))
    with pytest.raises(ArchiveError, match="more than 1000 bytes"):
        safe_extract(io.BytesIO(big), dest, max_unpacked_bytes=1000)
    many = tar_bytes(*(file_member(f"f{i}") for i in range(5)))
    with pytest.raises(ArchiveError, match="more than 3 entries"):
        safe_extract(io.BytesIO(many), dest, max_members=3)


def test_a_compression_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    bomb = tar_bytes(file_member("zeros", b"\0" * 5_000_000))
    assert len(bomb) < 50_000
    with pytest.raises(ArchiveError, match="more than"):
        safe_extract(io.BytesIO(bomb), dest, max_unpacked_bytes=1_000_000)
    assert not (dest / "zeros").exists()


def test_garbage_is_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="not a readable tar archive"):
        safe_extract(io.BytesIO(b"certainly not a tarball"), tmp_path)


def test_store_folder_and_upload_give_the_same_hash(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    store = LocalArtifacts(tmp_path / "data")
    digest = store.add_folder(folder)
    assert store.has(digest) and store.add_folder(folder) == digest
    # A client-made archive, wrapped in a top folder, with other metadata and junk.
    upload = io.BytesIO()
    with tarfile.open(fileobj=upload, mode="w:bz2") as tar:
        tar.add(folder, arcname="my-model")
        info, data = file_member("my-model/__pycache__/junk.pyc")
        tar.addfile(info, io.BytesIO(data))
    assert store.add_archive(upload.getvalue()) == digest
    unpacked = store.model_dir(digest)
    assert unpacked == tmp_path / "data" / "models" / digest.removeprefix("sha256:")
    assert content_hash(unpacked) == digest
    assert (unpacked / "model.py").read_text() == (folder / "model.py").read_text()
    assert store.model_dir(digest) == unpacked  # unpacked once, then reused


def test_upload_without_manifest_is_refused(tmp_path: Path) -> None:
    store = LocalArtifacts(tmp_path / "data")
    with pytest.raises(ArchiveError, match=r"no modelbus\.toml"):
        store.add_archive(tar_bytes(file_member("model.py")))
    assert list((tmp_path / "data" / "models").iterdir()) == []  # scratch space cleaned


def test_store_size_limit_applies_to_uploads(tmp_path: Path) -> None:
    store = LocalArtifacts(tmp_path / "data", max_unpacked_bytes=100)
    with pytest.raises(ArchiveError, match="more than 100 bytes"):
        store.add_archive(tar_bytes(file_member("modelbus.toml", b"#" * 200)))


def test_unknown_artifact(tmp_path: Path) -> None:
    store = LocalArtifacts(tmp_path / "data")
    with pytest.raises(ArtifactMissing, match=r"has no archive of build sha256:0{64}"):
        store.model_dir("sha256:" + "0" * 64)
    assert list(store.archives_dir.iterdir()) == []  # no partial download left
    with pytest.raises(ArchiveError, match="not a content hash"):
        store.archive_path("sha256:../../etc")
