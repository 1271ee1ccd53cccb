"""An artifact store in a folder: the default (``DATA_DIR/artifacts``, one node), or a folder
every node mounts (NFS, a shared volume), given as ``serve --artifacts /PATH``.

Files appear only through an atomic rename of a finished temporary file (``.tmp-*``, in the
same folder), so a reader never sees half an archive or half a log, even across processes.
The default folder is created when first needed; a folder given by the operator must exist
(an unmounted share must not silently become a local folder).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

from modelbus.errors import ArtifactMissing, ArtifactUnavailable
from modelbus.registry.artifacts.archives import hex_digest
from modelbus.registry.artifacts.base import (
    LOGS_FOLDER,
    archive_name,
    log_bytes,
    log_name,
    node_of,
)

__all__ = ["FolderStore"]


class FolderStore:
    """Archives and logs under ``root`` (see :class:`~.base.ArtifactStore` for the contract).

    ``create``: make ``root`` when it is missing (the default store in the data directory);
    otherwise a missing ``root`` makes every call raise ``ArtifactUnavailable``.
    """

    def __init__(self, root: Path, *, create: bool = False) -> None:
        self.root = root.absolute()
        self.create = create

    def describe(self) -> str:
        return f"folder {self.root}"

    def check(self) -> None:
        self._ready()

    def exists(self, digest: str) -> bool:
        return (self.root / archive_name(digest)).is_file()

    def put(self, digest: str, archive: Path) -> None:
        target = self.root / archive_name(digest)
        if target.is_file():
            return  # content-addressed: what is there is this archive
        self._ready()
        with archive.open("rb") as source:
            self._write(target, lambda out: shutil.copyfileobj(source, out, 1024 * 1024))

    def download(self, digest: str, dest: Path) -> None:
        try:
            shutil.copyfile(self.root / archive_name(digest), dest)
        except FileNotFoundError:
            self._ready()  # the folder itself gone (unmounted) is an outage, not a loss
            raise ArtifactMissing(
                f"the artifact store ({self.describe()}) has no archive of build {digest}"
            ) from None
        except OSError as exc:
            raise self._unavailable(f"cannot read the archive of build {digest}", exc) from None

    def put_log(self, digest: str, node: str, text: str) -> None:
        self._ready()
        target = self.root / log_name(digest, node)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unavailable("cannot create the logs folder", exc) from None
        data = log_bytes(text)
        self._write(target, lambda out: out.write(data))

    def logs(self, digest: str) -> dict[str, str]:
        folder = self.root / LOGS_FOLDER / hex_digest(digest)
        try:
            paths = sorted(folder.glob("*.log")) if folder.is_dir() else []
            return {node_of(p.name): p.read_text(errors="replace") for p in paths}
        except OSError as exc:
            raise self._unavailable(f"cannot read the build logs of {digest}", exc) from None

    def _ready(self) -> None:
        """Raise ``ArtifactUnavailable`` unless ``root`` is a folder we may write in."""
        if self.create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._unavailable("cannot create the folder", exc) from None
        if not self.root.is_dir():
            raise ArtifactUnavailable(
                f"the artifact store ({self.describe()}) does not exist or is not mounted"
            )
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise ArtifactUnavailable(f"the artifact store ({self.describe()}) is not writable")

    def _write(self, target: Path, fill: Callable[[IO[bytes]], object]) -> None:
        """Create ``target`` atomically with what ``fill`` writes to it."""
        staging = target.with_name(f".tmp-{uuid.uuid4().hex}")
        try:
            with staging.open("wb") as out:
                fill(out)
            os.replace(staging, target)
        except OSError as exc:
            raise self._unavailable(f"cannot write {target.name}", exc) from None
        finally:
            staging.unlink(missing_ok=True)

    def _unavailable(self, what: str, exc: OSError) -> ArtifactUnavailable:
        return ArtifactUnavailable(
            f"the artifact store ({self.describe()}): {what}: {exc.strerror or exc}"
        )
