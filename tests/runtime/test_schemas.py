"""Schema checks: the fast path accepts what is valid, and jsonschema keeps the last word."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelbus.errors import InputRejected
from modelbus.registry.launch import RunnerSpec
from modelbus.runtime.invocation import Payload
from modelbus.runtime.service import SchemaChecks

DIGITS = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["pixels"],
    "properties": {
        "pixels": {"type": "array", "minItems": 64, "maxItems": 64, "items": {"type": "number"}}
    },
}


def spec(schema: dict[str, Any], key: str) -> RunnerSpec:
    return RunnerSpec(key=key, argv=("true",), cwd=Path("."), input_schema=schema)


def test_valid_input_passes_and_invalid_input_is_named() -> None:
    checks = SchemaChecks()
    version = spec(DIGITS, "digits")
    checks.check_input(version, Payload.from_json({"pixels": [0.5] * 64}))
    with pytest.raises(InputRejected, match=r"pixels/3: 'x' is not of type 'number'"):
        checks.check_input(version, Payload.from_json({"pixels": [0, 0, 0, "x", *[0] * 60]}))
    with pytest.raises(InputRejected, match="'pixels' is a required property"):
        checks.check_input(version, Payload.from_json({}))


@pytest.mark.parametrize(
    ("schema", "bad"),
    [
        # 2020-12 keywords the fast compiler does not know: jsonschema alone must judge
        ({"type": "array", "prefixItems": [{"type": "integer"}]}, ["one"]),
        ({"type": "object", "dependentRequired": {"a": ["b"]}}, {"a": 1}),
        ({"type": "array", "contains": {"type": "string"}, "minContains": 2}, ["x", 1]),
        (
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$defs": {"n": {"type": "integer"}},
                "items": {"$ref": "#/$defs/n"},
            },
            [1, "two"],
        ),
    ],
)
def test_newer_keywords_are_still_enforced(schema: dict[str, Any], bad: Any) -> None:
    with pytest.raises(InputRejected):
        SchemaChecks().check_input(spec(schema, repr(schema)), Payload.from_json(bad))


def test_a_draft_2020_12_schema_in_common_keywords_takes_the_fast_path() -> None:
    checks = SchemaChecks()
    checks.check_input(spec(DIGITS, "digits"), Payload.from_json({"pixels": [1] * 64}))
    assert checks._fast["digits", "input"] is not None  # compiled, not left to jsonschema


def test_a_value_only_the_fast_check_refuses_is_judged_by_jsonschema() -> None:
    # fastjsonschema checks "format"; jsonschema treats it as an annotation (accepted).
    schema = {"type": "string", "format": "email"}
    SchemaChecks().check_input(spec(schema, "email"), Payload.from_json("not an email"))
