"""The brokers the chaos suite runs on, as the connector contract suite's kits
(tests/connectors/kits.py): fresh queues per role, a source URL and a sink URL each.

    async with open_kit("redis", tmp_path) as kit:
        urls = await kit.new_queue(lease_s=3)

Plus how many messages each broker gets: ``MODELBUS_CHAOS_MESSAGES`` (default
:data:`DEFAULT_MESSAGES`) is the count for the embedded queue; slower brokers get a share of
it (:data:`SHARE`), never fewer than :data:`MIN_MESSAGES`, unless
``MODELBUS_CHAOS_MESSAGES_<KIND>`` gives that broker's count.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tests.connectors.kits import BrokerKit, LocalKit

__all__ = ["KINDS", "messages", "open_kit", "with_query"]

KINDS = ("local", "sqs", "redis", "amqp", "nats", "kafka", "postgres")
DEFAULT_MESSAGES = 2000
MIN_MESSAGES = 100
# Per-message cost relative to local:// through a real `modelbus serve` on 2 cores (moto is
# slowest by far: NOTES.md).
SHARE = {
    "local": 1.0,
    "redis": 0.25,
    "nats": 0.25,
    "postgres": 0.25,
    "amqp": 0.2,
    "kafka": 0.15,
    "sqs": 0.075,
}


BASE_MESSAGES = int(os.environ.get("MODELBUS_CHAOS_MESSAGES", DEFAULT_MESSAGES))


def messages(kind: str) -> int:
    """How many inputs a run on ``kind`` sends (see the module docstring);
    ``MODELBUS_CHAOS_MESSAGES_<KIND>`` (e.g. ``_REDIS``) sets one broker's count outright."""
    exact = os.environ.get(f"MODELBUS_CHAOS_MESSAGES_{kind.upper()}")
    if exact:
        return int(exact)
    return max(MIN_MESSAGES, int(BASE_MESSAGES * SHARE[kind]))


def with_query(url: str, *, drop: tuple[str, ...] = (), **options: object) -> str:
    """``url`` with query parameters removed (``drop``) or set."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in drop and k not in options]
    query += [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in options.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _kit_class(kind: str) -> type[BrokerKit]:
    if kind == "local":
        return LocalKit
    module = __import__(f"tests.connectors.kit_{kind}", fromlist=["KITS"])
    return module.KITS[0]  # type: ignore[no-any-return]  # amqp: classic before quorum


@contextlib.asynccontextmanager
async def open_kit(kind: str, tmp_path: Path) -> AsyncIterator[BrokerKit]:
    """A started kit of ``kind`` (skipped, saying why, when its server is unavailable)."""
    import pytest

    cls = _kit_class(kind)
    why = cls.unavailable()
    if why:
        pytest.skip(why)
    kit = cls(tmp_path)
    await kit.start()
    try:
        yield kit
    finally:
        await kit.stop()
