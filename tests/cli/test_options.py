"""The CLI's shared option helpers, without a server."""

from __future__ import annotations

import pytest

from modelbus.cli.options import default_of
from modelbus.client.schemas import ListenerFields, RetryFields
from modelbus.config import DEFAULT_MAX_BODY_BYTES, DEFAULT_PORT, Settings


def test_default_of_reads_pydantic_models_and_dataclasses_as_help_shows_them() -> None:
    assert default_of(RetryFields, "jitter") == "0.2"
    assert default_of(RetryFields, "initial_backoff_s") == "1"  # 1.0 reads as 1
    assert default_of(ListenerFields, "max_body_bytes") == str(DEFAULT_MAX_BODY_BYTES)
    assert default_of(Settings, "port") == str(DEFAULT_PORT)


@pytest.mark.parametrize(
    ("owner", "name"),
    [(ListenerFields, "name"), (Settings, "data_dir"), (RetryFields, "no_such_field")],
)
def test_default_of_refuses_a_field_without_a_plain_default(owner: type, name: str) -> None:
    with pytest.raises(LookupError):
        default_of(owner, name)
