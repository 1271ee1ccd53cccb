"""How the parts of one listener are doing: the bookkeeping every stage reports to.

A *part* is ``source``, ``sink URL``, ``store``, ``runtime``... :meth:`Health.problem` marks a
part failing (the listener shows ``degraded`` while any is) and :meth:`Health.clear` marks it
recovered, each logged once per change; :meth:`Health.error` only records the last error,
for a failure that does not degrade the listener. :func:`close_quietly` closes a part without
letting its failure (or a connector's stray cancellation) end the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable

__all__ = ["Health", "close_quietly"]

# One logger for the runtime of a listener, whichever of its modules speaks.
log = logging.getLogger("modelbus.listeners.lifecycle")


class Health:
    """Problems by part and the last error of listener ``listener``. Not thread-safe: the
    listener's stages all run on its event loop."""

    __slots__ = ("_listener", "last_error", "problems")

    def __init__(self, listener: str) -> None:
        self._listener = listener
        self.problems: dict[str, str] = {}
        self.last_error: tuple[str, float] | None = None

    def problem(self, part: str, reason: str) -> None:
        """``part`` is failing for ``reason`` (logged when it starts failing)."""
        if part not in self.problems:
            log.warning("listener %s degraded: %s: %s", self._listener, part, reason)
        self.problems[part] = reason
        self.error(part, reason)

    def clear(self, part: str) -> None:
        """``part`` works again (logged if it was failing)."""
        if self.problems.pop(part, None) is not None:
            log.info("listener %s: %s recovered", self._listener, part)

    def error(self, part: str, reason: str) -> None:
        """Record the last error without marking ``part`` as failing."""
        self.last_error = (f"{part}: {reason}", time.time())


async def close_quietly(closing: Awaitable[None], *, timeout_s: float, listener: str) -> None:
    """Await ``closing`` for at most ``timeout_s``; a failure is logged, never raised. Raises
    CancelledError only when the calling task itself is being cancelled."""
    try:
        await asyncio.wait_for(closing, timeout_s)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this listener is being cancelled
        # A client cancelled inside its own close (aiokafka does): that must not end
        # this listener's task, which would leave it 'degraded' forever.
        log.warning("listener %s: closing was cancelled inside the connector", listener)
    except Exception as exc:
        log.warning("listener %s: closing failed: %s", listener, exc)
