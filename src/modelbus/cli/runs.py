"""``modelbus runs``: what happened to broker messages (run records): ``get`` one message's
(by its broker id, or the file / object key it announced), ``list`` them, searched."""

from __future__ import annotations

from typing import Annotated, get_args

import typer
from rich.table import Table

from modelbus import errors
from modelbus.cli.options import AsJson, Key, Url, open_client
from modelbus.cli.output import fields_table, new_table, out, print_json, when
from modelbus.cli.search import Limit, MessageId, ObjectKey, Since, Until, more, search_filters
from modelbus.client.schemas import RunOut, RunPage, RunStatus

app = typer.Typer(help="What happened to broker messages (run records).", no_args_is_help=True)

STATUSES: tuple[str, ...] = get_args(RunStatus)


def _status(value: str | None) -> str | None:
    if value is not None and value not in STATUSES:
        raise typer.BadParameter(f"{value!r} is none of {', '.join(STATUSES)}")
    return value


def _run_rows(run: RunOut) -> list[tuple[str, str]]:
    rows = [
        ("listener", run.listener),
        ("message", run.message_id),
        *([("object", run.object_key)] if run.object_key else []),
        ("status", run.status),
        ("attempts", str(run.attempts)),
        ("version", run.version or "-"),
        ("received", when(run.first_received_at)),
        ("finished", when(run.finished_at)),
        ("model time", f"{run.duration_ms:.1f} ms" if run.duration_ms is not None else "-"),
    ]
    if run.output_id:
        rows.append(("result id", run.output_id))
    if run.result_location:
        rows.append(("result sent to", ", ".join(run.result_location)))
    if run.error:
        error = run.error
        rows.append(("error", f"{error.get('type')}: {error.get('message')}"))
        rows.append(("error stage", f"{error.get('stage')} (permanent: {error.get('permanent')})"))
    return rows


@app.command("get")
def runs_get(
    message: Annotated[
        str,
        typer.Argument(
            help="The broker's message id; if no run has it, the object a notification "
            "announced (S3 or dir://): its BUCKET/KEY or file path, or a tail of it after a "
            "'/', e.g. inbox/page-1.png.",
            metavar="MESSAGE_ID_OR_FILE",
        ),
    ],
    listener: Annotated[
        str | None, typer.Option("--listener", "-l", help="Only this listener's record.")
    ] = None,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """What happened to a message (or a file / object), in each listener that received it.

    A file dropped twice (changed in between) is two messages: all its runs are shown,
    most recent first (at most 100)."""
    with open_client(url, key) as client:
        try:
            found = client.runs(message, listener=listener)
        except errors.RunNotFound:
            found = client.search_runs(listener=listener, object_key=message, limit=100).items
            if not found:
                where = f" in listener {listener!r}" if listener else ""
                raise errors.RunNotFound(
                    f"no run record for message or object {message!r}{where}"
                ) from None
    if as_json:
        print_json([r.model_dump() for r in found])
        return
    for run in found:
        out.print(fields_table(_run_rows(run)))


@app.command("list")
def runs_list(
    listener: Annotated[
        str | None, typer.Argument(help="Only this listener's [default: every listener's].")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            callback=_status,
            help=f"Only records in this state: {', '.join(STATUSES)}.",
        ),
    ] = None,
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
    """Run records, most recently updated first, searched by listener, status, time (of
    the last update), message id or object key."""
    filters = search_filters(listener, message_id, object_key, since, until)
    with open_client(url, key) as client:
        page = client.search_runs(status=status, limit=limit, cursor=cursor, **filters)
    if as_json:
        print_json([r.model_dump() for r in page.items])
    else:
        out.print(_runs_table(page))
    more(page.next_cursor)


def _runs_table(page: RunPage) -> Table:
    table = new_table("listener", "message", "object", "status", "attempts", "updated", "error")
    for r in page.items:
        error = f"{r.error.get('type')}: {r.error.get('message')}" if r.error else ""
        table.add_row(
            r.listener,
            r.message_id,
            r.object_key or "-",
            r.status,
            str(r.attempts),
            when(r.updated_at),
            error,
        )
    return table
