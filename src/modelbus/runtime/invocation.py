"""Invocations: one input -> one result or one error, whether it came over HTTP or from an event.

A :class:`Payload` keeps the bytes as they arrived plus their kind (``json``, ``text`` or
``binary``, Algorithmia's three content types) and, for binary, an optional MIME type. The
bytes travel untouched from the HTTP body or broker message to the runner process, so nothing
is decoded twice on the hot path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from modelbus.client.refs import ModelRef
from modelbus.errors import InvalidInput
from modelbus.runtime import jsondoc

# The longest timeout a call may ask for (a day, as a listener's ``timeout_s``).
MAX_TIMEOUT_S = 86_400.0

ContentType = Literal["json", "text", "binary"]
CONTENT_TYPES: tuple[ContentType, ...] = ("json", "text", "binary")


@dataclass(frozen=True, slots=True)
class Payload:
    """Data plus its content type. ``data`` is the encoded form (UTF-8 JSON, UTF-8 text, raw)."""

    data: bytes
    content_type: ContentType
    mime: str | None = None

    @classmethod
    def from_json(cls, value: Any) -> Payload:
        return cls(json.dumps(value, separators=(",", ":")).encode(), "json")

    @classmethod
    def from_text(cls, value: str) -> Payload:
        return cls(value.encode(), "text")

    @classmethod
    def from_binary(cls, value: bytes, mime: str | None = None) -> Payload:
        return cls(bytes(value), "binary", mime)

    @classmethod
    def sniff(cls, data: bytes, mime: str | None = None) -> Payload:
        """A raw body as DESIGN.md decodes it: JSON if it parses, else UTF-8 text, else binary."""
        try:
            jsondoc.loads(data)
            return cls(data, "json")
        except ValueError:
            pass
        try:
            data.decode("utf-8")
            return cls(data, "text")
        except UnicodeDecodeError:
            return cls(data, "binary", mime)

    def value(self) -> Any:
        """The decoded value: a JSON value, a str, or bytes."""
        if self.content_type == "json":
            return jsondoc.loads(self.data)
        if self.content_type == "text":
            return self.data.decode("utf-8")
        return self.data


@dataclass(frozen=True, slots=True)
class Result:
    """A successful invocation. ``version`` is the resolved version that ran."""

    output: Payload
    duration_ms: float
    version: str
    stdout: str | None = None


# Told as soon as some inputs of an invoke_batch are done: their indexes and outcomes.
OnResults = Callable[[Sequence[int], Sequence["Result | Exception"]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallOptions:
    """Per-call options.

    ``timeout_s``: the most one input may take (``None``: the version's default timeout);
    over 0 and at most :data:`MAX_TIMEOUT_S`, else :class:`InvalidInput` (a caller's
    ``?timeout=inf`` must not reach the pool, which schedules by it).
    ``capture_stdout``: return what the model printed (inputs of such a call share a runner
    call with no other caller's). ``attributes``: the context attributes of every input
    (message attributes, trace context), which the model sees as ``context.attributes``.
    ``max_batch_size``: the caller's cap on inputs per runner call (a listener's
    ``batch.max_batch_size``; 1 = one input per call; ``None``: the pool's own cap).
    """

    timeout_s: float | None = None
    capture_stdout: bool = False
    attributes: dict[str, str] = field(default_factory=dict)
    max_batch_size: int | None = None

    def __post_init__(self) -> None:
        timeout = self.timeout_s
        if timeout is not None and not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT_S):
            raise InvalidInput(
                f"timeout {timeout:g} s is out of range: give a number of seconds over 0 "
                f"and at most {MAX_TIMEOUT_S:g}"
            )
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size}")


class Invoker(Protocol):
    """Runs model versions. Implemented by the pool manager; used by the API and listeners."""

    async def version_of(self, ref: ModelRef) -> str:
        """The version ``ref`` resolves to now (its label); raises
        :class:`~modelbus.errors.NotFound` subclasses or
        :class:`~modelbus.errors.VersionSpecError` when it resolves to none."""
        ...

    async def invoke(self, ref: ModelRef, payload: Payload, options: CallOptions) -> Result:
        """Resolve ``ref`` and run one input.

        Raises :class:`~modelbus.errors.NotFound` subclasses for an unknown model or version,
        :class:`~modelbus.errors.VersionSpecError`, or an
        :class:`~modelbus.errors.InvocationError` (whose ``permanent`` flag classifies it).
        """
        ...

    async def invoke_batch(
        self,
        ref: ModelRef,
        payloads: Sequence[Payload],
        options: CallOptions,
        *,
        attributes: Sequence[Mapping[str, str]] | None = None,
        on_results: OnResults | None = None,
    ) -> list[Result | Exception]:
        """Run several inputs on one resolved version, many to a runner call (through
        ``apply_batch`` when the model has it). ``attributes``, if given, holds one mapping
        per input, merged over ``options.attributes`` for that input alone. ``on_results``,
        if given, is called (on the event loop, and must not block) as soon as some inputs
        are done, typically once per runner call, with their indexes and outcomes; inputs it
        was not told about are in the returned list. Returns one entry per input, in order:
        a Result or the InvocationError for it; one input's error never fails another.
        Resolution errors (unknown model, bad spec) are raised, not returned; ValueError
        when ``attributes`` does not have one entry per input."""
        ...
