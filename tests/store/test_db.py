"""The database layer on SQLite and PostgreSQL: URLs, migrations, transactions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, select, text

from modelbus.errors import InvalidInput, MissingExtra
from modelbus.store import schema
from modelbus.store.database import VERSION_TABLE, Database, normalize_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///data/modelbus.sqlite", "sqlite+aiosqlite:///data/modelbus.sqlite"),
        ("sqlite+aiosqlite:////abs/x.sqlite", "sqlite+aiosqlite:////abs/x.sqlite"),
        ("postgresql://u:pw@h:5432/db", "postgresql+asyncpg://u:pw@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize("url", ["mysql://u@h/db", "postgresql+psycopg2://u@h/db", "not a url"])
def test_unsupported_urls_are_refused_with_the_accepted_forms(url: str) -> None:
    with pytest.raises(InvalidInput, match="postgresql://"):
        normalize_url(url)


async def test_missing_asyncpg_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "asyncpg" else real_find_spec(name, *a),
    )
    with pytest.raises(MissingExtra, match=r"pip install 'modelbus\[postgres\]'"):
        await Database.open("postgresql://postgres@127.0.0.1:5432/test")


def _head_revision() -> str | None:
    """The newest revision shipped in modelbus/store/migrations."""
    from alembic.script import ScriptDirectory

    from modelbus.store.migrations import MIGRATIONS_DIR

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def _table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _schema_diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return list(compare_metadata(context, schema.metadata))


async def test_migrate_creates_every_table_and_is_idempotent(blank_database_url: str) -> None:
    db = await Database.open(blank_database_url)
    try:
        async with db.read() as conn:
            assert await conn.run_sync(_table_names) == set()
        await db.migrate()
        await db.migrate()  # a second start changes nothing
        async with db.read() as conn:
            tables = await conn.run_sync(_table_names)
            heads = (await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))).all()
        assert tables == set(schema.metadata.tables) | {VERSION_TABLE}
        assert heads == [(_head_revision(),)]
    finally:
        await db.close()


async def test_migrated_schema_matches_schema_py(db: Database) -> None:
    async with db.read() as conn:
        assert await conn.run_sync(_schema_diff) == []


async def test_concurrent_migrations_from_several_nodes_all_succeed(
    blank_database_url: str,
) -> None:
    nodes = [await Database.open(blank_database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(node.migrate() for node in nodes))
        async with nodes[0].read() as conn:
            count = (await conn.execute(text(f"SELECT count(*) FROM {VERSION_TABLE}"))).scalar()
            tables = await conn.run_sync(_table_names)
        assert count == 1
        assert set(schema.metadata.tables) <= tables
    finally:
        for node in nodes:
            await node.close()


async def test_write_commits_and_rolls_back_on_error(db: Database) -> None:
    row = {"name": "l1", "definition": {}, "enabled": True, "created_at": 1.0, "updated_at": 1.0}
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await conn.execute(schema.listeners.insert().values(**row))
            raise RuntimeError("boom")
    async with db.write() as conn:
        await conn.execute(schema.listeners.insert().values(**{**row, "name": "l2"}))
    async with db.read() as conn:
        names = (await conn.execute(select(schema.listeners.c.name))).scalars().all()
    assert names == ["l2"]


async def test_concurrent_read_then_write_transactions_never_fail(
    db: Database, database_url: str
) -> None:
    """Many writers reading then writing the same row: every increment lands (SQLite takes
    the write lock at BEGIN; PostgreSQL row locks)."""
    nodes = [db, await Database.open(database_url)]
    k = schema.api_keys
    async with nodes[0].write() as conn:
        await conn.execute(
            k.insert().values(id="counter", name="0", secret_hash="", scopes=[], created_at=0.0)
        )

    async def increment(db: Database) -> None:
        async with db.write() as conn:
            query = select(k.c.name).where(k.c.id == "counter")
            if db.dialect == "postgresql":
                query = query.with_for_update()
            value = int((await conn.execute(query)).scalar_one())
            await asyncio.sleep(0)
            await conn.execute(k.update().where(k.c.id == "counter").values(name=str(value + 1)))

    try:
        await asyncio.gather(*(increment(nodes[i % 2]) for i in range(30)))
        async with nodes[1].read() as conn:
            final = (await conn.execute(select(k.c.name).where(k.c.id == "counter"))).scalar()
        assert final == "30"
    finally:
        await nodes[1].close()


async def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite:///{tmp_path}/x.sqlite")
    try:
        async with db.read() as conn:
            journal = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
            foreign_keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar()
            busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar()
        assert (journal, foreign_keys) == ("wal", 1)
        assert busy and busy >= 1000
    finally:
        await db.close()


async def test_foreign_keys_are_enforced(db: Database) -> None:
    version = {
        "owner": "a",
        "name": "b",
        "version": "1.0.0",
        "major": 1,
        "minor": 0,
        "patch": 0,
        "build_hash": "sha256:missing",
        "published": True,
        "created_at": 0.0,
    }
    with pytest.raises(Exception, match=r"(?i)foreign key"):
        async with db.write() as conn:
            await conn.execute(schema.versions.insert().values(**version))
