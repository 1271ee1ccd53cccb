"""The search form of the Runs and Dead letters pages: what was typed, kept as typed (to
fill the form again and build the paging links), and the run store's
:class:`~modelbus.store.runs.Search` it stands for."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import get_args
from urllib.parse import urlencode

from modelbus.errors import InvalidInput
from modelbus.store.runs import RunStatus, Search

__all__ = ["STATUSES", "SearchForm"]

STATUSES: tuple[str, ...] = get_args(RunStatus)


@dataclass(frozen=True, kw_only=True, slots=True)
class SearchForm:
    """The fields as typed (stripped; '' when empty). ``since`` and ``until`` are a
    ``datetime-local`` input's ``YYYY-MM-DDTHH:MM[:SS]``, in UTC as the console shows
    times; ``include_redriven`` is the dead-letter page's."""

    listener: str = ""
    status: str = ""
    message_id: str = ""
    object_key: str = ""
    since: str = ""
    until: str = ""
    include_redriven: bool = False

    @classmethod
    def of(cls, values: Mapping[str, object]) -> SearchForm:
        """The form from a query string's or a posted form's values (others ignored)."""

        def text(name: str) -> str:
            value = values.get(name)
            return value.strip() if isinstance(value, str) else ""

        return cls(
            listener=text("listener"),
            status=text("status"),
            message_id=text("message_id"),
            object_key=text("object_key"),
            since=text("since"),
            until=text("until"),
            include_redriven=text("include_redriven") in ("true", "on", "1"),
        )

    @property
    def narrowed(self) -> bool:
        """Whether any field narrows the search (the listener and redriven box aside)."""
        return any((self.status, self.message_id, self.object_key, self.since, self.until))

    def search(self) -> Search:
        """The run store's search; raises InvalidInput for a time or status it cannot read."""
        if self.status and self.status not in STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(STATUSES)}")
        return Search(
            listener=self.listener or None,
            message_id=self.message_id or None,
            object_key=self.object_key or None,
            since=_epoch_s(self.since, "Since"),
            until=_epoch_s(self.until, "Until"),
        )

    def query(self, **more: str) -> str:
        """This search as a query string (empty fields left out), plus ``more``."""
        fields = {k: v for k, v in asdict(self).items() if v and k != "include_redriven"}
        if self.include_redriven:
            fields["include_redriven"] = "true"
        return urlencode({**fields, **more})


def _epoch_s(text: str, label: str) -> float | None:
    if not text:
        return None
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{label}: not a date and time: {text!r}") from None
    return (at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)).timestamp()
