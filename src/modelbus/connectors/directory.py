"""``dir://PATH``: a folder as a bucket (the local stand-in for S3 + notifications).

**Source.** The folder is scanned (recursively, every ``poll_ms``); each new file that is
completely written (same size and modification time on two scans in a row; dotfiles,
``~`` and temporary/partial names ignored) becomes an S3-shaped object-created notification
(``eventSource: "modelbus:dir"``, bucket = the folder's absolute path, key = the file's path
relative to it, URL-encoded like S3's) enqueued durably in a local queue under
``DATA_DIR/queues/`` (one per listener and folder, so two listeners on one folder each see
every file). A file is enqueued once per (key, size, mtime): restarts do not re-announce old
files; a file rewritten with new content is announced again. Deliveries are read back from
that queue with its leases, delays and attempt counts. :class:`FileReader` fetches the files.

**Sink.** Results are written into the folder atomically (temporary dotfile, then a link to
the final name). The name comes from the source object's ``key`` attribute when there is
one (``scans/a.png`` -> ``scans/a.png.json``), else the output id; the extension from the
``content-type`` attribute (``.json``, ``.txt``, or the MIME type's usual one, ``.bin``).
A different result never overwrites an existing file: it gets ``NAME.OUTPUT_ID.EXT``
instead. The same output written twice (a redelivery) is written once.

**Dead letters** (as an error sink: messages carrying ``modelbus-dead-letter-id``) are kept as
a pair: ``NAME``, the failed file itself, and ``NAME.error.json``, what went wrong. When the
letter is a folder notification (a file of a ``dir://`` source that could not be processed),
``NAME`` is the file's own key (``scans/a.png`` -> ``scans/a.png`` and
``scans/a.png.error.json``) and the file is copied there as it is now (the source folder
keeps it, so a redrive can read it again); a file that is gone by then leaves the error file
alone, with ``"file": null``. Any other letter's body is written as a result would be
(``NAME`` from the ``key`` attribute or the letter's id, extension from its content type).
The error file holds the ``modelbus-*`` attributes as fields (``error_type``,
``error_message``, ``error_stacktrace``, ``permanent``, ``attempts``, ``listener``,
``model``, ``version``, ``source_message_id``, ``dead_letter_id``; long texts truncated, the
full record is in the server's store), every attribute of the message as it came
(``attributes``), and the original body (``body``: text, or ``body_base64``). It is written
last: a pair is complete once it exists. Another letter for a name already taken gets
``NAME.LETTER_ID.EXT`` (and its error file); the same letter written twice is written once.

**Where folders may be.** A folder must lie in one of the operator's roots (``dir_roots`` of
the context's policy, set by ``modelbus serve --dir-roots``), and is never the data
directory, a folder holding it, or a folder inside it (its keys, database, queues and
built environments), unless it lies in a root the operator placed inside the data directory
(:func:`check_folder`). This is checked when the connector is made (the definition is
refused) and again, on the resolved path, each time it opens: a symlink or ``..`` that
leads elsewhere meanwhile is refused. The sink also refuses to write through a symlink
inside the folder that leads out of it.

The folder must be on this machine: use S3 for several machines. With several nodes, a
listener on a folder runs on one node at a time (:func:`shared_source`); another node takes
it over when that one dies, so the folder must be reachable there too (a shared mount).

URL options (source): ``dir:///srv/inbox?lease_s=30&poll_ms=500``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import mimetypes
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote_plus, unquote, unquote_plus, urlsplit

from modelbus.connectors.base import DEAD_LETTER_ID, ConnectorContext, Delivery, OutMessage
from modelbus.connectors.local import LocalSource, SqliteQueue, parse_query
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError, PolicyRefused

__all__ = [
    "EVENT_SOURCE",
    "DirectorySink",
    "DirectorySource",
    "FileReader",
    "check_folder",
    "check_policy",
    "folder_of",
    "make_reader",
    "make_sink",
    "make_source",
    "shared_source",
    "write_dead_letter",
]

EVENT_SOURCE = "modelbus:dir"
_NAMESPACE = uuid.UUID("0d7b8f0e-5a7c-5e43-8f6f-3f7e2a4c9b21")
_TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp", "~")

Stat = tuple[int, int]  # (size, mtime_ns)


def folder_of(url: str) -> Path:
    """The absolute folder a ``dir://`` URL names (``dir:///abs`` or ``dir://relative``);
    percent-encoded characters are decoded (``dir:///srv/drop%20here``)."""
    parts = urlsplit(url)
    if parts.scheme != "dir" or not (parts.netloc + parts.path).strip("/"):
        raise DefinitionError(f"{url}: expected dir:///absolute/path or dir://relative/path")
    folder = unquote(parts.netloc + parts.path)
    if "\x00" in folder:
        raise DefinitionError(f"{url!r}: a folder name cannot hold a NUL character")
    return Path(folder).expanduser().resolve()


def check_folder(folder: Path, ctx: ConnectorContext) -> Path:
    """``folder`` resolved (symlinks and ``..`` followed), if the policy lets a ``dir://``
    source or sink use it (see the module docstring); raises PolicyRefused saying why
    not, naming the roots and the setting that configures them."""
    real = folder.resolve()
    data = ctx.data_dir.resolve()
    url = f"dir://{real}"
    if real == data or real in data.parents:
        raise PolicyRefused(
            f"{url} is the server's data directory or holds it ({data}): "
            "use a folder of its own, outside the data directory"
        )
    roots = ctx.policy.dir_roots
    resolved = [root.resolve() for root in roots or ()]
    holding = [root for root in resolved if root == real or root in real.parents]
    if data in real.parents and not any(data in root.parents for root in holding):
        raise PolicyRefused(
            f"{url} is inside the server's data directory ({data}): use a folder outside it"
        )
    if roots is not None and not holding:
        shown = ", ".join(str(r) for r in roots) or "none"
        raise PolicyRefused(
            f"{url} is not inside a folder listeners may use (allowed roots: {shown}): "
            "choose a folder under one of them, or add a root with modelbus serve "
            "--dir-roots (env MODELBUS_DIR_ROOTS)"
        )
    return real


def _ignored(name: str) -> bool:
    return name.startswith((".", "~")) or name.lower().endswith(_TEMP_SUFFIXES)


def scan(folder: Path) -> dict[str, Stat]:
    """Every regular, non-ignored file under ``folder``: relative POSIX key -> (size, mtime)."""
    found: dict[str, Stat] = {}
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except FileNotFoundError:
            continue
        for entry in entries:
            if _ignored(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                stat = entry.stat(follow_symlinks=False)
                key = Path(entry.path).relative_to(folder).as_posix()
                found[key] = (stat.st_size, stat.st_mtime_ns)
    return found


def notification(folder: Path, key: str, stat: Stat) -> OutMessage:
    """The object-created notification for one file, with a deterministic id."""
    size, mtime_ns = stat
    seen = f"{key}\0{size}\0{mtime_ns}"
    record = {
        "eventVersion": "2.1",
        "eventSource": EVENT_SOURCE,
        "eventName": "ObjectCreated:Put",
        "eventTime": datetime.fromtimestamp(mtime_ns / 1e9, UTC).isoformat(),
        "s3": {
            "bucket": {"name": str(folder)},
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": size,
                "eTag": f"{mtime_ns:x}-{size:x}",
            },
        },
    }
    body = json.dumps({"Records": [record]}, separators=(",", ":")).encode()
    return OutMessage(id=str(uuid.uuid5(_NAMESPACE, f"{folder}\0{seen}")), body=body)


@dataclass(frozen=True, kw_only=True, slots=True)
class DirectoryOptions:
    """A ``dir://`` source URL, parsed."""

    folder: Path
    lease_s: float = 30.0
    poll_ms: float = 500.0

    @classmethod
    def from_url(cls, url: str) -> DirectoryOptions:
        """Parse ``dir://PATH?...``; raises DefinitionError."""
        options = parse_query(url, {"lease_s": float, "poll_ms": float})
        if any(v <= 0 for v in options.values()):
            raise DefinitionError(f"{url}: lease_s and poll_ms must be positive")
        return cls(folder=folder_of(url), **options)


class DirectorySource:
    """Announces completely written new files as object-created notifications."""

    def __init__(
        self, options: DirectoryOptions, queue: SqliteQueue, ctx: ConnectorContext
    ) -> None:
        self.folder = options.folder
        self._ctx = ctx
        self._queue = queue
        self._inner = LocalSource(queue, lease_s=options.lease_s, poll_ms=options.poll_ms)
        self._poll_s = options.poll_ms / 1000
        self._next_scan = 0.0
        self._candidates: dict[str, Stat] = {}  # seen once, waiting to be seen unchanged
        self._announced: dict[str, Stat] = {}  # enqueued (or found already enqueued)

    @property
    def lease_s(self) -> float:
        return self._inner.lease_s

    async def open(self) -> None:
        """Check the folder (again, resolved: see :func:`check_folder`) and open the queue.
        ConnectorConfigError if it is refused or missing."""
        _recheck(self.folder, self._ctx)
        if not self.folder.is_dir():
            raise ConnectorConfigError(f"dir://{self.folder}: no such folder; create it first")
        await self._inner.open()

    async def receive(self, max_messages: int, wait_s: float) -> list[Delivery]:
        deadline = time.monotonic() + wait_s
        while True:
            if time.monotonic() >= self._next_scan:
                await self._scan()
            window = min(self._next_scan, deadline) - time.monotonic()
            taken = await self._inner.receive(max_messages, max(0.0, window))
            if taken or time.monotonic() >= deadline:
                return taken

    async def _scan(self) -> None:
        self._next_scan = time.monotonic() + self._poll_s
        try:
            current = await asyncio.to_thread(scan, self.folder)
        except OSError as exc:
            raise ConnectorError(f"dir://{self.folder}: {exc.strerror or exc}") from exc
        stable = {
            key: stat
            for key, stat in current.items()
            if self._candidates.get(key) == stat and self._announced.get(key) != stat
        }
        self._candidates = current
        if stable:
            entries = [
                (f"{k}\0{s[0]}\0{s[1]}", notification(self.folder, k, s)) for k, s in stable.items()
            ]
            await self._queue.publish_unseen(entries)
            self._announced.update(stable)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        await self._inner.ack(deliveries)

    async def release(self, delivery: Delivery, delay_s: float) -> None:
        await self._inner.release(delivery, delay_s)

    async def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        await self._inner.extend(deliveries, lease_s)

    async def backlog(self) -> int:
        """The files waiting: those announced and ready to be received now (in the queue
        file, not leased or delayed), plus those seen by the last scan and not announced yet
        (still being written, or waiting for the next scan to see them unchanged)."""
        queued = await self._inner.backlog()
        unseen = sum(1 for k, s in self._candidates.items() if self._announced.get(k) != s)
        return queued + unseen

    async def close(self) -> None:
        await self._inner.close()


class FileReader:
    """Reads the files that ``modelbus:dir`` notifications name, inside one folder only
    (a notification naming any other bucket, or a key escaping the folder, is refused)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()

    async def read(self, bucket: str, key: str) -> tuple[bytes, str | None]:
        """The file's bytes and guessed content type. ConnectorError(permanent) if it is
        gone or outside the folder, ConnectorError otherwise."""
        data = await asyncio.to_thread(self._read, bucket, key)
        return data, mimetypes.guess_type(key)[0]

    def _read(self, bucket: str, key: str) -> bytes:
        path = (self.folder / key).resolve()
        if Path(bucket).resolve() != self.folder or self.folder not in path.parents:
            raise ConnectorError(f"{bucket}/{key} is outside dir://{self.folder}", permanent=True)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ConnectorError(f"{path} was removed before it was read", permanent=True) from None
        except OSError as exc:
            raise ConnectorError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _recheck(folder: Path, ctx: ConnectorContext) -> None:
    """:func:`check_folder` at open time: the folder must still resolve to itself."""
    try:
        real = check_folder(folder, ctx)
    except DefinitionError as exc:
        raise ConnectorConfigError(exc.message) from None
    if real != folder:
        raise ConnectorConfigError(
            f"dir://{folder} now leads to {real} (a symlink changed): refused; "
            "define the listener on the folder itself"
        )


class DirectorySink:
    """Writes each result as a file in the folder (see the module docstring)."""

    def __init__(self, folder: Path, ctx: ConnectorContext) -> None:
        self.folder = folder
        self._ctx = ctx

    async def open(self) -> None:
        """Check the folder (see :func:`check_folder`) and create it if missing."""
        _recheck(self.folder, self._ctx)
        try:
            await asyncio.to_thread(self.folder.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConnectorError(f"dir://{self.folder}: {exc.strerror or exc}") from exc

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        try:
            await asyncio.to_thread(self._write_all, list(messages))
        except OSError as exc:
            raise ConnectorError(f"dir://{self.folder}: {exc.strerror or exc}") from exc

    def location(self, message: OutMessage) -> str:
        """``file:///PATH``: where ``message`` is written (a different result already at
        that name would make it ``NAME.OUTPUT_ID.EXT`` instead: see the module docstring)."""
        return result_path(self.folder.absolute(), message).as_uri()

    def _write_all(self, messages: list[OutMessage]) -> None:
        for message in messages:
            if DEAD_LETTER_ID in message.attributes:
                write_dead_letter(self.folder, message, self._ctx)
            else:
                write_result(self.folder, message)

    async def close(self) -> None:
        return None


def result_path(folder: Path, message: OutMessage) -> Path:
    """Where ``message`` goes: named after the source object's key, else its id."""
    relative = _relative(message.attributes.get("key") or message.id, fallback=message.id)
    return folder / (str(relative) + _extension(message.attributes.get("content-type")))


def _extension(content_type: str | None) -> str:
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base == "application/json" or base.endswith("+json"):
        return ".json"
    if base.startswith("text/"):
        return ".txt"
    return (mimetypes.guess_extension(base) if base else None) or ".bin"


def _make_parent(folder: Path, target: Path) -> None:
    """Create ``target``'s folder; ConnectorError(permanent) if it leads out of ``folder``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    real_parent = target.parent.resolve()
    if real_parent != folder.resolve() and folder.resolve() not in real_parent.parents:
        raise ConnectorError(
            f"{target.parent} leads out of dir://{folder} (a symlink): not written", permanent=True
        )


def write_result(folder: Path, message: OutMessage) -> Path:
    """Write ``message`` atomically; returns the file it is in (see the module docstring)."""
    target = result_path(folder, message)
    _make_parent(folder, target)
    temp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(temp, "wb") as file:
            file.write(message.body)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temp, target)  # atomic, and fails rather than replace an existing file
        except FileExistsError:
            if _same_output(target, message):
                return target
            target = target.with_name(
                f"{_stem(target)}.{message.id}{_extension(message.attributes.get('content-type'))}"
            )
            os.replace(temp, target)  # the same output id: replacing it is idempotent
        _fsync_dir(target.parent)
        return target
    finally:
        temp.unlink(missing_ok=True)


ERROR_SUFFIX = ".error.json"


@dataclass(frozen=True, slots=True)
class _Origin:
    """The file a folder notification names: its key, and where it is (None: not readable
    from here, as the policy or the folder's bounds say)."""

    key: str
    path: Path | None


def write_dead_letter(folder: Path, message: OutMessage, ctx: ConnectorContext) -> Path:
    """Write a dead letter as ``NAME`` and ``NAME.error.json`` (see the module docstring);
    returns the error file. Idempotent for the same letter."""
    letter_id = message.attributes[DEAD_LETTER_ID]
    origin = _origin(message.body, ctx)
    if origin is not None:
        target = folder / _relative(origin.key, fallback=letter_id)
    else:
        target = result_path(folder, message)
    record = _error_path(target)
    written = _letter_id_in(record)
    if written is not None and written != letter_id:
        target = target.with_name(f"{_stem(target)}.{letter_id}{target.suffix}")
        record = _error_path(target)
        written = _letter_id_in(record)
    if written == letter_id:
        return record  # the same letter, written before (a redelivery)
    _make_parent(folder, target)
    if origin is None:
        _write_atomic(target, message.body)
        kept: str | None = target.relative_to(folder).as_posix()
    else:
        kept = target.relative_to(folder).as_posix() if _copy(origin, target) else None
    _write_atomic(record, _error_record(message, kept))
    _fsync_dir(target.parent)
    return record


def _error_path(target: Path) -> Path:
    return target.with_name(target.name + ERROR_SUFFIX)


def _relative(key: str, *, fallback: str) -> Path:
    """``key`` as a path that stays inside a folder (no root, ``..`` or leading dots)."""
    parts = [p.lstrip(".") or "_" for p in PurePosixPath(key).parts if p not in ("/", ".", "..")]
    return Path(*parts) if parts else Path(fallback)


def _letter_id_in(record: Path) -> str | None:
    """The letter id of an existing error file ("" for one that says none); None if absent."""
    try:
        found = json.loads(record.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return ""
    value = found.get("dead_letter_id") if isinstance(found, dict) else None
    return value if isinstance(value, str) else ""


def _origin(body: bytes, ctx: ConnectorContext) -> _Origin | None:
    """The file a ``modelbus:dir`` notification names, or None for any other body."""
    try:
        record = json.loads(body)["Records"][0]
        bucket, key = record["s3"]["bucket"]["name"], record["s3"]["object"]["key"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if record.get("eventSource") != EVENT_SOURCE or not isinstance(bucket, str):
        return None
    if not isinstance(key, str) or not key:
        return None
    key = unquote_plus(key)
    try:
        source = check_folder(Path(bucket), ctx)
    except DefinitionError:
        return _Origin(key=key, path=None)  # a folder this server may not read
    path = (source / key).resolve()
    inside = source in path.parents
    return _Origin(key=key, path=path if inside else None)


def _copy(origin: _Origin, target: Path) -> bool:
    """Copy the failed file to ``target`` atomically; False if it cannot be opened (gone, or
    unreadable: the error file then says ``"file": null`` rather than the letter waiting for
    a file that will never be read). Failing to write the copy raises OSError."""
    if origin.path is None:
        return False
    if origin.path == target.resolve():
        return True  # the error folder is the source folder: the file is there already
    try:
        source = open(origin.path, "rb")  # noqa: SIM115 (closed below)
    except OSError:
        return False
    temp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        with source, open(temp, "wb") as copy:
            shutil.copyfileobj(source, copy, 1 << 20)
            copy.flush()
            os.fsync(copy.fileno())
        os.replace(temp, target)
        return True
    finally:
        temp.unlink(missing_ok=True)


def _write_atomic(target: Path, data: bytes) -> None:
    temp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(temp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _error_record(message: OutMessage, file: str | None) -> bytes:
    """The ``NAME.error.json`` of a dead letter (see the module docstring)."""
    fields: dict[str, Any] = {
        name.removeprefix("modelbus-").replace("-", "_"): value
        for name, value in message.attributes.items()
        if name.startswith("modelbus-")
    }
    if "permanent" in fields:
        fields["permanent"] = fields["permanent"] == "true"
    if str(fields.get("attempts", "")).isdigit():
        fields["attempts"] = int(fields["attempts"])
    record: dict[str, Any] = {"file": file, **fields, "attributes": dict(message.attributes)}
    try:
        record["body"] = message.body.decode("utf-8")
    except UnicodeDecodeError:
        record["body_base64"] = base64.b64encode(message.body).decode("ascii")
    return json.dumps(record, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


def _stem(path: Path) -> str:
    suffix = path.suffix
    return path.name[: -len(suffix)] if suffix else path.name


def _same_output(path: Path, message: OutMessage) -> bool:
    """Whether ``path`` already holds this output: the same bytes, or a CloudEvent with the
    same id (a redelivery's event differs in time and duration, not in identity)."""
    existing = path.read_bytes()
    if existing == message.body:
        return True
    try:
        return bool(json.loads(existing).get("id") == message.id)
    except (ValueError, AttributeError):
        return False


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _queue_path(ctx: ConnectorContext, folder: Path) -> Path:
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return ctx.data_dir / "queues" / f"dir-{ctx.listener}-{digest}.sqlite"


def make_source(url: str, ctx: ConnectorContext) -> DirectorySource:
    """A source announcing new files in the folder (queue under ``ctx.data_dir``)."""
    options = DirectoryOptions.from_url(url)
    check_folder(options.folder, ctx)
    return DirectorySource(options, SqliteQueue(_queue_path(ctx, options.folder)), ctx)


def shared_source(url: str) -> bool:
    """False: the folder is scanned by one node at a time, else every node would announce
    every file (see :mod:`modelbus.connectors.base`)."""
    DirectoryOptions.from_url(url)
    return False


def check_policy(url: str, ctx: ConnectorContext) -> None:
    """:func:`check_folder` for the folder of ``url`` (a malformed URL is not looked at)."""
    try:
        folder = folder_of(url)
    except DefinitionError:
        return
    check_folder(folder, ctx)


def make_sink(url: str, ctx: ConnectorContext) -> DirectorySink:
    """A sink writing result files into the folder."""
    parse_query(url, {})
    folder = folder_of(url)
    check_folder(folder, ctx)
    return DirectorySink(folder, ctx)


def make_reader(source_url: str, ctx: ConnectorContext) -> FileReader:
    """The reader of the files that ``modelbus:dir`` notifications name, for a listener
    whose source is the ``dir://`` folder ``source_url``: folder events are read only from
    the listener's own folder. ConnectorError(permanent) for any other source."""
    if urlsplit(source_url).scheme != "dir":
        raise ConnectorError(
            "this listener cannot fetch objects announced by 'modelbus:dir' events",
            permanent=True,
        )
    folder = folder_of(source_url)
    try:
        check_folder(folder, ctx)
    except DefinitionError as exc:
        raise ConnectorError(exc.message, permanent=True) from None
    return FileReader(folder)
