"""This node's side of the artifact store: local copies of archives and unpacked model folders.

- ``data_dir/artifacts/<hex>.tar.gz``: archives packed here (by a push) or downloaded from the
  store. With the default store this folder *is* the store, so nothing is copied.
- ``data_dir/models/<hex>/``: the unpacked model folders runners start in.

A push packs the folder (or re-packs an upload) here, then puts the archive in the store
before anything else happens, so a version is never recorded whose archive other nodes
cannot get. A node that needs a build it has no copy of downloads the archive into a
temporary file, checks its content hash (:class:`ArtifactCorrupt` when it does not match:
nothing is kept), renames it into place, and unpacks it into a temporary folder renamed when
complete. A failed download or unpack leaves nothing behind that could be taken for good.

Every method blocks; concurrent calls (threads, processes sharing the data directory) are
safe: files and folders only appear through atomic renames and never change afterwards.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from modelbus.errors import ArchiveError, ArtifactCorrupt
from modelbus.registry.artifacts.archives import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_UNPACKED_BYTES,
    archive_digest,
    hex_digest,
    model_root,
    pack,
    safe_extract,
)
from modelbus.registry.artifacts.base import ArtifactStore, archive_name
from modelbus.registry.artifacts.folder import FolderStore

__all__ = ["LocalArtifacts", "default_store"]


def default_store(data_dir: Path) -> FolderStore:
    """The store of a single node: the folder ``data_dir/artifacts``, created when needed."""
    return FolderStore(data_dir.absolute() / "artifacts", create=True)


class LocalArtifacts:
    """Archives and model folders on this node, over the shared ``store`` (default: the
    folder store in ``data_dir``). ``max_unpacked_bytes`` and ``max_members`` bound what an
    uploaded archive may unpack to (see :func:`safe_extract`)."""

    def __init__(
        self,
        data_dir: Path,
        store: ArtifactStore | None = None,
        *,
        max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
        max_members: int = DEFAULT_MAX_MEMBERS,
    ) -> None:
        self.archives_dir = data_dir.absolute() / "artifacts"
        self.models_dir = data_dir.absolute() / "models"
        self.store = store if store is not None else default_store(data_dir)
        self.max_unpacked_bytes = max_unpacked_bytes
        self.max_members = max_members

    def add_folder(self, folder: Path) -> str:
        """Pack ``folder`` and put the archive in the store; return its content hash.

        Idempotent. Raises :class:`ArchiveError` for what cannot be packed, and
        ``ArtifactUnavailable`` when the store cannot take it (the local copy stays, so a
        retry does not pack again).
        """
        self.archives_dir.mkdir(parents=True, exist_ok=True)
        staging = self.archives_dir / f".tmp-{uuid.uuid4().hex}"
        try:
            with staging.open("wb") as out:
                digest = pack(folder, out)
            os.replace(staging, self.archive_path(digest))
        finally:
            staging.unlink(missing_ok=True)
        self.store.put(digest, self.archive_path(digest))
        return digest

    def add_archive(self, data: bytes, *, check: Callable[[Path], object] | None = None) -> str:
        """Store an uploaded archive (tar, tar.gz, ...) after unpacking it safely.

        The archive may hold the model folder's files at its top level or inside one single
        folder. ``check(folder)`` (say, manifest validation) runs on the unpacked folder
        first; what it raises aborts the upload. The folder is re-packed deterministically,
        so the hash depends only on the files. Raises :class:`ArchiveError` for an unsafe,
        oversized or unreadable archive, and what :meth:`add_folder` raises.
        """
        self.models_dir.mkdir(parents=True, exist_ok=True)
        scratch = self.models_dir / f".upload-{uuid.uuid4().hex}"
        scratch.mkdir()
        try:
            safe_extract(
                io.BytesIO(data),
                scratch,
                max_unpacked_bytes=self.max_unpacked_bytes,
                max_members=self.max_members,
            )
            root = model_root(scratch)
            if check is not None:
                check(root)
            return self.add_folder(root)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def archive_path(self, digest: str) -> Path:
        """Where this node keeps (or would keep) the archive of ``digest``."""
        return self.archives_dir / archive_name(digest)

    def has(self, digest: str) -> bool:
        """Whether this node has a copy of the archive of ``digest``."""
        return self.archive_path(digest).is_file()

    def fetch(self, digest: str) -> Path:
        """The local archive of ``digest``, downloaded from the store first if needed.

        Raises ``ArtifactMissing`` (not in the store), ``ArtifactUnavailable`` (the store
        cannot be reached) or :class:`ArtifactCorrupt` (what arrived does not have that
        content hash; it is thrown away).
        """
        local = self.archive_path(digest)
        if local.is_file():
            return local
        self.archives_dir.mkdir(parents=True, exist_ok=True)
        staging = self.archives_dir / f".download-{uuid.uuid4().hex}"
        try:
            self.store.download(digest, staging)
            _verify(staging, digest, self.store.describe())
            os.replace(staging, local)
        finally:
            staging.unlink(missing_ok=True)
        return local

    def model_dir(self, digest: str) -> Path:
        """The unpacked model folder of ``digest``, fetched and unpacked first if needed.

        Raises what :meth:`fetch` raises.
        """
        target = self.models_dir / hex_digest(digest)
        if target.is_dir():
            return target
        archive = self.fetch(digest)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        staging = self.models_dir / f".tmp-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            with archive.open("rb") as stream:
                safe_extract(stream, staging, max_unpacked_bytes=2**62, max_members=2**62)
            staging.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            # Another thread or process unpacked the same content first.
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


def _verify(archive: Path, digest: str, store: str) -> None:
    """Raise :class:`ArtifactCorrupt` unless ``archive`` has the content hash ``digest``."""
    try:
        found = archive_digest(archive)
    except ArchiveError as exc:
        found = f"unreadable ({exc.message})"
    if found != digest:
        raise ArtifactCorrupt(
            f"the archive of build {digest} in the artifact store ({store}) does not match "
            f"its content hash (it hashes to {found}): refused, nothing was unpacked"
        )
