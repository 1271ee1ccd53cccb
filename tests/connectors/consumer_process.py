"""A consumer in its own OS process, for the contract suite's cross-process tests.

    python consumer_process.py hold  URL DATA_DIR LISTENER COUNT
        print "ready" once subscribed, receive COUNT deliveries (never settled), print their
        ids as one JSON line, then wait to be killed.
    python consumer_process.py drain URL DATA_DIR LISTENER WORK_MS IDLE_S
        print "ready", then receive one delivery at a time, "work" WORK_MS, ack it and print
        its id; exit after IDLE_S without deliveries.

Only the connector registry is used, so it works for every broker kit whose URLs are
reachable from another process. LISTENER is the kit's listener name: brokers that give each
listener its own consumer group make the two processes compete only if it is the same.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from modelbus.connectors import ConnectorContext, Source, make_source


async def hold(url: str, data_dir: str, listener: str, count: int) -> None:
    source = make_source(url, ConnectorContext(listener=listener, data_dir=Path(data_dir)))
    await source.open()
    print("ready", flush=True)
    taken: list[str] = []
    deadline = time.monotonic() + 30
    while len(taken) < count and time.monotonic() < deadline:
        taken += [d.message_id for d in await source.receive(count - len(taken), 1.0)]
    print(json.dumps(taken), flush=True)
    await asyncio.sleep(3600)


async def joined(source: Source, timeout_s: float = 60.0) -> None:
    """Sources that join a consumer group (Kafka) say which partitions they own in
    ``assignment``: wait until the group has given this one some."""
    deadline = time.monotonic() + timeout_s
    owns_nothing = getattr(source, "assignment", True) == frozenset()
    while owns_nothing and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        owns_nothing = getattr(source, "assignment", True) == frozenset()


async def drain(url: str, data_dir: str, listener: str, work_ms: float, idle_s: float) -> None:
    source = make_source(url, ConnectorContext(listener=listener, data_dir=Path(data_dir)))
    await source.open()
    await joined(source)
    print("ready", flush=True)
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < idle_s:
        deliveries = await source.receive(1, 0.2)
        for delivery in deliveries:
            await asyncio.sleep(work_ms / 1000)
            await source.ack([delivery])
            print(delivery.message_id, flush=True)
            idle_since = time.monotonic()
    await source.close()
    print("done", flush=True)


def main() -> None:
    mode, url, data_dir, listener, *rest = sys.argv[1:]
    if mode == "hold":
        asyncio.run(hold(url, data_dir, listener, int(rest[0])))
    else:
        asyncio.run(drain(url, data_dir, listener, float(rest[0]), float(rest[1])))


if __name__ == "__main__":
    main()
