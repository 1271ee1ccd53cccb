"""Fixtures for the security tests: the shared real ``modelbus serve`` (tests.support) and a
few helpers to make keys and read the server's store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.fixtures import admin, modelbus_server, published, server
from tests.support.server import ModelbusServer

__all__ = ["admin", "make_key", "modelbus_server", "published", "server", "store_rows"]


def make_key(server: ModelbusServer, *scopes: str, name: str = "security-test") -> str:
    """A new API key with ``scopes`` (made with the admin key, through the API)."""
    with server.http() as http:
        answer = http.post("/v1/keys", json={"name": name, "scopes": list(scopes)})
    assert answer.status_code == 201, answer.text
    key: str = answer.json()["key"]
    return key


def store_rows(server: ModelbusServer, query: str) -> Iterator[dict[str, Any]]:
    """Rows of the server's SQLite store, read as any process on the machine could."""
    path = Path(server.data_dir) / "modelbus.sqlite"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        yield from (dict(row) for row in conn.execute(query))
