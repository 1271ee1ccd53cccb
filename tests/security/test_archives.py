"""Model archives pushed to a real server: whatever an archive tries (paths out of the
folder, symlinks out, a huge declared size, too many members, huge tar metadata), it is
refused with a 400 that says why, and nothing lands outside the server's data folder."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

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
