"""How the commands print: results on stdout (:data:`out`), the rest (progress, metadata,
errors) on stderr (:data:`err`); an error as one clear line; tables whose cells fold rather
than truncate; JSON."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelbus import errors

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(message: str) -> None:
    """Print ``message`` on stderr as one ``error:`` line (the caller chooses the exit status)."""
    err.print(f"[red]error:[/red] {escape(message)}")


def fail(exc: errors.ModelbusError, *, log_shown: bool = False) -> NoReturn:
    """Print ``exc`` as one line, plus the model's stack trace or the build log when there is
    one (unless ``log_shown``: the command printed the log as it came), and end the command
    with status 1."""
    print_error(exc.message)
    if isinstance(exc, errors.InvocationError):
        err.print(f"[dim]{type(exc).__name__} ({exc.error_type})[/dim]")
        if exc.stacktrace:
            err.print(exc.stacktrace, markup=False)
    if isinstance(exc, errors.BuildError) and exc.log and not log_shown:
        err.print(exc.log, markup=False)
    raise typer.Exit(1)


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout (what JSON cannot hold, as its ``str``)."""
    out.print_json(json.dumps(value, default=str))


def when(ts: float | None) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS``; ``-`` for None."""
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def new_table(*columns: str) -> Table:
    """An empty table with these column headers."""
    # Fold rather than truncate: ids and hashes must stay whole to be copied.
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def fields_table(rows: Iterable[tuple[str, str]], *, title: str | None = None) -> Table:
    """A two-column table of (label, value) rows, labels dimmed, no header."""
    table = Table(title=title, show_header=False)
    table.add_column("field", style="dim")
    table.add_column("value", overflow="fold")
    for label, value in rows:
        table.add_row(label, value)
    return table
