"""The listener runtime end to end over NATS JetStream (the shared server)."""

from __future__ import annotations

from pathlib import Path

from ..listener_suite import ListenerOverBroker
from ..servers import BrokerServer, NatsServer
from .kit import drop_stream, nats_url, unique_stream


class TestNatsListener(ListenerOverBroker):
    streams: list[str]

    def queue_url(self, role: str) -> str:
        stream = unique_stream(f"mbtest-{role}")
        self.streams = [*getattr(self, "streams", []), stream]
        # definition.py's "sink is the source itself" check compares scheme, host and path
        # only, and nats:// names its stream in the query: address the other queues through
        # "localhost" until that check asks the connectors.
        address = "127.0.0.1:4222" if role == "in" else "localhost:4222"
        return nats_url(stream, address=address, create=True, lease_s=1)

    async def drop_queues(self) -> None:
        for stream in getattr(self, "streams", []):
            await drop_stream(stream)

    def private_server(self, directory: Path) -> BrokerServer:
        return NatsServer(directory)

    def private_url(self, server: BrokerServer, role: str) -> str:
        host = "127.0.0.1" if role == "in" else "localhost"  # see queue_url
        return nats_url(role, address=f"{host}:{server.port}", create=True, lease_s=1, timeout_s=2)
