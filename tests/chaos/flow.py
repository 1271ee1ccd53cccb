"""The message flow of the chaos tests: numbered inputs, a listener file for ``modelbus
serve`` over the e2e ``behave`` model, and a producer that keeps sending through outages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

from modelbus.connectors import ConnectorContext, make_sink
from modelbus.connectors.base import OutMessage
from modelbus.errors import ConnectorError

__all__ = ["LISTENER", "PERMANENT_EVERY", "inputs", "listener_file", "publish"]

LISTENER = "chaos"
PERMANENT_EVERY = 97  # these inputs are refused by the model: they must be dead-lettered


def inputs(count: int) -> list[bytes]:
    """``{"op": "ok", "n": N}``, every PERMANENT_EVERY-th one ``permanent`` instead."""
    return [
        json.dumps({"op": "permanent" if n % PERMANENT_EVERY == 0 else "ok", "n": n}).encode()
        for n in range(count)
    ]


def listener_file(
    path: Path,
    *,
    source: str,
    out: str,
    dead: str,
    max_in_flight: int = 32,
    extra: str = "",
    name: str = LISTENER,
) -> Path:
    """A listener file with the one listener ``name`` (``extra``: more TOML keys)."""
    path.write_text(
        f"""
[[listeners]]
name = "{name}"
source = "{source}"
model = "e2e/behave@1.*"
outputs = ["{out}"]
error_sink = "{dead}"
max_in_flight = {max_in_flight}
{extra}
[listeners.retry]
max_attempts = 10
initial_backoff_s = 0.2
max_backoff_s = 1.0
"""
    )
    return path


async def publish(
    url: str,
    ctx: ConnectorContext,
    bodies: list[bytes],
    *,
    chunk: int = 100,
    pace_s: float = 0.0,
    patience_s: float = 60.0,
) -> None:
    """Send ``bodies`` as a producer would (through modelbus's sink for the broker), a chunk
    every ``pace_s``; while the broker is away, reconnect and retry a chunk for up to
    ``patience_s``."""
    sink = make_sink(url, ctx)
    await sink.open()
    try:
        for start in range(0, len(bodies), chunk):
            messages = [
                OutMessage(id=f"in-{start + i}", body=body)
                for i, body in enumerate(bodies[start : start + chunk])
            ]
            deadline = time.monotonic() + patience_s
            while True:
                try:
                    await sink.publish(messages)
                    break
                except ConnectorError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
                    with contextlib.suppress(ConnectorError):
                        await sink.close()
                        await sink.open()
            if pace_s:
                await asyncio.sleep(pace_s)
    finally:
        await sink.close()
