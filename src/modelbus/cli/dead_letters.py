"""``modelbus dead-letters``: list a listener's dead letters, show one, redrive them."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from modelbus.cli.options import AsJson, Key, Url, open_client
from modelbus.cli.output import err, fields_table, new_table, out, print_json, when
from modelbus.client.schemas import DEFAULT_REDRIVE_RATE_PER_S

app = typer.Typer(help="List, inspect and redrive dead letters.", no_args_is_help=True)


@app.command("list")
def dead_letters_list(
    listener: Annotated[str, typer.Argument(help="Listener name.")],
    pending: Annotated[
        bool, typer.Option("--pending", help="Only letters not redriven yet.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 50,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """A listener's dead letters, newest first."""
    with open_client(url, key) as client:
        page = client.dead_letters(listener, include_redriven=not pending, limit=limit)
    if as_json:
        print_json([d.model_dump() for d in page.items])
        return
    table = new_table("id", "message", "error", "attempts", "version", "created", "redriven")
    for d in page.items:
        table.add_row(
            d.id,
            d.message_id,
            f"{d.error_type}: {d.error_message}",
            str(d.attempts),
            d.version or "-",
            when(d.created_at),
            f"{when(d.redriven_at)} -> {d.redriven_to}" if d.redriven_at else "-",
        )
    out.print(table)


@app.command("show")
def dead_letters_show(
    letter_id: Annotated[str, typer.Argument(help="Dead letter id (from `dead-letters list`).")],
    body_out: Annotated[
        Path | None,
        typer.Option("--body-out", help="Write the original body to this file."),
    ] = None,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Show a dead letter: its error, stack trace, attributes and original body."""
    with open_client(url, key) as client:
        letter = client.dead_letter(letter_id)
    body = base64.b64decode(letter.body_base64 or "")
    if body_out is not None:
        body_out.write_bytes(body)
    if as_json:
        print_json(letter.model_dump())
        return
    rows = [
        ("id", letter.id),
        ("listener", letter.listener),
        ("message", letter.message_id),
        ("model", f"{letter.model} (version {letter.version or '-'})"),
        ("error", f"{letter.error_type}: {letter.error_message}"),
        ("permanent", "yes" if letter.permanent else "no"),
        ("attempts", str(letter.attempts)),
        ("created", when(letter.created_at)),
        (
            "redriven",
            f"{when(letter.redriven_at)} -> {letter.redriven_to}" if letter.redriven_at else "-",
        ),
        ("attributes", json.dumps(letter.attributes)),
        ("body", _preview(body)),
    ]
    out.print(fields_table(rows))
    if letter.stacktrace:
        err.print(letter.stacktrace, markup=False, highlight=False)


def _preview(body: bytes, limit: int = 2000) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(body)} bytes of binary: use --body-out FILE>"
    return text if len(text) <= limit else text[:limit] + f"... ({len(body)} bytes)"


@app.command("redrive")
def dead_letters_redrive(
    listener: Annotated[str, typer.Argument(help="Listener name.")],
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="Redrive this dead letter (repeatable) [default: all pending]."),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="Version spec to run them on, e.g. 1.2.* [default: the listener's own]."
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option("--rate", help=f"Most redriven per second [{DEFAULT_REDRIVE_RATE_PER_S:g}]."),
    ] = None,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Run dead letters again through the listener (results go to its outputs)."""
    with open_client(url, key) as client, err.status("redriving ..."):
        result = client.redrive(listener, ids=ids or None, spec=to, rate_per_s=rate)
    if as_json:
        print_json(result.model_dump())
        return
    out.print(f"redriven on {result.model}: {len(result.redriven)} succeeded")
    for letter_id, why in result.failed.items():
        err.print(f"[red]failed again:[/red] {letter_id}: {escape(why)}")
    if result.failed:
        raise typer.Exit(1)
