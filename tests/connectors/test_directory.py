"""dir://: the folder source (scan, stability, dedupe across restarts), reader and sink."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from modelbus.connectors import (
    DEAD_LETTER_ID,
    ConnectorContext,
    ConnectorPolicy,
    Delivery,
    OutMessage,
    make_sink,
    make_source,
)
from modelbus.connectors.directory import (
    DirectorySource,
    FileReader,
    folder_of,
    notification,
    result_path,
    write_dead_letter,
    write_result,
)
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError
from modelbus.listeners.envelopes import DeadLetterInfo, dead_letter_id, encode_dead_letter


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


# --- dead letters: the failed file under its own name, beside NAME.error.json --------------


def dead_letter(body: bytes, *, listener: str = "folder", message_id: str = "m-1") -> OutMessage:
    """The error-sink message the listener runtime makes for ``body`` (the real encoder)."""
    delivery = Delivery(message_id=message_id, body=body, attributes={"origin": "scanner"})
    info = DeadLetterInfo(
        id=dead_letter_id(listener, message_id),
        listener=listener,
        model="acme/ocr@1.*",
        version="1.0.0",
        error_type="PermanentError",
        error_message="not an image",
        stacktrace="Traceback ...",
        permanent=True,
        attempts=1,
    )
    return encode_dead_letter(delivery, info)


def folder_event(inbox: Path, key: str) -> bytes:
    """The notification the dir:// source announces ``inbox/key`` with."""
    stat = (inbox / key).stat()
    return notification(inbox, key, (stat.st_size, stat.st_mtime_ns)).body


async def test_a_failed_file_keeps_its_name_beside_its_error(
    tmp_path: Path, ctx: ConnectorContext
) -> None:
    inbox, failed = tmp_path / "inbox", tmp_path / "failed"
    (inbox / "scans").mkdir(parents=True)
    (inbox / "scans" / "page 1.png").write_bytes(b"not really a png")
    letter = dead_letter(folder_event(inbox, "scans/page 1.png"))
    sink = make_sink(f"dir://{failed}", ctx)
    await sink.open()
    await sink.publish([letter])

    assert (failed / "scans" / "page 1.png").read_bytes() == b"not really a png"
    error = json.loads((failed / "scans" / "page 1.png.error.json").read_text())
    assert error["file"] == "scans/page 1.png"
    assert error["error_type"] == "PermanentError" and error["error_message"] == "not an image"
    assert error["permanent"] is True and error["attempts"] == 1
    assert error["listener"] == "folder" and error["version"] == "1.0.0"
    assert error["source_message_id"] == "m-1"
    assert error["dead_letter_id"] == letter.attributes[DEAD_LETTER_ID]
    assert error["attributes"] == dict(letter.attributes)  # every attribute, as sent
    assert error["attributes"]["origin"] == "scanner"
    assert error["body"].encode() == letter.body  # the original notification, untouched
    assert (inbox / "scans" / "page 1.png").exists()  # copied, not moved: a redrive reads it

    # A redelivery of the same letter writes nothing new, even if the file changed meanwhile.
    (inbox / "scans" / "page 1.png").write_bytes(b"changed")
    await sink.publish([letter])
    assert (failed / "scans" / "page 1.png").read_bytes() == b"not really a png"
    names = sorted(p.relative_to(failed).as_posix() for p in failed.rglob("*") if p.is_file())
    assert names == ["scans/page 1.png", "scans/page 1.png.error.json"]


async def test_another_failure_of_the_same_name_is_kept_apart(
    tmp_path: Path, ctx: ConnectorContext
) -> None:
    inbox, failed = tmp_path / "inbox", tmp_path / "failed"
    inbox.mkdir()
    (inbox / "a.png").write_bytes(b"first")
    first = dead_letter(folder_event(inbox, "a.png"), message_id="m-1")
    write_dead_letter(failed, first, ctx)
    (inbox / "a.png").write_bytes(b"second content")  # rewritten: a new event, failing again
    second = dead_letter(folder_event(inbox, "a.png"), message_id="m-2")
    record = write_dead_letter(failed, second, ctx)

    letter_id = second.attributes[DEAD_LETTER_ID]
    assert record == failed / f"a.{letter_id}.png.error.json"
    assert (failed / f"a.{letter_id}.png").read_bytes() == b"second content"
    assert (failed / "a.png").read_bytes() == b"first"
    assert json.loads(record.read_text())["file"] == f"a.{letter_id}.png"
    assert not [p for p in failed.iterdir() if p.name.startswith(".")]  # no temp files left


async def test_a_file_gone_before_it_failed_leaves_its_error_alone(
    tmp_path: Path, ctx: ConnectorContext
) -> None:
    inbox, failed = tmp_path / "inbox", tmp_path / "failed"
    inbox.mkdir()
    (inbox / "gone.pdf").write_bytes(b"%PDF")
    letter = dead_letter(folder_event(inbox, "gone.pdf"))
    (inbox / "gone.pdf").unlink()
    write_dead_letter(failed, letter, ctx)
    assert [p.name for p in failed.iterdir()] == ["gone.pdf.error.json"]
    assert json.loads((failed / "gone.pdf.error.json").read_text())["file"] is None


async def test_a_folder_outside_the_roots_is_not_copied_from(tmp_path: Path) -> None:
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    (allowed / "failed").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "secret.txt").write_text("private")
    ctx = ConnectorContext(
        listener="folder", data_dir=tmp_path / "data", policy=ConnectorPolicy(dir_roots=(allowed,))
    )
    forged = dead_letter(folder_event(elsewhere, "secret.txt"))
    write_dead_letter(allowed / "failed", forged, ctx)
    assert [p.name for p in (allowed / "failed").iterdir()] == ["secret.txt.error.json"]
    escaping = dead_letter(
        folder_event(allowed, "failed").replace(b'"failed"', b'"../elsewhere/secret.txt"')
    )
    write_dead_letter(allowed / "failed", escaping, ctx)
    kept = allowed / "failed" / "elsewhere" / "secret.txt"  # the key, kept inside the folder
    assert not kept.exists()
    assert json.loads(kept.with_name("secret.txt.error.json").read_text())["file"] is None
    assert "private" not in "".join(
        p.read_text() for p in (allowed / "failed").rglob("*.error.json")
    )


async def test_other_dead_letters_are_their_body_and_error(
    tmp_path: Path, ctx: ConnectorContext
) -> None:
    letter = dead_letter(b"\xff\x00 binary body", message_id="queue-message-7")
    record = write_dead_letter(tmp_path, letter, ctx)
    letter_id = letter.attributes[DEAD_LETTER_ID]
    assert record == tmp_path / f"{letter_id}.bin.error.json"
    assert (tmp_path / f"{letter_id}.bin").read_bytes() == b"\xff\x00 binary body"
    error = json.loads(record.read_text())
    assert error["file"] == f"{letter_id}.bin" and "body" not in error
    assert base64.b64decode(error["body_base64"]) == b"\xff\x00 binary body"


@pytest.mark.parametrize("url", ["dir:///tmp/in\x00box", "dir:///tmp/in%00box"])
def test_a_folder_with_a_nul_is_refused_as_a_definition_error(url: str) -> None:
    with pytest.raises(DefinitionError, match="cannot hold a NUL character"):
        folder_of(url)
