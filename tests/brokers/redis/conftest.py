"""Fixtures of the Redis connector tests: the shared server at 127.0.0.1:6379."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modelbus.connectors.base import ConnectorContext

from .kit import drop_stream, unique_stream


@pytest.fixture
def ctx(tmp_path: Path) -> ConnectorContext:
    return ConnectorContext(listener="redis-test", data_dir=tmp_path)


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    """A unique stream name; the stream and its derived keys are deleted afterwards."""
    name = unique_stream()
    yield name
    await drop_stream(name)


@pytest.fixture
async def admin() -> AsyncIterator[Any]:
    """A plain redis-py client on the shared server, to set up and inspect."""
    from redis.asyncio import Redis

    client = Redis(host="127.0.0.1", port=6379)
    yield client
    await client.aclose()
