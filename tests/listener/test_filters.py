from __future__ import annotations

from typing import Any

import pytest

from modelbus.errors import DefinitionError
from modelbus.listeners.filters import MISSING, compile_filter

BODY = {
    "type": "invoice",
    "amount": 250,
    "customer": {"tier": "gold-plus", "tags": ["vip", "eu"]},
    "flag": True,
    "note": None,
}


def matches(spec: dict[str, Any], body: Any = BODY, attrs: dict[str, str] | None = None) -> bool:
    return compile_filter(spec).matches(body, attrs or {})


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"type": ["invoice", "receipt"]}, True),
        ({"type": "invoice"}, True),
        ({"type": ["memo"]}, False),
        ({"amount": [250]}, True),
        ({"amount": ["250"]}, False),  # JSON types matter
        ({"flag": [1]}, False),
        ({"flag": [True]}, True),
        ({"note": [None]}, True),
        ({"customer": {"tier": [{"prefix": "gold"}]}}, True),
        ({"customer": {"tier": [{"suffix": "plus"}]}}, True),
        ({"customer": {"tier": [{"equals-ignore-case": "GOLD-PLUS"}]}}, True),
        ({"customer": {"tags": ["eu"]}}, True),  # any element of an array
        ({"customer": {"tags": [{"anything-but": ["vip", "eu"]}]}}, False),
        ({"type": [{"anything-but": "memo"}]}, True),
        ({"amount": [{"numeric": [">", 100, "<=", 250]}]}, True),
        ({"amount": [{"numeric": [">", 250]}]}, False),
        ({"missing": [{"exists": False}]}, True),
        ({"missing": [{"exists": True}]}, False),
        ({"note": [{"exists": True}]}, True),  # null is present
        ({"missing": ["x"]}, False),
        ({"type": ["invoice"], "amount": [{"numeric": ["<", 10]}]}, False),  # AND
        ({"customer": {"tier": ["silver", {"prefix": "gold"}]}}, True),  # OR
    ],
)
def test_body_patterns(pattern: dict[str, Any], expected: bool) -> None:
    assert matches({"body": pattern}) is expected


def test_attribute_patterns_compare_strings_and_numeric_strings() -> None:
    spec = {"attributes": {"key": [{"suffix": ".pdf"}], "size": [{"numeric": ["<", 1000]}]}}
    assert matches(spec, attrs={"key": "a/b.pdf", "size": "999"})
    assert not matches(spec, attrs={"key": "a/b.pdf", "size": "1000"})
    assert not matches(spec, attrs={"key": "a/b.png", "size": "1"})
    assert not matches(spec, attrs={"key": "a/b.pdf", "size": "big"})


def test_body_patterns_never_match_non_objects() -> None:
    spec = {"body": {"missing": [{"exists": False}]}}
    assert not matches(spec, body=MISSING)
    assert not matches(spec, body=[1, 2])
    assert matches({}, body=MISSING)
    assert compile_filter(None).matches(MISSING, {})


@pytest.mark.parametrize(
    ("spec", "advice"),
    [
        ({"bodies": {}}, "only 'body' and 'attributes'"),
        ({"body": {"a": {"prefix": "x"}}}, "must sit inside a list"),
        ({"body": {"a": [{"regex": "x"}]}}, "unknown operator 'regex'"),
        ({"body": {"a": [{"numeric": [">"]}]}}, "expected [op, number]"),
        ({"body": {"a": [{"numeric": ["~", 1]}]}}, "unknown comparison"),
        ({"body": {"a": [{"numeric": [">", "1"]}]}}, "not a finite number"),
        ({"body": {"a": [{"exists": "yes"}]}}, "expected true or false"),
        ({"body": {"a": []}}, "matches nothing"),
        ({"body": {}}, "non-empty object"),
        ({"attributes": {"size": [5]}}, "attribute values are strings"),
        ({"attributes": {"a": {"b": ["c"]}}}, "attributes are flat"),
        ({"body": {"a": [{"prefix": "x", "suffix": "y"}]}}, "exactly one key"),
    ],
)
def test_bad_filters_are_refused_with_advice(spec: dict[str, Any], advice: str) -> None:
    with pytest.raises(DefinitionError) as info:
        compile_filter(spec)
    assert advice in str(info.value)
    assert str(info.value).startswith("filter")  # says where


def test_patterns_nest_at_most_32_deep() -> None:
    deep: dict[str, Any] = {"a": ["x"]}
    for _ in range(1000):
        deep = {"a": deep}
    with pytest.raises(DefinitionError, match="nest at most 32 objects deep"):
        compile_filter({"body": deep})
    shallow: dict[str, Any] = {"a": ["x"]}
    value: Any = {"a": "x"}
    for _ in range(31):
        shallow, value = {"a": shallow}, {"a": value}
    assert matches({"body": shallow}, value)
