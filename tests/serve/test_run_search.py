"""Searching runs and dead letters against a real server, over a real ``dir://`` folder and
a real ``local://`` queue: ``GET /v1/runs`` / ``/v1/dead-letters`` and their filters, the
CLI's ``runs list``, ``runs get FILE``, ``dead-letters list`` and the bulk redrive of what a
search matches (``POST /v1/dead-letters/redrive``, ``dead-letters redrive --object-key``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from modelbus.client import AsyncClient, Client
from modelbus.errors import Forbidden, InvalidInput
from tests.support.server import ModelbusServer

from .conftest import eventually, publish, unique
from .test_cli import as_json, mb, ok


def folder_listener(admin: Client, name: str, inbox: Path, spec: str) -> None:
    admin.create_listener(
        {
            "name": name,
            "source": f"dir://{inbox}?poll_ms=50",
            "model": f"test/echo@{spec}",
            "retry": {"max_attempts": 1},  # 7.*: nothing to run, dead-lettered at once
        },
        check=False,
    )


def test_runs_of_dropped_files_are_found_by_file_name(
    server: ModelbusServer, admin: Client, tmp_path: Path
) -> None:
    good, bad = unique("files-ok"), unique("files-dead")
    inbox, other = tmp_path / "inbox", tmp_path / "other"
    for folder in (inbox, other, inbox / "sub"):
        folder.mkdir()
    folder_listener(admin, good, inbox, "1.0.0")
    folder_listener(admin, bad, other, "7.*")
    started = time.time()
    (inbox / "page-1.png").write_bytes(b"\x89PNG one")
    (inbox / "sub" / "page-1.png").write_bytes(b"\x89PNG sub")
    (other / "page-1.png").write_bytes(b"\x89PNG other")
    (other / "page-2.png").write_bytes(b"\x89PNG two")

    page = eventually(lambda: _full(admin.search_runs(object_key="page-1.png", since=started), 3))
    found = {(r.listener, r.object_key, r.status) for r in page.items}
    assert found == {
        (good, f"{inbox.resolve()}/page-1.png", "succeeded"),
        (good, f"{inbox.resolve()}/sub/page-1.png", "succeeded"),
        (bad, f"{other.resolve()}/page-1.png", "dead_lettered"),
    }
    (mine,) = admin.search_runs(object_key="inbox/page-1.png", since=started).items
    assert (mine.listener, mine.status) == (good, "succeeded")
    assert admin.search_runs(object_key="age-1.png", since=started).items == []
    only = admin.search_runs(listener=bad, status="dead_lettered").items
    assert sorted(r.object_key or "" for r in only) == [
        f"{other.resolve()}/page-1.png",
        f"{other.resolve()}/page-2.png",
    ]
    assert admin.search_runs(listener=bad, until=started).items == []

    # The CLI: an argument that is no message id is looked up as a file.
    [run] = as_json(server, "runs", "get", "inbox/page-1.png")
    assert (run["listener"], run["status"]) == (good, "succeeded")
    shown = ok(server, "runs", "get", "other/page-2.png")
    assert "dead_lettered" in shown and f"{other.resolve()}/page-2.png" in shown
    missing = mb(server, "runs", "get", "nowhere/page-9.png")
    assert missing.returncode == 1 and "no run record for message or object" in missing.stderr
    listed = as_json(server, "runs", "list", good, "--object-key", "page-1.png", "--since", "10m")
    assert len(listed) == 2 and {r["listener"] for r in listed} == {good}
    assert as_json(server, "runs", "list", "--object-key", "page-1.png", "--until", "1d") == []

    # Dead letters: searched the same way, and redriven by the search (on another version).
    letters = admin.search_dead_letters(listener=bad).items
    assert sorted(d.object_key or "" for d in letters) == sorted(r.object_key or "" for r in only)
    (letter,) = as_json(server, "dead-letters", "list", "--object-key", "other/page-2.png")
    assert letter["listener"] == bad
    redriven = ok(
        server, "dead-letters", "redrive", "--object-key", "other/page-2.png", "--to", "2.*"
    )
    assert f"{bad}: redriven on test/echo@2.*: 1 succeeded" in redriven
    pending = admin.search_dead_letters(listener=bad, include_redriven=False).items
    assert [d.object_key for d in pending] == [f"{other.resolve()}/page-1.png"]
    [again] = as_json(server, "runs", "get", "other/page-2.png")
    assert (again["status"], again["version"]) == ("succeeded", "2.0.0")
    for name in (good, bad):
        admin.delete_listener(name)


def _full(page: object, n: int) -> object:
    items = getattr(page, "items", [])
    final = [r for r in items if r.status in ("succeeded", "dead_lettered")]
    return page if len(final) == n else None


def test_queue_runs_are_searched_and_paged_over_the_api(
    server: ModelbusServer, admin: Client
) -> None:
    name = unique("search-q")
    admin.create_listener(
        {"name": name, "source": f"local://{name}-in?poll_ms=50", "model": "test/echo@1.0.0"}
    )
    started = time.time()
    messages = [(f"q-{i}", b'{"n": %d}' % i) for i in range(7)]
    publish(server.data_dir, f"{name}-in", *messages)
    eventually(lambda: len(admin.search_runs(listener=name, status="succeeded").items) == 7)

    seen, cursor = [], None
    while True:
        page = admin.search_runs(listener=name, limit=3, cursor=cursor)
        seen += [r.message_id for r in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(m for m, _ in messages) and len(seen) == 7
    # The iterators follow the cursors themselves: every record, in the pages' order.
    assert [r.message_id for r in admin.each_run(listener=name, page_size=2)] == seen
    assert list(admin.each_run(listener=name, since=time.time() + 60)) == []
    (one,) = admin.search_runs(message_id="q-3").items
    assert (one.listener, one.object_key) == (name, None)

    with httpx.Client(base_url=server.url, headers=admin_headers(server)) as http:
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started - 1))
        answer = http.get("/v1/runs", params={"listener": name, "since": iso, "limit": 100})
        assert answer.status_code == 200 and len(answer.json()["items"]) == 7
        later = http.get("/v1/runs", params={"listener": name, "since": time.time() + 60})
        assert later.json() == {"items": [], "next_cursor": None}
        bad = http.get("/v1/runs", params={"since": "yesterday"})
        assert bad.status_code == 422 or bad.status_code == 400
        refused = http.get("/v1/runs", params={"cursor": "nonsense"})
        assert refused.status_code == 400
    with pytest.raises(InvalidInput):
        admin.search_runs(cursor="12|x")
    admin.delete_listener(name)


def dead_letters(server: ModelbusServer, admin: Client, name: str, *message_ids: str) -> None:
    """A listener ``name`` whose model resolves to nothing (7.*), and a dead letter of it
    for each of ``message_ids``."""
    admin.create_listener(
        {
            "name": name,
            "source": f"local://{name}-in?poll_ms=50",
            "model": "test/echo@7.*",
            "retry": {"max_attempts": 1},
        },
        check=False,
    )
    publish(server.data_dir, f"{name}-in", *((m, b"{}") for m in message_ids))
    eventually(lambda: len(admin.search_dead_letters(listener=name).items) == len(message_ids))


def test_the_async_iterators_follow_every_page(server: ModelbusServer, admin: Client) -> None:
    name = unique("each-dead")
    dead_letters(server, admin, name, *(f"e-{i}" for i in range(5)))

    async def read() -> tuple[list[str], list[str]]:
        async with AsyncClient(server.url, server.admin_key) as client:
            dead = client.each_dead_letter(listener=name, page_size=2)
            runs = client.each_run(listener=name, page_size=3)
            return [d.message_id async for d in dead], [r.message_id async for r in runs]

    letters, runs = asyncio.run(read())
    assert sorted(letters) == sorted(runs) == [f"e-{i}" for i in range(5)]
    assert [d.message_id for d in admin.each_dead_letter(listener=name, page_size=4)] == letters
    admin.delete_listener(name)


def test_bulk_redrive_needs_the_manage_scope(server: ModelbusServer, admin: Client) -> None:
    name = unique("search-dead")
    dead_letters(server, admin, name, "d-1", "d-2")
    reader = admin.create_key(name=unique("reader"), scopes=["call:*"])
    with Client(server.url, reader.key) as client:
        assert len(client.search_dead_letters(listener=name).items) == 2
        with pytest.raises(Forbidden):
            client.redrive_matching(listener=name)
    assert mb(server, "dead-letters", "redrive").returncode == 2  # nothing says which
    with pytest.raises(InvalidInput, match="every dead letter of every listener"):
        admin.redrive_matching()  # nor here (every=True would mean it)
    result = admin.redrive_matching(listener=name, message_id="d-2", spec="2.*")
    assert result.matched == 1 and result.listeners[name].redriven == [
        admin.search_dead_letters(message_id="d-2").items[0].id
    ]
    rest = admin.redrive_matching(listener=name, spec="1.*")
    assert rest.matched == 1 and len(rest.listeners[name].redriven) == 1
    assert admin.redrive_matching(listener=name).matched == 0
    admin.delete_listener(name)


def test_a_misspelt_redrive_field_is_refused_and_nothing_runs(
    server: ModelbusServer, admin: Client
) -> None:
    """An unknown field in a redrive body would narrow nothing if ignored: ``idss`` would
    redrive every letter of the listener, ``sinse`` every letter the rest matches."""
    name = unique("typo-dead")
    dead_letters(server, admin, name, "t-1", "t-2")
    one = admin.search_dead_letters(message_id="t-1").items[0].id
    with httpx.Client(base_url=server.url, headers=admin_headers(server)) as http:
        by_ids = http.post(
            f"/v1/listeners/{name}/dead-letters/redrive", json={"idss": [one], "spec": "1.*"}
        )
        searched = http.post(
            "/v1/dead-letters/redrive",
            json={"listener": name, "sinse": "2026-01-01T00:00:00", "spec": "1.*"},
        )
    for answer, field in ((by_ids, "idss"), (searched, "sinse")):
        assert answer.status_code == 422, answer.text
        assert f"body.{field}" in answer.json()["error"]["message"]
    assert len(admin.search_dead_letters(listener=name, include_redriven=False).items) == 2
    admin.delete_listener(name)


def admin_headers(server: ModelbusServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_key}"}
