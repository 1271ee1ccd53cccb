"""``listeners create`` flags become the definition's nested fields."""

from __future__ import annotations

from modelbus.cli.listeners import _definition_from_flags
from modelbus.listeners.definition import ListenerDefinition

BASE = {"name": "n", "source": "local://in", "model": "a/b"}


def test_claim_check_flags_make_the_claim_check_field() -> None:
    flags = {**BASE, "url": "s3://large/results/", "over_bytes": 4096, "max_attempts": None}
    definition = ListenerDefinition.from_mapping(_definition_from_flags(flags))
    assert definition.claim_check is not None
    assert (definition.claim_check.url, definition.claim_check.over_bytes) == (
        "s3://large/results/",
        4096,
    )
    plain = _definition_from_flags({**BASE, "url": None, "over_bytes": None})
    assert "claim_check" not in plain and ListenerDefinition.from_mapping(plain).claim_check is None
