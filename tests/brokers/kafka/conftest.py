"""Fixtures of the Kafka tests: one tansu broker per session (started on a free port)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from modelbus.connectors.base import ConnectorContext
from modelbus.connectors.kafka import KafkaSink, KafkaSource, make_sink, make_source

from ..helpers import unique
from .tansu import Tansu

# Lowered so that group joins and rebalances take about a second (NOTES: several otherwise).
TEST_OPTIONS = "session_timeout_s=2"


@pytest.fixture(scope="session")
def tansu() -> Iterator[Tansu]:
    """One tansu for the session (memory storage: give every test its own topic)."""
    with Tansu() as broker:
        yield broker


@pytest.fixture
def ctx(tmp_path: Path) -> ConnectorContext:
    return ConnectorContext(listener=unique("kafka-test"), data_dir=tmp_path)


def kafka_url(bootstrap: str, topic: str, **options: object) -> str:
    query = "&".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items()
    )
    return f"kafka://{bootstrap}/{topic}?{TEST_OPTIONS}" + (f"&{query}" if query else "")


@pytest.fixture
async def topic_url(tansu: Tansu) -> str:
    """The URL of a fresh 3-partition topic (created by whoever opens first)."""
    return kafka_url(tansu.bootstrap, unique("t"), create=True, partitions=3)


@pytest.fixture
async def opened(
    topic_url: str, ctx: ConnectorContext
) -> AsyncIterator[tuple[KafkaSource, KafkaSink]]:
    """An opened source and sink on ``topic_url``; closed afterwards."""
    sink = make_sink(topic_url, ctx)
    await sink.open()
    source = make_source(topic_url, ctx)
    await source.open()
    try:
        yield source, sink
    finally:
        await source.close()
        await sink.close()
