"""Async invocations ("jobs"): accepted now, run in the background, fetched later by id.

Lifecycle: ``queued`` -> ``running`` -> ``succeeded`` | ``failed``. The input is stored with
the job, so a job survives a restart: every job is *claimed* by the server process that runs
it, which renews its claim (``heartbeat``, every ``lease_s / 3`` or so). A queued or running
job whose claim has lapsed was left behind by a process that died; another process lists it
with :meth:`JobStore.recoverable`, takes it over with :meth:`JobStore.claim` and runs it
again. After ``max_attempts`` runs that never finished, a job is failed instead of re-run
(a job that kills its server must not kill every server in turn).

With a SQLite store (one server by design) nothing else can be holding a job, so every
unfinished job not claimed by this process is recoverable at once, without waiting for its
lease to lapse.
"""

from __future__ import annotations

import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Row, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from modelbus.errors import Conflict, InvocationError, JobNotFound, ModelbusError
from modelbus.store import schema
from modelbus.store.database import Database

JobStatus = Literal["queued", "running", "succeeded", "failed"]
UNFINISHED: tuple[JobStatus, ...] = ("queued", "running")
FINISHED: tuple[JobStatus, ...] = ("succeeded", "failed")


@dataclass(frozen=True, kw_only=True, slots=True)
class JobError:
    """Why a job failed, in the shape of the Algorithmia error envelope."""

    error_type: str
    message: str
    stacktrace: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> JobError:
        """Describe ``exc``: an :class:`InvocationError` keeps its type name and the model's
        stack trace; other errors get their class name and Python traceback."""
        if isinstance(exc, InvocationError):
            return cls(error_type=exc.error_type, message=exc.message, stacktrace=exc.stacktrace)
        message = exc.message if isinstance(exc, ModelbusError) else str(exc)
        trace = "".join(traceback.format_exception(exc))
        return cls(error_type=type(exc).__name__, message=message, stacktrace=trace)

    def to_json(self) -> dict[str, str]:
        return {
            "error_type": self.error_type,
            "message": self.message,
            "stacktrace": self.stacktrace,
        }


@dataclass(frozen=True, slots=True)
class StoredPayload:
    """A job's input or output as the store keeps it: the bytes, their kind (``json``,
    ``text`` or ``binary``) and, for binary, an optional MIME type."""

    data: bytes
    content_type: str
    mime: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """One async invocation of ``owner/name@spec``. ``output`` is set once succeeded,
    ``error`` once failed; ``attempts`` counts the runs started."""

    id: str
    owner: str
    name: str
    spec: str
    status: JobStatus
    input: StoredPayload
    timeout_s: float | None
    version: str | None
    output: StoredPayload | None
    error: JobError | None
    duration_ms: float | None
    key_id: str | None
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class JobStore:
    """Jobs in the store's ``jobs`` table, claimed by this process (:attr:`instance_id`)."""

    def __init__(
        self,
        db: Database,
        *,
        lease_s: float = 30.0,
        max_attempts: int = 3,
        single_node: bool | None = None,
    ) -> None:
        self.db = db
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.single_node = db.dialect == "sqlite" if single_node is None else single_node
        self.instance_id = uuid.uuid4().hex

    async def create(
        self,
        *,
        owner: str,
        name: str,
        spec: str,
        input: StoredPayload,
        timeout_s: float | None = None,
        key_id: str | None = None,
    ) -> Job:
        """Record a new queued job of ``owner/name@spec`` claimed by this process; returns
        it (with its id)."""
        now = time.time()
        job_id = uuid.uuid4().hex
        async with self.db.write() as conn:
            await conn.execute(
                schema.jobs.insert().values(
                    id=job_id,
                    owner=owner,
                    name=name,
                    spec=spec,
                    status="queued",
                    input_data=input.data,
                    input_content_type=input.content_type,
                    input_mime=input.mime,
                    timeout_s=timeout_s,
                    key_id=key_id,
                    claimed_by=self.instance_id,
                    lease_expires_at=now + self.lease_s,
                    attempts=0,
                    created_at=now,
                )
            )
            return await _get(conn, job_id)

    async def get(self, job_id: str) -> Job:
        """The job; raises :class:`JobNotFound`."""
        async with self.db.read() as conn:
            return await _get(conn, job_id)

    async def mark_running(self, job_id: str) -> Job:
        """A run of the job starts (counted in ``attempts``).

        Raises :class:`JobNotFound`, or :class:`Conflict` if the job already finished.
        """
        async with self.db.write() as conn:
            job = await _get(conn, job_id)
            if job.finished:
                raise Conflict(f"job {job_id} already {job.status}")
            await self._set(
                conn,
                job_id,
                status="running",
                attempts=job.attempts + 1,
                started_at=time.time(),
                claimed_by=self.instance_id,
                lease_expires_at=time.time() + self.lease_s,
            )
            return await _get(conn, job_id)

    async def mark_succeeded(
        self, job_id: str, output: StoredPayload, *, version: str, duration_ms: float
    ) -> Job:
        """Store the result: ``output``, made by ``version`` in ``duration_ms``. The first
        outcome wins: on a finished job this changes nothing (a job re-run after a lapsed
        claim may finish twice). Raises :class:`JobNotFound`."""
        return await self._finish(
            job_id,
            status="succeeded",
            version=version,
            output_data=output.data,
            output_content_type=output.content_type,
            output_mime=output.mime,
            duration_ms=duration_ms,
        )

    async def mark_failed(
        self, job_id: str, error: BaseException | JobError, *, version: str | None = None
    ) -> Job:
        """Store the error (first outcome wins, as for :meth:`mark_succeeded`).

        Raises :class:`JobNotFound`.
        """
        described = error if isinstance(error, JobError) else JobError.from_exception(error)
        return await self._finish(
            job_id, status="failed", version=version, error=described.to_json()
        )

    async def heartbeat(self) -> int:
        """Renew the claim on every unfinished job of this process; returns how many."""
        j = schema.jobs.c
        async with self.db.write() as conn:
            result = await conn.execute(
                update(schema.jobs)
                .where(j.claimed_by == self.instance_id, j.status.in_(UNFINISHED))
                .values(lease_expires_at=time.time() + self.lease_s)
            )
        return int(result.rowcount)

    async def recoverable(self) -> list[Job]:
        """Unfinished jobs left by a process that is gone (claim lapsed), oldest first.

        Read-only: take one over with :meth:`claim` before running it.
        """
        async with self.db.read() as conn:
            query = (
                schema.jobs.select().where(*self._recoverable()).order_by(schema.jobs.c.created_at)
            )
            return [_job(r) for r in (await conn.execute(query)).all()]

    async def claim(self, job_id: str) -> Job | None:
        """Take over a recoverable job for this process: it is queued again and returned.

        Returns ``None`` if it is no longer recoverable (another process claimed or finished
        it), or if it already used its ``max_attempts`` runs: then it is failed with error
        type ``JobAbandoned``. Atomic: two processes never both get the same job.
        """
        j = schema.jobs.c
        async with self.db.write() as conn:
            query = (
                select(schema.jobs).where(j.id == job_id, *self._recoverable()).with_for_update()
            )
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            if row.attempts >= self.max_attempts:
                await self._set(conn, job_id, **_abandoned(row.attempts))
                return None
            await self._set(
                conn,
                job_id,
                status="queued",
                claimed_by=self.instance_id,
                lease_expires_at=time.time() + self.lease_s,
            )
            return await _get(conn, job_id)

    async def purge_finished(self, older_than_s: float) -> int:
        """Delete jobs finished more than ``older_than_s`` ago; returns how many."""
        j = schema.jobs.c
        async with self.db.write() as conn:
            result = await conn.execute(
                delete(schema.jobs).where(
                    j.status.in_(FINISHED), j.finished_at < time.time() - older_than_s
                )
            )
        return int(result.rowcount)

    def _recoverable(self) -> list[Any]:
        j = schema.jobs.c
        conditions: list[Any] = [
            j.status.in_(UNFINISHED),
            (j.claimed_by.is_(None)) | (j.claimed_by != self.instance_id),
        ]
        if not self.single_node:
            conditions.append(j.lease_expires_at.is_(None) | (j.lease_expires_at < time.time()))
        return conditions

    async def _finish(self, job_id: str, **values: Any) -> Job:
        async with self.db.write() as conn:
            job = await _get(conn, job_id)
            if job.finished:
                return job
            await self._set(conn, job_id, finished_at=time.time(), lease_expires_at=None, **values)
            return await _get(conn, job_id)

    @staticmethod
    async def _set(conn: AsyncConnection, job_id: str, **values: Any) -> None:
        await conn.execute(update(schema.jobs).where(schema.jobs.c.id == job_id).values(**values))


def _abandoned(attempts: int) -> dict[str, Any]:
    error = JobError(
        error_type="JobAbandoned",
        message=f"the job was started {attempts} times and never finished (its server stopped)",
    )
    return {
        "status": "failed",
        "error": error.to_json(),
        "finished_at": time.time(),
        "lease_expires_at": None,
    }


async def _get(conn: AsyncConnection, job_id: str) -> Job:
    row = (await conn.execute(schema.jobs.select().where(schema.jobs.c.id == job_id))).first()
    if row is None:
        raise JobNotFound(f"no job {job_id!r}")
    return _job(row)


def _payload(
    data: bytes | None, content_type: str | None, mime: str | None
) -> StoredPayload | None:
    if data is None or content_type is None:
        return None
    return StoredPayload(bytes(data), content_type, mime)


def _job(row: Row[Any]) -> Job:
    payload = _payload(row.input_data, row.input_content_type, row.input_mime)
    assert payload is not None
    error = row.error
    return Job(
        id=row.id,
        owner=row.owner,
        name=row.name,
        spec=row.spec,
        status=row.status,
        input=payload,
        timeout_s=row.timeout_s,
        version=row.version,
        output=_payload(row.output_data, row.output_content_type, row.output_mime),
        error=JobError(**error) if error else None,
        duration_ms=row.duration_ms,
        key_id=row.key_id,
        attempts=row.attempts,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )
