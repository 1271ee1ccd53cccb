"""``modelbus keys``: create, list and revoke API keys (admin)."""

from __future__ import annotations

from typing import Annotated

import typer

from modelbus.cli.options import AsJson, Key, Url, open_client
from modelbus.cli.output import err, new_table, out, print_json, when

app = typer.Typer(help="Create, list and revoke API keys (admin).", no_args_is_help=True)


@app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A label for the key.")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            "-s",
            help="Repeatable: call:*, call:OWNER/NAME, models:manage, listeners:manage, admin.",
        ),
    ],
    url: Url = None,
    key: Key = None,
) -> None:
    """Create an API key and print its secret (shown this once)."""
    with open_client(url, key) as client:
        created = client.create_key(name, scope)
    err.print(
        f"[dim]key {created.info.id} ({', '.join(created.info.scopes)}); "
        "store the secret now, it is not shown again:[/dim]"
    )
    out.print(created.key)


@app.command("list")
def keys_list(url: Url = None, key: Key = None, as_json: AsJson = False) -> None:
    """List API keys (never their secrets)."""
    with open_client(url, key) as client:
        found = client.keys()
    if as_json:
        print_json([k.model_dump() for k in found])
        return
    table = new_table("id", "name", "scopes", "created", "last used", "revoked")
    for k in found:
        table.add_row(
            k.id,
            k.name,
            " ".join(k.scopes),
            when(k.created_at),
            when(k.last_used_at),
            when(k.revoked_at),
        )
    out.print(table)


@app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `modelbus keys list`).")],
    url: Url = None,
    key: Key = None,
) -> None:
    """Revoke an API key; it stops working at once."""
    with open_client(url, key) as client:
        revoked = client.revoke_key(key_id)
    out.print(f"revoked {revoked.id} ({revoked.name})")
