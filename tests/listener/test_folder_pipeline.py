"""The embedded story end to end: a file lands in a folder -> a model runs on it -> the
result lands in another folder, with nothing but the local disk."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from modelbus.runtime.invocation import Payload
from modelbus_runner import PermanentError

from .conftest import FAST, Env, eventually


@pytest.fixture
def queue_kind() -> str:
    return "local"


def describe(payload: Payload) -> dict[str, object]:
    return {"bytes": len(payload.data), "mime": payload.mime, "kind": payload.content_type}


async def test_dropped_files_become_result_files_once(env: Env, tmp_path: Path) -> None:
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    env.invoker.register("acme/ocr", describe, takes_payload=True)
    definition = env.definition(
        name="ocr",
        model="acme/ocr",
        source=f"dir://{inbox}?poll_ms=50",
        outputs=[f"dir://{outbox}"],
    )
    listener = await env.start(definition)
    (inbox / "scans").mkdir()
    (inbox / "scans" / "page 1.png").write_bytes(b"\x89PNG fake image")
    (inbox / ".hidden.png").write_bytes(b"ignored")
    (inbox / "upload.png.part").write_bytes(b"still uploading")

    result_file = outbox / "scans" / "page 1.png.json"
    await eventually(result_file.exists)
    event = json.loads(result_file.read_text())
    assert event["data"] == {"bytes": 15, "mime": "image/png", "kind": "binary"}
    assert event["key"] == "scans/page 1.png"
    assert event["bucket"] == str(inbox.resolve())
    assert event["subject"] == "scans/page 1.png"
    await eventually(lambda: listener.status().counters["succeeded"] == 1)

    await listener.stop()
    again = await env.start(definition)  # a restart: the old file is not announced again
    (inbox / "second.txt").write_text("hello")
    await eventually((outbox / "second.txt.json").exists)
    await asyncio.sleep(0.3)  # several more scans of the folder
    assert [c.payload.data for c in env.invoker.calls] == [b"\x89PNG fake image", b"hello"]
    assert sorted(p.name for p in outbox.rglob("*") if p.is_file()) == [
        "page 1.png.json",
        "second.txt.json",
    ]
    await eventually(lambda: again.status().counters["succeeded"] == 2)  # counts span restarts


async def test_raw_results_keep_their_type_and_a_rewritten_file_runs_again(
    env: Env, tmp_path: Path
) -> None:
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    env.invoker.register("acme/thumb", lambda data: data[::-1])
    definition = env.definition(
        model="acme/thumb",
        source=f"dir://{inbox}?poll_ms=50",
        outputs=[f"dir://{outbox}"],
        output_mode="raw",
    )
    await env.start(definition, FAST)
    (inbox / "a.bin").write_bytes(b"\x00\x01\x02")
    await eventually((outbox / "a.bin.bin").exists)
    assert (outbox / "a.bin.bin").read_bytes() == b"\x02\x01\x00"

    # New content under the same name is a new object: it runs, and the first result stays.
    await asyncio.sleep(0.05)
    (inbox / "a.bin").write_bytes(b"\x00\x09")
    await eventually(lambda: len(list(outbox.glob("a.bin.*.bin"))) == 1)
    (second,) = outbox.glob("a.bin.*.bin")
    assert second.read_bytes() == b"\x09\x00"
    assert (outbox / "a.bin.bin").read_bytes() == b"\x02\x01\x00"


async def test_folder_events_can_also_arrive_through_a_queue_as_cloudevents(
    env: Env, tmp_path: Path
) -> None:
    """A structured CloudEvent with data_base64 arriving on a local queue is decoded too."""
    env.invoker.register("acme/ocr", describe, takes_payload=True)
    source, out = env.url("in"), env.url("out")
    await env.start(env.definition(model="acme/ocr", source=source, outputs=[out]))
    event = {
        "specversion": "1.0",
        "id": "e1",
        "source": "scanner",
        "type": "scan.created",
        "datacontenttype": "image/png",
        "data_base64": base64.b64encode(b"PNGDATA").decode(),
        "originid": "first-hop",
    }
    await env.publish(source, json.dumps(event).encode())
    (result,) = await env.collect(out, 1)
    body = json.loads(result.body)
    assert body["data"] == {"bytes": 7, "mime": "image/png", "kind": "binary"}
    assert body["originid"] == "first-hop"


async def test_a_file_that_fails_lands_in_the_error_folder_under_its_own_name(
    env: Env, tmp_path: Path
) -> None:
    """The demo's error folder: a file the model refuses (permanent) and one whose failures
    outlast the retries (transient) each become ``NAME`` + ``NAME.error.json``; the inbox
    keeps them; a good file still gives its result."""
    inbox, outbox, failed = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "failed"
    inbox.mkdir()

    def read(data: bytes) -> dict[str, int]:
        if data.startswith(b"junk"):
            raise PermanentError("not an image")
        if data.startswith(b"slow"):
            raise RuntimeError("the runner ran out of memory")
        return {"bytes": len(data)}

    env.invoker.register("acme/ocr", read)
    definition = env.definition(
        model="acme/ocr",
        source=f"dir://{inbox}?poll_ms=50",
        outputs=[f"dir://{outbox}"],
        error_sink=f"dir://{failed}",
        output_mode="raw",
        retry={"max_attempts": 2, "initial_backoff_s": 0.05, "jitter": 0},
    )
    listener = await env.start(definition)
    (inbox / "scans").mkdir()
    (inbox / "scans" / "notes.png").write_bytes(b"junk, not a png")
    (inbox / "big scan.tiff").write_bytes(b"slow to read")
    (inbox / "good.png").write_bytes(b"\x89PNG")

    await eventually((failed / "big scan.tiff.error.json").exists)
    await eventually((failed / "scans" / "notes.png.error.json").exists)
    await eventually((outbox / "good.png.json").exists)
    assert (failed / "scans" / "notes.png").read_bytes() == b"junk, not a png"
    assert (failed / "big scan.tiff").read_bytes() == b"slow to read"
    refused = json.loads((failed / "scans" / "notes.png.error.json").read_text())
    assert refused["file"] == "scans/notes.png"
    assert refused["permanent"] is True and refused["attempts"] == 1
    assert "not an image" in refused["error_message"]
    assert refused["listener"] == definition.name
    event = json.loads(refused["body"])["Records"][0]  # the notification, as it was
    assert event["eventSource"] == "modelbus:dir" and event["s3"]["object"]["key"] == (
        "scans/notes.png"
    )
    slow = json.loads((failed / "big scan.tiff.error.json").read_text())
    assert slow["permanent"] is False and slow["attempts"] == 2
    assert "out of memory" in slow["error_message"]
    assert sorted(p.name for p in inbox.rglob("*") if p.is_file()) == [
        "big scan.tiff",
        "good.png",
        "notes.png",
    ]
    await eventually(lambda: listener.status().counters["dead_lettered"] == 2)
    assert sorted(p.relative_to(failed).as_posix() for p in failed.rglob("*")) == [
        "big scan.tiff",
        "big scan.tiff.error.json",
        "scans",
        "scans/notes.png",
        "scans/notes.png.error.json",
    ]
