"""Redis Streams kit for the connector contract suite: the shared server at 127.0.0.1:6379,
a fresh stream per queue (deleted with its group keys after the test).

Sources take the default consumer group, one per listener: replicas of a listener (same
name, even in another process) compete, two listeners each get every message.
"""

from __future__ import annotations

import importlib.util
import socket

from tests.brokers.redis.kit import REDIS_ADDRESS, drop_stream, redis_url

from .kits import BrokerKit, Capabilities, QueueUrls


class RedisKit(BrokerKit):
    """``redis://``: deliveries leased (idle time, claimed by the group's other consumers
    after ``lease_s``); one consumer reads a stream in order."""

    name = "redis"
    capabilities = Capabilities(fifo=True, cross_process=True, min_lease_s=0.5, fan_out=True)

    @classmethod
    def unavailable(cls) -> str | None:
        if importlib.util.find_spec("redis") is None:
            return "redis is not installed (pip install -e '.[redis,dev]')"
        return _unreachable(REDIS_ADDRESS)

    async def start(self) -> None:
        self._streams: list[str] = []

    async def stop(self) -> None:
        for stream in self._streams:
            await drop_stream(stream)

    async def new_queue(self, *, lease_s: float) -> QueueUrls:
        stream = self.unique()
        self._streams.append(stream)
        return QueueUrls(
            source_url=redis_url(stream, create=True, lease_s=lease_s),
            sink_url=redis_url(stream, create=True),
        )


def _unreachable(address: str) -> str | None:
    host, port = address.split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return None
    except OSError as exc:
        return f"no Redis at {address}: {exc}"


KITS = [RedisKit]
