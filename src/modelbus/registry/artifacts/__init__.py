"""Model artifacts: the archives of builds, stored by content hash where every node finds them.

Modules: :mod:`~.archives` (deterministic packing, content hashes, safe unpacking),
:mod:`~.base` (the :class:`ArtifactStore` contract and its layout), :mod:`~.folder` (a store
in a folder: the default, in the data directory), :mod:`~.s3` (a store in an S3-compatible
bucket, for several nodes), :mod:`~.local` (this node's copies and unpacked model folders),
:mod:`~.status` (whether the store answers, for ``/health``).

:func:`open_store` turns the ``serve --artifacts`` URL into a store.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from modelbus.errors import InvalidInput
from modelbus.registry.artifacts.archives import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_UNPACKED_BYTES,
    EXCLUDED_NAMES,
    MANIFEST_FILE,
    MAX_HEADER_BYTES,
    content_hash,
    pack,
    safe_extract,
)
from modelbus.registry.artifacts.base import ArtifactStore
from modelbus.registry.artifacts.folder import FolderStore
from modelbus.registry.artifacts.local import LocalArtifacts, default_store

__all__ = [
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_UNPACKED_BYTES",
    "EXCLUDED_NAMES",
    "MANIFEST_FILE",
    "MAX_HEADER_BYTES",
    "ArtifactStore",
    "FolderStore",
    "LocalArtifacts",
    "content_hash",
    "open_store",
    "pack",
    "safe_extract",
]


def open_store(url: str | None, data_dir: Path) -> ArtifactStore:
    """The artifact store ``url`` names; nothing is contacted yet.

    - none: the folder ``data_dir/artifacts`` (one node);
    - ``s3://BUCKET/PREFIX[?region=&endpoint_url=&profile=]``: an S3-compatible bucket
      (:mod:`~.s3`; needs the ``s3`` extra);
    - a path, or ``file:///PATH``: a folder every node mounts; it must exist.

    Raises :class:`InvalidInput` for a URL that names no store, and ``MissingExtra`` for
    ``s3://`` without boto3.
    """
    if not url:
        return default_store(data_dir)
    parts = urlsplit(url)
    if parts.scheme == "s3":
        from modelbus.registry.artifacts.s3 import S3Store, S3StoreSettings

        return S3Store(S3StoreSettings.from_url(url))
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        return FolderStore(Path(unquote(parts.path)))
    if not parts.scheme:
        return FolderStore(Path(url).expanduser().absolute())
    raise InvalidInput(
        f"not an artifact store: {url!r} (expected s3://BUCKET/PREFIX, or a folder path)"
    )
