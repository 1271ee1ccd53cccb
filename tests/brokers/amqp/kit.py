"""Broker kits for the connector contract suite (tests/connectors/): RabbitMQ with classic
and with quorum queues, on the shared server on 127.0.0.1:5672.

RabbitMQ has no leases (``lease_s`` is None: a delivery stays with its consumer until acked,
released or its connection closes), which :class:`Capabilities` says with ``leases=False``.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from tests.connectors.kits import BrokerKit, Capabilities, QueueUrls

from .conftest import HOST, PORT, PREFIX, amqp_url, delete_queues

__all__ = ["KITS", "AmqpKit", "AmqpQuorumKit"]


class AmqpKit(BrokerKit):
    name = "amqp"
    queue_type: ClassVar[str] = "classic"
    capabilities = Capabilities(fifo=True, cross_process=True, leases=False, pushes_ahead=True)

    @classmethod
    def unavailable(cls) -> str | None:
        import socket

        try:
            socket.create_connection((HOST, PORT), timeout=2).close()
        except OSError as exc:
            return f"RabbitMQ is not reachable at {HOST}:{PORT} ({exc})"
        return None

    async def start(self) -> None:
        self._queues: list[str] = []

    async def new_queue(self, *, lease_s: float) -> QueueUrls:
        name = self.unique(PREFIX)
        self._queues.append(name)
        url = amqp_url(queue=name, create=True, queue_type=self.queue_type)
        return QueueUrls(source_url=url, sink_url=url)

    async def stop(self) -> None:
        for name in self._queues:  # the queue and its delay queues
            await asyncio.wait_for(delete_queues(name), 120)


class AmqpQuorumKit(AmqpKit):
    name = "amqp-quorum"
    queue_type = "quorum"


KITS: list[type[BrokerKit]] = [AmqpKit, AmqpQuorumKit]
