"""``modelbus serve`` (run the server until Ctrl-C), ``modelbus secret-key`` (a new key
for the broker credentials it stores) and the hidden ``modelbus worker`` (a listener worker
process that ``serve --workers N`` starts).

The server's modules are imported when the command runs, so that every other command starts
without loading them. The options' documented defaults are read from :mod:`modelbus.config`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from modelbus import errors
from modelbus.cli.options import default_of, refuse_busy_port
from modelbus.cli.output import out, print_error
from modelbus.config import (
    DEFAULT_DATA_DIR,
    DEFAULT_MAX_BODY_BYTES,
    Settings,
    allow_hosts_of,
    default_workers,
    dir_roots_of,
)


def _mib(size: int) -> str:
    return f"{size / 2**20:g} MiB"


def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help=f"Interface to bind [env MODELBUS_HOST, default {default_of(Settings, 'host')}]."
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help=f"Port [env MODELBUS_PORT, default {default_of(Settings, 'port')}]."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help=f"Data directory [env MODELBUS_DATA_DIR, default ./{DEFAULT_DATA_DIR}]."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Store URL, e.g. postgresql://user@host/db [env MODELBUS_DATABASE_URL; "
            "default: a SQLite file in the data directory]."
        ),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            help="Largest request body [env MODELBUS_MAX_BODY_BYTES, "
            f"default {_mib(DEFAULT_MAX_BODY_BYTES)}]."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A TOML listener file ([[listeners]] tables) applied at start: its listeners "
            "are created, or updated where they changed; listeners stored before and absent "
            "from the file are KEPT unless --prune is given [env MODELBUS_CONFIG]. Brokers are "
            "not contacted to accept it: a listener whose broker is down shows 'degraded' and "
            "connects when the broker comes up.",
        ),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="With --config: delete stored listeners that the file does not define.",
        ),
    ] = False,
    metrics_public: Annotated[
        bool | None,
        typer.Option(
            "--metrics-public/--metrics-private",
            help="Serve /metrics without an API key (for a Prometheus scraper on a private "
            "network); by default it needs any valid key [env MODELBUS_METRICS_PUBLIC].",
            show_default=False,
        ),
    ] = None,
    allow_direct_requirements: Annotated[
        bool,
        typer.Option(
            "--allow-direct-requirements",
            help="Let model builds install requirements given as a URL or path "
            "(pkg @ https://..., pkg @ file:///...); refused by default, since they fetch code "
            "from anywhere this server can reach or read its files "
            "[env MODELBUS_ALLOW_DIRECT_REQUIREMENTS].",
        ),
    ] = False,
    artifacts: Annotated[
        str | None,
        typer.Option(
            "--artifacts",
            metavar="URL",
            help="The artifact store, shared by every node: s3://BUCKET/PREFIX on any "
            "S3-compatible store (options ?region=, ?endpoint_url=, ?profile=; else the usual "
            "AWS_ENDPOINT_URL, AWS_REGION and credential settings; needs modelbus[s3]), or a "
            "folder every node mounts (must exist) [env MODELBUS_ARTIFACTS; default: the "
            "folder DATA_DIR/artifacts, for one node].",
        ),
    ] = None,
    stop_deadline: Annotated[
        float | None,
        typer.Option(
            "--stop-deadline",
            help="Seconds a graceful stop (Ctrl-C, SIGTERM) lets in-flight messages finish "
            "before releasing them to their brokers [env MODELBUS_STOP_DEADLINE_S, "
            f"default {default_of(Settings, 'stop_deadline_s')}].",
        ),
    ] = None,
    advertise_url: Annotated[
        str | None,
        typer.Option(
            "--advertise-url",
            help="The URL other nodes and `modelbus nodes` list this node with "
            "[env MODELBUS_ADVERTISE_URL, default http://HOST:PORT].",
        ),
    ] = None,
    heartbeat_interval: Annotated[
        float | None,
        typer.Option(
            "--heartbeat-interval",
            help="Seconds between two heartbeats of this node in the store; also how often "
            "it renews its listener leases [env MODELBUS_HEARTBEAT_INTERVAL_S, default "
            f"{default_of(Settings, 'heartbeat_interval_s')}].",
        ),
    ] = None,
    node_timeout: Annotated[
        float | None,
        typer.Option(
            "--node-timeout",
            help="Seconds without a heartbeat after which a node is shown gone and its "
            "listener leases expire (a listener that runs on one node at a time moves to "
            "another within this plus the heartbeat interval); at least twice the interval "
            f"[env MODELBUS_NODE_TIMEOUT_S, default {default_of(Settings, 'node_timeout_s')}].",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            metavar="N",
            help="Processes running listeners: this one (which also serves the API, the "
            "console and async jobs) and N-1 worker processes that run listeners only, each "
            "with its own runner pools (up to N x a model's max runners). They compete for "
            "each listener's messages like replicas; a source that cannot be shared "
            "(local://, dir://) runs in one of them. At least 1 [env MODELBUS_WORKERS, "
            f"default: the cores, {default_workers()} here].",
        ),
    ] = None,
    dir_roots: Annotated[
        list[str] | None,
        typer.Option(
            "--dir-roots",
            metavar="FOLDERS",
            help="Folders that dir:// sources and sinks must lie in (repeat the option, or "
            f"separate folders with {os.pathsep!r}). Never the data directory, a folder "
            "holding it, or one inside it [env MODELBUS_DIR_ROOTS, default: the working "
            "directory].",
        ),
    ] = None,
    allow_hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-hosts",
            metavar="HOSTS",
            help="Where listener connectors may connect besides public addresses: CIDRs, "
            "addresses, host patterns (*.corp.example), repeated or comma-separated. "
            "Loopback is refused unless listed (e.g. 127.0.0.1/32); link-local and cloud "
            "metadata addresses and this server's own API are always refused [env "
            "MODELBUS_ALLOW_HOSTS, default: none].",
        ),
    ] = None,
    ignore_undecryptable: Annotated[
        bool,
        typer.Option(
            "--ignore-undecryptable",
            help="Start even if the broker credentials stored with listeners cannot be "
            "decrypted with this server's secret key (the key was lost): those listeners "
            "do not run until they are applied again. Without it such a server is refused: "
            "the other nodes use another key.",
        ),
    ] = False,
) -> None:
    """Run the server: HTTP API, model pools, async jobs and event listeners, until Ctrl-C.

    On the first start of a fresh store an admin API key is printed, once. Several nodes
    share one PostgreSQL store (--database-url) and one artifact store (--artifacts).
    Broker credentials in listener definitions are stored encrypted with
    MODELBUS_SECRET_KEY, or with the key file DATA_DIR/secret.key made on first start.

    Every server on one PostgreSQL store is a node (`modelbus nodes` lists them): give them
    all the same MODELBUS_SECRET_KEY. A SQLite store serves one node: a second server on it
    is refused (its own worker processes are not).

    With --workers N > 1, listeners run in N processes (this one and N-1 workers it
    restarts when they die); Ctrl-C or SIGTERM stops the workers and this process's
    listeners together, each draining to --stop-deadline, then this process exits.

    Traces: set OTEL_EXPORTER_OTLP_ENDPOINT (the standard OpenTelemetry variables) to export
    a span per HTTP request and per listener delivery over OTLP/HTTP; needs the otel extra
    (docs/operations.md#traces-opentelemetry).
    """
    import asyncio

    from modelbus.listeners.files import load_listener_file
    from modelbus.listeners.manager import ManagerOptions
    from modelbus.registry.artifacts import open_store
    from modelbus.runtime import telemetry
    from modelbus.store.secrets import SecretBox
    from modelbus.web.app import run
    from modelbus.web.server import check_node

    if prune and config is None:
        raise typer.BadParameter("--prune needs --config FILE", param_hint="--prune")
    if workers is not None and workers < 1:
        raise typer.BadParameter(
            f"{workers} processes: at least 1 (this process, plus N-1 workers)",
            param_hint="--workers",
        )
    try:
        settings = Settings.from_env(
            host=host,
            port=port,
            data_dir=data_dir,
            database_url=database_url,
            max_body_bytes=max_body_bytes,
            listeners_file=config,
            prune_listeners=prune or None,
            metrics_public=metrics_public,
            stop_deadline_s=stop_deadline,
            advertise_url=advertise_url,
            heartbeat_interval_s=heartbeat_interval,
            node_timeout_s=node_timeout,
            ignore_undecryptable=ignore_undecryptable or None,
            artifacts_url=artifacts,
            workers=workers,
            allow_direct_requirements=allow_direct_requirements or None,
            dir_roots=_roots(dir_roots),
            allow_hosts=_hosts(allow_hosts),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    refuse_busy_port(settings.host, settings.port, hint="--port PORT (or MODELBUS_PORT)")
    try:  # refuse a bad key, store URL, listener file or node before anything starts
        SecretBox.load(settings.data_dir, settings.secret_key)
        open_store(settings.artifacts_url, settings.data_dir)
        if settings.listeners_file is not None:
            policy = ManagerOptions.from_settings(settings).policy
            load_listener_file(settings.listeners_file, settings.data_dir, policy)
        asyncio.run(check_node(settings))
    except errors.ModelbusError as exc:
        print_error(exc.message)
        raise typer.Exit(2) from None
    try:  # OTEL_EXPORTER_OTLP_ENDPOINT set without the otel extra: say so, do not start
        telemetry.setup()
    except RuntimeError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from None
    run(settings)


def worker() -> None:
    """A listener worker process of `modelbus serve --workers N` (started by serve itself,
    which writes its settings to this command's standard input; not for use by hand)."""
    from modelbus.web.worker import main

    main()


def secret_key() -> None:
    """Print a new key for MODELBUS_SECRET_KEY (encrypts broker credentials in the store).

    Give every server of one store the same key. To rotate, set MODELBUS_SECRET_KEY=NEW,OLD
    and apply the listeners again (the first key encrypts, all of them decrypt).
    """
    from modelbus.store.secrets import SecretBox

    out.print(SecretBox.new_key())


def _roots(given: list[str] | None) -> tuple[Path, ...] | None:
    """The ``--dir-roots`` values as folders (None when the option is not given)."""
    if not given:
        return None
    return tuple(root for value in given for root in dir_roots_of(value))


def _hosts(given: list[str] | None) -> tuple[str, ...] | None:
    """The ``--allow-hosts`` values as one list (None when the option is not given)."""
    if not given:
        return None
    return tuple(host for value in given for host in allow_hosts_of(value))
