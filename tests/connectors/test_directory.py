"""dir://: the folder source (scan, stability, dedupe across restarts), reader and sink."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelbus.connectors import ConnectorContext, OutMessage, make_sink, make_source
from modelbus.connectors.directory import DirectorySource, FileReader, result_path, write_result
from modelbus.errors import ConnectorConfigError, ConnectorError


@pytest.fixture
def ctx(tmp_path: Path) -> ConnectorContext:
    return ConnectorContext(listener="folder", data_dir=tmp_path / "data")


def keys_of(deliveries: list) -> list[str]:  # type: ignore[type-arg]
    return [json.loads(d.body)["Records"][0]["s3"]["object"]["key"] for d in deliveries]


async def drain(source: DirectorySource, wait_s: float = 1.0) -> list:  # type: ignore[type-arg]
    got = await source.receive(100, wait_s)
    await source.ack(got)
    return got


async def test_new_complete_files_are_announced_once(tmp_path: Path, ctx: ConnectorContext) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "sub" / "a b.pdf").write_bytes(b"%PDF")
    for ignored in (".dot", "~lock", "x.tmp", "y.part", "z.crdownload", "w~"):
        (inbox / ignored).write_bytes(b"ignored")
    (inbox / ".git").mkdir()
    (inbox / ".git" / "HEAD").write_text("ref")
    source = make_source(f"dir://{inbox}?poll_ms=50", ctx)
    assert isinstance(source, DirectorySource)
    await source.open()
    try:
        got = await drain(source)
        assert keys_of(got) == ["sub/a+b.pdf"]
        record = json.loads(got[0].body)["Records"][0]
        assert record["eventSource"] == "modelbus:dir" and record["s3"]["bucket"]["name"] == str(
            inbox
        )
        assert record["s3"]["object"]["size"] == 4
        assert await drain(source, 0.3) == []
    finally:
        await source.close()


async def test_a_growing_file_waits_until_it_is_stable(
    tmp_path: Path, ctx: ConnectorContext
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = make_source(f"dir://{inbox}?poll_ms=600000", ctx)  # scans only when we say
    assert isinstance(source, DirectorySource)
    await source.open()
    try:
        growing = inbox / "big.bin"
        for _ in range(4):
            with growing.open("ab") as file:
                file.write(b"x" * 1000)
            await source._scan()
            assert await drain(source, 0) == []
        await source._scan()  # unchanged since the last scan: complete
        got = await drain(source, 0)
        assert keys_of(got) == ["big.bin"]
        assert json.loads(got[0].body)["Records"][0]["s3"]["object"]["size"] == 4000
    finally:
        await source.close()


async def test_restarts_do_not_reannounce_but_rewrites_do(
    tmp_path: Path, ctx: ConnectorContext
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").write_text("one")
    url = f"dir://{inbox}?poll_ms=50"
    first = make_source(url, ctx)
    await first.open()
    assert keys_of(await drain(first)) == ["a.txt"]
    await first.close()

    second = make_source(url, ctx)
    await second.open()
    try:
        assert await drain(second, 0.4) == []
        (inbox / "a.txt").write_text("two, longer")
        assert keys_of(await drain(second)) == ["a.txt"]
    finally:
        await second.close()


async def test_a_missing_folder_is_a_configuration_error(
    tmp_path: Path, ctx: ConnectorContext
) -> None:
    source = make_source(f"dir://{tmp_path / 'nope'}", ctx)
    with pytest.raises(ConnectorConfigError, match="create it first"):
        await source.open()


async def test_file_reader_stays_inside_its_folder(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "doc.pdf").write_bytes(b"%PDF-1.7")
    (tmp_path / "secret").write_text("no")
    reader = FileReader(inbox)
    assert await reader.read(str(inbox), "doc.pdf") == (b"%PDF-1.7", "application/pdf")
    for bucket, key in [
        (str(inbox), "../secret"),
        (str(tmp_path), "secret"),
        (str(inbox), "/etc/hostname"),
    ]:
        with pytest.raises(ConnectorError) as info:
            await reader.read(bucket, key)
        assert info.value.permanent
    with pytest.raises(ConnectorError, match="removed") as gone:
        await reader.read(str(inbox), "missing.pdf")
    assert gone.value.permanent


def message(id: str, body: bytes, content_type: str | None, key: str | None = None) -> OutMessage:
    attributes = {"content-type": content_type} if content_type else {}
    if key:
        attributes["key"] = key
    return OutMessage(id=id, body=body, attributes=attributes)


@pytest.mark.parametrize(
    ("content_type", "key", "name"),
    [
        ("application/cloudevents+json; charset=utf-8", "scans/a.png", "scans/a.png.json"),
        ("application/json", None, "out-1.json"),
        ("text/plain; charset=utf-8", "notes.md", "notes.md.txt"),
        ("image/png", "x", "x.png"),
        (None, "x", "x.bin"),
        ("application/x-unknown-thing", "x", "x.bin"),
        ("text/plain", "../../etc/passwd", "etc/passwd.txt"),
        ("text/plain", "/abs/.hidden", "abs/hidden.txt"),
    ],
)
def test_result_names(tmp_path: Path, content_type: str | None, key: str | None, name: str) -> None:
    path = result_path(tmp_path, message("out-1", b"", content_type, key))
    assert path == tmp_path / name


def test_results_never_overwrite_a_different_result(tmp_path: Path) -> None:
    first = write_result(tmp_path, message("id-1", b"first", "text/plain", "a.txt"))
    assert first == tmp_path / "a.txt.txt"
    assert write_result(tmp_path, message("id-1", b"first", "text/plain", "a.txt")) == first
    other = write_result(tmp_path, message("id-2", b"second", "text/plain", "a.txt"))
    assert other == tmp_path / "a.txt.id-2.txt"
    assert first.read_bytes() == b"first" and other.read_bytes() == b"second"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_a_redelivered_cloudevent_is_the_same_result(tmp_path: Path) -> None:
    ce = "application/cloudevents+json"
    body1 = json.dumps({"id": "out-9", "time": "t1", "data": 1}).encode()
    body2 = json.dumps({"id": "out-9", "time": "t2", "data": 1}).encode()
    first = write_result(tmp_path, message("out-9", body1, ce, "k"))
    assert write_result(tmp_path, message("out-9", body2, ce, "k")) == first
    assert [p.name for p in tmp_path.iterdir()] == ["k.json"]


async def test_sink_creates_its_folder_and_reports_failures(
    tmp_path: Path, ctx: ConnectorContext
) -> None:
    sink = make_sink(f"dir://{tmp_path / 'out' / 'deep'}", ctx)
    await sink.open()
    await sink.publish([message("m", b"{}", "application/json")])
    assert (tmp_path / "out" / "deep" / "m.json").read_bytes() == b"{}"
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    bad = make_sink(f"dir://{blocked}", ctx)
    with pytest.raises(ConnectorError):
        await bad.open()
