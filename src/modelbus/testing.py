"""Test helpers shipped with modelbus, for your own tests and for ours.

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
import contextlib
import dataclasses
import inspect
import re
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelbus.client.refs import ModelRef
from modelbus.errors import (
    InvocationError,
    InvocationTimeout,
    ModelError,
    ModelNotFound,
    VersionNotFound,
)
from modelbus.runtime.invocation import CallOptions, OnResults, Payload, Result
from modelbus_runner import Context
from modelbus_runner.model import Function

__all__ = ["Call", "FunctionInvoker", "as_payload"]

ModelFunction = Callable[..., Any]
BatchFunction = Callable[..., Any]
LoadFunction = Callable[[], Any]


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
