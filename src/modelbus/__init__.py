"""modelbus: event-driven model serving.

Every model version gets an HTTP API the moment it is published; event listeners deliver
every broker message to a model version with verified delivery, retries, dead-letters and
result publishing.

``modelbus.Client`` and ``modelbus.AsyncClient`` are imported when first used: the server,
the runners and ``modelbus.testing`` do not pay for the HTTP client's imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from modelbus.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("AsyncClient", "Client"):
        from modelbus import client

        return getattr(client, name)
    raise AttributeError(f"module 'modelbus' has no attribute {name!r}")
