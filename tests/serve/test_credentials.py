"""Broker credentials in listener definitions, end to end on a real server: encrypted in the
store, ``***`` in every answer and log line, and still good for connecting.

The broker is the machine's PostgreSQL (an outbox table as the source). It trusts local
connections, so any password connects: the password is there to be hidden, not checked."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from modelbus.client import Client
from modelbus.connectors import ConnectorContext, OutMessage, make_sink
from tests.support.server import ModelbusServer

from .conftest import eventually, receive_all, unique

pytestmark = pytest.mark.postgres


def with_password(postgres_url: str, password: str, table: str) -> str:
    return postgres_url.replace("postgres@", f"postgres:{password}@", 1) + f"?table={table}"


async def _insert(url: str, message_id: str, body: bytes) -> None:
    sink = make_sink(url, ConnectorContext(listener="test-producer", data_dir=Path("/tmp")))
    await sink.open()
    try:
        await sink.publish([OutMessage(id=message_id, body=body)])
    finally:
        await sink.close()


async def _drop(postgres_url: str, table: str) -> None:
    conn = await asyncpg.connect(postgres_url, timeout=10)
    try:
        await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    finally:
        await conn.close()


def stored_rows(data_dir: Path) -> str:
    """Everything the store holds about listeners, and the raw database files' bytes."""
    db = sqlite3.connect(data_dir / "modelbus.sqlite")
    try:
        rows = db.execute("SELECT definition FROM listeners").fetchall()
    finally:
        db.close()
    raw = b"".join(p.read_bytes() for p in data_dir.glob("modelbus.sqlite*"))
    return json.dumps([json.loads(r[0]) for r in rows]) + raw.decode("latin-1")


def test_a_password_is_stored_encrypted_shown_masked_and_still_connects(
    server: ModelbusServer, admin: Client, postgres_url: str
) -> None:
    password = f"Pw{uuid.uuid4().hex[:12]}"
    table = f"outbox_{uuid.uuid4().hex[:10]}"
    name = unique("pg-creds")
    source = with_password(postgres_url, password, table) + "&create=true&poll_s=1"
    try:
        created = admin.create_listener(
            {"name": name, "source": source, "model": "test/echo", "outputs": [f"local://{name}"]}
        )
        assert created.definition.source == source  # the admin may manage it: whole

        with server.http() as http:
            made = http.post("/v1/keys", json={"name": "creds-reader", "scopes": ["call:*"]})
        with server.http(made.json()["key"]) as http:
            shown = http.get(f"/v1/listeners/{name}").json()["definition"]
            assert shown["source"].startswith("postgresql://***@127.0.0.1")
            for path in ("/v1/listeners", f"/v1/listeners/{name}", f"/v1/listeners/{name}/status"):
                assert password not in http.get(path).text
        stored = stored_rows(server.data_dir)
        assert password not in stored
        assert "sealed" in stored

        # It connects with the real credentials: a row inserted now is processed.
        asyncio.run(_insert(source.replace("&create=true&poll_s=1", ""), "row-1", b'"hi"'))
        eventually(lambda: admin.runs("row-1", listener=name)[0].status == "succeeded")
        [result] = receive_all(server.data_dir, name)
        assert json.loads(result.body)["data"] == "hi"

        # What a reader's GET shows can be PUT back: every *** keeps the stored value.
        edited = {**shown, "max_in_flight": 4}
        with server.http() as http:
            put = http.put(f"/v1/listeners/{name}", json=edited)
            assert put.status_code == 200, put.text
            assert put.json()["definition"]["max_in_flight"] == 4
            assert put.json()["definition"]["source"] == source
        asyncio.run(_insert(source.replace("&create=true&poll_s=1", ""), "row-2", b'"again"'))
        eventually(lambda: admin.runs("row-2", listener=name)[0].status == "succeeded")
        assert password not in stored_rows(server.data_dir)
    finally:
        asyncio.run(_drop(postgres_url, table))
        admin.delete_listener(name)
    assert password not in server.log()


def test_errors_and_logs_never_show_a_password(
    server: ModelbusServer, admin: Client, postgres_url: str
) -> None:
    password = f"Pw{uuid.uuid4().hex[:12]}"
    name = unique("pg-down")
    # Nothing listens on port 9: opening the source fails, with the URL in hand.
    dead = f"postgresql://postgres:{password}@127.0.0.1:9/test?table=nowhere"
    definition: dict[str, Any] = {"name": name, "source": dead, "model": "test/echo"}
    with server.http() as http:
        refused = http.post("/v1/listeners", json=definition)
        assert refused.status_code == 400
        assert "cannot open the source postgresql://***@127.0.0.1:9/***?table=***" in refused.text
        assert password not in refused.text
        bad_option = http.post("/v1/listeners", json={**definition, "source": dead + "&x=1"})
        assert bad_option.status_code == 400
        assert password not in bad_option.text
        stored = http.post("/v1/listeners", params={"check": "false"}, json=definition)
        assert stored.status_code == 201
    status = eventually(lambda: (s := admin.listener_status(name)).state == "degraded" and s)
    assert status.problems and status.reason
    assert password not in json.dumps(status.model_dump())
    eventually(lambda: f"listener {name} degraded" in server.log())
    admin.delete_listener(name)
    assert password not in server.log()
