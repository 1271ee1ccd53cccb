"""What the command line means, shared by the commands: the ``--url``, ``--key`` and
``--json`` options, the client the first two open, and model references."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from modelbus import errors
from modelbus.cli.output import err, fail
from modelbus.client import Client
from modelbus.client.refs import ModelRef

Url = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="MODELBUS_URL", help="Server URL [default: http://127.0.0.1:8470]."
    ),
]
Key = Annotated[
    str | None,
    typer.Option("--key", envvar="MODELBUS_API_KEY", help="API key.", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@contextmanager
def open_client(url: str | None, key: str | None) -> Iterator[Client]:
    """A client on ``url`` with ``key`` (None: the SDK reads ``MODELBUS_URL`` and
    ``MODELBUS_API_KEY``), whose modelbus errors end the command with a clear message and
    status 1."""
    try:
        with Client(url, key) as client:
            yield client
    except errors.ModelbusError as exc:
        fail(exc)
    except TimeoutError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


def split_model(text: str) -> tuple[str, str]:
    """``(owner, name)`` of an ``OWNER/NAME`` argument; a usage error if it names a version."""
    ref = parse_ref(text)
    if ref.spec != "latest" and "@" in text:
        raise typer.BadParameter("give OWNER/NAME without a version", param_hint="MODEL")
    return ref.owner, ref.name


def parse_ref(text: str) -> ModelRef:
    """The model reference ``OWNER/NAME[@SPEC]`` of a ``MODEL`` argument, or a usage error."""
    try:
        return ModelRef.parse(text)
    except errors.InvalidInput as exc:
        raise typer.BadParameter(exc.message, param_hint="MODEL") from exc
