"""PostgreSQL outbox broker kit for the connector contract suite: a fresh outbox table per
queue in the ``test`` database on 127.0.0.1:5432 (``MODELBUS_TEST_POSTGRES_ADMIN_URL``
overrides), dropped when the test ends."""

from __future__ import annotations

import os

import asyncpg

from .kits import BrokerKit, Capabilities, QueueUrls

DATABASE_URL = os.environ.get(
    "MODELBUS_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


class PostgresKit(BrokerKit):
    """``postgresql://`` outbox tables: id order for one consumer (fifo), real leases."""

    name = "postgres"
    capabilities = Capabilities(fifo=True, cross_process=True, min_lease_s=1.0)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._tables: list[str] = []

    @classmethod
    def unavailable(cls) -> str | None:
        return None  # a refused connection fails the test: the server is part of CI

    async def new_queue(self, *, lease_s: float) -> QueueUrls:
        table = self.unique("contract").replace("-", "_")
        self._tables.append(table)
        lease = max(1, round(lease_s))
        url = f"{DATABASE_URL}?table={table}&create=true"
        return QueueUrls(source_url=f"{url}&lease_s={lease}&poll_s=1", sink_url=url)

    async def stop(self) -> None:
        if not self._tables:
            return
        conn = await asyncpg.connect(DATABASE_URL, timeout=10)
        try:
            for table in self._tables:
                await conn.execute(f'DROP TABLE IF EXISTS "{table}"', timeout=30)
        finally:
            await conn.close(timeout=10)


KITS = [PostgresKit]
