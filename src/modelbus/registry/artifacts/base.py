"""The contract of an artifact store: where every node finds the archives of builds.

An artifact store holds, under one root (a folder, or a prefix of an S3 bucket):

- ``<hex>.tar.gz``: the archive of the build whose content hash is ``sha256:<hex>``. It is
  written once and never changed: the name *is* the content (content-addressed, immutable).
- ``logs/<hex>/<node>.log``: the log of the environment build that node ``<node>`` ran for
  that build when it first needed it (percent-encoded node name), so every node can show
  what happened on every other one.

Stores only move bytes. Packing, checking the content hash of what was downloaded, and
unpacking are the node's side (:mod:`modelbus.registry.artifacts.local`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote

from modelbus.registry.artifacts.archives import hex_digest

__all__ = [
    "LOGS_FOLDER",
    "MAX_LOG_BYTES",
    "ArtifactStore",
    "archive_name",
    "log_bytes",
    "log_name",
    "node_of",
]

LOGS_FOLDER = "logs"
# A build log kept in the store is cut to its last MAX_LOG_BYTES (the end says why it failed).
MAX_LOG_BYTES = 1024 * 1024


class ArtifactStore(Protocol):
    """Archives of builds by content hash, and the environment build logs of every node.

    Every method blocks (file or network I/O, bounded by the store's own timeouts); async
    callers run them in a thread. Every method may raise
    :class:`~modelbus.errors.ArtifactUnavailable` when the store cannot be reached or
    refuses the request, and :class:`~modelbus.errors.ArchiveError` for a ``digest`` that is
    not ``sha256:<64 hex digits>``. Implementations are safe to call from several threads.
    """

    def describe(self) -> str:
        """Where the store is, for messages and ``/health`` (never a credential)."""
        ...

    def check(self) -> None:
        """Return when the store answers now; raise ``ArtifactUnavailable`` saying why not."""
        ...

    def exists(self, digest: str) -> bool:
        """Whether the archive of ``digest`` is stored."""
        ...

    def put(self, digest: str, archive: Path) -> None:
        """Store the local ``.tar.gz`` file ``archive`` as the archive of ``digest``.

        Atomic (readers see the whole archive or none) and idempotent (an archive already
        stored is left as it is). The caller vouches that ``archive`` has that content hash.
        """
        ...

    def download(self, digest: str, dest: Path) -> None:
        """Write the stored archive of ``digest`` to the new local file ``dest``.

        Raises :class:`~modelbus.errors.ArtifactMissing` when the store has none. ``dest``
        may hold part of the archive after an error: the caller removes it, and checks the
        content hash of what arrived.
        """
        ...

    def put_log(self, digest: str, node: str, text: str) -> None:
        """Store ``text`` as the log of the environment build ``node`` ran for ``digest``,
        replacing that node's earlier one (cut to its last :data:`MAX_LOG_BYTES`)."""
        ...

    def logs(self, digest: str) -> dict[str, str]:
        """Every node's stored build log for ``digest``, by node name (empty: none)."""
        ...


def archive_name(digest: str) -> str:
    """The archive's name under the store's root: ``<hex>.tar.gz``."""
    return f"{hex_digest(digest)}.tar.gz"


def log_name(digest: str, node: str) -> str:
    """The name of ``node``'s build log for ``digest``: ``logs/<hex>/<node>.log``."""
    return f"{LOGS_FOLDER}/{hex_digest(digest)}/{quote(node, safe='')}.log"


def node_of(name: str) -> str:
    """The node name in a log's file or key name (the inverse of :func:`log_name`)."""
    return unquote(name.rsplit("/", 1)[-1].removesuffix(".log"))


def log_bytes(text: str) -> bytes:
    """``text`` as stored: UTF-8, cut to its last :data:`MAX_LOG_BYTES` bytes."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= MAX_LOG_BYTES:
        return data
    return b"[... earlier lines cut ...]\n" + data[-MAX_LOG_BYTES:]
