"""Searching run records and dead letters (RunStore.list_runs / list_dead_letters with a
Search) on the migrated store, SQLite and PostgreSQL (tests/conftest.py's ``db``): every
filter narrows, they combine, paging across listeners neither repeats nor skips a record,
and an object key is found by its whole path or any tail after a '/', case-sensitively."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from modelbus.errors import InvalidInput
from modelbus.store.database import Database
from modelbus.store.runs import DeadLetter, RunRecord, RunStore, Search


@pytest.fixture
async def store(db: Database) -> AsyncIterator[RunStore]:
    runs = RunStore(db.engine)
    yield runs
    await runs.close()


def run(
    listener: str, message_id: str, at: float, *, status: str = "succeeded", key: str | None = None
) -> RunRecord:
    return RunRecord(
        listener=listener,
        message_id=message_id,
        status=status,  # type: ignore[arg-type]
        attempts=1,
        first_received_at=at,
        updated_at=at,
        finished_at=at,
        object_key=key,
    )


def letter(listener: str, message_id: str, at: float, *, key: str | None = None) -> DeadLetter:
    return DeadLetter(
        id=f"{listener}-{message_id}",
        listener=listener,
        message_id=message_id,
        body=b"{}",
        attributes={},
        error_type="ModelError",
        error_message="boom",
        stacktrace="",
        permanent=True,
        attempts=1,
        model="a/b@1.*",
        version="1.0.0",
        created_at=at,
        object_key=key,
    )


RUNS = [
    run("ocr", "m1", 10.0, key="/srv/demo/inbox/page-1.png"),
    run("ocr", "m2", 20.0, status="dead_lettered", key="/srv/demo/inbox/page-2.png"),
    run("ocr", "m3", 30.0, key="/srv/demo/inbox/sub/page-1.png"),
    run("s3", "m1", 20.0, key="bucket/scans/Page-1.png"),
    run("s3", "x|y", 40.0, status="retrying", key="bucket/a_%.png"),
    run("raw", "m9", 50.0),
]


async def ids(store: RunStore, **kw: object) -> list[tuple[str, str]]:
    page = await store.list_runs(**kw)  # type: ignore[arg-type]
    return [(r.listener, r.message_id) for r in page.items]


async def test_runs_are_found_by_each_filter_and_their_combination(store: RunStore) -> None:
    await store.write(RUNS)
    assert await ids(store) == [
        ("raw", "m9"),
        ("s3", "x|y"),
        ("ocr", "m3"),
        ("s3", "m1"),
        ("ocr", "m2"),
        ("ocr", "m1"),
    ]
    assert await ids(store, listener="ocr", status="succeeded") == [("ocr", "m3"), ("ocr", "m1")]
    assert await ids(store, search=Search(message_id="m1")) == [("s3", "m1"), ("ocr", "m1")]
    assert await ids(store, search=Search(since=20.0, until=40.0)) == [
        ("ocr", "m3"),
        ("s3", "m1"),
        ("ocr", "m2"),
    ]
    assert await ids(store, status="dead_lettered", search=Search(since=20.0)) == [("ocr", "m2")]
    assert await ids(store, search=Search(listener="s3", message_id="m1")) == [("s3", "m1")]
    (found,) = (await store.list_runs(search=Search(object_key="page-2.png"))).items
    assert found.object_key == "/srv/demo/inbox/page-2.png"


async def test_an_object_is_found_by_its_path_or_a_tail_after_a_slash(store: RunStore) -> None:
    await store.write(RUNS)
    by = lambda key: ids(store, search=Search(object_key=key))  # noqa: E731
    assert await by("page-1.png") == [("ocr", "m3"), ("ocr", "m1")]  # case matters: not Page-1
    assert await by("inbox/page-1.png") == [("ocr", "m1")]
    assert await by("/srv/demo/inbox/page-1.png") == [("ocr", "m1")]
    assert await by("sub/page-1.png") == [("ocr", "m3")]
    assert await by("age-1.png") == []  # a tail starts after a '/'
    assert await by("Page-1.png") == [("s3", "m1")]
    assert await by("bucket/scans/Page-1.png") == [("s3", "m1")]
    assert await by("a_%.png") == [("s3", "x|y")]  # % and _ are not wildcards
    assert await by("ab%.png") == []
    assert await by("%") == []


async def test_paging_across_listeners_with_equal_times_repeats_and_skips_nothing(
    store: RunStore,
) -> None:
    records = [run(f"l{i % 3}", f"m{i}|{i}", float(i // 4)) for i in range(23)]
    await store.write(records)
    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        page = await store.list_runs(limit=4, cursor=cursor)
        seen += [(r.listener, r.message_id) for r in page.items]
        assert len(page.items) <= 4
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted((r.listener, r.message_id) for r in records)
    assert len(seen) == len(set(seen))
    times = [int(m.split("|")[1]) // 4 for _, m in seen]
    assert times == sorted(times, reverse=True)


async def test_bad_cursors_and_two_listeners_are_refused(store: RunStore) -> None:
    with pytest.raises(InvalidInput):
        await store.list_runs(cursor="12.5")  # a dead-letter cursor, not a run's
    with pytest.raises(InvalidInput):
        await store.list_runs(cursor="nonsense")
    with pytest.raises(InvalidInput):
        await store.list_runs("a", search=Search(listener="b"))


@pytest.mark.parametrize("at", ["nan", "inf", "-inf", "1e999"])
async def test_a_cursor_at_no_time_is_refused_not_an_empty_page(store: RunStore, at: str) -> None:
    """A forged cursor whose time is not a number (nan, infinite) ends no page: refused,
    rather than answering an empty page as if the listing had ended."""
    await store.write(RUNS)
    with pytest.raises(InvalidInput, match="not a page cursor"):
        await store.list_runs(cursor=f"{at}|ocr|m1")
    with pytest.raises(InvalidInput, match="not a page cursor"):
        await store.list_dead_letters(cursor=f"{at}|ocr-m1")


async def test_dead_letters_are_searched_and_matched_per_listener(store: RunStore) -> None:
    await store.write(
        [
            letter("ocr", "m1", 10.0, key="/srv/demo/inbox/page-1.png"),
            letter("ocr", "m2", 20.0, key="/srv/demo/inbox/page-2.png"),
            letter("s3", "m1", 30.0, key="bucket/inbox/page-1.png"),
            letter("raw", "m4", 40.0),
        ]
    )
    await store.mark_redriven(["ocr-m2"], to="a/b@1.0.0")

    everything = await store.list_dead_letters()
    assert [d.id for d in everything.items] == ["raw-m4", "s3-m1", "ocr-m2", "ocr-m1"]
    page = await store.list_dead_letters(search=Search(object_key="inbox/page-1.png"))
    assert [d.id for d in page.items] == ["s3-m1", "ocr-m1"]
    assert page.items[0].object_key == "bucket/inbox/page-1.png"
    pending = await store.list_dead_letters(include_redriven=False, search=Search(until=30.0))
    assert [d.id for d in pending.items] == ["ocr-m1"]
    first = await store.list_dead_letters(limit=3)
    rest = await store.list_dead_letters(limit=3, cursor=first.next_cursor)
    assert [d.id for d in rest.items] == ["ocr-m1"] and rest.next_cursor is None

    assert await store.matching_dead_letters(Search(object_key="page-1.png")) == {
        "ocr": ["ocr-m1"],
        "s3": ["s3-m1"],
    }
    assert await store.matching_dead_letters(Search(listener="ocr")) == {"ocr": ["ocr-m1"]}
    assert await store.matching_dead_letters(Search(listener="ocr"), include_redriven=True) == {
        "ocr": ["ocr-m1", "ocr-m2"]
    }
    assert await store.dead_letter_ids(search=Search(since=25.0)) == ["s3-m1", "raw-m4"]


@pytest.mark.parametrize(
    "search",
    [Search(listener="a\x00b"), Search(message_id="a\x00b"), Search(object_key="a\x00b")],
)
async def test_a_nul_character_in_a_search_is_the_callers_invalid_input(
    store: RunStore, search: Search
) -> None:
    """PostgreSQL cannot keep a NUL in text: the search is refused as the caller's input
    (a 400), never a database error (a 500); SQLite keeps such text and finds none."""
    await store.write(RUNS)
    for listing in (store.list_runs, store.list_dead_letters):
        try:
            page = await listing(search=search)
        except InvalidInput as exc:
            assert "NUL" in exc.message
        else:
            assert page.items == []
