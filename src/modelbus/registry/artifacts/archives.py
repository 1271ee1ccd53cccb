"""Model archives: deterministic archives of model folders, named by content hash.

:func:`pack` (the SDK's packer, :mod:`modelbus.client.archive`, so a push from a client and
the registry give the same hash) writes a folder as a tar stream with sorted entries and
fixed metadata, leaving out ``__pycache__``, ``.venv``, ``node_modules`` and ``.git``. The
content hash ``sha256:<hex>`` is the digest of that uncompressed tar stream, so the same files
give the same hash on every machine whatever the compressor does; the stored file is the
stream gzip-compressed, and :func:`archive_digest` recomputes the hash from it.

Archives uploaded by clients go through :func:`safe_extract`, which refuses path traversal,
links pointing outside, device files, archives unpacking to more than a size limit or holding
too many entries, and hostile tar metadata (huge or endlessly chained extended headers)
(:class:`ArchiveError`). Both limits are checked on each entry's header, before its data is
read, and the archive is read as a stream: a decompression bomb is refused at the first
entry that passes a limit, after at most the limit's worth of decompression.

All functions here block (file I/O); async callers run them in a thread.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import posixpath
import tarfile
import zlib
from pathlib import Path
from typing import IO, Any, cast

from modelbus.client.adk import ADK_CONF
from modelbus.client.archive import EXCLUDED_NAMES, MANIFEST_FILE, content_hash, pack
from modelbus.errors import ArchiveError

__all__ = [
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_UNPACKED_BYTES",
    "EXCLUDED_NAMES",
    "MANIFEST_FILE",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_CHAIN",
    "archive_digest",
    "content_hash",
    "hex_digest",
    "model_root",
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
        with (
            _decompressed(archive) as stream,
            tarfile.open(fileobj=stream, mode="r|", tarinfo=_LimitedTarInfo) as tar,
        ):
            for count, member in enumerate(tar, 1):
                # Both limits apply to a member's header, before its data is read.
                if count > max_members:
                    raise ArchiveError(
                        f"archive has more than {max_members} entries, the limit of entries"
                    )
                _check_member(member)
                total_bytes += member.size
                if total_bytes > max_unpacked_bytes:
                    raise ArchiveError(
                        f"archive unpacks to more than {max_unpacked_bytes} bytes, the limit "
                        f"of unpacked content ({member.name!r} reaches {total_bytes} bytes)"
                    )
                if dest is not None:
                    tar.extract(member, dest, filter="data")
    except tarfile.FilterError as exc:
        raise ArchiveError(f"unsafe archive entry: {exc}") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise ArchiveError(
            f"not a readable tar archive (tar, tar.gz, tar.bz2 or tar.xz expected): {exc}"
        ) from None


def _decompressed(archive: IO[bytes]) -> IO[bytes]:
    """The tar stream inside ``archive``: gzip, bzip2 and xz are read through the standard
    library's file readers, which hand out at most what is asked for; tarfile's own
    ``r|gz`` reader keeps a whole decompressed chunk and copies its rest on every small
    read, which a highly compressed member turns into minutes of work (a few MB of gzip
    holding gigabytes of zeros)."""
    magic = archive.read(6)
    rest = cast(IO[bytes], _Prefixed(magic, archive))
    if magic.startswith(b"\x1f\x8b"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=rest, mode="rb"))
    if magic.startswith(b"BZh"):
        return cast(IO[bytes], bz2.BZ2File(rest, mode="rb"))
    if magic.startswith(b"\xfd7zXZ\x00"):
        return cast(IO[bytes], lzma.LZMAFile(rest, mode="rb"))
    return rest


class _Prefixed(io.RawIOBase):
    """``head`` (bytes already read) followed by the rest of ``stream``: a readable,
    unseekable stream."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)


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


def archive_digest(path: Path) -> str:
    """The content hash of the stored ``.tar.gz`` at ``path``: the sha256 of its uncompressed
    stream, as :func:`pack` computed it. Raises :class:`ArchiveError` when it is not gzip."""
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"{path.name} is not a readable .tar.gz: {exc}") from None
    return "sha256:" + digest.hexdigest()


def hex_digest(digest: str) -> str:
    """The 64 hex digits of a content hash ``sha256:<hex>`` (what names its files and keys).

    Raises :class:`ArchiveError` for anything else, so no hash can name a path outside.
    """
    hex_part = digest.removeprefix("sha256:")
    if len(hex_part) != 64 or not all(c in "0123456789abcdef" for c in hex_part):
        raise ArchiveError(f"not a content hash: {digest!r} (expected sha256:<64 hex digits>)")
    return hex_part


def model_root(folder: Path) -> Path:
    """``folder``, or its only subfolder when the archive wrapped everything in one: where
    its ``modelbus.toml`` is (or the ``algorithmia.conf`` of an ADK algorithm)."""
    if _is_root(folder):
        return folder
    children = [c for c in folder.iterdir() if c.name not in EXCLUDED_NAMES]
    if len(children) == 1 and _is_root(children[0]):
        return children[0]
    raise ArchiveError(
        f"the archive has no {MANIFEST_FILE} (or {ADK_CONF}) at its top level (or in a single "
        "top folder)"
    )


def _is_root(folder: Path) -> bool:
    return (folder / MANIFEST_FILE).is_file() or (folder / ADK_CONF).is_file()
