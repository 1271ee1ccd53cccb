"""Connector URL options: one parser for every connector, credentials never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbus.connectors import ConnectorContext, make_source
from modelbus.connectors.urls import parse_bool, parse_float, parse_int, parse_query
from modelbus.errors import DefinitionError


def test_options_are_parsed_and_checked() -> None:
    query = parse_query("x://h/p?a=1&b=true&c=0.5&d=", ["a", "b", "c", "d"])
    assert query == {"a": "1", "b": "true", "c": "0.5", "d": ""}
    assert parse_int(query, "a", low=0, high=5) == 1
    assert parse_int(query, "d", low=0, default=7) == 7
    assert parse_bool(query, "b") is True and parse_bool(query, "d", default=True) is True
    assert parse_float(query, "c", 2.0, low=0, high=1) == 0.5
    with pytest.raises(DefinitionError, match="between 2 and 5"):
        parse_int(query, "a", low=2, high=5)
    with pytest.raises(DefinitionError, match="at least 3"):
        parse_int(query, "a", low=3)
    with pytest.raises(DefinitionError, match="must be true or false"):
        parse_bool({"b": "maybe"}, "b")
    with pytest.raises(DefinitionError, match="must be a number"):
        parse_float({"c": "x"}, "c", 1.0, low=0, high=1)
    with pytest.raises(DefinitionError, match="given twice"):
        parse_query("x://h/p?a=1&a=2", ["a"])


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:s3cret-pw@127.0.0.1/test?table=outbox&bogus=1",
        "kafka://app:s3cret-pw@127.0.0.1:9092/topic?bogus=1",
        "amqp://app:s3cret-pw@127.0.0.1:5672/?queue=q&bogus=1",
        "mqtt://app:s3cret-pw@127.0.0.1:1883/t?bogus=1",
        "redis://app:s3cret-pw@127.0.0.1:6379/0?stream=s&bogus=1",
        "nats://app:s3cret-pw@127.0.0.1:4222?stream=s&bogus=1",
    ],
)
def test_an_unknown_option_is_refused_without_echoing_the_password(
    url: str, tmp_path: Path
) -> None:
    with pytest.raises(DefinitionError) as caught:
        make_source(url, ConnectorContext(listener="l", data_dir=tmp_path))
    message = str(caught.value)
    assert "bogus" in message and "://***@127.0.0.1" in message
    assert "s3cret-pw" not in message


@pytest.mark.parametrize(
    ("url", "shared"),
    [
        ("local://orders", False),
        ("dir:///srv/inbox?poll_ms=100", False),
        ("mqtt://127.0.0.1/sensors/%2B", True),  # $share/GROUP/...: the replicas compete
        ("mqtt://127.0.0.1/sensors/%2B?shared=false", False),  # each subscriber gets all
        ("redis://127.0.0.1:6379/0?stream=s", True),
        ("amqp://127.0.0.1/?queue=q", True),
        ("memory://q", True),
        ("webhook://orders?secret=0123456789abcdef", True),  # each node takes its own POSTs
        ("https://sqs.eu-west-1.amazonaws.com/1/q", True),
    ],
)
def test_the_connector_says_whether_its_source_can_be_shared(url: str, shared: bool) -> None:
    from modelbus.connectors import is_shared_source

    assert is_shared_source(url) is shared


def test_whether_a_malformed_source_is_shared_is_not_guessed() -> None:
    from modelbus.connectors import is_shared_source

    with pytest.raises(DefinitionError):
        is_shared_source("dir://")
    with pytest.raises(DefinitionError):
        is_shared_source("mqtt://h/t?shared=perhaps")
