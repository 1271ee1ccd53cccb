"""Model archives pushed to a real server: whatever an archive tries (paths out of the
folder, symlinks out, a huge declared size, too many members, huge tar metadata), it is
refused with a 400 that says why, and nothing lands outside the server's data folder."""

from __future__ import annotations

import functools
import io
import struct
import tarfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from modelbus.registry.artifacts import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_UNPACKED_BYTES,
    MAX_HEADER_BYTES,
)
from tests.support.server import ModelbusServer

MANIFEST = b'[model]\nowner = "test"\nname = "hostile"\n[runtime]\nentrypoint = "model:apply"\n'
MODEL = b"def apply(x, context=None):\n    return x\n"

Tweak = Callable[[tarfile.TarFile], None]


def archive(tweak: Tweak, *, pax: bool = True) -> bytes:
    out = io.BytesIO()
    fmt = tarfile.PAX_FORMAT if pax else tarfile.GNU_FORMAT
    with tarfile.open(fileobj=out, mode="w:gz", format=fmt) as tar:
        for name, data in (("modelbus.toml", MANIFEST), ("model.py", MODEL)):
            add_file(tar, name, data)
        tweak(tar)
    return out.getvalue()


def add_file(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_link(tar: tarfile.TarFile, name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tar.addfile(info)


def huge_declared_size(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("weights.bin")
    info.size = DEFAULT_MAX_UNPACKED_BYTES + 1  # declared only: the data never comes
    tar.fileobj.write(info.tobuf(tarfile.PAX_FORMAT))  # type: ignore[union-attr]


def too_many_members(tar: tarfile.TarFile) -> None:
    for i in range(DEFAULT_MAX_MEMBERS):
        add_file(tar, f"f/{i}", b"")


def huge_pax_header(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("notes.txt")
    info.pax_headers = {"comment": "x" * (4 * MAX_HEADER_BYTES)}
    tar.addfile(info, io.BytesIO(b""))


def chained_long_names(tar: tarfile.TarFile) -> None:
    raw = b""
    for _ in range(3000):  # tarfile parses such a chain recursively
        info = tarfile.TarInfo("././@LongLink")
        info.type, info.size = tarfile.GNUTYPE_LONGNAME, 101
        raw += info.tobuf(tarfile.GNU_FORMAT) + b"n" * 100 + b"\0" + b"\0" * 411
    tar.fileobj.write(raw + tarfile.TarInfo("last").tobuf(tarfile.GNU_FORMAT))  # type: ignore[union-attr]


CASES: dict[str, tuple[Tweak, str]] = {
    "dotdot path": (lambda t: add_file(t, "../../escaped.py"), "outside the folder"),
    "absolute path": (lambda t: add_file(t, "/tmp/modelbus-escaped.py"), "absolute"),
    "symlink out": (lambda t: add_link(t, "evil", "../../../etc/passwd"), "points outside"),
    "absolute symlink": (lambda t: add_link(t, "evil", "/etc/passwd"), "points outside"),
    "symlink chain out": (
        lambda t: (add_link(t, "a", "."), add_link(t, "a/b", "../..")),
        "outside",
    ),
    "hard link out": (
        lambda t: add_link(t, "evil", "../../etc/passwd", tarfile.LNKTYPE),
        "points outside",
    ),
    "device file": (lambda t: add_link(t, "dev", "", tarfile.CHRTYPE), "device files"),
    "huge declared size": (huge_declared_size, "unpacks to more than"),
    "too many members": (too_many_members, f"more than {DEFAULT_MAX_MEMBERS} entries"),
    "huge pax header": (huge_pax_header, "extended header"),
    "chained long names": (chained_long_names, "headers in a row"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_archives_are_refused_with_a_clear_error(server: ModelbusServer, case: str) -> None:
    tweak, expected = CASES[case]
    data = archive(tweak, pax=case != "chained long names")
    started = time.monotonic()
    with server.http(**{"content-type": "application/gzip"}) as http:
        answer = http.post("/v1/models/test/hostile/versions", content=data)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "ArchiveError", error
    assert expected in error["message"], error["message"]
    assert time.monotonic() - started < 30
    data_dir = Path(server.data_dir)
    assert not (data_dir.parent / "escaped.py").exists()
    assert not Path("/tmp/modelbus-escaped.py").exists()
    # Nothing half-extracted is left behind in the store.
    assert not list((data_dir / "models").glob(".upload-*"))


# --- decompression bombs ----------------------------------------------------------------------

BOMB_CHUNK = 64 * 1024**2
BOMB_BYTES = 4 * 1024**3  # over the unpacked limit; about 4 MB compressed


@functools.cache
def deflated_zeros() -> bytes:
    """:data:`BOMB_CHUNK` zero bytes as a raw deflate segment that stands alone (a full
    flush on each side resets the history), so it can be repeated inside one stream."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressor.compress(b"")
    compressor.flush(zlib.Z_FULL_FLUSH)
    return compressor.compress(bytes(BOMB_CHUNK)) + compressor.flush(zlib.Z_FULL_FLUSH)


def bomb(member_bytes: int) -> bytes:
    """A .tar.gz (one gzip stream) whose first entries hold :data:`BOMB_BYTES` of zeros in
    files of ``member_bytes``, followed by the manifest: anything that reads up to the
    manifest decompresses it all. Made in about a second: the zeros are one deflated chunk
    repeated."""
    assert BOMB_BYTES % member_bytes == 0 and member_bytes % BOMB_CHUNK == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts, crc, size = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"], 0, 0

    def add(data: bytes, *, flush: int = zlib.Z_FULL_FLUSH) -> None:
        nonlocal crc, size
        parts.append(compressor.compress(data) + compressor.flush(flush))
        crc, size = zlib.crc32(data, crc), size + len(data)

    zeros = bytes(BOMB_CHUNK)
    for i in range(BOMB_BYTES // member_bytes):
        info = tarfile.TarInfo(f"weights-{i}.bin")
        info.size = member_bytes
        add(info.tobuf(tarfile.PAX_FORMAT))
        for _ in range(member_bytes // BOMB_CHUNK):
            parts.append(deflated_zeros())
            crc, size = zlib.crc32(zeros, crc), size + BOMB_CHUNK
    tail = io.BytesIO()
    with tarfile.open(fileobj=tail, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add_file(tar, "modelbus.toml", MANIFEST)
        add_file(tar, "model.py", MODEL)
    add(tail.getvalue(), flush=zlib.Z_FINISH)
    parts.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return b"".join(parts)


def health_while(work: threading.Thread, server: ModelbusServer) -> list[float]:
    """Ask ``/health`` until ``work`` ends (at least once after it started); the seconds
    each answer took. An answer that is not 200 fails the test."""
    waits: list[float] = []
    with httpx.Client(base_url=server.url, timeout=60.0) as http:
        while True:
            started = time.monotonic()
            answer = http.get("/health")
            waits.append(time.monotonic() - started)
            assert answer.status_code == 200, answer.text
            if not work.is_alive():
                return waits
            time.sleep(0.05)


@pytest.mark.parametrize(
    "member_bytes", [BOMB_BYTES, 512 * 1024**2], ids=["one huge member", "many members"]
)
def test_a_decompression_bomb_is_refused_and_health_answers_meanwhile(
    server: ModelbusServer, member_bytes: int
) -> None:
    data = bomb(member_bytes)
    assert len(data) < 8 * 1024**2
    answers: list[httpx.Response] = []

    def push() -> None:
        with server.http(**{"content-type": "application/gzip"}) as http:
            answers.append(http.post("/v1/models/test/hostile/versions", content=data))

    work = threading.Thread(target=push)
    work.start()
    waits = health_while(work, server)
    work.join()
    # The archive is checked off the event loop: every other request is served meanwhile.
    assert max(waits) < 2.0, waits
    (answer,) = answers
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "ArchiveError", error
    assert f"more than {DEFAULT_MAX_UNPACKED_BYTES} bytes, the limit" in error["message"], error
    assert not list((Path(server.data_dir) / "models").glob(".upload-*"))


def test_an_archive_pushed_under_another_models_name_is_refused(server: ModelbusServer) -> None:
    data = archive(lambda tar: None)
    with server.http(**{"content-type": "application/gzip"}) as http:
        answer = http.post("/v1/models/test/other/versions", content=data)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "InvalidInput", error
    assert "holds model test/hostile, but was pushed to test/other" in error["message"], error
