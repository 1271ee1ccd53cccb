"""Shared fixtures: databases on both backends.

- ``postgres_url`` (session): a fresh PostgreSQL database created for this test session on
  127.0.0.1:5432 under a unique name and dropped afterwards; tests needing it are skipped,
  saying why, only when the server does not answer. ``MODELBUS_TEST_POSTGRES_ADMIN_URL``
  overrides the server (default ``postgresql://postgres@127.0.0.1:5432/test``).
- ``backend``: parametrized over ``sqlite`` and ``postgresql``; every test using the fixtures
  below runs once per backend.
- ``db``: a :class:`modelbus.store.database.Database` migrated to head with all tables empty (a new
  SQLite file under the test's temp dir, or the session's PostgreSQL database, truncated).
- ``database_url``: the URL ``db`` uses (to open more connections, as other nodes would).
- ``blank_database_url``: that database with no tables at all (for migration tests).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from modelbus.store import schema
from modelbus.store.database import VERSION_TABLE, Database

ADMIN_URL = os.environ.get(
    "MODELBUS_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
CONNECT_TIMEOUT_S = 5.0


CHAOS_SIZE = 400  # tests/chaos/test_scale.py's inputs per broker unless told


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-size",
        type=int,
        default=int(os.environ.get("MODELBUS_CHAOS_SIZE", CHAOS_SIZE)),
        help="inputs per broker of the chaos suite's scale run (tests/chaos/test_scale.py; "
        f"env MODELBUS_CHAOS_SIZE; default {CHAOS_SIZE}); past the default it has no timeout",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A scale run bigger than CI's takes as long as it takes (pytest-timeout's limit off)."""
    if config.getoption("chaos_size") > CHAOS_SIZE:
        for item in items:
            if item.nodeid.startswith("tests/chaos/test_scale.py"):
                item.add_marker(pytest.mark.timeout(0))


def pytest_configure(config: pytest.Config) -> None:
    """The main process makes the folder the chaos suite's tables go to (tests/chaos)."""
    if not hasattr(config, "workerinput") and "MODELBUS_CHAOS_REPORT_DIR" not in os.environ:
        os.environ["MODELBUS_CHAOS_REPORT_DIR"] = tempfile.mkdtemp(prefix="chaos-report-")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the chaos suite's accounting tables, from every worker, at the end."""
    folder = os.environ.get("MODELBUS_CHAOS_REPORT_DIR")
    if not folder or hasattr(terminalreporter.config, "workerinput"):
        return
    tables = sorted(Path(folder).glob("*.txt"), key=lambda path: path.stat().st_mtime)
    if tables:
        terminalreporter.section("chaos accounting")
        for table in tables:
            terminalreporter.write_line(table.read_text())
    shutil.rmtree(folder, ignore_errors=True)


def _with_database(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to completion on a fresh loop in a thread (a test's loop may be running)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_S)
    try:
        await conn.execute(statement, timeout=30)
    finally:
        await conn.close(timeout=CONNECT_TIMEOUT_S)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this session (created now, dropped at the end)."""
    name = f"modelbus_test_{uuid.uuid4().hex[:12]}"
    try:
        _run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_URL} ({exc!r})")
    try:
        yield _with_database(ADMIN_URL, name)
    finally:
        _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _reset_postgres(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public", timeout=30)
    finally:
        await conn.close(timeout=CONNECT_TIMEOUT_S)


async def _empty_postgres_tables(url: str) -> bool:
    """Empty every table of a database migrated to head; False if it is not migrated."""
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        head = await conn.fetchval(f"SELECT to_regclass('{VERSION_TABLE}')", timeout=30)
        if head is None:
            return False
        tables = ", ".join(f'"{t}"' for t in schema.metadata.tables)
        await conn.execute(f"TRUNCATE {tables} CASCADE", timeout=30)
        return True
    finally:
        await conn.close(timeout=CONNECT_TIMEOUT_S)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgresql``: tests using the database fixtures run once per backend."""
    return str(request.param)


@pytest.fixture
def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """This test's database: a new SQLite file, or the session's PostgreSQL database
    (its content is whatever the fixtures below left: use ``db`` or ``blank_database_url``)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/modelbus.sqlite"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def blank_database_url(database_url: str, backend: str) -> str:
    """``database_url`` with nothing in it: no tables at all (for migration tests)."""
    if backend == "postgresql":
        await _reset_postgres(database_url)
    return database_url


@pytest.fixture
async def db(database_url: str, backend: str) -> AsyncIterator[Database]:
    """A database migrated to head with every table empty, once per backend."""
    if backend == "postgresql" and not await _empty_postgres_tables(database_url):
        await _reset_postgres(database_url)
    database = await Database.open(database_url)
    try:
        await database.migrate()
        yield database
    finally:
        await database.close()
