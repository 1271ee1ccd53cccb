"""The listener shapes as the routes declare them: :mod:`modelbus.client.schemas` holds
every JSON shape of the API; here a listener definition is typed as
:class:`~modelbus.listeners.definition.ListenerDefinition` (its fields plus the server's
checks), so requests are validated by it."""

from __future__ import annotations

from pydantic import Field

from modelbus.client import schemas
from modelbus.listeners.definition import ListenerDefinition

__all__ = ["ApplyRequest", "ListenerOut"]


class ListenerOut(schemas.ListenerOut):
    definition: ListenerDefinition = Field(
        description="The definition as stored: its URLs whole for a key that may manage the "
        "listener, else by their shape (`scheme://host:port/***?name=***`)."
    )


class ApplyRequest(schemas.ApplyRequest):
    listeners: list[ListenerDefinition] = Field(  # type: ignore[assignment]
        description="Every listener to create or update."
    )
