"""Listener filters: which deliveries reach the model, in the style of EventBridge patterns
and SNS filter policies.

A filter has up to two parts, both optional, and a delivery passes only if every part matches::

    {
      "body": {                                   # the decoded input; must be a JSON object
        "type": ["invoice", "receipt"],           # exact values, any of them
        "amount": [{"numeric": [">", 0, "<=", 1000]}],
        "customer": {"tier": [{"prefix": "gold"}]},   # nested objects nest the pattern
        "draft": [{"exists": false}]
      },
      "attributes": {                             # message attributes / headers (strings)
        "key": [{"suffix": ".pdf"}],              # S3/folder events carry bucket, key, size
        "ce-type": ["com.acme.invoice.created"],  # CloudEvent attributes appear as ce-NAME
        "size": [{"numeric": ["<", 10000000]}]    # numeric strings compare as numbers
      }
    }

Rules:

* Every field named in a pattern must match (AND); a list gives alternatives (OR). A single
  value is shorthand for a one-element list: ``"type": "invoice"``.
* A JSON object as a field's value is a nested pattern (at most ``MAX_DEPTH``, 32, deep).
  Operators therefore always sit inside a list: ``"name": [{"prefix": "ab"}]``.
* Operators: ``{"prefix": "s"}``, ``{"suffix": "s"}``, ``{"equals-ignore-case": "s"}``,
  ``{"anything-but": value-or-list}``, ``{"exists": true|false}``, and
  ``{"numeric": [op, n]}`` or a range ``{"numeric": [">=", 0, "<", 5]}`` with ops
  ``= != < <= > >=``.
* When the message holds an array, a condition matches if any element matches.
* A missing field matches only ``{"exists": false}``; ``null`` is present and matches ``null``.
* Exact values are compared with their JSON type in the body (``5`` is not ``"5"``);
  attribute values are strings, so exact attribute values must be strings.
* A body pattern never matches an input that is not a JSON object (text, binary, or an object
  fetched from S3 / a folder: filter those on their ``key`` / ``size`` attributes).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from modelbus.errors import DefinitionError

__all__ = ["Filter", "compile_filter"]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()

Check = Callable[[Any], bool]

_NUMERIC_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
# Nested patterns compile (and match) recursively: a pattern thousands of objects deep
# would exhaust the interpreter's stack.
MAX_DEPTH = 32
_OPERATORS = ("prefix", "suffix", "equals-ignore-case", "anything-but", "exists", "numeric")
_SCALARS = (str, int, float, bool, type(None))


class Filter:
    """A compiled filter. Build it with :func:`compile_filter`."""

    def __init__(self, body: Check | None, attributes: Check | None) -> None:
        self._body = body
        self._attributes = attributes

    def matches(self, body: Any, attributes: Mapping[str, str]) -> bool:
        """True if the delivery passes. ``body`` is the decoded JSON value, or
        :data:`MISSING` when the input is not JSON (a body pattern then fails)."""
        if self._attributes is not None and not self._attributes(attributes):
            return False
        return self._body is None or self._body(body)


def compile_filter(spec: Mapping[str, Any] | None) -> Filter:
    """Validate and compile a filter; raises :class:`DefinitionError` saying what to change."""
    if spec is None:
        return Filter(None, None)
    if not isinstance(spec, Mapping):
        raise DefinitionError(
            'filter: expected an object like {"body": {...}, "attributes": {...}}'
        )
    unknown = set(spec) - {"body", "attributes"}
    if unknown:
        raise DefinitionError(
            f"filter: unknown part(s) {sorted(unknown)}: a filter has only 'body' and 'attributes'"
        )
    body = spec.get("body")
    attributes = spec.get("attributes")
    return Filter(
        None if body is None else _pattern(body, "filter.body", attrs=False),
        None if attributes is None else _pattern(attributes, "filter.attributes", attrs=True),
    )


def _pattern(pattern: Any, path: str, *, attrs: bool, depth: int = 1) -> Check:
    if not isinstance(pattern, Mapping) or not pattern:
        raise DefinitionError(f"{path}: expected a non-empty object of field -> condition")
    if depth > MAX_DEPTH:
        raise DefinitionError(
            f"{path}: patterns nest at most {MAX_DEPTH} objects deep; match a shallower field"
        )
    fields = [
        (str(k), _field(v, f"{path}.{k}", attrs=attrs, depth=depth)) for k, v in pattern.items()
    ]

    def check(obj: Any) -> bool:
        if not isinstance(obj, Mapping):
            return False
        return all(cond(obj.get(name, MISSING)) for name, cond in fields)

    return check


def _field(condition: Any, path: str, *, attrs: bool, depth: int) -> Check:
    if isinstance(condition, Mapping):
        if attrs:
            raise DefinitionError(
                f"{path}: attributes are flat strings, so nested patterns do not apply; "
                'put operators in a list, e.g. [{"prefix": "x"}]'
            )
        if set(condition) <= set(_OPERATORS):
            raise DefinitionError(
                f"{path}: an operator must sit inside a list: write [{dict(condition)!r}]"
            )
        nested = _pattern(condition, path, attrs=attrs, depth=depth + 1)
        return lambda value: value is not MISSING and _any(value, nested)
    alternatives = condition if isinstance(condition, list) else [condition]
    if not alternatives:
        raise DefinitionError(f"{path}: an empty list matches nothing; give at least one value")
    checks = [_alternative(a, f"{path}[{i}]", attrs=attrs) for i, a in enumerate(alternatives)]
    return lambda value: any(check(value) for check in checks)


def _any(value: Any, check: Check) -> bool:
    """Apply ``check`` to a value, or to each element when the message holds an array."""
    if isinstance(value, list):
        return any(check(v) for v in value)
    return check(value)


def _alternative(alt: Any, path: str, *, attrs: bool) -> Check:
    if isinstance(alt, Mapping):
        return _operator(alt, path, attrs=attrs)
    if not isinstance(alt, _SCALARS):
        raise DefinitionError(f"{path}: expected a value or an operator object, got {alt!r}")
    if attrs and not isinstance(alt, str):
        raise DefinitionError(
            f"{path}: attribute values are strings: write {str(alt).lower()!r} as a string, "
            f'or compare numbers with {{"numeric": ["=", {alt!r}]}}'
        )
    return lambda value: value is not MISSING and _any(value, lambda v: _same(v, alt))


def _same(value: Any, expected: Any) -> bool:
    # JSON types matter: True is not 1, "5" is not 5.
    if isinstance(value, bool) or isinstance(expected, bool):
        return type(value) is type(expected) and value == expected
    return bool(value == expected) and isinstance(value, str) == isinstance(expected, str)


def _operator(alt: Mapping[str, Any], path: str, *, attrs: bool) -> Check:
    if len(alt) != 1:
        raise DefinitionError(
            f"{path}: an operator object has exactly one key, one of {', '.join(_OPERATORS)}"
        )
    ((name, arg),) = alt.items()
    builder = _BUILDERS.get(name)
    if builder is None:
        raise DefinitionError(
            f"{path}: unknown operator {name!r}: use one of {', '.join(_OPERATORS)}"
        )
    return builder(arg, f"{path}.{name}", attrs)


def _prefix(arg: Any, path: str, attrs: bool) -> Check:
    text = _string_arg(arg, path)
    return _on_present(lambda v: isinstance(v, str) and v.startswith(text))


def _suffix(arg: Any, path: str, attrs: bool) -> Check:
    text = _string_arg(arg, path)
    return _on_present(lambda v: isinstance(v, str) and v.endswith(text))


def _ignore_case(arg: Any, path: str, attrs: bool) -> Check:
    text = _string_arg(arg, path).casefold()
    return _on_present(lambda v: isinstance(v, str) and v.casefold() == text)


def _anything_but(arg: Any, path: str, attrs: bool) -> Check:
    excluded = arg if isinstance(arg, list) else [arg]
    if not excluded or not all(isinstance(x, _SCALARS) for x in excluded):
        raise DefinitionError(f"{path}: expected a value or a non-empty list of values")

    def check(value: Any) -> bool:
        if value is MISSING:
            return False
        values = value if isinstance(value, list) else [value]
        return not any(_same(v, x) for v in values for x in excluded)

    return check


def _exists(arg: Any, path: str, attrs: bool) -> Check:
    if not isinstance(arg, bool):
        raise DefinitionError(f"{path}: expected true or false")
    return lambda value: (value is not MISSING) is arg


def _numeric(arg: Any, path: str, attrs: bool) -> Check:
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        raise DefinitionError(
            f"{path}: expected [op, number] or a range [op, number, op, number], "
            'e.g. [">=", 0, "<", 5]'
        )
    tests: list[tuple[Callable[[float, float], bool], float]] = []
    for op, bound in zip(arg[::2], arg[1::2], strict=True):
        if op not in _NUMERIC_OPS:
            raise DefinitionError(
                f"{path}: unknown comparison {op!r}: use one of {list(_NUMERIC_OPS)}"
            )
        if (
            isinstance(bound, bool)
            or not isinstance(bound, int | float)
            or not math.isfinite(bound)
        ):
            raise DefinitionError(f"{path}: {bound!r} is not a finite number")
        tests.append((_NUMERIC_OPS[op], float(bound)))

    def check(v: Any) -> bool:
        number = _as_number(v, from_string=attrs)
        return number is not None and all(test(number, bound) for test, bound in tests)

    return _on_present(check)


def _as_number(value: Any, *, from_string: bool) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if from_string and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _on_present(check: Check) -> Check:
    return lambda value: value is not MISSING and _any(value, check)


def _string_arg(arg: Any, path: str) -> str:
    if not isinstance(arg, str):
        raise DefinitionError(f"{path}: expected a string, got {arg!r}")
    return arg


_BUILDERS: dict[str, Callable[[Any, str, bool], Check]] = {
    "prefix": _prefix,
    "suffix": _suffix,
    "equals-ignore-case": _ignore_case,
    "anything-but": _anything_but,
    "exists": _exists,
    "numeric": _numeric,
}
