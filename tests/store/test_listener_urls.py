"""Listener URLs at rest, on both backends: sealed whole by the listener manager, and
migration 0009 (``encrypt_listener_urls``) seals the rows stored in clear before it. The
raw rows are read back as text and searched for the secrets."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, text

from modelbus.listeners.credentials import Credentials
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.manager import ListenerManager
from modelbus.store.database import Database
from modelbus.store.migrations import alembic_config
from modelbus.store.secrets import SecretBox

SECRETS = ("T0AB12CD3", "XyZsecretPath", "c0deSecret", "S1gSecret", "R3d1sT0ken", "Q-name-9")
DEFINITION: dict[str, Any] = {
    "name": "at-rest",
    "source": "redis://R3d1sT0ken@cache:6379/0?stream=Q-name-9",
    "model": "acme/echo@1.*",
    "outputs": [
        "https://hooks.slack.com/services/T0AB12CD3/B0/XyZsecretPath",
        "https://fn.example/api?code=c0deSecret&sig=S1gSecret",
    ],
    "error_sink": "local://dead",
    "enabled": False,
}


async def raw_rows(db: Database) -> str:
    """Every stored listener definition as the database holds it, as text."""
    cast = "CAST(definition AS TEXT)"
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text(f"SELECT name, {cast} FROM listeners"))).all()
    return "\n".join(f"{name}: {definition}" for name, definition in rows)


async def test_the_manager_stores_every_url_encrypted(
    db: Database, tmp_path: Path, backend: str
) -> None:
    credentials = Credentials(SecretBox.load(tmp_path))
    manager = ListenerManager(
        engine=db.engine,
        invoker=None,  # type: ignore[arg-type]  # a disabled listener never invokes
        data_dir=tmp_path,
        registry=CollectorRegistry(),
        credentials=credentials,
    )
    definition = ListenerDefinition.from_mapping(DEFINITION)
    await manager.create(definition, check=False)
    raw = await raw_rows(db)
    assert "sealed" in raw and "hooks.slack.com" in raw  # the host is kept, by its shape
    for secret in SECRETS:
        assert secret not in raw, (backend, secret)
    assert (await manager.get("at-rest")).definition == definition


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


async def test_migration_0009_seals_the_urls_stored_in_clear(
    blank_database_url: str, tmp_path: Path, backend: str
) -> None:
    box = SecretBox.load(tmp_path)
    partly = Credentials(box).seal(ListenerDefinition.from_mapping({**DEFINITION, "name": "p"}))
    partly["outputs"][0] = DEFINITION["outputs"][0]  # as if stored clear by an older server
    del partly["sealed"]["outputs.0"]
    db = await Database.open(blank_database_url)
    try:
        async with db.write() as conn:
            await conn.run_sync(_upgrade, "0005")
            for name, definition in (("clear", {**DEFINITION, "name": "clear"}), ("p", partly)):
                await conn.execute(
                    text(
                        "INSERT INTO listeners (name, definition, enabled, created_at, "
                        "updated_at) VALUES (:n, :d, false, :t, :t)"
                    ),
                    {"n": name, "d": json.dumps(definition), "t": time.time()},
                )
        assert "R3d1sT0ken" in await raw_rows(db)

        with pytest.raises(RuntimeError, match="secret key"):
            await db.migrate()  # it cannot encrypt without the key: nothing changes
        assert "R3d1sT0ken" in await raw_rows(db)

        await db.migrate(secrets=box)
        raw = await raw_rows(db)
        for secret in SECRETS:
            assert secret not in raw, (backend, secret)
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT name, definition FROM listeners"))).all()
        credentials = Credentials(box)
        for name, stored in rows:
            stored = json.loads(stored) if isinstance(stored, str) else stored
            opened = ListenerDefinition.from_mapping(credentials.open(stored))
            assert opened == ListenerDefinition.from_mapping({**DEFINITION, "name": name})
        await db.migrate(secrets=box)  # once at head, nothing more to do
    finally:
        await db.close()
