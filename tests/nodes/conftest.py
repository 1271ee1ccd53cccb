"""Several ``modelbus serve`` processes (nodes) on loopback, sharing one fresh PostgreSQL
database, each with its own data directory (as on separate machines) and the same secret
key. Heartbeats and leases are short (``FAST``) so that gone nodes and failovers show in
seconds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.support.fixtures import MODELS_DIR
from tests.support.postgres import fresh_database
from tests.support.server import ModelbusServer

HEARTBEAT_S = 0.5
NODE_TIMEOUT_S = 3.0
FAST = ("--heartbeat-interval", str(HEARTBEAT_S), "--node-timeout", str(NODE_TIMEOUT_S))


@dataclass(kw_only=True)
class Nodes:
    """The nodes of one test: :meth:`start` adds one (the first start prints the admin key,
    the others reuse it)."""

    tmp: Path
    database_url: str
    secret_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    servers: list[ModelbusServer] = field(default_factory=list)

    def start(self, name: str, *args: str, secret_key: str | None = None) -> ModelbusServer:
        env = {"MODELBUS_SECRET_KEY": secret_key or self.secret_key}
        server = ModelbusServer.start(
            self.tmp / name,
            database_url=self.database_url,
            env=env,
            args=(*FAST, *args),
            admin_key=self.servers[0].admin_key if self.servers else "",
        )
        self.servers.append(server)
        return server

    def push_echo(self) -> None:
        """Push the echo model through every node: each keeps the artifacts it runs in its
        own data directory (the store's rows are shared; a shared artifact store is the
        registry's business)."""
        for server in self.servers:
            with server.client() as client:
                client.push(MODELS_DIR / "echo", version="1.0.0")


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    with fresh_database("modelbus_nodes") as url:
        group = Nodes(tmp=tmp_path, database_url=url)
        try:
            yield group
        finally:
            for server in group.servers:
                server.stop()
