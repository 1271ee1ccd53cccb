"""``modelbus runs``: what happened to broker messages (run records)."""

from __future__ import annotations

from typing import Annotated

import typer

from modelbus.cli.options import AsJson, Key, Url, open_client
from modelbus.cli.output import fields_table, new_table, out, print_json, when
from modelbus.client.schemas import RunOut

app = typer.Typer(help="What happened to broker messages (run records).", no_args_is_help=True)


def _run_rows(run: RunOut) -> list[tuple[str, str]]:
    rows = [
        ("listener", run.listener),
        ("message", run.message_id),
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
    message_id: Annotated[str, typer.Argument(help="The broker's message id.")],
    listener: Annotated[
        str | None, typer.Option("--listener", "-l", help="Only this listener's record.")
    ] = None,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """What happened to a broker message, in each listener that received it."""
    with open_client(url, key) as client:
        found = client.runs(message_id, listener=listener)
    if as_json:
        print_json([r.model_dump() for r in found])
        return
    for run in found:
        out.print(fields_table(_run_rows(run)))


@app.command("list")
def runs_list(
    listener: Annotated[str, typer.Argument(help="Listener name.")],
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only running, retrying, succeeded or dead_lettered."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 50,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """A listener's most recent run records."""
    with open_client(url, key) as client:
        page = client.listener_runs(listener, status=status, limit=limit)
    if as_json:
        print_json([r.model_dump() for r in page.items])
        return
    table = new_table("message", "status", "attempts", "version", "updated", "error")
    for r in page.items:
        error = f"{r.error.get('type')}: {r.error.get('message')}" if r.error else ""
        table.add_row(
            r.message_id, r.status, str(r.attempts), r.version or "-", when(r.updated_at), error
        )
    out.print(table)
