"""Webhook intake: what ``POST /v1/hooks/NAME`` calls.

The route only reads the request; this service finds the listeners whose source is
``webhook://NAME`` and hands the request to the connectors' inbox
(:func:`modelbus.connectors.make_inbox`), which checks its signature against each
listener's secret and queues it durably for those it matches. Each of those listeners then
reads its own queue like any ``local://`` source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelbus.connectors import WEBHOOK_SIGNATURE_HEADER, make_inbox
from modelbus.errors import NotFound
from modelbus.listeners.manager import ListenerManager

__all__ = ["SIGNATURE_HEADER", "HookIntake", "HookReceipt"]

SIGNATURE_HEADER = WEBHOOK_SIGNATURE_HEADER


@dataclass(frozen=True, kw_only=True, slots=True)
class HookReceipt:
    """An accepted webhook: its message id and the listeners it was queued for."""

    id: str
    listeners: list[str]


class HookIntake:
    """Accepts webhooks for the stored listeners of ``manager``. :meth:`close` when done."""

    def __init__(self, manager: ListenerManager, data_dir: Path) -> None:
        self._manager = manager
        self._inbox = make_inbox(data_dir)

    async def targets(self, hook: str) -> list[tuple[str, str]]:
        """``(listener, source URL)`` of the listeners on ``webhook://HOOK``; raises
        NotFound when there is none (before the body is read)."""
        found = [
            (info.name, info.definition.source)
            for info in await self._manager.list()
            if self._inbox.hook_name(info.definition.source) == hook
        ]
        if not found:
            raise NotFound(f"no listener receives webhook {hook!r}")
        return found

    async def accept(
        self, targets: Sequence[tuple[str, str]], headers: Mapping[str, str], body: bytes
    ) -> HookReceipt:
        """Queue the request for each of ``targets`` whose secret its signature matches;
        returns once it is durable. Raises Unauthenticated when it matches none."""
        message_id, matched = await self._inbox.accept(targets, headers, body)
        return HookReceipt(id=message_id, listeners=matched)

    async def close(self) -> None:
        """Close the queues the intake opened."""
        await self._inbox.close()
