"""Listener files: the TOML file of ``modelbus serve --config``, checked and applied.

The file's format is that of :func:`~modelbus.listeners.definition.load_definitions`. At
start, :func:`apply_listener_file` creates or updates its listeners before any runs; a
check that needs no broker (:func:`check_connectors`) refuses the whole file first.
"""

from __future__ import annotations

import logging
from pathlib import Path

from modelbus.connectors import ConnectorContext, ConnectorPolicy, make_sink, make_source
from modelbus.errors import DefinitionError, ModelbusError
from modelbus.listeners.definition import ListenerDefinition, load_definitions
from modelbus.listeners.manager import ListenerManager

__all__ = ["apply_listener_file", "check_connectors", "load_listener_file"]

log = logging.getLogger("modelbus.listeners")


def check_connectors(
    definition: ListenerDefinition, data_dir: Path, policy: ConnectorPolicy | None = None
) -> None:
    """Refuse a definition whose connectors cannot even be built (bad URL options, a
    scheme that is only a sink used as the source, a missing extra, a folder outside
    ``policy``'s roots), without connecting to anything. Raises :class:`DefinitionError`
    naming the listener."""
    ctx = ConnectorContext(
        listener=definition.name, data_dir=data_dir, policy=policy or ConnectorPolicy()
    )
    try:
        make_source(definition.source, ctx)
        for url in definition.sinks:
            make_sink(url, ctx)
    except ModelbusError as exc:
        raise DefinitionError(f"listener {definition.name!r}: {exc.message}") from None


def load_listener_file(
    path: Path, data_dir: Path, policy: ConnectorPolicy | None = None
) -> list[ListenerDefinition]:
    """The definitions of a TOML listener file, checked as far as possible without a broker
    (see :func:`check_connectors`, with ``policy``). Raises :class:`DefinitionError`
    naming the file and the listener; nothing is applied."""
    definitions = load_definitions(path)
    for definition in definitions:
        try:
            check_connectors(definition, data_dir, policy)
        except DefinitionError as exc:
            raise DefinitionError(f"{path}: {exc.message}") from None
    return definitions


async def apply_listener_file(
    listeners: ListenerManager, path: Path, data_dir: Path, *, prune: bool
) -> None:
    """Create or update the listeners of ``path`` (delete the others with ``prune``).

    Brokers are not contacted here: a listener whose broker is down at start is created,
    shows ``degraded`` in its status and connects when the broker comes up."""
    definitions = load_listener_file(path, data_dir, listeners.policy)
    result = await listeners.apply(definitions, prune=prune, check=False)
    log.info(
        "listener file %s applied: created %s, updated %s, unchanged %s, deleted %s",
        path,
        result.created or "none",
        result.updated or "none",
        result.unchanged or "none",
        result.deleted or "none",
    )
