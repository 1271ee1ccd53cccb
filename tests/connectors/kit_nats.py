"""NATS JetStream kit for the connector contract suite: the shared server at
127.0.0.1:4222, a fresh stream per queue (deleted with its consumers after the test).

Sources take the default durable consumer, one per listener: replicas of a listener (same
name, even in another process) compete, two listeners each get every message. The server's
``max_payload`` is NATS's default 1 MiB, headers included, so the large-message test sends
1 MiB less 1 KiB here; tests/brokers/nats sends a full 1 MiB to a server configured for it.
"""

from __future__ import annotations

import importlib.util
import socket

from tests.brokers.nats.kit import NATS_ADDRESS, drop_stream, nats_url

from .kits import BrokerKit, Capabilities, QueueUrls


class NatsKit(BrokerKit):
    """``nats://``: deliveries leased (the consumer's ack wait); one consumer reads a
    stream in order."""

    name = "nats"
    capabilities = Capabilities(
        fifo=True,
        cross_process=True,
        min_lease_s=0.5,
        fan_out=True,
        max_message_bytes=1024 * 1024 - 1024,
    )

    @classmethod
    def unavailable(cls) -> str | None:
        if importlib.util.find_spec("nats") is None:
            return "nats-py is not installed (pip install -e '.[nats,dev]')"
        return _unreachable(NATS_ADDRESS)

    async def start(self) -> None:
        self._streams: list[str] = []

    async def stop(self) -> None:
        for stream in self._streams:
            await drop_stream(stream)

    async def new_queue(self, *, lease_s: float) -> QueueUrls:
        stream = self.unique()
        self._streams.append(stream)
        return QueueUrls(
            source_url=nats_url(stream, create=True, lease_s=lease_s),
            sink_url=nats_url(stream, create=True),
        )


def _unreachable(address: str) -> str | None:
    host, port = address.split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return None
    except OSError as exc:
        return f"no NATS at {address}: {exc}"


KITS = [NatsKit]
