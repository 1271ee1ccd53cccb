"""Async jobs on SQLite and PostgreSQL: lifecycle, and surviving restarts."""

from __future__ import annotations

import pytest

from modelbus.errors import Conflict, JobNotFound, ModelError
from modelbus.store.database import Database
from modelbus.store.jobs import JobError, JobStore, StoredPayload

REF = {"owner": "acme", "name": "ocr", "spec": "1.*"}


def text(value: str) -> StoredPayload:
    return StoredPayload(value.encode(), "text")


async def test_lifecycle_to_success(db: Database) -> None:
    jobs = JobStore(db)
    image = StoredPayload(b"\x89PNG\0\1", "binary", "image/png")
    job = await jobs.create(**REF, input=image, timeout_s=30.0, key_id="k1")
    assert (job.status, job.owner, job.name, job.spec, job.input, job.timeout_s, job.key_id) == (
        "queued",
        "acme",
        "ocr",
        "1.*",
        image,
        30.0,
        "k1",
    )
    assert (job.output, job.error, job.attempts, job.finished) == (None, None, 0, False)

    running = await jobs.mark_running(job.id)
    assert (running.status, running.attempts) == ("running", 1) and running.started_at

    output = StoredPayload(b'{"text":"hi"}', "json")
    done = await jobs.mark_succeeded(job.id, output, version="1.2.0", duration_ms=12.5)
    assert (done.status, done.output, done.version, done.duration_ms) == (
        "succeeded",
        output,
        "1.2.0",
        12.5,
    )
    assert done.finished and done.finished_at
    assert await jobs.get(job.id) == done


async def test_lifecycle_to_failure(db: Database) -> None:
    jobs = JobStore(db)
    job = await jobs.create(**REF, input=text("x"))
    await jobs.mark_running(job.id)
    error = ModelError("bad input", error_type="ValueError", stacktrace="Traceback...")
    failed = await jobs.mark_failed(job.id, error, version="1.0.0")
    assert failed.status == "failed" and failed.version == "1.0.0"
    assert failed.error == JobError(
        error_type="ValueError", message="bad input", stacktrace="Traceback..."
    )

    other = await jobs.create(**REF, input=text("y"))
    try:
        raise KeyError("boom")
    except KeyError as exc:
        generic = await jobs.mark_failed(other.id, exc)
    assert generic.error and generic.error.error_type == "KeyError"
    assert "raise KeyError" in generic.error.stacktrace


async def test_first_outcome_wins(db: Database) -> None:
    jobs = JobStore(db)
    job = await jobs.create(**REF, input=text("x"))
    done = await jobs.mark_succeeded(job.id, text("ok"), version="1.0.0", duration_ms=1.0)
    assert await jobs.mark_failed(job.id, JobError(error_type="X", message="late")) == done
    with pytest.raises(Conflict, match="already succeeded"):
        await jobs.mark_running(job.id)


async def test_unknown_job(db: Database) -> None:
    jobs = JobStore(db)
    with pytest.raises(JobNotFound):
        await jobs.get("nope")
    with pytest.raises(JobNotFound):
        await jobs.mark_running("nope")


async def test_jobs_survive_a_restart(db: Database) -> None:
    """A process dies with a queued and a running job; the next process re-runs both."""
    before = JobStore(db, lease_s=0.0)  # its claims lapse at once: as if it stopped renewing
    queued = await before.create(**REF, input=text("a"))
    running = await before.create(**REF, input=text("b"))
    await before.mark_running(running.id)
    finished = await before.create(**REF, input=text("c"))
    await before.mark_failed(finished.id, JobError(error_type="E", message="m"))

    after = JobStore(db)
    left = await after.recoverable()
    assert [j.id for j in left] == [queued.id, running.id]
    assert [j.input.data for j in left] == [b"a", b"b"]

    claimed = await after.claim(running.id)
    assert claimed is not None and claimed.status == "queued" and claimed.attempts == 1
    other_node = JobStore(db, single_node=False)
    assert await other_node.claim(running.id) is None  # claimed again: nobody else gets it
    assert [j.id for j in await after.recoverable()] == [queued.id]  # own jobs are not listed

    await after.mark_running(running.id)
    done = await after.mark_succeeded(running.id, text("B"), version="1.0.0", duration_ms=1.0)
    assert done.attempts == 2


async def test_live_jobs_of_other_nodes_are_not_taken(db: Database) -> None:
    node_a = JobStore(db, lease_s=60.0, single_node=False)
    node_b = JobStore(db, single_node=False)
    job = await node_a.create(**REF, input=text("x"))
    await node_a.mark_running(job.id)
    assert await node_a.heartbeat() == 1
    assert await node_b.recoverable() == []
    assert await node_b.claim(job.id) is None

    lapsed = JobStore(db, lease_s=0.0, single_node=False)
    stale = await lapsed.create(**REF, input=text("y"))
    assert [j.id for j in await node_b.recoverable()] == [stale.id]


async def test_a_job_that_never_finishes_is_abandoned_after_max_attempts(db: Database) -> None:
    job_id = (await JobStore(db, lease_s=0.0).create(**REF, input=text("x"))).id
    for _ in range(2):  # two server lifetimes, each dying while running the job
        server = JobStore(db, lease_s=0.0, max_attempts=2)
        assert await server.claim(job_id) is not None
        await server.mark_running(job_id)
    assert await JobStore(db, max_attempts=2).claim(job_id) is None
    job = await JobStore(db).get(job_id)
    assert job.status == "failed" and job.error and job.error.error_type == "JobAbandoned"
    assert "2 times" in job.error.message


async def test_purge_finished(db: Database) -> None:
    jobs = JobStore(db)
    done = await jobs.create(**REF, input=text("x"))
    await jobs.mark_failed(done.id, JobError(error_type="E", message="m"))
    pending = await jobs.create(**REF, input=text("y"))
    assert await jobs.purge_finished(older_than_s=3600) == 0
    assert await jobs.purge_finished(older_than_s=-1) == 1
    with pytest.raises(JobNotFound):
        await jobs.get(done.id)
    assert (await jobs.get(pending.id)).status == "queued"
