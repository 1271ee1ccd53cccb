"""Whether this node can reach its artifact store now: what ``GET /health`` reports.

Probes come often (load balancers, Kubernetes), so a check of the store is reused for
``max_age_s``; a call that found the store unreachable in the meantime counts as a failed
check at once, so ``/health`` says so without waiting for the next probe.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from modelbus.errors import ArtifactUnavailable
from modelbus.registry.artifacts.base import ArtifactStore

__all__ = ["DEFAULT_CHECK_TIMEOUT_S", "DEFAULT_MAX_AGE_S", "StoreMonitor", "StoreStatus"]

DEFAULT_MAX_AGE_S = 10.0
DEFAULT_CHECK_TIMEOUT_S = 5.0


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreStatus:
    """The store (``describe()``), whether it answered, why not, and when (Unix time)."""

    store: str
    ok: bool
    error: str | None
    checked_at: float


class StoreMonitor:
    """The latest :class:`StoreStatus` of ``store``, checked again when older than
    ``max_age_s``; one check runs at a time, and waits at most ``check_timeout_s``."""

    def __init__(
        self,
        store: ArtifactStore,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        check_timeout_s: float = DEFAULT_CHECK_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self.check_timeout_s = check_timeout_s
        self._latest: StoreStatus | None = None
        self._lock = asyncio.Lock()

    async def status(self) -> StoreStatus:
        """The store's status, no older than ``max_age_s``. Never raises."""
        async with self._lock:
            latest = self._latest
            if latest is None or time.time() - latest.checked_at > self.max_age_s:
                latest = await self._check()
            return latest

    def failed(self, exc: ArtifactUnavailable) -> None:
        """Record that a call just found the store unavailable (``exc`` says why)."""
        self._latest = self._status(exc.message)

    async def _check(self) -> StoreStatus:
        try:
            async with asyncio.timeout(self.check_timeout_s):
                await asyncio.to_thread(self.store.check)
        except ArtifactUnavailable as exc:
            self._latest = self._status(exc.message)
        except TimeoutError:
            self._latest = self._status(
                f"the artifact store ({self.store.describe()}) did not answer within "
                f"{self.check_timeout_s:g} s"
            )
        else:
            self._latest = self._status(None)
        return self._latest

    def _status(self, error: str | None) -> StoreStatus:
        return StoreStatus(
            store=self.store.describe(), ok=error is None, error=error, checked_at=time.time()
        )
