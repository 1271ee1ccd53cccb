"""The filters ``runs list``, ``dead-letters list`` and ``dead-letters redrive`` share:
``--message-id``, ``--object-key``, ``--since`` and ``--until``, read into the keyword
arguments of the SDK's searches (:meth:`modelbus.client.Client.search_runs`...), and the
listings' ``--limit``. A value the server would refuse is a usage error here (status 2)."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Annotated, Any

import typer

from modelbus.cli.output import err
from modelbus.client.schemas import MAX_PAGE_SIZE

__all__ = [
    "Limit",
    "MessageId",
    "ObjectKey",
    "Since",
    "Until",
    "moment",
    "more",
    "search_filters",
]

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TIME_HELP = "30m, 2h, 1d (that long ago), or a date/time such as 2026-12-06T14:00 (local time)"

MessageId = Annotated[
    str | None, typer.Option("--message-id", help="Only those of this broker message id.")
]
ObjectKey = Annotated[
    str | None,
    typer.Option(
        "--object-key",
        help="Only those of this object (S3 or dir:// notifications): its BUCKET/KEY or "
        "file path, or a tail of it after a '/', e.g. page-1.png or inbox/page-1.png.",
    ),
]
Since = Annotated[str | None, typer.Option("--since", help=f"At or after: {_TIME_HELP}.")]
Until = Annotated[str | None, typer.Option("--until", help=f"Before: {_TIME_HELP}.")]
Limit = Annotated[
    int,
    typer.Option(
        "--limit", min=1, max=MAX_PAGE_SIZE, help="How many (at most a page), newest first."
    ),
]


def more(cursor: str | None) -> None:
    """Tell (on stderr, so that ``--json`` output stays a list) how to get the next page."""
    if cursor:
        err.print(f"more: add --cursor '{cursor}'", markup=False, highlight=False)


def moment(text: str, option: str) -> float:
    """Epoch seconds of a ``--since``/``--until`` value: ``N[smhd]`` ago, epoch seconds, or
    an ISO 8601 date/time (local time unless it says its zone); a usage error otherwise."""
    text = text.strip()
    try:
        at = _epoch_s(text)
        dt.datetime.fromtimestamp(at, dt.UTC)  # nan, inf, or past the year 9999: no time
    except (ValueError, OverflowError, OSError):
        raise typer.BadParameter(
            f"not a time: {text!r} (give {_TIME_HELP})", param_hint=option
        ) from None
    return at


def _epoch_s(text: str) -> float:
    ago = _AGO.match(text)
    if ago:
        return time.time() - float(ago.group(1)) * _UNIT_S[ago.group(2)]
    try:
        return float(text)
    except ValueError:
        return dt.datetime.fromisoformat(text).timestamp()  # naive: local time


def search_filters(
    listener: str | None,
    message_id: str | None,
    object_key: str | None,
    since: str | None,
    until: str | None,
) -> dict[str, Any]:
    """The SDK search's keyword arguments for these options (times read by :func:`moment`)."""
    return {
        "listener": listener,
        "message_id": message_id,
        "object_key": object_key,
        "since": moment(since, "--since") if since else None,
        "until": moment(until, "--until") if until else None,
    }
