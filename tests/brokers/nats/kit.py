"""Fresh NATS JetStream (source, sink) pairs on unique streams of the shared server.

source, sink = make_nats_pair(ctx, lease_s=1)
...
await drop_stream(source.stream)          # the stream and its consumers
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from modelbus.connectors.base import ConnectorContext
from modelbus.connectors.nats import NatsSink, NatsSource, make_sink, make_source

__all__ = ["NATS_ADDRESS", "drop_stream", "make_nats_pair", "nats_url", "unique_stream"]

NATS_ADDRESS = "127.0.0.1:4222"


def unique_stream(prefix: str = "mbtest") -> str:
    """A stream name no other test uses (also the root of its subject)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def nats_url(stream: str, *, address: str = NATS_ADDRESS, **options: object) -> str:
    """``nats://ADDRESS?stream=STREAM&subject=STREAM.in&...`` (booleans written true/false;
    ``subject=None`` leaves the subject out)."""
    query: dict[str, str] = {"stream": stream, "subject": f"{stream}.in"}
    for name, value in options.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return f"nats://{address}?{urlencode(query)}"


def make_nats_pair(
    ctx: ConnectorContext, *, stream: str | None = None, **options: object
) -> tuple[NatsSource, NatsSink]:
    """An unopened source and sink on a new stream (``create=true``) of the shared server;
    ``options`` go into the URL (``lease_s=1``...)."""
    url = nats_url(stream or unique_stream(), create=True, **options)
    return make_source(url, ctx), make_sink(url, ctx)


async def drop_stream(stream: str, *, address: str = NATS_ADDRESS) -> None:
    """Delete ``stream`` (and so its consumers) if it exists."""
    import nats
    from nats.js.errors import NotFoundError

    client = await nats.connect(f"nats://{address}", max_reconnect_attempts=1)
    try:
        await client.jetstream().delete_stream(stream)
    except NotFoundError:
        pass
    finally:
        await client.close()
