"""Fixtures of the PostgreSQL outbox tests: the session's database (tests/conftest.py),
a fresh outbox table per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from modelbus.connectors.base import ConnectorContext
from modelbus.connectors.postgres import OutboxSink, OutboxSource, make_sink, make_source

from ..helpers import unique

pytestmark = pytest.mark.postgres


@pytest.fixture
def ctx(tmp_path: Path) -> ConnectorContext:
    return ConnectorContext(listener=unique("pg-test"), data_dir=tmp_path)


def outbox_url(database_url: str, table: str, **options: object) -> str:
    query = "&".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items()
    )
    return f"{database_url}?table={table}" + (f"&{query}" if query else "")


@pytest.fixture
def table() -> str:
    return unique("outbox")


@pytest.fixture
def table_url(postgres_url: str, table: str) -> str:
    """A fresh outbox (created by whoever opens first), 2-second leases, 1-second polls."""
    return outbox_url(postgres_url, table, create=True, lease_s=2, poll_s=1)


@pytest.fixture
async def admin(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the session's database, to set up and inspect."""
    conn = await asyncpg.connect(postgres_url, timeout=10)
    try:
        yield conn
    finally:
        await conn.close(timeout=10)


@pytest.fixture
async def opened(
    table_url: str, ctx: ConnectorContext
) -> AsyncIterator[tuple[OutboxSource, OutboxSink]]:
    sink = make_sink(table_url, ctx)
    await sink.open()
    source = make_source(table_url, ctx)
    await source.open()
    try:
        yield source, sink
    finally:
        await source.close()
        await sink.close()
