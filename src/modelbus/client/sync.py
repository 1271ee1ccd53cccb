"""The blocking client, :class:`Client`: each method sends one operation of
:mod:`modelbus.client.operations` with ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
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

__all__ = ["Client"]

T = TypeVar("T")
Page = TypeVar("Page", RunPage, DeadLetterPage)


class Client:
    """Blocking client. ``url`` and ``key`` default to ``MODELBUS_URL`` and
    ``MODELBUS_API_KEY``; ``timeout_s`` bounds every request that sets no timeout of its own.
    Use it as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        options = http_options(url, key, timeout_s)
        self.url: str = options["base_url"]
        self._http = httpx.Client(**options)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _run(self, operation: Operation[T]) -> T:
        with reaching(self.url):
            response = self._http.request(**operation.request.options())
        return operation.parse(response)

    def call(
        self,
        ref: str | ModelRef,
        data: Any,
        *,
        content_type: str | None = None,
        timeout_s: float | None = None,
        stdout: bool = False,
    ) -> CallResult:
        """Run one input on ``owner/name[@spec]`` and wait for its result.

        ``data``: bytes are sent as binary, str as text, anything else as JSON, unless
        ``content_type`` (``json``, ``text``, ``binary`` or a MIME type) says otherwise.
        ``timeout_s`` defaults to the version's own timeout. Raises the model's
        :class:`~modelbus.errors.ModelError`, :class:`~modelbus.errors.InvocationTimeout`,
        :class:`~modelbus.errors.NotFound`...
        """
        return self._run(op.call(ref, data, content_type, timeout_s, stdout))

    def submit(
        self,
        ref: str | ModelRef,
        data: Any,
        *,
        content_type: str | None = None,
        timeout_s: float | None = None,
    ) -> Job:
        """Queue one input to run in the background; returns at once with the queued job."""
        return self._run(op.submit(ref, data, content_type, timeout_s))

    def job(self, job_id: str) -> Job:
        """The job's current state; raises :class:`~modelbus.errors.JobNotFound`."""
        return self._run(op.job(job_id))

    def wait(self, job_id: str, timeout_s: float = 60.0, *, poll_s: float = 0.2) -> Job:
        """Poll until the job has finished and return it (see :meth:`Job.unwrap`); raises
        :class:`TimeoutError` if it is still queued or running after ``timeout_s``."""
        deadline = Deadline(job_id, timeout_s)
        while not (job := self.job(job_id)).done:
            deadline.check(job)
            time.sleep(poll_s)
        return job

    def push(
        self,
        path: str | Path,
        version: str | None = None,
        bump: Bump | None = None,
        publish: bool = True,
        *,
        on_log: Callable[[str], None] | None = None,
        name: str | None = None,
    ) -> PushInfo:
        """Upload a model folder and build it; record a version and publish it.

        ``version`` ("1.2.3") or ``bump`` ("major", "minor", "patch": the next after the
        model's highest, from 0.0.0) names the version; with neither, the push is a build
        callable by its hash only (``PushInfo.version`` is None). ``publish=False`` records
        the version without serving it by version spec. ``on_log`` receives build output
        lines as they happen. ``name`` ("OWNER/NAME") names an Algorithmia ADK folder's model
        (default: its algorithmia.conf's). A repeated push of the same content is a no-op. Raises
        :class:`~modelbus.errors.BuildError` (with the log), ``ManifestError``,
        ``ArchiveError``, ``VersionConflict``...
        """
        request = op.push(path, version, bump, publish, op.model_name(name))
        with reaching(self.url), self._http.stream(**request.options()) as response:
            if response.is_error:
                raise error_from_response(response.status_code, response.read())
            for line in response.iter_lines():
                if done := push_event(line, on_log):
                    return done
        raise no_result()

    def publish(
        self,
        owner: str,
        name: str,
        *,
        build: str | None = None,
        version: str | None = None,
        bump: Bump | None = None,
    ) -> VersionInfo:
        """Publish ``version``, or give ``build`` (default: the newest ready build) the
        version ``version`` or the next ``bump`` one, published. Idempotent."""
        return self._run(op.publish(owner, name, build, version, bump))

    def models(self) -> list[ModelInfo]:
        """The models this key may see."""
        return self._run(op.models())

    def model(self, owner: str, name: str) -> ModelInfo:
        """One model; raises :class:`~modelbus.errors.ModelNotFound`."""
        return self._run(op.model(owner, name))

    def versions(self, owner: str, name: str) -> list[VersionInfo]:
        """The versions of a model, newest first."""
        return self._run(op.versions(owner, name))

    def model_history(
        self, owner: str, name: str, *, window_s: float | None = None, step_s: float | None = None
    ) -> ModelHistoryOut:
        """Model ``owner/name``'s recent past per version, step by step (summed over the
        nodes): calls and errors per second and mean duration; ``window_s`` and ``step_s``
        as :meth:`listener_history`."""
        return self._run(op.model_history(owner, name, window_s, step_s))

    def builds(self, owner: str, name: str) -> list[BuildInfo]:
        """The builds of a model, newest first (without logs)."""
        return self._run(op.builds(owner, name))

    def build(self, build_hash: str) -> BuildInfo:
        """One build with its log; raises :class:`~modelbus.errors.BuildNotFound`."""
        return self._run(op.build(build_hash))

    def create_key(self, name: str, scopes: Iterable[str]) -> CreatedKey:
        """A new API key (admin only); its secret is in the answer and never shown again."""
        return self._run(op.create_key(name, scopes))

    def keys(self) -> list[KeyInfoOut]:
        """All API keys, without their secrets (admin only)."""
        return self._run(op.keys())

    def revoke_key(self, key_id: str) -> KeyInfoOut:
        """Revoke a key; it stops working at once (admin only)."""
        return self._run(op.revoke_key(key_id))

    # --- listeners ---------------------------------------------------------------------------

    def listeners(self) -> list[ListenerOut]:
        """Every listener with its status (credentials shown as ``***``)."""
        return self._run(op.listeners())

    def listener(self, name: str) -> ListenerOut:
        """One listener; raises :class:`~modelbus.errors.ListenerNotFound`."""
        return self._run(op.listener(name))

    def create_listener(self, definition: DefinitionLike, *, check: bool = True) -> ListenerOut:
        """Create a listener (a :class:`ListenerDefinition` or its JSON/TOML mapping); it
        starts at once if enabled. ``check`` has the server open its connectors first.
        Raises :class:`~modelbus.errors.DefinitionError` (what to change) or
        :class:`~modelbus.errors.Conflict` when the name is taken (needs listeners:manage)."""
        return self._run(op.create_listener(definition, check))

    def put_listener(self, definition: DefinitionLike, *, check: bool = True) -> ListenerOut:
        """Create or replace one listener; it restarts only if its definition changed.
        ``***`` where the stored definition has a credential keeps that credential."""
        return self._run(op.put_listener(definition, check))

    def apply_listeners(
        self, definitions: Iterable[DefinitionLike], *, prune: bool = False, check: bool = True
    ) -> ApplyOut:
        """Create or update several listeners (a listener file); ``prune`` deletes the
        stored ones not given. Nothing is stored if one of them is refused."""
        return self._run(op.apply_listeners(definitions, prune, check))

    def delete_listener(self, name: str) -> None:
        """Stop and delete a listener; its run records and dead letters are kept."""
        self._run(op.delete_listener(name))

    def pause_listener(self, name: str) -> ListenerOut:
        """Stop a listener gracefully; it stays paused across restarts. Idempotent."""
        return self._run(op.pause_listener(name))

    def resume_listener(self, name: str) -> ListenerOut:
        """Start a paused listener again. Idempotent."""
        return self._run(op.resume_listener(name))

    def asyncapi(self) -> dict[str, Any]:
        """Every listener as an AsyncAPI 3.0 document: source, output and error channels,
        message payloads and broker bindings (credentials shown as ``***``)."""
        return self._run(op.asyncapi())

    def listener_status(self, name: str) -> ListenerStatusOut:
        """State, last error, counters and the version its spec resolves to now."""
        return self._run(op.listener_status(name))

    def listener_history(
        self, name: str, *, window_s: float | None = None, step_s: float | None = None
    ) -> ListenerHistoryOut:
        """Listener ``name``'s recent past, step by step (summed over the nodes): received,
        succeeded, retried and dead-lettered per second, in flight, backlog and latency
        p50/p99. ``window_s``: how far back (the server's default and most: an hour);
        ``step_s``: seconds per step."""
        return self._run(op.listener_history(name, window_s, step_s))

    def flow(self) -> FlowGraph:
        """Every listener as one graph: the places it reads and writes, itself and its model
        version, with each hop's messages and rate and each pipeline between listeners (as
        the console's flow map draws it). URLs are shown by their shape."""
        return self._run(op.flow())

    # --- runs and dead letters ---------------------------------------------------------------

    def runs(self, message_id: str, *, listener: str | None = None) -> list[RunOut]:
        """What happened to broker message ``message_id`` (one record per listener);
        raises :class:`~modelbus.errors.RunNotFound`."""
        return self._run(op.runs(message_id, listener))

    def listener_runs(
        self, name: str, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        """A page of a listener's run records, most recently updated first."""
        return self._run(op.listener_runs(name, status, limit, cursor))

    def dead_letters(
        self,
        listener: str,
        *,
        include_redriven: bool = True,
        limit: int = 50,
        cursor: str | None = None,
    ) -> DeadLetterPage:
        """A page of a listener's dead letters, newest first (without bodies)."""
        return self._run(op.dead_letters(listener, include_redriven, limit, cursor))

    def search_runs(
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
        """A page of the run records of every listener, most recently updated first,
        narrowed by the filters given: ``object_key`` is an object's whole ``BUCKET/KEY``
        (or file path) or a tail of it after a ``/``; ``since`` <= updated < ``until``."""
        filters = op.search_filters(listener, message_id, object_key, since, until)
        return self._run(op.search_runs(filters, status, limit, cursor))

    def search_dead_letters(
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
        """A page of the dead letters of every listener, newest first (without bodies),
        narrowed as :meth:`search_runs` (the time is when they were dead-lettered)."""
        filters = op.search_filters(listener, message_id, object_key, since, until)
        return self._run(op.search_dead_letters(filters, include_redriven, limit, cursor))

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
    ) -> Iterator[RunOut]:
        """Every run record :meth:`search_runs` finds with these filters, page after page
        (``page_size`` per request), most recently updated first."""
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
    ) -> Iterator[DeadLetterOut]:
        """Every dead letter :meth:`search_dead_letters` finds with these filters, page
        after page (``page_size`` per request), newest first."""
        filters = op.search_filters(listener, message_id, object_key, since, until)
        return self._each(
            lambda cursor: op.search_dead_letters(filters, include_redriven, page_size, cursor)
        )

    def _each(self, page_of: Callable[[str | None], Operation[Page]]) -> Iterator[Any]:
        cursor: str | None = None
        while True:
            page = self._run(page_of(cursor))
            yield from page.items
            cursor = page.next_cursor
            if not cursor:
                return

    def redrive_matching(
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
        """Run again every dead letter the filters match (not redriven yet, unless
        ``include_redriven``), listener by listener, each on its model at ``spec``; returns
        once all were tried. No filter at all is refused (InvalidInput) unless ``every``
        says every letter of every listener is meant. Needs listeners:manage, and the call
        scope on the model of every listener concerned."""
        filters = op.search_filters(listener, message_id, object_key, since, until)
        return self._run(op.redrive_matching(filters, include_redriven, every, spec, rate_per_s))

    def dead_letter(self, letter_id: str) -> DeadLetterOut:
        """One dead letter with its original body (``body_base64``); listeners:manage."""
        return self._run(op.dead_letter(letter_id))

    def redrive(
        self,
        listener: str,
        *,
        ids: Iterable[str] | None = None,
        spec: str | None = None,
        rate_per_s: float | None = None,
    ) -> RedriveOut:
        """Run dead letters again (``ids``, default every one not redriven yet) on the
        listener's model at ``spec`` (default its own), at most ``rate_per_s`` a second;
        returns once all were tried. Needs listeners:manage."""
        return self._run(op.redrive(listener, ids, spec, rate_per_s))

    def nodes(self, *, gone: bool = True) -> list[NodeOut]:
        """The nodes (``modelbus serve`` processes) sharing the server's store: the live
        ones, then, with ``gone``, those gone (stopped or silent) in the last hour. Each
        with its address, version, workers, listeners and last heartbeat."""
        return self._run(op.nodes(gone))

    def metrics(self) -> str:
        """The server's Prometheus metrics, as text."""
        return self._run(op.metrics())
