"""Fresh Redis Streams (source, sink) pairs on unique streams of the shared server.

source, sink = make_redis_pair(ctx, lease_s=1)
...
await drop_stream(stream_of(source))      # the stream and the keys the groups kept
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from modelbus.connectors.base import ConnectorContext
from modelbus.connectors.redis import RedisSink, RedisSource, make_sink, make_source

__all__ = ["REDIS_ADDRESS", "drop_stream", "make_redis_pair", "redis_url", "unique_stream"]

REDIS_ADDRESS = "127.0.0.1:6379"


def unique_stream(prefix: str = "mbtest") -> str:
    """A stream name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def redis_url(stream: str, *, address: str = REDIS_ADDRESS, **options: object) -> str:
    """``redis://ADDRESS/0?stream=STREAM&...`` (booleans written true/false)."""
    query = {"stream": stream}
    query.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()})
    return f"redis://{address}/0?{urlencode(query)}"


def make_redis_pair(
    ctx: ConnectorContext, *, stream: str | None = None, **options: object
) -> tuple[RedisSource, RedisSink]:
    """An unopened source and sink on a new stream (``create=true``) of the shared server;
    ``options`` go into the URL (``lease_s=1``...)."""
    url = redis_url(stream or unique_stream(), create=True, **options)
    return make_source(url, ctx), make_sink(url, ctx)


async def drop_stream(stream: str, *, address: str = REDIS_ADDRESS) -> None:
    """Delete ``stream`` and every key derived from it (groups' retry/parking/due keys)."""
    from redis.asyncio import Redis

    host, port = address.split(":")
    client = Redis(host=host, port=int(port))
    try:
        keys = [key async for key in client.scan_iter(match=f"{stream}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
