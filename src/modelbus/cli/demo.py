"""``modelbus demo``: the server, the example models and a folder listener on this machine.

The command parses its options; what it runs is :mod:`modelbus.cli.demo_plan`, imported when
the command runs (it loads the server).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from modelbus import errors
from modelbus.cli.options import default_of, refuse_busy_port
from modelbus.cli.output import out, print_error
from modelbus.config import DEFAULT_PORT, Settings


def demo(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the demo keeps everything (reused).")
    ] = Path("demo-data"),
    port: Annotated[int, typer.Option("--port", help="Port of the API.")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = default_of(
        Settings, "host"
    ),
    folder: Annotated[
        Path | None,
        typer.Option("--folder", help="Folder to drop images into [default: DATA_DIR/inbox]."),
    ] = None,
    outbox: Annotated[
        Path | None,
        typer.Option("--outbox", help="Folder the OCR results appear in [DATA_DIR/outbox]."),
    ] = None,
    examples: Annotated[
        Path | None,
        typer.Option("--examples", help="The example models' folder [the checkout's examples/]."),
    ] = None,
) -> None:
    """Run everything on this machine: the server, the example models, and a folder listener
    (images dropped into --folder are read by examples/ocr; the text lands in --outbox).

    The first start builds the examples' environments (the OCR one downloads about 400 MB);
    later starts on the same --data-dir reuse them, the admin key and the listener.
    """
    from modelbus.cli.demo_plan import DemoPlan, run_demo

    # One process: the demo's one listener is a folder, which runs in one process anyway
    # (MODELBUS_WORKERS still says otherwise).
    workers = None if os.environ.get("MODELBUS_WORKERS") else 1
    settings = Settings.from_env(data_dir=data_dir, port=port, host=host, workers=workers)
    refuse_busy_port(settings.host, settings.port)  # before the data directory is made
    try:
        plan = DemoPlan.make(settings, examples=examples, inbox=folder, outbox=outbox)
    except errors.ModelbusError as exc:
        print_error(exc.message)
        raise typer.Exit(2) from None
    run_demo(plan, out)
