"""What the command line means, shared by the commands: the ``--url``, ``--key`` and
``--json`` options, the client the first two open, model references, and
:func:`default_of`, which reads an option's default from the object that owns it (so that a
help text never repeats a number a policy holds).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import httpx
import typer
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from modelbus import errors
from modelbus.cli.output import err, fail, print_error
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
def open_client(url: str | None, key: str | None, *, log_shown: bool = False) -> Iterator[Client]:
    """A client on ``url`` with ``key`` (None: the SDK reads ``MODELBUS_URL`` and
    ``MODELBUS_API_KEY``), whose modelbus errors end the command with a clear message,
    saying what to do in the command line's terms (:func:`in_cli_terms`), and status 1.
    ``log_shown``: the command printed the build log as it came, so a build error is not
    followed by the log again."""
    try:
        with Client(url, key) as client:
            yield client
    except errors.ModelbusError as exc:
        fail(in_cli_terms(exc, key=key or os.environ.get("MODELBUS_API_KEY")), log_shown=log_shown)
    except TimeoutError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


def in_cli_terms(exc: errors.ModelbusError, *, key: str | None) -> errors.ModelbusError:
    """``exc`` with its message saying what to do with this command line (the server's own
    messages speak HTTP: headers, routes): which option or variable gives the key or the
    URL, which command lists what was not found. ``key`` is the key the command used, if
    any. Returns ``exc`` itself, its message completed."""
    message = _cli_message(exc, key)
    if message != exc.message:
        exc.message = message
        exc.args = (message, *exc.args[1:])
    return exc


_KEY_HELP = (
    "`modelbus demo` prints its admin key and keeps it in DATA_DIR/admin.key; "
    "`modelbus serve` prints one on its first start; `modelbus keys create` makes more"
)


def _cli_message(exc: errors.ModelbusError, key: str | None) -> str:
    if isinstance(exc, errors.Unauthenticated):
        if not key:
            return f"no API key: give --key KEY or set MODELBUS_API_KEY ({_KEY_HELP})"
        return f"{exc.message}: check --key or MODELBUS_API_KEY ({_KEY_HELP})"
    if isinstance(exc, errors.Forbidden):
        return (
            f"{exc.message}: give a key with that scope (--key or MODELBUS_API_KEY; an admin "
            "makes one with `modelbus keys create NAME --scope SCOPE`)"
        )
    if isinstance(exc.__cause__, httpx.TransportError):
        return (
            f"{exc.message}: is the server running? Start it with `modelbus serve` (or "
            "`modelbus demo`), or give its address with --url URL or MODELBUS_URL"
        )
    if isinstance(exc, errors.ModelNotFound):
        return f"{exc.message} (`modelbus models list` shows the models this key may see)"
    return exc.message


def refuse_busy_port(host: str, port: int, *, hint: str = "--port PORT") -> None:
    """End the command with status 2 and a message naming ``hint`` when ``host:port`` cannot
    be bound (in use, or not an address of this machine): the server would fail only after
    opening its store, printing a key and starting its listeners. Binds a socket the way the
    server does (``SO_REUSEADDR``) and closes it at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = f"port {port} on {host} is in use (another server is listening there)"
        else:
            why = f"cannot listen on {host}:{port} ({exc.strerror or exc})"
        print_error(f"{why}: choose another with {hint}; nothing was started")
        raise typer.Exit(2) from None


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
