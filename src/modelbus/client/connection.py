"""Where the server is and how both clients reach it.

The URL and the API key default to ``MODELBUS_URL`` and ``MODELBUS_API_KEY``
(:func:`http_options`, the keyword arguments of ``httpx.Client`` and ``httpx.AsyncClient``
alike), and a server that cannot be reached raises
:class:`~modelbus.errors.ModelbusError` saying which URL (:func:`reaching`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from modelbus import errors
from modelbus.config import DEFAULT_PORT

__all__ = ["DEFAULT_TIMEOUT_S", "DEFAULT_URL", "http_options", "reaching"]

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
DEFAULT_TIMEOUT_S = 600.0
CONNECT_TIMEOUT_S = 10.0


def http_options(url: str | None, key: str | None, timeout_s: float) -> dict[str, Any]:
    """The httpx client's options: ``base_url`` (``url``, else ``MODELBUS_URL``, else
    :data:`DEFAULT_URL`), the bearer ``key`` (else ``MODELBUS_API_KEY``, else none) and
    ``timeout_s`` for every request that sets no timeout of its own."""
    base_url = (url or os.environ.get("MODELBUS_URL") or DEFAULT_URL).rstrip("/")
    key = key or os.environ.get("MODELBUS_API_KEY")
    return {
        "base_url": base_url,
        "headers": {"Authorization": f"Bearer {key}"} if key else {},
        "timeout": httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
    }


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """Turn a transport failure inside the block (sync or awaited) into a ModelbusError."""
    try:
        yield
    except httpx.TransportError as exc:
        raise errors.ModelbusError(f"cannot reach the modelbus server at {url}: {exc}") from exc
