"""Test helpers shipped with modelbus, for your own tests and for ours (docs/testing.md).

:class:`ListenerHarness` (and :class:`SyncListenerHarness`) runs a model folder in a real
runner process behind a real listener on ``memory://`` queues, as ``modelbus serve`` would:
the way to test a model and its listener policies from a user's own test suite.

:class:`FunctionInvoker` is an in-memory :class:`~modelbus.runtime.invocation.Invoker`: model
references resolve to plain Python callables instead of runner processes, so a listener can
be exercised end to end (with ``memory://`` or ``local://`` queues) in milliseconds::

    invoker = FunctionInvoker()
    invoker.register("acme/upper", lambda text: text.upper(), version="1.0.0")

    async def flaky(value):
        raise RunnerCrashed("boom")          # any InvocationError subclass is passed through

    invoker.register("acme/flaky", flaky)

Functions are called as the runner calls a model (``modelbus_runner``): ``state`` (what the
registered ``load()`` returned, loaded once) and ``context`` (a :class:`modelbus_runner.Context`)
are passed to a function that declares parameters of those names, and an exception marked
``permanent`` (:class:`modelbus_runner.PermanentError`) is a permanent error.

This is a test double, not a way to serve models: callables run inside the server process,
sync ones on the event loop itself (use ``async def`` for anything slow).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import inspect
import json
import os
import re
import shutil
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from modelbus.client.refs import ModelRef
from modelbus.connectors import OutMessage
from modelbus.connectors.memory import BROKER
from modelbus.errors import (
    InvocationError,
    InvocationTimeout,
    ModelError,
    ModelNotFound,
    VersionNotFound,
)
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.lifecycle import ListenerRuntime, RuntimeOptions
from modelbus.listeners.metrics import Metrics
from modelbus.listeners.records import RunWriter
from modelbus.listeners.retry import RetryPolicy
from modelbus.registry.catalog import Registry
from modelbus.runtime.invocation import CallOptions, OnResults, Payload, Result
from modelbus.runtime.pool import PoolManager
from modelbus.runtime.service import ModelService
from modelbus.store.database import Database
from modelbus.store.jobs import JobStore
from modelbus.store.runs import RunRecord, RunStore
from modelbus_runner import Context
from modelbus_runner.model import Function

__all__ = [
    "FAST_RETRY",
    "Call",
    "FunctionInvoker",
    "ListenerHarness",
    "Message",
    "SyncListenerHarness",
    "as_payload",
]

ModelFunction = Callable[..., Any]
BatchFunction = Callable[..., Any]
LoadFunction = Callable[[], Any]
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class Call:
    """One recorded invocation (batches record one Call per input)."""

    ref: ModelRef
    version: str
    payload: Payload
    options: CallOptions
    batch_size: int = 1


@dataclass(kw_only=True, slots=True)
class _Entry:
    fn: Function
    batch: Function | None
    takes_payload: bool
    load: LoadFunction | None
    state: Any = None
    loaded: bool = False

    def state_now(self) -> Any:
        """What ``load()`` returned, calling it on first use (as a runner does at start)."""
        if not self.loaded and self.load is not None:
            self.state = self.load()
        self.loaded = True
        return self.state


def as_payload(value: Any) -> Payload:
    """A callable's return value as a Payload: Payload as is, bytes -> binary, str -> text,
    anything else -> JSON."""
    if isinstance(value, Payload):
        return value
    if isinstance(value, bytes | bytearray):
        return Payload.from_binary(bytes(value))
    if isinstance(value, str):
        return Payload.from_text(value)
    return Payload.from_json(value)


class FunctionInvoker:
    """An :class:`~modelbus.runtime.invocation.Invoker` backed by Python callables.

    ``register("owner/name", fn, version="1.0.0")`` makes ``owner/name@1.0.0`` (and any spec
    it satisfies: ``1.*``, ``1.0.*``, ``latest``) call ``fn(value)`` with the input's decoded
    value (a JSON value, a str or bytes; the :class:`Payload` itself with
    ``takes_payload=True``), plus ``state`` and ``context`` when ``fn`` declares them (as
    the runner does: see the module docstring). ``fn`` may be sync or async; what it
    returns becomes the result (see :func:`as_payload`); an :class:`InvocationError` it
    raises is passed through, any other exception becomes a :class:`ModelError` with its
    traceback, permanent when the exception says so (``permanent = True``, as
    :class:`modelbus_runner.PermanentError` does), transient otherwise.

    It records every call in :attr:`calls` and the highest number of concurrent calls seen
    in :attr:`peak_concurrency`, so tests can observe back-pressure and batching.
    """

    def __init__(self) -> None:
        self._models: dict[str, dict[str, _Entry]] = {}
        self.calls: list[Call] = []
        self.batch_sizes: list[int] = []
        self.concurrency = 0
        self.peak_concurrency = 0

    def register(
        self,
        model: str,
        fn: ModelFunction,
        *,
        version: str = "1.0.0",
        batch: BatchFunction | None = None,
        takes_payload: bool = False,
        load: LoadFunction | None = None,
    ) -> None:
        """Make ``model@version`` call ``fn`` (and ``batch(values) -> outputs`` for batches,
        when given; otherwise a batch calls ``fn`` once per input). ``load()``, when given,
        runs once, before the first call; what it returns is the ``state`` argument."""
        ref = ModelRef.parse(model)
        _semver(version)
        entry = _Entry(
            fn=Function.wrap(fn),
            batch=Function.wrap(batch) if batch is not None else None,
            takes_payload=takes_payload,
            load=load,
        )
        self._models.setdefault(f"{ref.owner}/{ref.name}", {})[version] = entry

    def unregister(self, model: str, *, version: str | None = None) -> None:
        """Forget ``model`` (or one ``version`` of it), as deleting it from the registry
        would: calls that resolve to it fail with ModelNotFound/VersionNotFound."""
        ref = ModelRef.parse(model)
        versions = self._models.get(f"{ref.owner}/{ref.name}", {})
        if version is None:
            versions.clear()
        else:
            versions.pop(version, None)

    def resolve(self, ref: ModelRef) -> str:
        """The registered version ``ref`` resolves to; raises ModelNotFound/VersionNotFound."""
        versions = self._models.get(f"{ref.owner}/{ref.name}")
        if not versions:
            raise ModelNotFound(f"model {ref.owner}/{ref.name} does not exist")
        matching = [v for v in versions if _matches(v, ref.spec)]
        if not matching:
            raise VersionNotFound(f"no version of {ref.owner}/{ref.name} matches {ref.spec!r}")
        return max(matching, key=_semver)

    async def version_of(self, ref: ModelRef) -> str:
        """The registered version ``ref`` resolves to (as :meth:`resolve`)."""
        return self.resolve(ref)

    async def invoke(self, ref: ModelRef, payload: Payload, options: CallOptions) -> Result:
        """Run one input (see the class docstring)."""
        version = self.resolve(ref)
        entry = self._models[f"{ref.owner}/{ref.name}"][version]
        self.calls.append(Call(ref=ref, version=version, payload=payload, options=options))
        started = time.perf_counter()
        with self._counting():
            output = await self._run(
                entry, entry.fn, _arg(entry, payload), options, version, _context(payload, options)
            )
        return Result(
            output=as_payload(output),
            duration_ms=(time.perf_counter() - started) * 1000,
            version=version,
        )

    async def invoke_batch(
        self,
        ref: ModelRef,
        payloads: Sequence[Payload],
        options: CallOptions,
        *,
        attributes: Sequence[Mapping[str, str]] | None = None,
        on_results: OnResults | None = None,
    ) -> list[Result | Exception]:
        """Run several inputs on one resolved version; one Result or exception per input,
        each chunk told to ``on_results`` as soon as it is done. Like the runner pool, at most
        ``options.max_batch_size`` inputs go in one call of the model's batch function (the
        calls run concurrently); each input's ``attributes`` are merged over the options'."""
        version = self.resolve(ref)
        entry = self._models[f"{ref.owner}/{ref.name}"][version]
        size = options.max_batch_size or len(payloads) or 1
        chunks = await asyncio.gather(
            *(
                self._chunk(
                    ref,
                    version,
                    entry,
                    payloads[start : start + size],
                    options,
                    None if attributes is None else attributes[start : start + size],
                    _shifted(on_results, start),
                )
                for start in range(0, len(payloads), size)
            )
        )
        return [outcome for chunk in chunks for outcome in chunk]

    async def _chunk(
        self,
        ref: ModelRef,
        version: str,
        entry: _Entry,
        payloads: Sequence[Payload],
        options: CallOptions,
        attributes: Sequence[Mapping[str, str]] | None,
        on_results: OnResults | None,
    ) -> list[Result | Exception]:
        outcomes = await self._outcomes(ref, version, entry, payloads, options, attributes)
        if on_results is not None:
            on_results(range(len(outcomes)), outcomes)
        return outcomes

    async def _outcomes(
        self,
        ref: ModelRef,
        version: str,
        entry: _Entry,
        payloads: Sequence[Payload],
        options: CallOptions,
        attributes: Sequence[Mapping[str, str]] | None,
    ) -> list[Result | Exception]:
        self.batch_sizes.append(len(payloads))
        owns: list[CallOptions] = []
        for i, payload in enumerate(payloads):
            own = options
            if attributes is not None:
                own = dataclasses.replace(
                    options, attributes={**options.attributes, **attributes[i]}
                )
            owns.append(own)
            call = Call(ref=ref, version=version, payload=payload, options=own)
            self.calls.append(_with_batch(call, len(payloads)))
        if entry.batch is None:
            outcomes = await asyncio.gather(
                *(self._one(entry, p, own, version) for p, own in zip(payloads, owns, strict=True)),
                return_exceptions=True,
            )
            return [
                o if isinstance(o, Result | Exception) else ModelError(str(o)) for o in outcomes
            ]
        return await self._batch(entry, payloads, owns, options, version)

    async def _one(
        self, entry: _Entry, payload: Payload, options: CallOptions, version: str
    ) -> Result:
        started = time.perf_counter()
        with self._counting():
            output = await self._run(
                entry, entry.fn, _arg(entry, payload), options, version, _context(payload, options)
            )
        return Result(as_payload(output), (time.perf_counter() - started) * 1000, version)

    async def _batch(
        self,
        entry: _Entry,
        payloads: Sequence[Payload],
        owns: Sequence[CallOptions],
        options: CallOptions,
        version: str,
    ) -> list[Result | Exception]:
        assert entry.batch is not None
        started = time.perf_counter()
        values = [_arg(entry, p) for p in payloads]
        contexts = [_context(p, own) for p, own in zip(payloads, owns, strict=True)]
        try:
            with self._counting():
                outputs = await self._run(entry, entry.batch, values, options, version, contexts)
        except InvocationError as exc:
            return [exc for _ in payloads]
        duration_ms = (time.perf_counter() - started) * 1000
        if not isinstance(outputs, list) or len(outputs) != len(payloads):
            error = ModelError("apply_batch must return one output per input", permanent=True)
            return [error for _ in payloads]
        return [
            out if isinstance(out, Exception) else Result(as_payload(out), duration_ms, version)
            for out in outputs
        ]

    async def _run(
        self,
        entry: _Entry,
        fn: Function,
        arg: Any,
        options: CallOptions,
        version: str,
        context: Context | list[Context] | None,
    ) -> Any:
        try:
            outcome = fn(arg, entry.state_now() if fn.wants_state else None, context)
            if inspect.isawaitable(outcome):
                outcome = await asyncio.wait_for(outcome, options.timeout_s)
            return outcome
        except TimeoutError:
            raise _stamped(
                InvocationTimeout(f"timed out after {options.timeout_s} s"), version
            ) from None
        except InvocationError as exc:
            raise _stamped(exc, version) from None
        except Exception as exc:
            error = ModelError(
                str(exc) or type(exc).__name__,
                error_type=type(exc).__name__,
                stacktrace=traceback.format_exc(),
                permanent=bool(getattr(exc, "permanent", False)),
            )
            raise _stamped(error, version) from exc

    @contextlib.contextmanager
    def _counting(self) -> Iterator[None]:
        self.concurrency += 1
        self.peak_concurrency = max(self.peak_concurrency, self.concurrency)
        try:
            yield
        finally:
            self.concurrency -= 1


def _arg(entry: _Entry, payload: Payload) -> Any:
    return payload if entry.takes_payload else payload.value()


def _context(payload: Payload, options: CallOptions) -> Context:
    """The :class:`Context` a runner would pass with ``payload``."""
    return Context(payload.content_type, payload.mime, dict(options.attributes))


def _shifted(on_results: OnResults | None, start: int) -> OnResults | None:
    """``on_results`` for a chunk starting at input ``start``."""
    if on_results is None:
        return None
    told = on_results

    def tell(indexes: Sequence[int], outcomes: Sequence[Result | Exception]) -> None:
        told([start + i for i in indexes], outcomes)

    return tell


def _with_batch(call: Call, size: int) -> Call:
    return Call(
        ref=call.ref,
        version=call.version,
        payload=call.payload,
        options=call.options,
        batch_size=size,
    )


def _stamped(exc: InvocationError, version: str) -> InvocationError:
    exc.version = version
    return exc


def _semver(version: str) -> tuple[int, int, int]:
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise ValueError(f"version {version!r} is not MAJOR.MINOR.PATCH")
    major, minor, patch = (int(p) for p in version.split("."))
    return major, minor, patch


def _matches(version: str, spec: str) -> bool:
    if spec in ("latest", version):
        return True
    if spec.endswith(".*"):
        return version.startswith(spec[:-1])
    return False


# --- ListenerHarness: a model folder behind a real listener, on memory:// queues -------------

# Retry delays the harness uses unless the listener's ``retry`` sets them (``fast_retries``).
FAST_RETRY: Mapping[str, float] = {"initial_backoff_s": 0.05, "max_backoff_s": 0.2, "jitter": 0.0}
# The queues and the model are the harness's own: a listener mapping may not name them.
_HARNESS_FIELDS = ("source", "outputs", "error_sink", "model")
_CLOUDEVENT = "application/cloudevents+json"


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    """A message the harness took off the output queue or the error sink.

    A result is a structured CloudEvent by default (:attr:`event`; its ``data`` is
    :attr:`data`); with ``output_mode = "raw"`` the body is the bare result. A dead letter
    carries the original body and attributes untouched, plus ``modelbus-*`` attributes
    (``modelbus-error-type``, ``modelbus-error-message``, ``modelbus-permanent``,
    ``modelbus-attempts``...).
    """

    id: str
    body: bytes
    attributes: Mapping[str, str]

    @property
    def event(self) -> dict[str, Any]:
        """The body parsed as JSON (the CloudEvent of a result)."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def data(self) -> Any:
        """The result's value: a JSON value, a str or bytes."""
        if self.attributes.get("content-type", "").startswith(_CLOUDEVENT):
            event = self.event
            if "data_base64" in event:
                return base64.b64decode(event["data_base64"])
            return event.get("data")
        return Payload.sniff(self.body).value()


class ListenerHarness:
    """Run a model folder behind a listener, as ``modelbus serve`` would, for your tests.

    ``model_dir`` is pushed as ``version`` to a registry in a temporary data directory (with
    its own SQLite store), and a listener runs it: source, output and error sink are fresh
    ``memory://`` queues. Everything on the way is production code: the model runs in a
    runner process of the server's pool (``load()`` once per runner, ``state`` and
    ``context`` as the runner passes them, ``modelbus.toml`` schemas enforced), and the
    listener runtime retries transient failures per the retry policy and dead-letters
    permanent ones at once. ``listener`` holds listener definition fields (``retry``,
    ``batch``, ``filter``, ``timeout_s``, ``output_mode``, ``name``...); the queues and the
    model are the harness's. With ``fast_retries`` (the default) retry delays the mapping does
    not set are those of :data:`FAST_RETRY` (the cap raised to an ``initial_backoff_s`` it
    sets). ``timeout_s`` is how long the waiting methods wait by default. ``data_dir``, when
    given, is used (and kept) instead of a temporary one::

        async with ListenerHarness("models/ocr", listener={"retry": {"max_attempts": 3}}) as h:
            await h.send({"text": "hi"})
            [result] = await h.results(1)
            assert result.data == ...

    Use it as an async context manager (or :meth:`start` / :meth:`stop`), in one event loop.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        listener: Mapping[str, Any] | None = None,
        version: str = "1.0.0",
        fast_retries: bool = True,
        timeout_s: float = 10.0,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        fields = dict(listener or {})
        taken = sorted(set(fields) & set(_HARNESS_FIELDS))
        if taken:
            raise ValueError(
                f"the harness sets {', '.join(taken)} itself: leave them out of listener="
            )
        if fast_retries:
            fields["retry"] = _fast(dict(fields.get("retry") or {}))
        tag = uuid.uuid4().hex[:10]
        fields.setdefault("name", f"harness-{tag}")
        self.source = f"memory://harness-{tag}-in"
        self.output = f"memory://harness-{tag}-out"
        self.error_sink = f"memory://harness-{tag}-dead"
        self._fields = fields
        self._model_dir = Path(model_dir)
        self._version = version
        self.timeout_s = timeout_s
        self._keep = data_dir is not None
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._stack: contextlib.AsyncExitStack | None = None
        self._listener: ListenerRuntime | None = None
        self._runs: RunStore | None = None

    @property
    def name(self) -> str:
        """The listener's name (in run records and dead letters)."""
        return str(self._fields["name"])

    @property
    def listener(self) -> ListenerRuntime:
        """The running listener (its ``status()``, ``state``...); only between start and stop."""
        return self._started()

    @property
    def data_dir(self) -> Path | None:
        """The data directory (store, artifacts, runner runtime); None before start."""
        return self._data_dir

    def _started(self) -> ListenerRuntime:
        if self._listener is None:
            raise RuntimeError("the harness is not started: use 'async with' or start()")
        return self._listener

    async def start(self) -> None:
        """Push the model, start the listener and wait until it runs (raises what fails)."""
        stack = contextlib.AsyncExitStack()
        try:
            await self._start(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def stop(self) -> None:
        """Stop the listener, the runners and the store; remove the temporary data."""
        stack, self._stack, self._listener = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> ListenerHarness:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def send(
        self,
        body: Any,
        *,
        attributes: Mapping[str, str] | None = None,
        id: str | None = None,
    ) -> str:
        """Publish one message onto the listener's source; returns its message id.

        bytes go as they are; a str as UTF-8 text (``content-type: text/plain``); anything
        else as JSON (``application/json``). A ``content-type`` in ``attributes`` wins.
        """
        self._started()
        data, content_type = _body_of(body)
        attrs = dict(attributes or {})
        if content_type and not any(k.lower() == "content-type" for k in attrs):
            attrs["content-type"] = content_type
        message_id = id or f"msg-{uuid.uuid4().hex}"
        BROKER.queue(_queue(self.source)).publish(
            [OutMessage(id=message_id, body=data, attributes=attrs)]
        )
        return message_id

    async def results(self, count: int, *, timeout_s: float | None = None) -> list[Message]:
        """Take the next ``count`` messages off the output queue, in order; raises
        :class:`TimeoutError` (saying what the run records show) if fewer arrive in time."""
        return await self._take(self.output, count, timeout_s, "results")

    async def dead_letters(self, count: int, *, timeout_s: float | None = None) -> list[Message]:
        """Take the next ``count`` messages off the error sink, in order; raises
        :class:`TimeoutError` if fewer arrive in time."""
        return await self._take(self.error_sink, count, timeout_s, "dead letters")

    async def settled(self, *, timeout_s: float | None = None) -> None:
        """Wait until every message sent is settled (acked after its result or dead letter
        was made durable; none waiting for a retry); raises :class:`TimeoutError`."""
        queue = BROKER.queue(_queue(self.source))
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while queue.counts() != (0, 0):
            if time.monotonic() > deadline:
                raise TimeoutError(f"messages still unsettled: {await self._summary()}")
            await asyncio.sleep(0.02)

    async def runs(self, *, timeout_s: float | None = None) -> list[RunRecord]:
        """The listener's run records, oldest first, once every message sent is settled
        (see :meth:`settled`)."""
        await self.settled(timeout_s=timeout_s)
        return await self._records()

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        if not self._keep:
            self._data_dir = Path(tempfile.mkdtemp(prefix="modelbus-harness-"))
            stack.callback(shutil.rmtree, self._data_dir, ignore_errors=True)
        data_dir = self._data_dir
        assert data_dir is not None
        data_dir.mkdir(parents=True, exist_ok=True)
        for url in (self.source, self.output, self.error_sink):
            stack.callback(BROKER.delete, _queue(url))
        database = await Database.open(f"sqlite:///{data_dir / 'modelbus.sqlite'}")
        stack.push_async_callback(database.close)
        await database.migrate()
        registry = Registry(database, data_dir)
        pushed = await registry.push(self._model_dir, version=self._version)
        pools = PoolManager()
        stack.push_async_callback(pools.close)
        service = ModelService(registry=registry, pools=pools, jobs=JobStore(database))
        self._runs = runs = RunStore(database.engine)
        stack.push_async_callback(runs.close)
        writer = RunWriter(runs)
        stack.push_async_callback(writer.flush)
        definition = ListenerDefinition.from_mapping(
            {
                **self._fields,
                "source": self.source,
                "outputs": [self.output],
                "error_sink": self.error_sink,
                "model": f"{pushed.owner}/{pushed.name}@{self._version}",
            }
        )
        listener = ListenerRuntime(
            definition,
            invoker=service,
            runs=writer,
            metrics=Metrics(CollectorRegistry()).listener(definition.name),
            data_dir=data_dir,
            options=_HARNESS_OPTIONS,
        )
        await listener.start()
        stack.push_async_callback(listener.stop, _HARNESS_OPTIONS.stop_deadline_s)
        await listener.wait_for_state("running", timeout_s=self.timeout_s)
        self._listener = listener

    async def _take(
        self, url: str, count: int, timeout_s: float | None, what: str
    ) -> list[Message]:
        self._started()
        queue = BROKER.queue(_queue(url))
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        got: list[Message] = []
        while len(got) < count:
            taken = queue.take(count - len(got), lease_s=60.0)
            queue.settle([d.handle for d in taken])
            got += [Message(id=d.message_id, body=d.body, attributes=d.attributes) for d in taken]
            if len(got) < count:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"expected {count} {what}, got {len(got)}; {await self._summary()}"
                    )
                await asyncio.sleep(0.02)
        return got

    async def _records(self) -> list[RunRecord]:
        assert self._runs is not None
        page = await self._runs.list_runs(self.name, limit=10_000)
        return sorted(page.items, key=lambda r: (r.first_received_at, r.message_id))

    async def _summary(self) -> str:
        if self._runs is None:
            return "the harness is not started"
        records = await self._records()
        if not records:
            return "no run records yet (did the listener receive anything?)"
        return "run records: " + "; ".join(
            f"{r.message_id} {r.status} after {r.attempts} attempt(s)"
            + (f" ({r.error.get('type')}: {r.error.get('message')})" if r.error else "")
            for r in records
        )


_HARNESS_OPTIONS = RuntimeOptions(
    receive_wait_s=0.2,
    op_timeout_s=10.0,
    publish_timeout_s=10.0,
    open_timeout_s=10.0,
    stop_deadline_s=5.0,
    reconnect=RetryPolicy(max_attempts=1000, initial_backoff_s=0.05, max_backoff_s=0.5, jitter=0),
)


def _fast(retry: dict[str, Any]) -> dict[str, Any]:
    """``retry`` with the delays it leaves out taken from FAST_RETRY (the cap raised to a
    start the listener set, so the policy stays valid)."""
    fast = {**FAST_RETRY, **retry}
    if "max_backoff_s" not in retry:
        fast["max_backoff_s"] = max(FAST_RETRY["max_backoff_s"], fast["initial_backoff_s"])
    return fast


def _queue(url: str) -> str:
    return url.removeprefix("memory://")


def _body_of(body: Any) -> tuple[bytes, str | None]:
    if isinstance(body, bytes | bytearray):
        return bytes(body), None
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(body).encode("utf-8"), "application/json"


class SyncListenerHarness:
    """:class:`ListenerHarness` for synchronous tests: the same arguments and methods, which
    block. The harness runs on an event loop of its own, in a background thread::

        with SyncListenerHarness("models/ocr") as h:
            h.send({"text": "hi"})
            [result] = h.results(1)
    """

    def __init__(self, model_dir: str | os.PathLike[str], **options: Any) -> None:
        self.harness = ListenerHarness(model_dir, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SyncListenerHarness:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the loop's thread and the harness (see :meth:`ListenerHarness.start`)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="modelbus-harness", daemon=True
        )
        self._thread.start()
        try:
            self._call(self.harness.start())
        except BaseException:
            self._close_loop()
            raise

    def stop(self) -> None:
        """Stop the harness, then its loop and thread."""
        if self._loop is None:
            return
        try:
            self._call(self.harness.stop())
        finally:
            self._close_loop()

    def send(
        self, body: Any, *, attributes: Mapping[str, str] | None = None, id: str | None = None
    ) -> str:
        """See :meth:`ListenerHarness.send`."""
        return self._call(self.harness.send(body, attributes=attributes, id=id))

    def results(self, count: int, *, timeout_s: float | None = None) -> list[Message]:
        """See :meth:`ListenerHarness.results`."""
        return self._call(self.harness.results(count, timeout_s=timeout_s))

    def dead_letters(self, count: int, *, timeout_s: float | None = None) -> list[Message]:
        """See :meth:`ListenerHarness.dead_letters`."""
        return self._call(self.harness.dead_letters(count, timeout_s=timeout_s))

    def settled(self, *, timeout_s: float | None = None) -> None:
        """See :meth:`ListenerHarness.settled`."""
        self._call(self.harness.settled(timeout_s=timeout_s))

    def runs(self, *, timeout_s: float | None = None) -> list[RunRecord]:
        """See :meth:`ListenerHarness.runs`."""
        return self._call(self.harness.runs(timeout_s=timeout_s))

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the harness is not started: use 'with' or start()")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _close_loop(self) -> None:
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
