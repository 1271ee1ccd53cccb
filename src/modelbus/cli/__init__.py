"""The ``modelbus`` command: run a server, and talk to one through the SDK.

Every client command takes ``--url`` (``MODELBUS_URL``) and ``--key`` (``MODELBUS_API_KEY``)
and is a thin layer over :class:`modelbus.client.Client`: parse, call, format. Errors are
printed as one clear line (plus the model's stack trace or the build log when there is one)
and exit with status 1; usage errors exit with 2.

This module is the root command and its entry point (:func:`main`); each command group has
its module:

- :mod:`~modelbus.cli.serve`: ``serve``, ``secret-key``
- :mod:`~modelbus.cli.demo`: ``demo`` (what it runs: :mod:`~modelbus.cli.demo_plan`)
- :mod:`~modelbus.cli.call`: ``call``, ``jobs show``
- :mod:`~modelbus.cli.models`: ``models push|publish|list|versions|builds``
- :mod:`~modelbus.cli.keys`: ``keys create|list|revoke``
- :mod:`~modelbus.cli.listeners`: ``listeners create|apply|list|status|pause|resume|delete``
- :mod:`~modelbus.cli.runs`: ``runs get|list``
- :mod:`~modelbus.cli.dead_letters`: ``dead-letters list|show|redrive``
- :mod:`~modelbus.cli.nodes`: ``nodes``
- :mod:`~modelbus.cli.deploy`: ``deploy keda``

What they share: :mod:`~modelbus.cli.options` (``--url``/``--key``/``--json``, the client,
model references) and :mod:`~modelbus.cli.output` (stdout/stderr, errors, tables, JSON).
"""

from __future__ import annotations

import typer

from modelbus.cli import (
    call,
    dead_letters,
    demo,
    deploy,
    keys,
    listeners,
    models,
    nodes,
    runs,
    serve,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="modelbus",
    help="Event-driven model serving: publish model versions, call them, listen to brokers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# The order here is the order `modelbus --help` lists them in.
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("secret-key")(serve.secret_key)
app.command("call")(call.call)
app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")
app.add_typer(call.jobs_app, name="jobs")
app.add_typer(listeners.app, name="listeners")
app.add_typer(runs.app, name="runs")
app.add_typer(dead_letters.app, name="dead-letters")
app.command("nodes")(nodes.nodes)
app.add_typer(deploy.app, name="deploy")


def main() -> None:
    """Entry point of the ``modelbus`` console script."""
    app()
