"""JSON from outside: every failure is a ValueError whose message suits the sender."""

from __future__ import annotations

import pytest

from modelbus.runtime import jsondoc


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"[" * 5000 + b"]" * 5000, "JSON nested too deeply"),
        (b'["\\ud800"]', "lone surrogate"),
        # int() itself would advise sys.set_int_max_str_digits(): no help to a client.
        (b"[" + b"9" * 5000 + b"]", "a number of more than 4300 digits: send it as a string"),
    ],
)
def test_what_is_not_json_says_why_to_the_sender(data: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says) as refused:
        jsondoc.loads(data)
    assert "sys." not in str(refused.value)
