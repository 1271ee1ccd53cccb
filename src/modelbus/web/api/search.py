"""What the listings of runs and dead letters share: the search filters (``listener``,
``message_id``, ``object_key``, ``since``, ``until``), read from a query or a request body
into a store :class:`~modelbus.store.runs.Search`, and the page asked for (``limit``,
``cursor``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query

from modelbus.client.schemas import MAX_PAGE_SIZE
from modelbus.store.runs import Search

__all__ = ["Cursor", "Limit", "SearchQuery", "epoch_s", "search_of", "search_query"]

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the last page.")]


def epoch_s(at: datetime | None) -> float | None:
    """``at`` in seconds since the epoch; a time without a zone is UTC."""
    if at is None:
        return None
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


def search_of(
    listener: str | None,
    message_id: str | None,
    object_key: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Search:
    """The store's search for these filters, as given (None matches anything)."""
    return Search(
        listener=listener,
        message_id=message_id,
        object_key=object_key,
        since=epoch_s(since),
        until=epoch_s(until),
    )


def search_query(
    listener: Annotated[str | None, Query(description="Only this listener's.")] = None,
    message_id: Annotated[
        str | None, Query(description="Only those of this broker message id.")
    ] = None,
    object_key: Annotated[
        str | None,
        Query(
            description="Only those of this object (S3 or dir:// notifications): its whole "
            "BUCKET/KEY or file path, or a tail of it after a '/' (page-1.png, "
            "inbox/page-1.png). Case-sensitive."
        ),
    ] = None,
    since: Annotated[
        datetime | None,
        Query(description="At or after this time: ISO 8601 (UTC if no zone) or epoch s."),
    ] = None,
    until: Annotated[
        datetime | None,
        Query(description="Before this time: ISO 8601 (UTC if no zone) or epoch s."),
    ] = None,
) -> Search:
    """The search the listing's query parameters ask for (empty ones are ignored)."""
    return search_of(listener or None, message_id or None, object_key or None, since, until)


SearchQuery = Annotated[Search, Depends(search_query)]
