"""``modelbus nodes``: the servers sharing one store, live and recently gone."""

from __future__ import annotations

from typing import Annotated

import typer

from modelbus.cli.options import AsJson, Key, Url, open_client
from modelbus.cli.output import new_table, out, print_json, when
from modelbus.client.schemas import NodeOut


def nodes(
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
    live: Annotated[
        bool, typer.Option("--live", help="Only the live nodes, not those gone lately.")
    ] = False,
) -> None:
    """List the nodes (modelbus serve processes) sharing the server's store: state (live,
    or gone: stopped, or silent for the node timeout), address, version, workers, the
    listeners each runs, and its last heartbeat. Node ids are shortened to 8 characters
    (--json gives them whole); the node that answered is marked *."""
    with open_client(url, key) as client:
        found = client.nodes(gone=not live)
    if as_json:
        print_json([n.model_dump() for n in found])
        return
    table = new_table("node", "state", "address", "version", "workers", "listeners", "heartbeat")
    for n in found:
        table.add_row(
            f"{n.id[:8]}{' *' if n.this else ''}",
            n.state,
            n.address,
            n.version,
            str(n.workers),
            ", ".join(n.listeners_running) or "-",
            _heartbeat(n),
        )
    out.print(table)


def _heartbeat(node: NodeOut) -> str:
    if node.stopped_at is not None:
        return f"stopped {when(node.stopped_at)}"
    return f"{node.heartbeat_age_s:.1f} s ago"
