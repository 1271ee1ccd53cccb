"""The asyncio client, :class:`AsyncClient`: each method sends one operation of
:mod:`modelbus.client.operations` with ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from modelbus.client import operations as op
from modelbus.client.connection import DEFAULT_TIMEOUT_S, http_options, reaching
from modelbus.client.operations import Bump, Deadline, DefinitionLike, Moment, Operation
from modelbus.client.refs import ModelRef
from modelbus.client.responses import error_from_response, no_result, push_event
from modelbus.client.results import CallResult, Job
from modelbus.client.schemas import (
    ApplyOut,
    BuildInfo,
    CreatedKey,
    DeadLetterOut,
    DeadLetterPage,
    FlowGraph,
    KeyInfoOut,
    ListenerHistoryOut,
    ListenerOut,
    ListenerStatusOut,
    ModelHistoryOut,
    ModelInfo,
    NodeOut,
    PushInfo,
    RedriveOut,
    RunOut,
    RunPage,
    SearchRedriveOut,
    VersionInfo,
)

__all__ = ["AsyncClient"]

T = TypeVar("T")
Page = TypeVar("Page", RunPage, DeadLetterPage)


class AsyncClient:
    """The asyncio twin of :class:`Client`: the same methods, awaited."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        options = http_options(url, key, timeout_s)
        self.url: str = options["base_url"]
        self._http = httpx.AsyncClient(**options)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _run(self, operation: Operation[T]) -> T:
        with reaching(self.url):
            response = await self._http.request(**operation.request.options())
        return operation.parse(response)

    async def call(
        self,
        ref: str | ModelRef,
        data: Any,
        *,
        content_type: str | None = None,
        timeout_s: float | None = None,
        stdout: bool = False,
    ) -> CallResult:
        """See :meth:`Client.call`."""
        return await self._run(op.call(ref, data, content_type, timeout_s, stdout))

    async def submit(
        self,
        ref: str | ModelRef,
        data: Any,
        *,
        content_type: str | None = None,
        timeout_s: float | None = None,
    ) -> Job:
        """See :meth:`Client.submit`."""
        return await self._run(op.submit(ref, data, content_type, timeout_s))

    async def job(self, job_id: str) -> Job:
        """See :meth:`Client.job`."""
        return await self._run(op.job(job_id))

    async def wait(self, job_id: str, timeout_s: float = 60.0, *, poll_s: float = 0.2) -> Job:
        """See :meth:`Client.wait`."""
        deadline = Deadline(job_id, timeout_s)
        while not (job := await self.job(job_id)).done:
            deadline.check(job)
            await asyncio.sleep(poll_s)
        return job

    async def push(
        self,
        path: str | Path,
        version: str | None = None,
        bump: Bump | None = None,
        publish: bool = True,
        *,
        on_log: Callable[[str], None] | None = None,
        name: str | None = None,
    ) -> PushInfo:
        """See :meth:`Client.push`."""
        request = op.push(path, version, bump, publish, op.model_name(name))
        with reaching(self.url):
            async with self._http.stream(**request.options()) as response:
                if response.is_error:
                    raise error_from_response(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    if done := push_event(line, on_log):
                        return done
        raise no_result()

    async def publish(
        self,
        owner: str,
        name: str,
        *,
        build: str | None = None,
        version: str | None = None,
        bump: Bump | None = None,
    ) -> VersionInfo:
        """See :meth:`Client.publish`."""
        return await self._run(op.publish(owner, name, build, version, bump))

    async def models(self) -> list[ModelInfo]:
        """See :meth:`Client.models`."""
        return await self._run(op.models())

    async def model(self, owner: str, name: str) -> ModelInfo:
        """See :meth:`Client.model`."""
        return await self._run(op.model(owner, name))

    async def versions(self, owner: str, name: str) -> list[VersionInfo]:
        """See :meth:`Client.versions`."""
        return await self._run(op.versions(owner, name))

    async def model_history(
        self, owner: str, name: str, *, window_s: float | None = None, step_s: float | None = None
    ) -> ModelHistoryOut:
        """See :meth:`Client.model_history`."""
        return await self._run(op.model_history(owner, name, window_s, step_s))

    async def builds(self, owner: str, name: str) -> list[BuildInfo]:
        """See :meth:`Client.builds`."""
        return await self._run(op.builds(owner, name))

    async def build(self, build_hash: str) -> BuildInfo:
        """See :meth:`Client.build`."""
        return await self._run(op.build(build_hash))

    async def create_key(self, name: str, scopes: Iterable[str]) -> CreatedKey:
        """See :meth:`Client.create_key`."""
        return await self._run(op.create_key(name, scopes))

    async def keys(self) -> list[KeyInfoOut]:
        """See :meth:`Client.keys`."""
        return await self._run(op.keys())

    async def revoke_key(self, key_id: str) -> KeyInfoOut:
        """See :meth:`Client.revoke_key`."""
        return await self._run(op.revoke_key(key_id))

    # --- listeners ---------------------------------------------------------------------------

    async def listeners(self) -> list[ListenerOut]:
        """See :meth:`Client.listeners`."""
        return await self._run(op.listeners())

    async def listener(self, name: str) -> ListenerOut:
        """See :meth:`Client.listener`."""
        return await self._run(op.listener(name))

    async def create_listener(
        self, definition: DefinitionLike, *, check: bool = True
    ) -> ListenerOut:
        """See :meth:`Client.create_listener`."""
        return await self._run(op.create_listener(definition, check))

    async def put_listener(self, definition: DefinitionLike, *, check: bool = True) -> ListenerOut:
        """See :meth:`Client.put_listener`."""
        return await self._run(op.put_listener(definition, check))

    async def apply_listeners(
        self, definitions: Iterable[DefinitionLike], *, prune: bool = False, check: bool = True
    ) -> ApplyOut:
        """See :meth:`Client.apply_listeners`."""
        return await self._run(op.apply_listeners(definitions, prune, check))

    async def delete_listener(self, name: str) -> None:
        """See :meth:`Client.delete_listener`."""
        await self._run(op.delete_listener(name))

    async def pause_listener(self, name: str) -> ListenerOut:
        """See :meth:`Client.pause_listener`."""
        return await self._run(op.pause_listener(name))

    async def resume_listener(self, name: str) -> ListenerOut:
        """See :meth:`Client.resume_listener`."""
        return await self._run(op.resume_listener(name))

    async def asyncapi(self) -> dict[str, Any]:
        """See :meth:`Client.asyncapi`."""
        return await self._run(op.asyncapi())

    async def listener_status(self, name: str) -> ListenerStatusOut:
        """See :meth:`Client.listener_status`."""
        return await self._run(op.listener_status(name))

    async def listener_history(
        self, name: str, *, window_s: float | None = None, step_s: float | None = None
    ) -> ListenerHistoryOut:
        """See :meth:`Client.listener_history`."""
        return await self._run(op.listener_history(name, window_s, step_s))

    async def flow(self) -> FlowGraph:
        """See :meth:`Client.flow`."""
        return await self._run(op.flow())

    async def runs(self, message_id: str, *, listener: str | None = None) -> list[RunOut]:
        """See :meth:`Client.runs`."""
        return await self._run(op.runs(message_id, listener))

    async def listener_runs(
        self, name: str, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        """See :meth:`Client.listener_runs`."""
        return await self._run(op.listener_runs(name, status, limit, cursor))

    async def dead_letters(
        self,
        listener: str,
        *,
        include_redriven: bool = True,
        limit: int = 50,
        cursor: str | None = None,
    ) -> DeadLetterPage:
        """See :meth:`Client.dead_letters`."""
        return await self._run(op.dead_letters(listener, include_redriven, limit, cursor))

    async def search_runs(
        self,
        *,
        listener: str | None = None,
        status: str | None = None,
        message_id: str | None = None,
        object_key: str | None = None,
        since: Moment | None = None,
        until: Moment | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """See :meth:`Client.search_runs`."""
        filters = op.search_filters(listener, message_id, object_key, since, until)
        return await self._run(op.search_runs(filters, status, limit, cursor))

    async def search_dead_letters(
        self,
        *,
        listener: str | None = None,
        message_id: str | None = None,
        object_key: str | None = None,
        since: Moment | None = None,
        until: Moment | None = None,
        include_redriven: bool = True,
        limit: int = 50,
        cursor: str | None = None,
    ) -> DeadLetterPage:
        """See :meth:`Client.search_dead_letters`."""
        filters = op.search_filters(listener, message_id, object_key, since, until)
        return await self._run(op.search_dead_letters(filters, include_redriven, limit, cursor))

    def each_run(
        self,
        *,
        listener: str | None = None,
        status: str | None = None,
        message_id: str | None = None,
        object_key: str | None = None,
        since: Moment | None = None,
        until: Moment | None = None,
        page_size: int = 200,
    ) -> AsyncIterator[RunOut]:
        """See :meth:`Client.each_run` (``async for``)."""
        filters = op.search_filters(listener, message_id, object_key, since, until)
        return self._each(lambda cursor: op.search_runs(filters, status, page_size, cursor))

    def each_dead_letter(
        self,
        *,
        listener: str | None = None,
        message_id: str | None = None,
        object_key: str | None = None,
        since: Moment | None = None,
        until: Moment | None = None,
        include_redriven: bool = True,
        page_size: int = 200,
    ) -> AsyncIterator[DeadLetterOut]:
        """See :meth:`Client.each_dead_letter` (``async for``)."""
        filters = op.search_filters(listener, message_id, object_key, since, until)
        return self._each(
            lambda cursor: op.search_dead_letters(filters, include_redriven, page_size, cursor)
        )

    async def _each(self, page_of: Callable[[str | None], Operation[Page]]) -> AsyncIterator[Any]:
        cursor: str | None = None
        while True:
            page = await self._run(page_of(cursor))
            for item in page.items:
                yield item
            cursor = page.next_cursor
            if not cursor:
                return

    async def redrive_matching(
        self,
        *,
        listener: str | None = None,
        message_id: str | None = None,
        object_key: str | None = None,
        since: Moment | None = None,
        until: Moment | None = None,
        include_redriven: bool = False,
        every: bool = False,
        spec: str | None = None,
        rate_per_s: float | None = None,
    ) -> SearchRedriveOut:
        """See :meth:`Client.redrive_matching`."""
        filters = op.search_filters(listener, message_id, object_key, since, until)
        return await self._run(
            op.redrive_matching(filters, include_redriven, every, spec, rate_per_s)
        )

    async def dead_letter(self, letter_id: str) -> DeadLetterOut:
        """See :meth:`Client.dead_letter`."""
        return await self._run(op.dead_letter(letter_id))

    async def redrive(
        self,
        listener: str,
        *,
        ids: Iterable[str] | None = None,
        spec: str | None = None,
        rate_per_s: float | None = None,
    ) -> RedriveOut:
        """See :meth:`Client.redrive`."""
        return await self._run(op.redrive(listener, ids, spec, rate_per_s))

    async def nodes(self, *, gone: bool = True) -> list[NodeOut]:
        """See :meth:`Client.nodes`."""
        return await self._run(op.nodes(gone))

    async def metrics(self) -> str:
        """See :meth:`Client.metrics`."""
        return await self._run(op.metrics())
