"""What the command line means, shared by the commands: the ``--url``, ``--key`` and
``--json`` options, the client the first two open, model references, and
:func:`default_of`, which reads an option's default from the object that owns it (so that a
help text never repeats a number a policy holds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from modelbus import errors
from modelbus.cli.output import err, fail
from modelbus.client import DEFAULT_URL, Client
from modelbus.client.refs import ModelRef

Url = Annotated[
    str | None,
    typer.Option("--url", envvar="MODELBUS_URL", help=f"Server URL [default: {DEFAULT_URL}]."),
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


def default_of(owner: type, name: str) -> str:
    """The default of field ``name`` of ``owner`` (a pydantic model or a dataclass), written as
    a help text shows it: ``5``, ``0.2``, ``1`` for 1.0. Raises ``LookupError`` for an unknown
    field or one without a plain default, so a misspelt name fails when the CLI is imported."""
    if issubclass(owner, BaseModel):
        value: Any = owner.model_fields[name].default
    elif dataclasses.is_dataclass(owner):
        value = {f.name: f.default for f in dataclasses.fields(owner)}[name]
    else:
        raise TypeError(f"{owner.__name__} is neither a pydantic model nor a dataclass")
    if value is PydanticUndefined or value is dataclasses.MISSING:
        raise LookupError(f"{owner.__name__}.{name} has no plain default")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
