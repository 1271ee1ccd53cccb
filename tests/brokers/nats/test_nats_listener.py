"""The listener runtime over a NATS JetStream server of the test's own: down at start, restarted
mid-run (tests/brokers/listener_suite.py)."""

from __future__ import annotations

from pathlib import Path

from ..listener_suite import ListenerOverBroker
from ..servers import BrokerServer, NatsServer
from .kit import nats_url


class TestNatsListener(ListenerOverBroker):
    def private_server(self, directory: Path) -> BrokerServer:
        return NatsServer(directory)

    def private_url(self, server: BrokerServer, role: str) -> str:
        return nats_url(
            role, address=f"127.0.0.1:{server.port}", create=True, lease_s=1, timeout_s=2
        )
