"""Model artifacts: deterministic archives of model folders, stored by content hash.

:func:`pack` (the SDK's packer, :mod:`modelbus.client.archive`, so a push from a client and
the registry give the same hash) writes a folder as a tar stream with sorted entries and
fixed metadata, leaving out ``__pycache__``, ``.venv``, ``node_modules`` and ``.git``. The
content hash ``sha256:<hex>`` is the digest of that uncompressed tar stream, so the same files
give the same hash on every machine whatever the compressor does; the stored file is the
stream gzip-compressed.

:class:`ArtifactStore` keeps archives under ``data_dir/artifacts/<hex>.tar.gz`` and unpacks
them (atomically, once) to ``data_dir/models/<hex>/``. Archives uploaded by clients go
through :func:`safe_extract`, which refuses path traversal, links pointing outside,
device files, archives unpacking to more than a size limit or holding too many entries,
and hostile tar metadata (huge or endlessly chained extended headers) (:class:`ArchiveError`).

All functions here block (file I/O); async callers run them in a thread.
"""

from __future__ import annotations

import io
import lzma
import os
import posixpath
import shutil
import tarfile
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

from modelbus.client.archive import EXCLUDED_NAMES, MANIFEST_FILE, content_hash, pack
from modelbus.errors import ArchiveError, BuildNotFound

__all__ = [
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_UNPACKED_BYTES",
    "EXCLUDED_NAMES",
    "MANIFEST_FILE",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_CHAIN",
    "ArtifactStore",
    "content_hash",
    "pack",
    "safe_extract",
]

DEFAULT_MAX_UNPACKED_BYTES = 2 * 1024**3
DEFAULT_MAX_MEMBERS = 100_000
# Extended tar headers (PAX records, GNU long names) hold a path and a few attributes.
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADER_CHAIN = 8
_CHUNK = 1024 * 1024


class _LimitedTarInfo(tarfile.TarInfo):
    """A TarInfo whose header parsing refuses hostile metadata before reading it: an
    extended header (PAX, GNU long name or link) over :data:`MAX_HEADER_BYTES` (tarfile
    would read it whole into memory, however large), more than
    :data:`MAX_HEADER_CHAIN` extended headers in a row (tarfile parses a chain
    recursively), and GNU sparse entries (their extension blocks are unbounded)."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise ArchiveError(f"{self.name!r}: sparse files are refused in model archives")
        if self.type in _EXTENDED_HEADERS:
            if self.size > MAX_HEADER_BYTES:
                raise ArchiveError(
                    f"archive has an extended header of {self.size} bytes "
                    f"(at most {MAX_HEADER_BYTES} are accepted)"
                )
            chain = getattr(tarfile_, "_modelbus_chain", 0) + 1
            if chain > MAX_HEADER_CHAIN:
                raise ArchiveError(f"archive has more than {MAX_HEADER_CHAIN} headers in a row")
            tarfile_._modelbus_chain = chain  # type: ignore[attr-defined]
        else:
            tarfile_._modelbus_chain = 0  # type: ignore[attr-defined]
        return super()._proc_member(tarfile_)  # type: ignore[misc, no-any-return]


_EXTENDED_HEADERS = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


def safe_extract(
    archive: IO[bytes],
    dest: Path,
    *,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> None:
    """Extract a tar archive (plain, gz, bz2 or xz) into the existing folder ``dest``.

    Raises :class:`ArchiveError` for absolute or ``..`` paths, links resolving outside
    ``dest``, device files or FIFOs, more than ``max_members`` entries, more than
    ``max_unpacked_bytes`` of content, or hostile metadata (see :class:`_LimitedTarInfo`).
    A seekable ``archive`` is checked whole before anything is written; an unseekable one
    entry by entry, so on error ``dest`` may hold a partial extraction the caller discards.
    """
    if archive.seekable():
        start = archive.tell()
        _read_members(archive, None, max_unpacked_bytes, max_members)
        archive.seek(start)
    _read_members(archive, dest, max_unpacked_bytes, max_members)


def _read_members(
    archive: IO[bytes], dest: Path | None, max_unpacked_bytes: int, max_members: int
) -> None:
    """Check every entry (and extract it into ``dest`` unless None)."""
    total_bytes = 0
    try:
        with tarfile.open(fileobj=archive, mode="r|*", tarinfo=_LimitedTarInfo) as tar:
            for count, member in enumerate(tar, 1):
                if count > max_members:
                    raise ArchiveError(f"archive has more than {max_members} entries")
                _check_member(member)
                total_bytes += member.size
                if total_bytes > max_unpacked_bytes:
                    raise ArchiveError(f"archive unpacks to more than {max_unpacked_bytes} bytes")
                if dest is not None:
                    tar.extract(member, dest, filter="data")
    except tarfile.FilterError as exc:
        raise ArchiveError(f"unsafe archive entry: {exc}") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise ArchiveError(
            f"not a readable tar archive (tar, tar.gz, tar.bz2 or tar.xz expected): {exc}"
        ) from None


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    if _escapes(name):
        raise ArchiveError(f"unsafe path in archive: {name!r} (absolute or outside the folder)")
    if member.issym():
        target = posixpath.join(posixpath.dirname(name), member.linkname)
        if member.linkname.startswith("/") or _escapes(target):
            raise ArchiveError(f"symlink {name!r} points outside the folder ({member.linkname})")
    elif member.islnk():
        if _escapes(member.linkname):
            raise ArchiveError(f"hard link {name!r} points outside the folder ({member.linkname})")
    elif not (member.isreg() or member.isdir()):
        raise ArchiveError(f"{name!r}: device files, FIFOs and other special entries are refused")


def _escapes(name: str) -> bool:
    """True for an absolute path or one whose normalized form leaves the folder."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return True
    normalized = posixpath.normpath(name)
    return normalized == ".." or normalized.startswith("../")


class ArtifactStore:
    """Content-addressed model archives on the local disk under ``data_dir``.

    Every method blocks; concurrent calls (threads, processes) are safe because files only
    appear through atomic renames and are never modified afterwards.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
        max_members: int = DEFAULT_MAX_MEMBERS,
    ) -> None:
        self.archives_dir = data_dir.absolute() / "artifacts"
        self.models_dir = data_dir.absolute() / "models"
        self.max_unpacked_bytes = max_unpacked_bytes
        self.max_members = max_members

    def add_folder(self, folder: Path) -> str:
        """Store a deterministic archive of ``folder``; return its content hash. Idempotent."""
        self.archives_dir.mkdir(parents=True, exist_ok=True)
        staging = self.archives_dir / f".tmp-{uuid.uuid4().hex}"
        try:
            with staging.open("wb") as out:
                digest = pack(folder, out)
            os.replace(staging, self.archive_path(digest))
        finally:
            staging.unlink(missing_ok=True)
        return digest

    def add_archive(self, data: bytes, *, check: Callable[[Path], object] | None = None) -> str:
        """Store an uploaded archive (tar, tar.gz, ...) after unpacking it safely.

        The archive may hold the model folder's files at its top level or inside one single
        folder. ``check(folder)`` (say, manifest validation) runs on the unpacked folder
        first; what it raises aborts the upload. The folder is re-packed deterministically,
        so the hash depends only on the files. Raises :class:`ArchiveError` for an unsafe,
        oversized or unreadable archive.
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
            root = _model_root(scratch)
            if check is not None:
                check(root)
            return self.add_folder(root)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def archive_path(self, digest: str) -> Path:
        """Where the archive with content hash ``digest`` is (or would be) stored."""
        return self.archives_dir / f"{_hex(digest)}.tar.gz"

    def has(self, digest: str) -> bool:
        """Whether the archive for ``digest`` is stored here."""
        return self.archive_path(digest).is_file()

    def read(self, digest: str) -> bytes:
        """The stored ``.tar.gz`` bytes; raises :class:`BuildNotFound` if absent."""
        try:
            return self.archive_path(digest).read_bytes()
        except FileNotFoundError:
            raise BuildNotFound(f"no artifact {digest} in {self.archives_dir}") from None

    def model_dir(self, digest: str) -> Path:
        """The unpacked model folder for ``digest``, unpacking it first if needed.

        Raises :class:`BuildNotFound` if the archive is not stored on this machine.
        """
        target = self.models_dir / _hex(digest)
        if target.is_dir():
            return target
        self.models_dir.mkdir(parents=True, exist_ok=True)
        staging = self.models_dir / f".tmp-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            with self._open(digest) as archive:
                safe_extract(archive, staging, max_unpacked_bytes=2**62, max_members=2**62)
            staging.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            # Another thread or process unpacked the same content first.
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _open(self, digest: str) -> IO[bytes]:
        try:
            return self.archive_path(digest).open("rb")
        except FileNotFoundError:
            raise BuildNotFound(f"no artifact {digest} in {self.archives_dir}") from None


def _hex(digest: str) -> str:
    hex_part = digest.removeprefix("sha256:")
    if len(hex_part) != 64 or not all(c in "0123456789abcdef" for c in hex_part):
        raise ArchiveError(f"not a content hash: {digest!r} (expected sha256:<64 hex digits>)")
    return hex_part


def _model_root(folder: Path) -> Path:
    """``folder``, or its only subfolder when the archive wrapped everything in one."""
    if (folder / MANIFEST_FILE).is_file():
        return folder
    children = [c for c in folder.iterdir() if c.name not in EXCLUDED_NAMES]
    if len(children) == 1 and (children[0] / MANIFEST_FILE).is_file():
        return children[0]
    raise ArchiveError(
        f"the archive has no {MANIFEST_FILE} at its top level (or in a single top folder)"
    )
