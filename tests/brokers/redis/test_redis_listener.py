"""The listener runtime over a Redis Streams server of the test's own: down at start, restarted
mid-run (tests/brokers/listener_suite.py)."""

from __future__ import annotations

from pathlib import Path

from ..listener_suite import ListenerOverBroker
from ..servers import BrokerServer, RedisServer
from .kit import redis_url


class TestRedisListener(ListenerOverBroker):
    def private_server(self, directory: Path) -> BrokerServer:
        return RedisServer(directory)

    def private_url(self, server: BrokerServer, role: str) -> str:
        return redis_url(
            role, address=f"127.0.0.1:{server.port}", create=True, lease_s=1, timeout_s=2
        )
