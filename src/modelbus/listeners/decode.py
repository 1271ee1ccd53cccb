"""The decode and filter stages: from a delivery to the inputs the model will get.

:meth:`Decoder.decode` refuses a body over ``max_body_bytes`` before reading it
(:class:`PayloadTooLarge`, permanent), then decodes the envelope (raw, CloudEvent, SNS, S3 or
folder notification; :mod:`modelbus.listeners.envelopes`), raising :class:`InvalidInput`
(permanent) for what cannot be decoded. :meth:`Decoder.filter` keeps the inputs the listener's
filter matches. :meth:`Decoder.fetch` reads the objects that notifications point at, each
within ``fetch_timeout_s``, through object readers built on first use.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable

from modelbus.connectors import ConnectorContext, make_object_reader
from modelbus.connectors.base import Delivery
from modelbus.errors import PayloadTooLarge
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.envelopes import OBJECT_SOURCES, Item, ObjectReaders, decode, fetch
from modelbus.listeners.filters import compile_filter

__all__ = ["Decoder"]


class Decoder:
    """Decodes, filters and fetches for the listener ``definition``; :meth:`close_readers`
    closes the object readers it opened."""

    def __init__(
        self, definition: ListenerDefinition, ctx: ConnectorContext, *, fetch_timeout_s: float
    ) -> None:
        self._max_body_bytes = definition.max_body_bytes
        self._filter = compile_filter(definition.filter)
        self._readers = _object_readers(definition.source, ctx)
        self._fetch_timeout_s = fetch_timeout_s

    def decode(self, delivery: Delivery) -> list[Item]:
        """The inputs ``delivery`` carries (none: nothing to run). Raises PayloadTooLarge or
        InvalidInput."""
        limit = self._max_body_bytes
        if len(delivery.body) > limit:
            raise PayloadTooLarge(
                f"message body of {len(delivery.body)} bytes is over the listener's "
                f"max_body_bytes ({limit})"
            )
        return decode(delivery)

    def filter(self, items: list[Item]) -> list[Item]:
        """The inputs that pass the listener's filter."""
        return [i for i in items if self._filter.matches(i.value, i.attributes)]

    @staticmethod
    def must_fetch(items: list[Item]) -> bool:
        """Whether some input is a notification whose object is still to be read."""
        return any(i.object is not None and i.payload is None for i in items)

    async def fetch(self, items: list[Item]) -> list[Item]:
        """``items`` with their objects read (concurrently); raises the first failure."""
        return list(await asyncio.gather(*(self._fetch(i) for i in items)))

    async def _fetch(self, item: Item) -> Item:
        return await asyncio.wait_for(fetch(item, self._readers), self._fetch_timeout_s)

    def close_readers(self) -> Awaitable[None]:
        """Close the object readers opened so far (await it)."""
        return self._readers.close()


def _object_readers(source_url: str, ctx: ConnectorContext) -> ObjectReaders:
    """Object readers for the notifications this listener may receive, built on first use
    (folder events only from its own ``dir://`` source; S3 events through the AWS connector)."""
    return ObjectReaders(
        {
            source: functools.partial(make_object_reader, source, source_url, ctx)
            for source in OBJECT_SOURCES
        }
    )
