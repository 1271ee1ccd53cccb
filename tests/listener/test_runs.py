"""RunStore, and the listeners' group-committed RunWriter over it, on the migrated store,
SQLite and PostgreSQL (tests/conftest.py's ``db``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from modelbus.connectors import redact_url
from modelbus.errors import DeadLetterNotFound
from modelbus.listeners.coalescer import Coalescer
from modelbus.listeners.records import RunWriter
from modelbus.store.database import Database
from modelbus.store.runs import INLINE_READ_MAX, DeadLetter, RunRecord, RunStore


@pytest.fixture
async def store(db: Database) -> AsyncIterator[RunStore]:
    """A RunStore on the migrated store, once on SQLite and once on PostgreSQL."""
    runs = RunStore(db.engine)
    yield runs
    await runs.close()


@pytest.fixture
async def writer(store: RunStore) -> AsyncIterator[RunWriter]:
    """The listeners' group-committed writer over ``store``."""
    runs = RunWriter(store)
    yield runs
    await runs.flush()


def run(
    message_id: str, status: str, *, at: float = 100.0, listener: str = "l", **kw: object
) -> RunRecord:
    final = status in ("succeeded", "dead_lettered")
    return RunRecord(
        listener=listener,
        message_id=message_id,
        status=status,  # type: ignore[arg-type]
        attempts=int(kw.pop("attempts", 1)),  # type: ignore[call-overload]
        first_received_at=at,
        updated_at=at,
        finished_at=at if final else None,
        **kw,  # type: ignore[arg-type]
    )


def letter(letter_id: str, *, at: float, listener: str = "l", attempts: int = 1) -> DeadLetter:
    return DeadLetter(
        id=letter_id,
        listener=listener,
        message_id=f"m-{letter_id}",
        body=b"\x00\x01body",
        attributes={"k": "v"},
        error_type="RunnerCrashed",
        error_message="boom",
        stacktrace="trace",
        permanent=False,
        attempts=attempts,
        model="a/b@1.*",
        version="1.0.0",
        created_at=at,
    )


async def test_run_records_round_trip_and_keep_their_first_receive_time(
    store: RunStore, writer: RunWriter
) -> None:
    await writer.record(run("m1", "running", at=10))
    await writer.record(
        run(
            "m1",
            "succeeded",
            at=20,
            attempts=2,
            version="1.2.3",
            output_id="o1",
            result_location=("local://out",),
            duration_ms=5.5,
        )
    )
    await writer.record(run("m1", "running", at=30, listener="other"))
    (mine,) = await store.get_runs("m1", "l")
    assert (mine.status, mine.attempts, mine.version, mine.output_id) == (
        "succeeded",
        2,
        "1.2.3",
        "o1",
    )
    assert (mine.first_received_at, mine.updated_at, mine.finished_at) == (10, 20, 20)
    assert mine.result_location == ("local://out",) and mine.duration_ms == 5.5
    assert [r.listener for r in await store.get_runs("m1")] == ["l", "other"]
    assert await store.get_runs("nope") == []


async def test_a_final_status_is_not_overwritten_by_a_late_intermediate_one(
    store: RunStore,
    writer: RunWriter,
) -> None:
    await writer.record(run("m1", "succeeded", at=10))
    writer.note(run("m1", "running", at=20))
    await writer.flush()
    (record,) = await store.get_runs("m1")
    assert record.status == "succeeded"
    await writer.record(run("m1", "dead_lettered", at=30, error={"type": "X", "message": "y"}))
    (record,) = await store.get_runs("m1")
    assert record.status == "dead_lettered" and record.error == {"type": "X", "message": "y"}


async def test_dedupe_check_sees_only_successes(store: RunStore, writer: RunWriter) -> None:
    await writer.record(run("a", "succeeded"))
    await writer.record(run("b", "retrying"))
    await writer.record(run("c", "succeeded", listener="other"))
    assert await store.succeeded("l", ["a", "b", "c", "d"]) == {"a"}
    assert await store.succeeded("l", []) == set()


async def test_dedupe_checks_of_few_and_of_many_ids_agree(
    store: RunStore, writer: RunWriter
) -> None:
    # on SQLite a few ids are read on the event loop and many on the reader thread
    ids = [f"m{i}" for i in range(3 * INLINE_READ_MAX)]
    for i, message_id in enumerate(ids):
        await writer.record(run(message_id, "succeeded" if i % 3 == 0 else "retrying"))
    done = {m for i, m in enumerate(ids) if i % 3 == 0}
    assert await store.succeeded("l", ids) == done
    for start in range(0, len(ids), INLINE_READ_MAX):
        few = ids[start : start + INLINE_READ_MAX]
        assert await store.succeeded("l", few) == done & set(few)


async def test_many_concurrent_writes_all_land(store: RunStore, writer: RunWriter) -> None:
    await asyncio.gather(*(writer.record(run(f"m{i}", "succeeded", at=i)) for i in range(200)))
    page = await store.list_runs("l", limit=500)
    assert len(page.items) == 200 and page.next_cursor is None


async def test_run_listing_pages(store: RunStore, writer: RunWriter) -> None:
    for i in range(5):
        await writer.record(run(f"m{i}", "succeeded" if i % 2 else "retrying", at=float(i)))
    first = await store.list_runs("l", limit=2)
    assert [r.message_id for r in first.items] == ["m4", "m3"]
    second = await store.list_runs("l", limit=2, cursor=first.next_cursor)
    assert [r.message_id for r in second.items] == ["m2", "m1"]
    third = await store.list_runs("l", limit=2, cursor=second.next_cursor)
    assert [r.message_id for r in third.items] == ["m0"] and third.next_cursor is None
    only = await store.list_runs("l", status="succeeded")
    assert [r.message_id for r in only.items] == ["m3", "m1"]


async def test_dead_letters_store_page_and_redrive_marks(
    store: RunStore, writer: RunWriter
) -> None:
    for i in range(5):
        await writer.dead_letter(
            run(f"m-d{i}", "dead_lettered", at=float(i)), letter(f"d{i}", at=float(i))
        )
    await writer.dead_letter(run("x", "dead_lettered"), letter("x1", at=1.0, listener="other"))
    await writer.dead_letter(run("m-d4", "dead_lettered", at=9.0), letter("d4", at=9.0, attempts=7))

    one = await store.get_dead_letter("d4")
    assert (one.body, one.attributes, one.attempts) == (b"\x00\x01body", {"k": "v"}, 7)
    assert one.created_at == 4.0  # replaced in place, first dead-lettering time kept
    (record,) = await store.get_runs("m-d4")
    assert record.status == "dead_lettered"

    page = await store.list_dead_letters("l", limit=3)
    assert [d.id for d in page.items] == ["d4", "d3", "d2"]
    rest = await store.list_dead_letters("l", limit=3, cursor=page.next_cursor)
    assert [d.id for d in rest.items] == ["d1", "d0"] and rest.next_cursor is None

    await store.mark_redriven(["d0", "d3"], to="a/b@2.0.0", at=50.0)
    redriven = await store.get_dead_letter("d0")
    assert (redriven.redriven_at, redriven.redriven_to) == (50.0, "a/b@2.0.0")
    assert await store.dead_letter_ids("l") == ["d1", "d2", "d4"]
    pending = await store.list_dead_letters("l", include_redriven=False)
    assert [d.id for d in pending.items] == ["d4", "d2", "d1"]
    with pytest.raises(DeadLetterNotFound):
        await store.get_dead_letter("nope")


async def test_prune_ends_the_dedupe_window(store: RunStore, writer: RunWriter) -> None:
    await writer.record(run("old", "succeeded", at=10))
    await writer.record(run("new", "succeeded", at=100))
    await writer.record(run("open", "running", at=5))
    assert await store.prune(finished_before=50) == 1
    assert await store.succeeded("l", ["old", "new"]) == {"new"}
    assert len(await store.get_runs("open")) == 1


async def test_totals_count_runs_by_status_and_survive_pruning(
    store: RunStore, writer: RunWriter
) -> None:
    for i, (status, at) in enumerate(
        [("succeeded", 10), ("succeeded", 20), ("succeeded", 100), ("dead_lettered", 10)]
    ):
        await writer.record(run(f"m-{i}", status, at=at))
    await writer.record(run("busy", "running", at=5))
    await writer.record(run("again", "retrying", at=5))
    await writer.record(run("other", "succeeded", at=10, listener="other"))
    await writer.flush()
    expected = {"succeeded": 3, "dead_lettered": 1, "running": 1, "retrying": 1}
    assert await store.totals("l") == expected
    assert await store.prune(finished_before=50) == 4  # three of l's, one of other's
    assert await store.totals("l") == expected  # forgotten records stay counted
    assert await store.totals("other") == {
        "succeeded": 1,
        "dead_lettered": 0,
        "running": 0,
        "retrying": 0,
    }
    await writer.record(run("late", "succeeded", at=200))
    await writer.flush()
    assert await store.prune(finished_before=50) == 0  # nothing counted twice
    assert (await store.totals("l"))["succeeded"] == 4
    assert await store.totals("never") == dict.fromkeys(expected, 0)


async def test_coalescer_groups_concurrent_submissions() -> None:
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> None:
        await asyncio.sleep(0.01)
        flushed.append(items)

    coalescer: Coalescer[int] = Coalescer(flush)
    await asyncio.gather(*(coalescer.submit(i) for i in range(100)))
    assert sorted(i for batch in flushed for i in batch) == list(range(100))
    assert len(flushed) < 10


async def test_coalescer_reports_a_failed_flush_to_its_waiters() -> None:
    async def flush(items: list[int]) -> None:
        raise RuntimeError("disk full")

    coalescer: Coalescer[int] = Coalescer(flush)
    with pytest.raises(RuntimeError, match="disk full"):
        await coalescer.submit(1)
    coalescer.submit_nowait(2)  # logged, not raised
    await coalescer.drain()


def test_redact_url() -> None:
    assert redact_url("amqp://user:secret@host:5672/vh") == "amqp://***@host:5672/***"
    assert redact_url("local://jobs") == "local://jobs"


async def test_a_recorded_run_is_committed_for_every_other_connection(
    db: Database, database_url: str
) -> None:
    """record() returns only once the record is committed: another engine on the same store
    (another node, another process) sees it at once, and a closed store can be used again."""
    store = RunStore(db.engine)
    writer = RunWriter(store)
    other = await Database.open(database_url)
    try:
        await writer.record(run("m1", "succeeded"))
        assert await RunStore(other.engine).succeeded("l", ["m1", "m2"]) == {"m1"}
        await store.close()
        await writer.record(run("m2", "succeeded"))
        assert await RunStore(other.engine).succeeded("l", ["m1", "m2"]) == {"m1", "m2"}
        assert await store.succeeded("l", ["m1", "m2", "m3"]) == {"m1", "m2"}
    finally:
        await store.close()
        await other.close()


async def test_a_failed_group_commit_fails_its_waiters_and_writes_nothing(db: Database) -> None:
    """The dead letter and its run record commit together or not at all."""
    store = RunStore(db.engine)
    writer = RunWriter(store)
    broken = replace(letter("d1", at=5.0), body=None)  # type: ignore[arg-type]  # NOT NULL
    try:
        with pytest.raises(Exception, match=r"(?i)not null|null value"):
            await writer.dead_letter(run("m-d1", "dead_lettered"), broken)
        assert await store.get_runs("m-d1") == []
        await writer.record(run("m-ok", "succeeded"))  # the store still works
        assert await store.succeeded("l", ["m-ok"]) == {"m-ok"}
    finally:
        await store.close()


async def test_a_claimed_message_is_not_claimed_by_another_replica_until_its_run_ends(
    store: RunStore,
) -> None:
    """Run claims (issue 14, item 9): one statement claims a batch; another claimant gets
    only what nobody runs; a ``running`` note keeps the claim, the next record ends it."""
    assert await store.claim("l", "a", {"m1": 1, "m2": 1}, ttl_s=30) == {"m1", "m2"}
    assert await store.claim("l", "b", {"m1": 2, "m3": 1}, ttl_s=30) == {"m3"}
    assert await store.claim("l", "a", {"m1": 2}, ttl_s=30) == {"m1"}  # its own: renewed
    assert await store.claim("other", "b", {"m1": 1}, ttl_s=30) == {"m1"}  # per listener
    (claimed,) = await store.get_runs("m2", "l")
    assert claimed.status == "running" and claimed.attempts == 1

    await store.write([run("m1", "running", at=200.0)])  # a note while it runs
    assert await store.claim("l", "b", {"m1": 2}, ttl_s=30) == set()
    await store.write([run("m1", "retrying", at=201.0), run("m2", "succeeded", at=201.0)])
    assert await store.claim("l", "b", {"m1": 2, "m2": 2}, ttl_s=30) == {"m1"}  # m2 is done
    (kept,) = await store.get_runs("m1", "l")
    assert kept.status == "retrying" and kept.first_received_at == claimed.first_received_at


async def test_a_claim_expires_unless_renewed_and_ends_when_handed_back(store: RunStore) -> None:
    assert await store.claim("l", "a", {"m1": 1, "m2": 1}, ttl_s=0.3) == {"m1", "m2"}
    assert await store.renew_claims("l", "a", ["m1", "m9"], ttl_s=30) == {"m1"}
    assert await store.renew_claims("l", "b", ["m2"], ttl_s=30) == set()  # not b's
    await asyncio.sleep(0.5)
    assert await store.claim("l", "b", {"m1": 2, "m2": 2}, ttl_s=30) == {"m2"}  # m2 lapsed
    assert await store.renew_claims("l", "a", ["m2"], ttl_s=30) == set()  # b holds it now
    await store.unclaim("l", "a", ["m1"])
    assert await store.claim("l", "b", {"m1": 3}, ttl_s=30) == {"m1"}


async def test_an_error_quoting_a_nul_character_is_kept_on_every_store(store: RunStore) -> None:
    """PostgreSQL refuses a NUL in text: an error that quotes one (a model's message about
    binary input) is kept with it written as ``\\x00``, or the record could never be
    written and the message would be retried forever instead of dead-lettered."""
    failed = replace(
        letter("nul", at=5.0),
        error_message="bad \x00 input",
        stacktrace='ValueError: bad \x00 input\n  File "model.py"',
    )
    dead = run("m-nul", "dead_lettered", error={"type": "ValueError", "message": "bad \x00"})
    await store.write([failed, dead])
    kept = await store.get_dead_letter("nul")
    assert kept.error_message == "bad \\x00 input"
    assert kept.stacktrace.startswith("ValueError: bad \\x00 input")
    assert kept.body == failed.body  # the body is bytes: kept as it came, NUL included
    (record,) = await store.get_runs("m-nul")
    assert record.error == {"type": "ValueError", "message": "bad \\x00"}


async def test_a_message_id_or_attribute_holding_a_nul_character_is_kept_on_every_store(
    store: RunStore, writer: RunWriter
) -> None:
    """A publisher chooses an AMQP message id, an MQTT modelbus-id, a header's value: one
    holding a NUL (which PostgreSQL refuses in text) is still recorded, deduped, claimed
    and dead-lettered, or its message would be retried forever."""
    nul_id = "m-\x00-1"
    assert await store.claim("l", "a", {nul_id: 1, "m-2": 1}, ttl_s=30) == {nul_id, "m-2"}
    assert await store.claimants("l", [nul_id]) == {nul_id: "a"}
    assert await store.renew_claims("l", "a", [nul_id], ttl_s=30) == {nul_id}
    failed = replace(letter("nul-id", at=5.0), message_id=nul_id, attributes={"k\x00": "v\x00"})
    await store.write([failed, run(nul_id, "dead_lettered")])
    kept = await store.get_dead_letter("nul-id")
    assert kept.attributes == {"k\x00": "v\x00"}  # kept as they came: redrive sends them
    assert (await store.get_runs(nul_id))[0].status == "dead_lettered"
    await writer.record(run("m-\x00-2", "succeeded"))
    assert await store.succeeded("l", ["m-\x00-2", "m-\x00-3"]) == {"m-\x00-2"}
