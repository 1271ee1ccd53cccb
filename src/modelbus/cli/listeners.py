"""``modelbus listeners``: create (from flags or a TOML file), apply a listener file, list,
show the status of, pause, resume and delete event listeners, and describe them all as an
AsyncAPI document."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from modelbus.cli.options import AsJson, Key, Url, default_of, open_client
from modelbus.cli.output import fields_table, new_table, out, print_json, when
from modelbus.client.schemas import BatchFields, ListenerFields, ListenerStatusOut, RetryFields
from modelbus.listeners.credentials import redact_url
from modelbus.listeners.definition import ListenerDefinition

app = typer.Typer(
    help="Create, apply, inspect, pause, resume and delete event listeners; describe them "
    "as AsyncAPI.",
    no_args_is_help=True,
)


NoCheck = Annotated[
    bool,
    typer.Option(
        "--no-check",
        help="Store it without checking that its model resolves or opening its connectors "
        "first (its status shows what fails).",
    ),
]


def _definition_from_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """A definition mapping from the create flags that were given (the rest: defaults)."""
    groups = {
        "retry": ("max_attempts", "initial_backoff_s", "max_backoff_s", "multiplier", "jitter"),
        "batch": ("max_batch_size", "max_wait_ms"),
        "claim_check": ("url", "over_bytes"),
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


@app.command("create")
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
        typer.Option(
            "--max-attempts",
            help="Deliveries of a message before dead-lettering "
            f"[{default_of(RetryFields, 'max_attempts')}].",
        ),
    ] = None,
    initial_backoff: Annotated[
        float | None,
        typer.Option(
            "--initial-backoff",
            help="Seconds before the second attempt "
            f"[{default_of(RetryFields, 'initial_backoff_s')}].",
        ),
    ] = None,
    max_backoff: Annotated[
        float | None,
        typer.Option(
            "--max-backoff",
            help=f"Longest delay between attempts [{default_of(RetryFields, 'max_backoff_s')}].",
        ),
    ] = None,
    backoff_multiplier: Annotated[
        float | None,
        typer.Option(
            "--backoff-multiplier",
            help=f"Each delay is this times the last [{default_of(RetryFields, 'multiplier')}].",
        ),
    ] = None,
    jitter: Annotated[
        float | None,
        typer.Option(
            "--jitter",
            help=f"Fraction of each delay randomised [{default_of(RetryFields, 'jitter')}].",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            help=f"Inputs per model call [{default_of(BatchFields, 'max_batch_size')}].",
        ),
    ] = None,
    batch_wait_ms: Annotated[
        int | None,
        typer.Option(
            "--batch-wait-ms",
            help="Longest wait for a batch to fill, in ms "
            f"[{default_of(BatchFields, 'max_wait_ms')}].",
        ),
    ] = None,
    max_in_flight: Annotated[
        int | None,
        typer.Option(
            "--max-in-flight",
            help="Most messages held at once (back-pressure) "
            f"[{default_of(ListenerFields, 'max_in_flight')}].",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds per invocation [default: the version's]."),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            "--max-body-bytes",
            help="Largest message body run; larger ones are dead-lettered "
            f"[{default_of(ListenerFields, 'max_body_bytes')}].",
        ),
    ] = None,
    claim_check: Annotated[
        str | None,
        typer.Option(
            "--claim-check",
            metavar="URL",
            help="Object store (s3://BUCKET/PREFIX or dir:///FOLDER) for results too large "
            "for a sink: they are stored there and the sinks get a reference [default: none, "
            "such results are dead-lettered].",
        ),
    ] = None,
    claim_check_over_bytes: Annotated[
        int | None,
        typer.Option(
            "--claim-check-over-bytes",
            help="With --claim-check: also store results whose message is over this many bytes.",
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
                "url": claim_check,
                "over_bytes": claim_check_over_bytes,
                "filter": _filter_json(filter_json),
                "output_mode": output_mode,
                "enabled": False if disabled else None,
                "extend_lease": False if no_extend_lease else None,
            }
        )
    with open_client(url, key) as client:
        created = client.create_listener(definition, check=not no_check)
    if as_json:
        print_json(created.model_dump(mode="json"))
        return
    out.print(f"listener {created.name} created ({created.status.state})")


@app.command("apply")
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

    with open_client(url, key) as client:
        definitions = load_definitions(file)
        result = client.apply_listeners(definitions, prune=prune, check=not no_check)
    if as_json:
        print_json(result.model_dump())
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


@app.command("list")
def listeners_list(url: Url = None, key: Key = None, as_json: AsJson = False) -> None:
    """List listeners with their state and figures (sources by their shape; --json gives
    the definitions as the server answers this key: whole where it may manage them)."""
    with open_client(url, key) as client:
        found = client.listeners()
    if as_json:
        print_json([x.model_dump(mode="json") for x in found])
        return
    table = new_table(
        "name", "state", "model", "version", "source", "backlog", "received", "ok", "dead"
    )
    for x in found:
        c = x.status.counters
        table.add_row(
            x.name,
            x.status.state,
            x.definition.model,
            x.status.version or "-",
            redact_url(x.definition.source),  # a table on a screen: by its shape, always
            _count(x.status.backlog),
            _count(c.get("received")),
            _count(c.get("succeeded")),
            _count(c.get("dead_lettered")),
        )
    out.print(table)


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _backlog(status: ListenerStatusOut) -> str:
    """``1,234 (read 3 s ago)``; why there is no figure otherwise."""
    if status.backlog_at is None:
        return "- (not read yet)"
    age_s = max(0.0, time.time() - status.backlog_at)
    if status.backlog is None:
        return f"- (the source cannot say; asked {age_s:.0f} s ago)"
    return f"{status.backlog:,} (read {age_s:.0f} s ago)"


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
        ("backlog", _backlog(status)),
        ("total succeeded", _count(status.totals.get("succeeded"))),
        ("total dead-lettered", _count(status.totals.get("dead_lettered"))),
        ("total retrying now", _count(status.totals.get("retrying"))),
    ]
    rows += [(f"problem: {part}", why) for part, why in status.problems.items()]
    if status.reason:
        rows.append(("last error", f"{status.reason} ({when(status.reason_at)})"))
    return rows


@app.command("status")
def listeners_status(
    name: Annotated[str, typer.Argument(help="Listener name.")],
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Show a listener's state, figures since this server started, its backlog at the
    source, its totals since it was created (kept across restarts), and last error."""
    with open_client(url, key) as client:
        found = client.listener(name)
    if as_json:
        print_json(found.model_dump(mode="json"))
        return
    d = found.definition
    rows = [
        *_status_rows(found.status),
        ("outputs", ", ".join(d.outputs) or "-"),
        ("error sink", d.error_sink or "-"),
    ]
    out.print(fields_table(rows, title=f"listener {d.name}: {d.source} -> {d.model}"))


@app.command("pause")
def listeners_pause(
    name: Annotated[str, typer.Argument(help="Listener name.")], url: Url = None, key: Key = None
) -> None:
    """Pause a listener: it stops gracefully and stays stopped across restarts."""
    with open_client(url, key) as client:
        paused = client.pause_listener(name)
    out.print(f"listener {paused.name} {paused.status.state}")


@app.command("resume")
def listeners_resume(
    name: Annotated[str, typer.Argument(help="Listener name.")], url: Url = None, key: Key = None
) -> None:
    """Resume a paused listener."""
    with open_client(url, key) as client:
        resumed = client.resume_listener(name)
    out.print(f"listener {resumed.name} {resumed.status.state}")


@app.command("delete")
def listeners_delete(
    name: Annotated[str, typer.Argument(help="Listener name.")], url: Url = None, key: Key = None
) -> None:
    """Stop and delete a listener (its run records and dead letters are kept)."""
    with open_client(url, key) as client:
        client.delete_listener(name)
    out.print(f"listener {name} deleted")


@app.command("asyncapi")
def listeners_asyncapi(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the document to this file, not stdout."),
    ] = None,
    url: Url = None,
    key: Key = None,
) -> None:
    """Print every listener as an AsyncAPI 3.0 document (JSON): source, output and error
    channels, message payloads (the model's JSON schemas where declared, the CloudEvent
    envelope, the dead-letter attributes) and broker bindings. URLs show by their shape
    (scheme://host/***); names read from them are *** too unless the key may manage the
    listener."""
    with open_client(url, key) as client:
        text = json.dumps(client.asyncapi(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)  # plain: a document to pipe, never wrapped or coloured
        return
    output.write_text(text, encoding="utf-8")
    out.print(f"AsyncAPI document written to {output}")
