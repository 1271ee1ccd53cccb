"""``modelbus dead-letters``: search dead letters, show one, redrive them (chosen ids, or
every one a search matches)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from modelbus import errors
from modelbus.cli.options import AsJson, Key, Url, open_client
from modelbus.cli.output import err, fields_table, new_table, out, print_json, when
from modelbus.cli.search import Limit, MessageId, ObjectKey, Since, Until, more, search_filters
from modelbus.client.operations import checked_rate
from modelbus.client.schemas import (
    DEFAULT_REDRIVE_RATE_PER_S,
    MAX_REDRIVE_RATE_PER_S,
    RedriveOut,
    SearchRedriveOut,
)

app = typer.Typer(help="List, inspect and redrive dead letters.", no_args_is_help=True)


@app.command("list")
def dead_letters_list(
    listener: Annotated[
        str | None, typer.Argument(help="Only this listener's [default: every listener's].")
    ] = None,
    pending: Annotated[
        bool, typer.Option("--pending", help="Only letters not redriven yet.")
    ] = False,
    message_id: MessageId = None,
    object_key: ObjectKey = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Go on from where the last page ended.")
    ] = None,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Dead letters, newest first, searched by listener, time (dead-lettered), message id
    or object key."""
    filters = search_filters(listener, message_id, object_key, since, until)
    with open_client(url, key) as client:
        page = client.search_dead_letters(
            include_redriven=not pending, limit=limit, cursor=cursor, **filters
        )
    if as_json:
        print_json([d.model_dump() for d in page.items])
        more(page.next_cursor)
        return
    table = new_table(
        "id", "listener", "message", "object", "error", "attempts", "created", "redriven"
    )
    for d in page.items:
        table.add_row(
            d.id,
            d.listener,
            d.message_id,
            d.object_key or "-",
            f"{d.error_type}: {d.error_message}",
            str(d.attempts),
            when(d.created_at),
            f"{when(d.redriven_at)} -> {d.redriven_to}" if d.redriven_at else "-",
        )
    out.print(table)
    more(page.next_cursor)


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


def _rate(value: float | None) -> float | None:
    try:  # the SDK's check: click's FloatRange would let nan through
        return checked_rate(value)
    except errors.InvalidInput as exc:
        raise typer.BadParameter(exc.message.removeprefix("rate_per_s: ")) from None


@app.command("redrive")
def dead_letters_redrive(
    listener: Annotated[
        str | None,
        typer.Argument(help="Only this listener's letters [default: every listener's]."),
    ] = None,
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="Redrive this dead letter (repeatable; needs LISTENER)."),
    ] = None,
    message_id: MessageId = None,
    object_key: ObjectKey = None,
    since: Since = None,
    until: Until = None,
    include_redriven: Annotated[
        bool,
        typer.Option("--include-redriven", help="Also letters redriven already (not with --id)."),
    ] = False,
    every: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every pending letter of every listener, unless a filter narrows it (needed "
            "when nothing else is given).",
        ),
    ] = False,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="Version spec to run them on, e.g. 1.2.* [default: the listener's own]."
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            callback=_rate,
            help=f"Most redriven per second, per listener, above 0 and at most "
            f"{MAX_REDRIVE_RATE_PER_S:g} [{DEFAULT_REDRIVE_RATE_PER_S:g}].",
        ),
    ] = None,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Run dead letters again through their listener (results go to its outputs): the
    --id ones, or every pending one matching the filters (list them first with the same
    filters to see what will run). A LISTENER alone redrives all its pending letters."""
    filters = search_filters(listener, message_id, object_key, since, until)
    searched = any(v is not None for n, v in filters.items() if n != "listener")
    if ids and (searched or include_redriven or every):
        raise typer.BadParameter("--id does not go with filters or --all", param_hint="--id")
    if ids and listener is None:
        raise typer.BadParameter("give the LISTENER of the --id letters", param_hint="LISTENER")
    if listener is None and not searched and not every:
        raise typer.BadParameter(
            "give a LISTENER, --id, a filter (--since, --object-key...) or --all",
            param_hint="LISTENER",
        )
    by_ids = bool(ids) or (listener is not None and not searched and not include_redriven)
    with open_client(url, key) as client, err.status("redriving ..."):
        if by_ids:
            assert listener is not None
            one = client.redrive(listener, ids=ids or None, spec=to, rate_per_s=rate)
            found = SearchRedriveOut(matched=len(one.redriven) + len(one.failed))
            found.listeners[listener] = one
        else:
            found = client.redrive_matching(
                include_redriven=include_redriven, every=every, spec=to, rate_per_s=rate, **filters
            )
    if as_json:  # as the API answered: POST .../LISTENER/dead-letters/redrive or the search's
        shown = found.listeners[listener or ""] if by_ids else found
        print_json(shown.model_dump())
        if any(r.failed for r in found.listeners.values()):
            raise typer.Exit(1)
        return
    _report(found.listeners)


def _report(results: dict[str, RedriveOut]) -> None:
    if not results:
        out.print("no dead letters matched: nothing redriven")
    for name, result in results.items():
        out.print(f"{name}: redriven on {result.model}: {len(result.redriven)} succeeded")
        for letter_id, why in result.failed.items():
            err.print(f"[red]failed again:[/red] {letter_id}: {escape(why)}")
    if any(r.failed for r in results.values()):
        raise typer.Exit(1)
