"""The ``modelbus`` command: run a server, and talk to one through the SDK.

Every client command takes ``--url`` (``MODELBUS_URL``) and ``--key`` (``MODELBUS_API_KEY``)
and is a thin layer over :class:`modelbus.client.Client`: parse, call, format. Errors are
printed as one clear line (plus the model's stack trace or the build log when there is one)
and exit with status 1; usage errors exit with 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelbus import errors
from modelbus.client import Bump, CallResult, Client, Job
from modelbus.client.refs import ModelRef
from modelbus.client.schemas import ListenerStatusOut, RunOut
from modelbus.listeners.definition import ListenerDefinition

app = typer.Typer(
    name="modelbus",
    help="Event-driven model serving: publish model versions, call them, listen to brokers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
models_app = typer.Typer(help="Push, list and inspect models.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys (admin).", no_args_is_help=True)
jobs_app = typer.Typer(help="Inspect asynchronous calls.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(jobs_app, name="jobs")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

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


def main() -> None:
    """Entry point of the ``modelbus`` console script."""
    app()


@contextmanager
def _client(url: str | None, key: str | None) -> Iterator[Client]:
    """A client whose modelbus errors end the command with a clear message and status 1."""
    try:
        with Client(url, key) as client:
            yield client
    except errors.ModelbusError as exc:
        _fail(exc)
    except TimeoutError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


def _fail(exc: errors.ModelbusError) -> None:
    err.print(f"[red]error:[/red] {escape(exc.message)}", markup=True)
    if isinstance(exc, errors.InvocationError):
        err.print(f"[dim]{type(exc).__name__} ({exc.error_type})[/dim]")
        if exc.stacktrace:
            err.print(exc.stacktrace, markup=False)
    if isinstance(exc, errors.BuildError) and exc.log:
        err.print(exc.log, markup=False)
    raise typer.Exit(1)


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


def _when(ts: float | None) -> str:
    import datetime as dt

    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _table(*columns: str) -> Table:
    # Fold rather than truncate: ids and hashes must stay whole to be copied.
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _split_model(text: str) -> tuple[str, str]:
    ref = _parse_ref(text)
    if ref.spec != "latest" and "@" in text:
        raise typer.BadParameter("give OWNER/NAME without a version", param_hint="MODEL")
    return ref.owner, ref.name


def _parse_ref(text: str) -> ModelRef:
    try:
        return ModelRef.parse(text)
    except errors.InvalidInput as exc:
        raise typer.BadParameter(exc.message, param_hint="MODEL") from exc


# --- serve ---------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(help="Interface to bind [env MODELBUS_HOST, default 127.0.0.1]."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port [env MODELBUS_PORT, default 8470]."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data directory [env MODELBUS_DATA_DIR, default ./.modelbus]."),
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
        typer.Option(help="Largest request body [env MODELBUS_MAX_BODY_BYTES, default 10 MiB]."),
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
    stop_deadline: Annotated[
        float | None,
        typer.Option(
            "--stop-deadline",
            help="Seconds a graceful stop (Ctrl-C, SIGTERM) lets in-flight messages finish "
            "before releasing them to their brokers [env MODELBUS_STOP_DEADLINE_S, "
            "default 30].",
        ),
    ] = None,
) -> None:
    """Run the server: HTTP API, model pools, async jobs and event listeners, until Ctrl-C.

    On the first start of a fresh data directory an admin API key is printed, once.
    Broker credentials in listener definitions are stored encrypted with
    MODELBUS_SECRET_KEY, or with the key file DATA_DIR/secret.key made on first start.
    """
    from modelbus.config import Settings
    from modelbus.listeners.files import load_listener_file
    from modelbus.store.secrets import SecretBox
    from modelbus.web.app import run

    if prune and config is None:
        raise typer.BadParameter("--prune needs --config FILE", param_hint="--prune")
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
    )
    try:  # refuse a bad key or listener file before anything starts
        SecretBox.load(settings.data_dir, settings.secret_key)
        if settings.listeners_file is not None:
            load_listener_file(settings.listeners_file, settings.data_dir)
    except errors.ModelbusError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    run(settings)


@app.command()
def demo(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the demo keeps everything (reused).")
    ] = Path("demo-data"),
    port: Annotated[int, typer.Option("--port", help="Port of the API.")] = 8470,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
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
    from modelbus.config import Settings

    settings = Settings.from_env(data_dir=data_dir, port=port, host=host)
    try:
        plan = DemoPlan.make(settings, examples=examples, inbox=folder, outbox=outbox)
    except errors.ModelbusError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(2) from None
    run_demo(plan, out)


@app.command("secret-key")
def secret_key() -> None:
    """Print a new key for MODELBUS_SECRET_KEY (encrypts broker credentials in the store).

    Give every server of one store the same key. To rotate, set MODELBUS_SECRET_KEY=NEW,OLD
    and apply the listeners again (the first key encrypts, all of them decrypt).
    """
    from modelbus.store.secrets import SecretBox

    out.print(SecretBox.new_key())


# --- models --------------------------------------------------------------------------------


@models_app.command("push")
def models_push(
    path: Annotated[Path, typer.Argument(help="Model folder (with modelbus.toml).", exists=True)],
    version: Annotated[
        str | None,
        typer.Option("--version", help="Version number X.Y.Z to give this push."),
    ] = None,
    bump: Annotated[
        str | None,
        typer.Option(
            "--bump",
            help="Record the next version after the highest: major, minor or patch.",
        ),
    ] = None,
    no_publish: Annotated[
        bool, typer.Option("--no-publish", help="Build only: callable by build hash alone.")
    ] = False,
    url: Url = None,
    key: Key = None,
) -> None:
    """Upload a model folder, build it (showing the build output) and publish a version.

    Without --version or --bump the push is a build callable by its hash only
    (OWNER/NAME@sha256:...); publish it later with `modelbus models publish`.
    """
    if version and bump:
        raise typer.BadParameter("give --version or --bump, not both")
    chosen = _bump(bump)
    with _client(url, key) as client, err.status(f"pushing {path} ..."):
        pushed = client.push(
            path, version=version, bump=chosen, publish=not no_publish, on_log=_log_line
        )
    model = f"{pushed.owner}/{pushed.name}"
    again = "" if pushed.created else " (pushed before: nothing changed)"
    if pushed.version is None:
        out.print(f"{model} build {pushed.build} ready, no version recorded{again}")
        err.print(
            f"[dim]call it as {model}@{pushed.build}, or publish it with --version/--bump "
            "or `modelbus models publish`[/dim]"
        )
        return
    state = "published" if pushed.published else "recorded, not published"
    out.print(f"{model} {pushed.version} {state} (build {pushed.build}){again}")


@models_app.command("publish")
def models_publish(
    model: Annotated[str, typer.Argument(help="OWNER/NAME")],
    build: Annotated[
        str | None,
        typer.Option("--build", help="Build hash or unique prefix [default: the newest build]."),
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="The version X.Y.Z to publish or assign.")
    ] = None,
    bump: Annotated[
        str | None,
        typer.Option("--bump", help="Give the build the next major, minor or patch version."),
    ] = None,
    url: Url = None,
    key: Key = None,
) -> None:
    """Publish a version, so `latest` and wildcards serve it."""
    owner, name = _split_model(model)
    chosen = _bump(bump)
    with _client(url, key) as client:
        published = client.publish(owner, name, build=build, version=version, bump=chosen)
    out.print(f"{published.owner}/{published.name} {published.version} {published.build} published")


def _bump(bump: str | None) -> Bump | None:
    if bump not in (None, "major", "minor", "patch"):
        raise typer.BadParameter("--bump must be major, minor or patch")
    return bump  # type: ignore[return-value]


def _log_line(line: str) -> None:
    err.print(f"[dim]{line}[/dim]", markup=True, highlight=False)


@models_app.command("list")
def models_list(url: Url = None, key: Key = None, as_json: AsJson = False) -> None:
    """List the models this key may see, with their latest published version."""
    with _client(url, key) as client:
        found = client.models()
    if as_json:
        _print_json([m.model_dump() for m in found])
        return
    table = _table("model", "latest", "description", "created")
    for m in found:
        table.add_row(
            f"{m.owner}/{m.name}", m.latest_version or "-", m.description, _when(m.created_at)
        )
    out.print(table)


@models_app.command("versions")
def models_versions(
    model: Annotated[str, typer.Argument(help="OWNER/NAME")],
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """List the versions of a model, newest first."""
    owner, name = _split_model(model)
    with _client(url, key) as client:
        found = client.versions(owner, name)
    if as_json:
        _print_json([v.model_dump() for v in found])
        return
    table = _table("version", "build", "published", "created")
    for v in found:
        table.add_row(v.version, v.build, "yes" if v.published else "no", _when(v.created_at))
    out.print(table)


@models_app.command("builds")
def models_builds(
    model: Annotated[str, typer.Argument(help="OWNER/NAME")],
    log: Annotated[
        str | None,
        typer.Option("--log", help="Print the build log of this build hash instead."),
    ] = None,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """List the builds of a model, or print one build's log with --log HASH."""
    owner, name = _split_model(model)
    with _client(url, key) as client:
        if log:
            build = client.build(log)
            out.print(build.log or "", markup=False, highlight=False)
            return
        found = client.builds(owner, name)
    if as_json:
        _print_json([b.model_dump() for b in found])
        return
    table = _table("build", "status", "versions", "created")
    for b in found:
        table.add_row(b.hash, b.status, ", ".join(b.versions) or "-", _when(b.created_at))
    out.print(table)


# --- call and jobs --------------------------------------------------------------------------


@app.command()
def call(
    model: Annotated[
        str, typer.Argument(help="OWNER/NAME[@SPEC]: 1.2.3, 1.2.*, 1.*, latest, or a build hash.")
    ],
    data: Annotated[
        str | None,
        typer.Argument(help='Input as JSON, e.g. \'{"text": "hi"}\' or \'"a string"\'.'),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Send this file ('-' for stdin): JSON if *.json, text if *.txt, else binary.",
        ),
    ] = None,
    text: Annotated[
        str | None,
        typer.Option("--text", "-t", help="Send this text as a text input."),
    ] = None,
    content_type: Annotated[
        str | None,
        typer.Option(
            "--content-type", help="Force the input kind: json, text, binary or a MIME type."
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", help="Seconds before the call is abandoned [default: the version's]."
        ),
    ] = None,
    stdout: Annotated[
        bool, typer.Option("--stdout", help="Show what the model printed during the call.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the result to this file (binary results)."),
    ] = None,
    submit: Annotated[
        bool, typer.Option("--async", help="Run in the background: print the job id and return.")
    ] = False,
    url: Url = None,
    key: Key = None,
) -> None:
    """Call a model version with one input and print its result (metadata on stderr)."""
    ref = _parse_ref(model)
    value, kind = _input(data, file, text, content_type)
    with _client(url, key) as client:
        if submit:
            job = client.submit(ref, value, content_type=kind, timeout_s=timeout)
            out.print(job.id)
            return
        result = client.call(ref, value, content_type=kind, timeout_s=timeout, stdout=stdout)
    _show_result(ref, result, output, stdout)


def _input(
    data: str | None, file: Path | None, text: str | None, content_type: str | None
) -> tuple[Any, str | None]:
    given = [x is not None for x in (data, file, text)]
    if sum(given) != 1:
        raise typer.BadParameter("give exactly one input: JSON, --file or --text")
    if text is not None:
        return text, content_type or "text"
    if file is not None:
        raw = sys.stdin.buffer.read() if str(file) == "-" else _read(file)
        return raw, content_type or {".json": "json", ".txt": "text"}.get(file.suffix, "binary")
    assert data is not None
    if content_type not in (None, "json"):
        return data, content_type
    try:
        return json.loads(data), "json"
    except ValueError as exc:
        raise typer.BadParameter(
            f"not valid JSON ({exc}); use --text for a plain string", param_hint="DATA"
        ) from exc


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(str(exc), param_hint="--file") from exc


def _show_result(ref: ModelRef, result: CallResult, output: Path | None, stdout: bool) -> None:
    if stdout and result.stdout:
        err.print("[dim]--- model stdout ---[/dim]")
        err.print(result.stdout, markup=False, end="" if result.stdout.endswith("\n") else "\n")
        err.print("[dim]--------------------[/dim]")
    _write_value(result, output)
    err.print(
        f"[dim]{ref.owner}/{ref.name}@{result.version} {result.content_type} "
        f"in {result.duration_s * 1000:.1f} ms[/dim]"
    )


def _write_value(result: CallResult, output: Path | None) -> None:
    value = result.value
    if output is not None:
        output.write_bytes(value if isinstance(value, bytes) else _text_of(value).encode())
        return
    if isinstance(value, bytes):
        if sys.stdout.isatty():
            err.print(f"binary result of {len(value)} bytes: use --output FILE to save it")
            return
        sys.stdout.buffer.write(value)
        sys.stdout.flush()
        return
    print(_text_of(value))


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="The job id printed by `modelbus call --async`.")],
    wait: Annotated[
        float | None,
        typer.Option("--wait", help="Wait up to this many seconds for the job to finish."),
    ] = None,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Show a job's status; its result (or error) once it has finished."""
    with _client(url, key) as client:
        job = client.wait(job_id, wait) if wait else client.job(job_id)
    if as_json:
        _print_json(_job_json(job))
        return
    err.print(f"[dim]job {job.id}: {job.status} ({job.ref}, version {job.version or '-'})[/dim]")
    if job.error is not None:
        _fail(job.error)
    if job.result is not None:
        _write_value(job.result, None)


def _job_json(job: Job) -> dict[str, Any]:
    result = job.result
    return {
        "id": job.id,
        "status": job.status,
        "model": str(job.ref),
        "version": job.version,
        "result": None if result is None or isinstance(result.value, bytes) else result.value,
        "error": None if job.error is None else job.error.message,
    }


# --- keys -----------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A label for the key.")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            "-s",
            help="Repeatable: call:*, call:OWNER/NAME, models:manage, listeners:manage, admin.",
        ),
    ],
    url: Url = None,
    key: Key = None,
) -> None:
    """Create an API key and print its secret (shown this once)."""
    with _client(url, key) as client:
        created = client.create_key(name, scope)
    err.print(
        f"[dim]key {created.info.id} ({', '.join(created.info.scopes)}); "
        "store the secret now, it is not shown again:[/dim]"
    )
    out.print(created.key)


@keys_app.command("list")
def keys_list(url: Url = None, key: Key = None, as_json: AsJson = False) -> None:
    """List API keys (never their secrets)."""
    with _client(url, key) as client:
        found = client.keys()
    if as_json:
        _print_json([k.model_dump() for k in found])
        return
    table = _table("id", "name", "scopes", "created", "last used", "revoked")
    for k in found:
        table.add_row(
            k.id,
            k.name,
            " ".join(k.scopes),
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `modelbus keys list`).")],
    url: Url = None,
    key: Key = None,
) -> None:
    """Revoke an API key; it stops working at once."""
    with _client(url, key) as client:
        revoked = client.revoke_key(key_id)
    out.print(f"revoked {revoked.id} ({revoked.name})")


# --- listeners ------------------------------------------------------------------------------

listeners_app = typer.Typer(
    help="Create, apply, inspect, pause, resume and delete event listeners.",
    no_args_is_help=True,
)
runs_app = typer.Typer(help="What happened to broker messages (run records).", no_args_is_help=True)
dead_app = typer.Typer(help="List, inspect and redrive dead letters.", no_args_is_help=True)
app.add_typer(listeners_app, name="listeners")
app.add_typer(runs_app, name="runs")
app.add_typer(dead_app, name="dead-letters")

NoCheck = Annotated[
    bool,
    typer.Option(
        "--no-check",
        help="Store it without opening its connectors first (its status shows what fails).",
    ),
]


def _definition_from_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """A definition mapping from the create flags that were given (the rest: defaults)."""
    groups = {
        "retry": ("max_attempts", "initial_backoff_s", "max_backoff_s", "multiplier", "jitter"),
        "batch": ("max_batch_size", "max_wait_ms"),
    }
    data: dict[str, Any] = {}
    for group, names in groups.items():
        given = {n: flags.pop(n) for n in names if flags.get(n) is not None}
        for n in names:
            flags.pop(n, None)
        if given:
            data[group] = given
    data.update({k: v for k, v in flags.items() if v is not None and v != []})
    return data


def _one_definition(file: Path, name: str | None) -> ListenerDefinition:
    from modelbus.listeners.definition import load_definitions

    found = load_definitions(file)
    if name is not None:
        found = [d for d in found if d.name == name]
    if len(found) != 1:
        raise typer.BadParameter(
            f"{file} defines {len(found)} listener(s){f' named {name!r}' if name else ''}: "
            "give --name to pick one, or use `modelbus listeners apply FILE` for all",
            param_hint="--file",
        )
    return found[0]


def _filter_json(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--filter") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("a filter is a JSON object", param_hint="--filter")
    return value


@listeners_app.command("create")
def listeners_create(
    name: Annotated[str | None, typer.Option("--name", help="Unique listener name.")] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", help="Source URL, e.g. local://jobs, dir:///srv/inbox, sqs://q."),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="OWNER/NAME[@SPEC], e.g. acme/ocr@1.*.")
    ] = None,
    output: Annotated[
        list[str] | None,
        typer.Option("--output", "-o", help="Sink URL for results (repeatable)."),
    ] = None,
    error_sink: Annotated[
        str | None, typer.Option("--error-sink", help="Sink URL for dead letters.")
    ] = None,
    max_attempts: Annotated[
        int | None,
        typer.Option("--max-attempts", help="Deliveries of a message before dead-lettering [5]."),
    ] = None,
    initial_backoff: Annotated[
        float | None,
        typer.Option("--initial-backoff", help="Seconds before the second attempt [1]."),
    ] = None,
    max_backoff: Annotated[
        float | None, typer.Option("--max-backoff", help="Longest delay between attempts [300].")
    ] = None,
    backoff_multiplier: Annotated[
        float | None,
        typer.Option("--backoff-multiplier", help="Each delay is this times the last [2]."),
    ] = None,
    jitter: Annotated[
        float | None, typer.Option("--jitter", help="Fraction of each delay randomised [0.2].")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Inputs per model call [1].")
    ] = None,
    batch_wait_ms: Annotated[
        int | None,
        typer.Option("--batch-wait-ms", help="Longest wait for a batch to fill, in ms [0]."),
    ] = None,
    max_in_flight: Annotated[
        int | None,
        typer.Option("--max-in-flight", help="Most messages held at once (back-pressure) [16]."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds per invocation [default: the version's]."),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            "--max-body-bytes",
            help="Largest message body run; larger ones are dead-lettered [10485760].",
        ),
    ] = None,
    filter_json: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help='Pattern on the body and attributes, as JSON, e.g. \'{"body": {"type": '
            '["invoice"]}}\'; other messages are acknowledged without running the model.',
        ),
    ] = None,
    output_mode: Annotated[
        str | None,
        typer.Option("--output-mode", help="cloudevent (default) or raw (the bare result)."),
    ] = None,
    disabled: Annotated[
        bool, typer.Option("--disabled", help="Store it paused (resume to start it).")
    ] = False,
    no_extend_lease: Annotated[
        bool,
        typer.Option(
            "--no-extend-lease",
            help="Do not extend the source's lease while a model runs (then --timeout must be "
            "shorter than the source's visibility timeout).",
        ),
    ] = False,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Create the one listener of this TOML file ([[listeners]]; --name picks one "
            "of several) instead of giving flags.",
        ),
    ] = None,
    no_check: NoCheck = False,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Create a listener: every message on SOURCE goes to MODEL, results to each --output,
    failures to --error-sink. It starts at once (unless --disabled)."""
    if file is not None:
        definition: Any = _one_definition(file, name)
    else:
        if not (name and source and model):
            raise typer.BadParameter("give --name, --source and --model (or --file FILE)")
        definition = _definition_from_flags(
            {
                "name": name,
                "source": source,
                "model": model,
                "outputs": output or [],
                "error_sink": error_sink,
                "max_attempts": max_attempts,
                "initial_backoff_s": initial_backoff,
                "max_backoff_s": max_backoff,
                "multiplier": backoff_multiplier,
                "jitter": jitter,
                "max_batch_size": batch_size,
                "max_wait_ms": batch_wait_ms,
                "max_in_flight": max_in_flight,
                "timeout_s": timeout,
                "max_body_bytes": max_body_bytes,
                "filter": _filter_json(filter_json),
                "output_mode": output_mode,
                "enabled": False if disabled else None,
                "extend_lease": False if no_extend_lease else None,
            }
        )
    with _client(url, key) as client:
        created = client.create_listener(definition, check=not no_check)
    if as_json:
        _print_json(created.model_dump(mode="json"))
        return
    out.print(f"listener {created.name} created ({created.status.state})")


@listeners_app.command("apply")
def listeners_apply(
    file: Annotated[Path, typer.Argument(help="TOML listener file ([[listeners]] tables).")],
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete stored listeners the file does not define.")
    ] = False,
    no_check: NoCheck = False,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Create or update every listener of FILE (only changed ones restart). Listeners the
    file does not name are kept unless --prune. Nothing changes if one is refused."""
    from modelbus.listeners.definition import load_definitions

    with _client(url, key) as client:
        definitions = load_definitions(file)
        result = client.apply_listeners(definitions, prune=prune, check=not no_check)
    if as_json:
        _print_json(result.model_dump())
        return
    for label, names in (
        ("created", result.created),
        ("updated", result.updated),
        ("unchanged", result.unchanged),
        ("deleted", result.deleted),
    ):
        if names:
            out.print(f"{label}: {', '.join(names)}")
    if not (result.created or result.updated or result.unchanged or result.deleted):
        out.print("nothing to apply")


@listeners_app.command("list")
def listeners_list(url: Url = None, key: Key = None, as_json: AsJson = False) -> None:
    """List listeners with their state and figures."""
    with _client(url, key) as client:
        found = client.listeners()
    if as_json:
        _print_json([x.model_dump(mode="json") for x in found])
        return
    table = _table("name", "state", "model", "version", "source", "received", "ok", "dead")
    for x in found:
        c = x.status.counters
        table.add_row(
            x.name,
            x.status.state,
            x.definition.model,
            x.status.version or "-",
            x.definition.source,
            _count(c.get("received")),
            _count(c.get("succeeded")),
            _count(c.get("dead_lettered")),
        )
    out.print(table)


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _status_rows(status: ListenerStatusOut) -> list[tuple[str, str]]:
    c = status.counters
    mean_ms = (
        f"{1000 * c['latency_sum_s'] / c['latency_count']:.1f} ms"
        if c.get("latency_count")
        else "-"
    )
    rows = [
        ("state", status.state),
        ("version now", status.version or f"- ({status.version_error})"),
        ("received", _count(c.get("received"))),
        ("succeeded", _count(c.get("succeeded"))),
        ("retried", _count(c.get("retried"))),
        ("dead-lettered", _count(c.get("dead_lettered"))),
        ("skipped: filtered", _count(c.get("skipped_filtered"))),
        ("skipped: duplicate", _count(c.get("skipped_duplicate"))),
        ("skipped: nothing to run", _count(c.get("skipped_no_input"))),
        ("in flight", _count(c.get("in_flight"))),
        ("oldest in flight", f"{c.get('oldest_in_flight_age_s', 0):.1f} s"),
        ("mean end-to-end latency", mean_ms),
    ]
    rows += [(f"problem: {part}", why) for part, why in status.problems.items()]
    if status.reason:
        rows.append(("last error", f"{status.reason} ({_when(status.reason_at)})"))
    return rows


@listeners_app.command("status")
def listeners_status(
    name: Annotated[str, typer.Argument(help="Listener name.")],
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Show a listener's state, figures since this server started, and last error."""
    with _client(url, key) as client:
        found = client.listener(name)
    if as_json:
        _print_json(found.model_dump(mode="json"))
        return
    d = found.definition
    table = Table(title=f"listener {d.name}: {d.source} -> {d.model}", show_header=False)
    table.add_column("figure", style="dim")
    table.add_column("value", overflow="fold")
    for label, value in _status_rows(found.status):
        table.add_row(label, value)
    table.add_row("outputs", ", ".join(d.outputs) or "-")
    table.add_row("error sink", d.error_sink or "-")
    out.print(table)


@listeners_app.command("pause")
def listeners_pause(
    name: Annotated[str, typer.Argument(help="Listener name.")], url: Url = None, key: Key = None
) -> None:
    """Pause a listener: it stops gracefully and stays stopped across restarts."""
    with _client(url, key) as client:
        paused = client.pause_listener(name)
    out.print(f"listener {paused.name} {paused.status.state}")


@listeners_app.command("resume")
def listeners_resume(
    name: Annotated[str, typer.Argument(help="Listener name.")], url: Url = None, key: Key = None
) -> None:
    """Resume a paused listener."""
    with _client(url, key) as client:
        resumed = client.resume_listener(name)
    out.print(f"listener {resumed.name} {resumed.status.state}")


@listeners_app.command("delete")
def listeners_delete(
    name: Annotated[str, typer.Argument(help="Listener name.")], url: Url = None, key: Key = None
) -> None:
    """Stop and delete a listener (its run records and dead letters are kept)."""
    with _client(url, key) as client:
        client.delete_listener(name)
    out.print(f"listener {name} deleted")


# --- runs -----------------------------------------------------------------------------------


def _run_rows(run: RunOut) -> list[tuple[str, str]]:
    rows = [
        ("listener", run.listener),
        ("message", run.message_id),
        ("status", run.status),
        ("attempts", str(run.attempts)),
        ("version", run.version or "-"),
        ("received", _when(run.first_received_at)),
        ("finished", _when(run.finished_at)),
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


@runs_app.command("get")
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
    with _client(url, key) as client:
        found = client.runs(message_id, listener=listener)
    if as_json:
        _print_json([r.model_dump() for r in found])
        return
    for run in found:
        table = Table(show_header=False)
        table.add_column("field", style="dim")
        table.add_column("value", overflow="fold")
        for label, value in _run_rows(run):
            table.add_row(label, value)
        out.print(table)


@runs_app.command("list")
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
    with _client(url, key) as client:
        page = client.listener_runs(listener, status=status, limit=limit)
    if as_json:
        _print_json([r.model_dump() for r in page.items])
        return
    table = _table("message", "status", "attempts", "version", "updated", "error")
    for r in page.items:
        error = f"{r.error.get('type')}: {r.error.get('message')}" if r.error else ""
        table.add_row(
            r.message_id, r.status, str(r.attempts), r.version or "-", _when(r.updated_at), error
        )
    out.print(table)


# --- dead letters ---------------------------------------------------------------------------


@dead_app.command("list")
def dead_letters_list(
    listener: Annotated[str, typer.Argument(help="Listener name.")],
    pending: Annotated[
        bool, typer.Option("--pending", help="Only letters not redriven yet.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 50,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """A listener's dead letters, newest first."""
    with _client(url, key) as client:
        page = client.dead_letters(listener, include_redriven=not pending, limit=limit)
    if as_json:
        _print_json([d.model_dump() for d in page.items])
        return
    table = _table("id", "message", "error", "attempts", "version", "created", "redriven")
    for d in page.items:
        table.add_row(
            d.id,
            d.message_id,
            f"{d.error_type}: {d.error_message}",
            str(d.attempts),
            d.version or "-",
            _when(d.created_at),
            f"{_when(d.redriven_at)} -> {d.redriven_to}" if d.redriven_at else "-",
        )
    out.print(table)


@dead_app.command("show")
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
    import base64

    with _client(url, key) as client:
        letter = client.dead_letter(letter_id)
    body = base64.b64decode(letter.body_base64 or "")
    if body_out is not None:
        body_out.write_bytes(body)
    if as_json:
        _print_json(letter.model_dump())
        return
    table = Table(show_header=False)
    table.add_column("field", style="dim")
    table.add_column("value", overflow="fold")
    for label, value in (
        ("id", letter.id),
        ("listener", letter.listener),
        ("message", letter.message_id),
        ("model", f"{letter.model} (version {letter.version or '-'})"),
        ("error", f"{letter.error_type}: {letter.error_message}"),
        ("permanent", "yes" if letter.permanent else "no"),
        ("attempts", str(letter.attempts)),
        ("created", _when(letter.created_at)),
        (
            "redriven",
            f"{_when(letter.redriven_at)} -> {letter.redriven_to}" if letter.redriven_at else "-",
        ),
        ("attributes", json.dumps(letter.attributes)),
        ("body", _preview(body)),
    ):
        table.add_row(label, value)
    out.print(table)
    if letter.stacktrace:
        err.print(letter.stacktrace, markup=False, highlight=False)


def _preview(body: bytes, limit: int = 2000) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(body)} bytes of binary: use --body-out FILE>"
    return text if len(text) <= limit else text[:limit] + f"... ({len(body)} bytes)"


@dead_app.command("redrive")
def dead_letters_redrive(
    listener: Annotated[str, typer.Argument(help="Listener name.")],
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="Redrive this dead letter (repeatable) [default: all pending]."),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="Version spec to run them on, e.g. 1.2.* [default: the listener's own]."
        ),
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", help="Most redriven per second [10].")
    ] = None,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Run dead letters again through the listener (results go to its outputs)."""
    with _client(url, key) as client, err.status("redriving ..."):
        result = client.redrive(listener, ids=ids or None, spec=to, rate_per_s=rate)
    if as_json:
        _print_json(result.model_dump())
        return
    out.print(f"redriven on {result.model}: {len(result.redriven)} succeeded")
    for letter_id, why in result.failed.items():
        err.print(f"[red]failed again:[/red] {letter_id}: {escape(why)}")
    if result.failed:
        raise typer.Exit(1)
