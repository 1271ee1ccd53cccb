"""Model folder archives: the one deterministic packer, and a folder packed for a push.

:func:`pack` writes a folder as a tar stream with sorted entries and fixed metadata (mtime 0,
uid/gid 0, no user names, modes reduced to 0644/0755), leaving out ``__pycache__``, ``.venv``,
``node_modules`` and ``.git``. The content hash ``sha256:<hex>`` is the digest of that
uncompressed tar stream, so the same files give the same hash on every machine whatever the
compressor does; the archive is the stream gzip-compressed. The SDK packs a folder with it
to push it, and the registry (:mod:`modelbus.registry.artifacts`) re-packs every upload with
it, so a build's hash depends only on its files.

:func:`pack_model` reads only the model's owner and name from the folder's ``modelbus.toml``
(they name the route the archive is pushed to); the server validates the whole manifest when
the archive arrives.

Everything here blocks (file I/O).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from modelbus.client.adk import adk_manifest, is_adk_folder
from modelbus.client.refs import is_name
from modelbus.errors import ArchiveError, ManifestError

__all__ = ["EXCLUDED_NAMES", "MANIFEST_FILE", "ModelName", "content_hash", "pack", "pack_model"]

EXCLUDED_NAMES = frozenset({"__pycache__", ".venv", "node_modules", ".git"})
MANIFEST_FILE = "modelbus.toml"


@dataclass(frozen=True, slots=True)
class ModelName:
    """Which model a folder holds: its manifest's ``[model]`` owner and name."""

    owner: str
    name: str


def pack_model(path: Path, name: ModelName | None = None) -> tuple[ModelName, bytes]:
    """The folder's model owner and name (from its manifest) and a deterministic ``.tar.gz``
    of it (the registry's own packing, so the build hash is the one a local push would give).

    An Algorithmia ADK folder (``algorithmia.conf``, no ``modelbus.toml``) is packed with
    the ``modelbus.toml`` it stands for (:mod:`modelbus.client.adk`), named ``name`` or as
    its ``algorithmia.conf`` says. ``name`` is refused for a folder with a ``modelbus.toml``
    (the manifest names its model).

    Raises :class:`~modelbus.errors.ManifestError` naming the file when ``modelbus.toml`` is
    missing, unreadable, or gives no valid owner and name, and
    :class:`~modelbus.errors.ArchiveError` for a file that cannot be packed."""
    buffer = io.BytesIO()
    if is_adk_folder(path):
        manifest = adk_manifest(path, (name.owner, name.name) if name else None)
        declared = tomllib.loads(manifest)["model"]
        model = name or ModelName(owner=declared["owner"], name=declared["name"])
        pack(path, buffer, extra={MANIFEST_FILE: manifest.encode()})
        return model, buffer.getvalue()
    model = read_model_name(path)
    if name is not None and name != model:
        raise ManifestError(
            f"{path / MANIFEST_FILE} names {model.owner}/{model.name}: a name is only for "
            "folders without a modelbus.toml (Algorithmia ADK algorithms)"
        )
    pack(path, buffer)
    return model, buffer.getvalue()


def read_model_name(folder: Path) -> ModelName:
    """The ``[model]`` owner and name of ``folder/modelbus.toml``; raises ManifestError."""
    file = folder / MANIFEST_FILE
    if not file.is_file():
        raise ManifestError(
            f"{file}: not found (a model folder needs a {MANIFEST_FILE} with a [model] "
            "table giving owner and name, and a [runtime] table)"
        )
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ManifestError(f"{file}: cannot be read: {exc.strerror}") from None
    model = data.get("model")
    if not isinstance(model, dict):
        raise ManifestError(f"{file}: [model]: is required (a table giving owner and name)")
    return ModelName(owner=_name(model, "owner", file), name=_name(model, "name", file))


def _name(model: dict[str, Any], key: str, file: Path) -> str:
    value = model.get(key)
    if value is None:
        raise ManifestError(f"{file}: [model] {key}: is required")
    if not is_name(value):
        raise ManifestError(
            f"{file}: [model] {key}: {value!r} is not a valid name (letters, digits, '_', "
            "'.' or '-', starting with a letter or digit)"
        )
    return str(value)


# --- the deterministic tar writer ----------------------------------------------------------


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


class _HashingWriter(io.RawIOBase):
    """Passes bytes on to ``sink`` (if any) while hashing them."""

    def __init__(self, sink: _Writable | None) -> None:
        self.digest = hashlib.sha256()
        self._sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.digest.update(data)
        if self._sink is not None:
            self._sink.write(data)
        return len(data)

    def content_hash(self) -> str:
        return "sha256:" + self.digest.hexdigest()


def pack(folder: Path, out: IO[bytes], *, extra: Mapping[str, bytes] | None = None) -> str:
    """Write ``folder`` as a deterministic ``.tar.gz`` to ``out``; return its content hash.
    ``extra``: files to add at the top of the folder, by name (written first).

    Raises :class:`ArchiveError` for a symlink pointing outside the folder or a special file.
    """
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        return _write_tar(folder, gz, extra or {})


def content_hash(folder: Path) -> str:
    """The content hash :func:`pack` would give ``folder``, without writing anything."""
    return _write_tar(folder, None, {})


def _write_tar(folder: Path, sink: _Writable | None, extra: Mapping[str, bytes]) -> str:
    writer = _HashingWriter(sink)
    root = folder.resolve()
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel, data in sorted(extra.items()):
            info = tarfile.TarInfo(rel)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for path, info in _entries(root):
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return writer.content_hash()


def _entries(root: Path) -> Iterator[tuple[Path, tarfile.TarInfo]]:
    """Every entry under ``root`` in a fixed order, with normalized metadata."""
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in EXCLUDED_NAMES)
        base = Path(directory)
        names = sorted([*subdirs, *(f for f in files if f not in EXCLUDED_NAMES)])
        for name in names:
            path = base / name
            yield path, _tarinfo(root, path)


def _tarinfo(root: Path, path: Path) -> tarfile.TarInfo:
    rel = path.relative_to(root).as_posix()
    info = tarfile.TarInfo(rel)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        info.type, info.mode = tarfile.SYMTYPE, 0o777
        info.linkname = _inside_link(root, path, rel)
    elif stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif stat.S_ISREG(st.st_mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
        info.mode = 0o755 if st.st_mode & 0o111 else 0o644
    else:
        raise ArchiveError(f"{rel}: not a regular file, folder or symlink; remove it")
    return info


def _inside_link(root: Path, path: Path, rel: str) -> str:
    target = path.resolve()
    if not target.is_relative_to(root):
        raise ArchiveError(
            f"{rel}: symlink points outside the model folder (to {os.readlink(path)}); "
            "copy the file into the folder instead"
        )
    return os.path.relpath(target, path.parent.resolve())
