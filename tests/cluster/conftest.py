"""A cluster of ``modelbus serve`` processes (nodes) on loopback: one fresh PostgreSQL
database, moto's S3 as the shared artifact store (reached through the usual AWS settings),
the same secret key on every node (stored broker passwords decrypt everywhere), short
heartbeats so that a killed node is shown gone in seconds. Plus the chaos suite's report
fixture: the accounting tables are printed with the session's summary."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from cryptography.fernet import Fernet

from tests.aws.motoserver import FAKE_CREDENTIALS, MotoServer
from tests.chaos.conftest import report
from tests.nodes.conftest import FAST
from tests.support.postgres import fresh_database
from tests.support.server import ModelbusServer

__all__ = ["BUCKET", "Cluster", "cluster", "report"]

BUCKET = "modelbus-artifacts"


@dataclass(kw_only=True)
class Cluster:
    """The nodes of one test: :meth:`start` adds one (the first start prints the admin key,
    the others reuse it). Every node has its own data directory, as on separate machines."""

    tmp: Path
    database_url: str
    moto: MotoServer
    secret_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    servers: dict[str, ModelbusServer] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.moto.endpoint_url,
            "AWS_REGION": self.moto.region,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "MODELBUS_ARTIFACTS": f"s3://{BUCKET}/models",
            "MODELBUS_SECRET_KEY": self.secret_key,
        }

    def start(self, name: str) -> ModelbusServer:
        """Start node ``name`` (blocking until its ``/health`` answers)."""
        first = next(iter(self.servers.values()), None)
        server = ModelbusServer.start(
            self.tmp / name,
            database_url=self.database_url,
            env=self.env(),
            args=FAST,
            admin_key=first.admin_key if first else "",
        )
        self.servers[name] = server
        return server

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """An empty cluster (no node started yet) with its own moto server and database."""
    with MotoServer() as moto, fresh_database("modelbus_cluster") as url:
        s3 = boto3.client(
            "s3",
            region_name=moto.region,
            endpoint_url=moto.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket=BUCKET)
        group = Cluster(tmp=tmp_path, database_url=url, moto=moto)
        try:
            yield group
        finally:
            group.stop()
