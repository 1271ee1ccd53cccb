"""The whole server on PostgreSQL: a fresh database, first start, push, call, keys, a job."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fixtures import MODELS_DIR
from tests.support.jobs import wait_job
from tests.support.postgres import fresh_database
from tests.support.server import ModelbusServer

pytestmark = pytest.mark.postgres


def test_server_on_postgresql_end_to_end(tmp_path: Path) -> None:
    with (
        fresh_database() as url,
        ModelbusServer.start(tmp_path / "data", database_url=url) as server,
    ):
        with server.client() as admin:
            pushed = admin.push(MODELS_DIR / "strict", version="1.0.0")
            assert pushed.published
            assert admin.call("test/strict@1.*", {"text": "pg"}).value == {"text": "PG"}
            key = admin.create_key("pg caller", ["call:test/strict"])
        with server.http(key.key) as http:
            job = http.post("/v1/models/test/strict/jobs", json={"text": "later"}).json()
            assert wait_job(http, job["id"])["result"]["result"] == {"text": "LATER"}
            assert http.get("/v1/models").json()[0]["name"] == "strict"
        server.restart()  # the store, keys and versions are in PostgreSQL
        assert "admin API key" not in server.log()
        with server.client(key.key) as caller:
            assert caller.call("test/strict", {"text": "again"}).version == "1.0.0"
