"""Asynchronous jobs run in the background: the :class:`JobRunner`, over the job store
(:mod:`modelbus.store.jobs`), and the conversions between the store's plain records and
the runtime's payloads and model references.

A job runs at least once: jobs that a previous process left queued or running are claimed
and run again (see :class:`JobRunner`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import cast

from modelbus.client.refs import ModelRef
from modelbus.errors import Conflict, InvocationError, ModelbusError
from modelbus.runtime.invocation import CallOptions, ContentType, Invoker, Payload
from modelbus.store.jobs import Job, JobStore, StoredPayload

__all__ = ["JobRunner", "payload_of", "ref_of", "stored"]

log = logging.getLogger("modelbus.runtime.jobs")


def ref_of(job: Job) -> ModelRef:
    """The model reference the job calls."""
    return ModelRef(job.owner, job.name, job.spec)


def payload_of(stored: StoredPayload) -> Payload:
    """A stored input or output as a payload."""
    return Payload(stored.data, cast(ContentType, stored.content_type), stored.mime)


def stored(payload: Payload) -> StoredPayload:
    """A payload as the job store keeps it."""
    return StoredPayload(payload.data, payload.content_type, payload.mime)


class JobRunner:
    """Runs stored jobs in background tasks, at most ``max_running`` at once.

    A job runs at least once: this process claims the jobs it creates and renews the claims
    (heartbeat); jobs whose claim lapsed (their process died) are claimed and run again, at
    start and then every ``lease_s``.
    """

    def __init__(self, store: JobStore, invoker: Invoker, *, max_running: int) -> None:
        self.store = store
        self._invoker = invoker
        self._slots = asyncio.Semaphore(max_running)
        self._tasks: set[asyncio.Task[None]] = set()
        self._keeper: asyncio.Task[None] | None = None

    async def submit(
        self, ref: ModelRef, payload: Payload, options: CallOptions, *, key_id: str | None
    ) -> Job:
        job = await self.store.create(
            owner=ref.owner,
            name=ref.name,
            spec=ref.spec,
            input=stored(payload),
            timeout_s=options.timeout_s,
            key_id=key_id,
        )
        self._spawn(job.id)
        return job

    async def start(self) -> None:
        await self._recover()
        self._keeper = asyncio.create_task(self._keep_claims(), name="modelbus-jobs-keeper")

    async def stop(self, grace_s: float) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in [*self._tasks, *([self._keeper] if self._keeper else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._keeper is not None:
            await asyncio.gather(self._keeper, return_exceptions=True)

    def _spawn(self, job_id: str) -> None:
        task = asyncio.create_task(self._run(job_id), name=f"modelbus-job-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job_id: str) -> None:
        async with self._slots:
            try:
                job = await self.store.mark_running(job_id)
            except Conflict:
                return  # finished meanwhile (a re-run after a lapsed claim)
            try:
                await self._execute(job)
            except Exception as exc:  # a bug or the store failing: record it if we can
                log.exception("job %s failed unexpectedly", job_id)
                with contextlib.suppress(Exception):
                    await self.store.mark_failed(job_id, exc)

    async def _execute(self, job: Job) -> None:
        options = CallOptions(timeout_s=job.timeout_s)
        try:
            result = await self._invoker.invoke(ref_of(job), payload_of(job.input), options)
        except InvocationError as exc:
            await self.store.mark_failed(job.id, exc, version=exc.version)
        except ModelbusError as exc:  # the version went away, or its build broke
            await self.store.mark_failed(job.id, exc)
        else:
            await self.store.mark_succeeded(
                job.id,
                stored(result.output),
                version=result.version,
                duration_ms=result.duration_ms,
            )

    async def _recover(self) -> None:
        for left in await self.store.recoverable():
            job = await self.store.claim(left.id)
            if job is not None:
                log.info("resuming job %s (%s, attempt %d)", job.id, ref_of(job), job.attempts + 1)
                self._spawn(job.id)

    async def _keep_claims(self) -> None:
        beat_s = self.store.lease_s / 3
        beats = 0
        while True:
            await asyncio.sleep(beat_s)
            beats += 1
            try:
                await self.store.heartbeat()
                if beats % 3 == 0:
                    await self._recover()
            except Exception:  # the store may be briefly unreachable: try again next beat
                log.exception("renewing job claims failed")
