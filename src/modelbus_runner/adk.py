"""Algorithmia ADK algorithms, run unmodified.

An ADK algorithm's module builds ``ADK(apply, load)`` and calls ``.init()`` (or
``.serve()``) when imported, which would read requests from stdin until it closes. The
runner imports it with those two methods replaced by a capture of the ADK object, then
runs what ``init`` would: ADK's own ``load()`` once (``load()`` or ``load(model_data)``),
and for each input ``apply(input)``, or ``apply(input, state)`` when ``apply`` takes two
arguments, ``state`` being what ``load`` returned. Inputs are what ADK hands its
``apply``: JSON values, text as ``str``, binary as ``bytes``; results are encoded as the
ADK does (``bytes`` binary, ``str`` text, anything else JSON). An exception raised by
``apply`` is the call's error with its own type and traceback (the ADK would flatten it
into ``AlgorithmError``).

Refused at load, with a message saying so: an algorithm that makes no ADK object, a
``model_manifest.json`` (ADK model data, fetched from Algorithmia's data API), and an
exception raised by ``load``. Standard library only (plus the ``adk`` package the
algorithm's requirements install).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from modelbus_runner.model import Function, Model

__all__ = ["load_adk"]


def load_adk(module_name: str) -> Model:
    """Import the ADK algorithm ``module_name`` and run its ``load`` once; raises what
    importing or loading raises (see the module docstring)."""
    algorithm = _capture(module_name)
    algorithm.is_local = True  # ADK would otherwise write results to the FIFO /tmp/algoout
    if algorithm.model_data.available():
        raise RuntimeError(
            f"{algorithm.manifest_path} (ADK model data from Algorithmia's data API) is not "
            "supported by modelbus: put the files in the algorithm's folder and open them "
            "in load()"
        )
    algorithm.load()
    if algorithm.loading_exception is not None:
        raise algorithm.loading_exception
    apply = _with_state(algorithm.apply_func)
    return Model(
        Function(apply, wants_state=True, wants_context=False), None, algorithm.load_result
    )


def _capture(module_name: str) -> Any:
    try:
        from adk import ADK  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ImportError(
            f"{module_name} is an ADK algorithm: list algorithmia-adk in its requirements.txt"
        ) from exc
    made: list[Any] = []

    def capture(self: Any, *args: Any, **kwargs: Any) -> None:
        made.append(self)

    ADK.init = capture
    ADK.serve = capture
    importlib.import_module(module_name)
    if not made:
        raise RuntimeError(
            f"{module_name} made no ADK(apply, load) object and called neither .init() nor "
            ".serve() on one"
        )
    return made[-1]


def _with_state(apply: Callable[..., Any]) -> Callable[..., Any]:
    takes_state = len(inspect.getfullargspec(apply).args) == 2

    def call(value: Any, state: Any = None) -> Any:
        return apply(value, state) if takes_state else apply(value)

    return call
