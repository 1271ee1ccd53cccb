"""A consumer in its own OS process that takes deliveries and never settles them.

    python holder.py URL COUNT [WAIT_S]

Opens a source for URL (listener ``holder``), receives until it holds COUNT deliveries (or
WAIT_S, default 60, passed), prints their message ids as one JSON line, then sleeps until
killed. Tests kill it with SIGKILL to show the broker redelivers what a dead consumer held.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from modelbus.connectors import ConnectorContext, make_source


async def hold(url: str, count: int, wait_s: float) -> None:
    ctx = ConnectorContext(listener="holder", data_dir=Path(tempfile.gettempdir()))
    source = make_source(url, ctx)
    await source.open()
    taken: list[str] = []
    deadline = time.monotonic() + wait_s
    while len(taken) < count and time.monotonic() < deadline:
        taken += [d.message_id for d in await source.receive(count - len(taken), 0.5)]
    print(json.dumps(taken), flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    url, count, *rest = sys.argv[1:]
    asyncio.run(hold(url, int(count), float(rest[0]) if rest else 60.0))
