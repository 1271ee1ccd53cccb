"""A Python model as the runner sees it: its functions, its state, and how to call them.

Standard library only.
"""

from __future__ import annotations

import importlib
import inspect
import json
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Literal, NamedTuple

from modelbus_runner import Context

_PACKAGE_DIR = str(Path(__file__).resolve().parent)


class Input(NamedTuple):
    """One input of a call as the runner read it. Its :class:`Context` is made only for a
    function that declares a ``context`` parameter."""

    content_type: Literal["json", "text", "binary"]
    mime: str | None
    attributes: Mapping[str, Any]
    data: bytes

    def context(self) -> Context:
        return Context(self.content_type, self.mime, self.attributes)


class Output(NamedTuple):
    """One successful output, encoded: content type, MIME type, bytes."""

    content_type: str
    mime: str | None
    data: bytes


Outcome = Output | dict[str, Any]  # an Output, or an ERROR object of the protocol


@dataclass(frozen=True, slots=True)
class Function:
    """A model function and which of ``state`` / ``context`` it declares."""

    fn: Callable[..., Any]
    wants_state: bool
    wants_context: bool

    @classmethod
    def wrap(cls, fn: Callable[..., Any]) -> Function:
        try:
            names = set(inspect.signature(fn).parameters)
        except (TypeError, ValueError):  # some builtins have no signature
            names = set()
        return cls(fn, "state" in names, "context" in names)

    def __call__(self, value: Any, state: Any, context: Any) -> Any:
        kwargs: dict[str, Any] = {}
        if self.wants_state:
            kwargs["state"] = state
        if self.wants_context:
            kwargs["context"] = context
        return self.fn(value, **kwargs)


@dataclass(frozen=True, slots=True)
class Model:
    """A loaded model: ``apply``, optional ``apply_batch``, and what ``load()`` returned."""

    apply: Function
    apply_batch: Function | None
    state: Any

    @property
    def batch(self) -> bool:
        """Whether the model takes several inputs in one call."""
        return self.apply_batch is not None

    @classmethod
    def load(cls, entrypoint: str, *, load: str | None = None, batch: str | None = None) -> Model:
        """Import the model and call its ``load`` once.

        ``entrypoint``, ``load`` and ``batch`` are ``module:function`` references; when
        ``load`` or ``batch`` is None, a function named ``load`` / ``apply_batch`` in the
        entrypoint's module is used if there is one. Raises whatever importing or loading raises.
        """
        module, apply = _resolve(entrypoint)
        load_fn = _resolve(load)[1] if load else _find(module, "load")
        batch_fn = _resolve(batch)[1] if batch else _find(module, "apply_batch")
        state = load_fn() if load_fn is not None else None
        return cls(Function.wrap(apply), Function.wrap(batch_fn) if batch_fn else None, state)

    def run(self, inputs: Sequence[Input]) -> list[tuple[Outcome, float]]:
        """Run inputs; return each one's outcome and the milliseconds it took, in order.

        Without ``apply_batch`` (or for a single input) ``apply`` runs once per input, and an
        exception is the error of that input alone. With ``apply_batch`` every input counts
        the batch's time; an exception instance in its returned list is its input's error,
        while raising fails every input of the batch. Never raises for a model error.
        """
        decoded = [_decode(item) for item in inputs]
        if not any(isinstance(value, _Undecodable) for value in decoded):
            return self._run_decoded(decoded, inputs)
        outcomes: list[tuple[Outcome, float]] = [
            (error_info(value.error), 0.0) if isinstance(value, _Undecodable) else ({}, 0.0)
            for value in decoded
        ]
        ready = [i for i, value in enumerate(decoded) if not isinstance(value, _Undecodable)]
        values = [decoded[i] for i in ready]
        items = [inputs[i] for i in ready]
        for i, outcome in zip(ready, self._run_decoded(values, items), strict=True):
            outcomes[i] = outcome
        return outcomes

    def _run_decoded(
        self, values: list[Any], inputs: Sequence[Input]
    ) -> list[tuple[Outcome, float]]:
        if not values:
            return []
        if len(values) == 1 or self.apply_batch is None:
            context = self.apply.wants_context
            return [
                self._run_one(value, item.context() if context else None)
                for value, item in zip(values, inputs, strict=True)
            ]
        contexts = [item.context() for item in inputs] if self.apply_batch.wants_context else None
        started = time.perf_counter()
        try:
            returned = self.apply_batch(values, self.state, contexts)
            outputs = list(returned)
            if len(outputs) != len(values):
                raise ValueError(
                    f"apply_batch returned {len(outputs)} results for {len(values)} inputs"
                )
        except Exception as exc:
            return [(error_info(exc), _ms_since(started))] * len(values)
        duration_ms = _ms_since(started)
        return [(_outcome(output), duration_ms) for output in outputs]

    def _run_one(self, value: Any, context: Context | None) -> tuple[Outcome, float]:
        started = time.perf_counter()
        try:
            outcome = _outcome(self.apply(value, self.state, context))
        except Exception as exc:
            outcome = error_info(exc)
        return outcome, _ms_since(started)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class _Undecodable:
    def __init__(self, error: Exception) -> None:
        self.error = error


def error_info(exc: BaseException) -> dict[str, Any]:
    """The protocol's ERROR object for an exception, with the model's part of the traceback."""
    tb = _skip_runner_frames(exc.__traceback__)
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "stacktrace": "".join(traceback.format_exception(type(exc), exc, tb)),
        "permanent": bool(getattr(exc, "permanent", False)),
    }


def encode_output(value: Any) -> Output:
    """bytes -> binary, str -> text, anything else -> JSON (numpy-like values via tolist())."""
    if isinstance(value, bytes | bytearray | memoryview):
        return Output("binary", None, bytes(value))
    if isinstance(value, str):
        return Output("text", None, value.encode("utf-8"))
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the model returned a value that cannot be sent as JSON: {exc}") from exc
    return Output("json", None, text.encode("utf-8"))


def _outcome(value: Any) -> Outcome:
    if isinstance(value, BaseException):  # apply_batch may return an exception for one input
        return error_info(value)
    try:
        return encode_output(value)
    except TypeError as exc:
        return error_info(exc)


def _decode(item: Input) -> Any:
    try:
        if item.content_type == "json":
            return json.loads(item.data)
        if item.content_type == "text":
            return item.data.decode("utf-8")
        return item.data
    except ValueError as exc:
        exc.permanent = True  # type: ignore[attr-defined]  # bad input never gets better
        return _Undecodable(exc)


def _to_json(value: Any) -> Any:
    for method in ("tolist", "item"):
        convert = getattr(value, method, None)
        if callable(convert):
            return convert()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# One encoder for every output (json.dumps with options builds a new one each call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_to_json)


def _resolve(reference: str) -> tuple[ModuleType, Callable[..., Any]]:
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{reference!r} is not a 'module:function' reference")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{reference!r} is not callable")
    return module, target


def _find(module: ModuleType, name: str) -> Callable[..., Any] | None:
    found = getattr(module, name, None)
    return found if callable(found) else None


def _skip_runner_frames(tb: TracebackType | None) -> TracebackType | None:
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return tb
