"""Fixtures of the NATS connector tests: the shared server at 127.0.0.1:4222."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modelbus.connectors.base import ConnectorContext

from .kit import drop_stream, unique_stream


@pytest.fixture
def ctx(tmp_path: Path) -> ConnectorContext:
    return ConnectorContext(listener="nats-test", data_dir=tmp_path)


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    """A unique stream name; the stream is deleted afterwards."""
    name = unique_stream()
    yield name
    await drop_stream(name)


@pytest.fixture
async def js() -> AsyncIterator[Any]:
    """A plain nats-py JetStream context on the shared server, to set up and inspect."""
    import nats

    client = await nats.connect("nats://127.0.0.1:4222")
    yield client.jetstream()
    await client.close()
