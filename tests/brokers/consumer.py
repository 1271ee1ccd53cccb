"""A consumer in its own OS process, for the tests that need one to die or to compete.

python consumer.py hold  URL LISTENER DATA_DIR COUNT
    print "ready" once subscribed, receive COUNT deliveries, never settle them, print their
    ids as one JSON line and wait to be killed.
python consumer.py drain URL LISTENER DATA_DIR IDLE_S
    print "ready", then receive one delivery at a time, ack it and print its id and
    attempt ("ID ATTEMPT"); after IDLE_S without deliveries print "done" and exit.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from modelbus.connectors import ConnectorContext, make_source


async def hold(url: str, listener: str, data_dir: str, count: int) -> None:
    source = make_source(url, ConnectorContext(listener=listener, data_dir=Path(data_dir)))
    await source.open()
    print("ready", flush=True)
    taken: list[str] = []
    deadline = time.monotonic() + 30
    while len(taken) < count and time.monotonic() < deadline:
        taken += [d.message_id for d in await source.receive(count - len(taken), 0.5)]
    print(json.dumps(taken), flush=True)
    await asyncio.sleep(3600)


async def drain(url: str, listener: str, data_dir: str, idle_s: float) -> None:
    source = make_source(url, ConnectorContext(listener=listener, data_dir=Path(data_dir)))
    await source.open()
    print("ready", flush=True)
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < idle_s:
        for delivery in await source.receive(1, 0.2):
            await asyncio.sleep(0.005)
            await source.ack([delivery])
            print(f"{delivery.message_id} {delivery.attempt}", flush=True)
            idle_since = time.monotonic()
    await source.close()
    print("done", flush=True)


def main() -> None:
    mode, url, listener, data_dir, last = sys.argv[1:]
    if mode == "hold":
        asyncio.run(hold(url, listener, data_dir, int(last)))
    else:
        asyncio.run(drain(url, listener, data_dir, float(last)))


if __name__ == "__main__":
    main()
