"""``modelbus call`` (one input to a model version, its result on stdout) and ``modelbus jobs
show`` (an asynchronous call's status and result)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from modelbus.cli.options import AsJson, Key, Url, open_client, parse_ref
from modelbus.cli.output import err, fail, out, print_json
from modelbus.client import CallResult, Job
from modelbus.client.refs import ModelRef

jobs_app = typer.Typer(help="Inspect asynchronous calls.", no_args_is_help=True)


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
    ref = parse_ref(model)
    value, kind = _input(data, file, text, content_type)
    with open_client(url, key) as client:
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
    with open_client(url, key) as client:
        job = client.wait(job_id, wait) if wait else client.job(job_id)
    if as_json:
        print_json(_job_json(job))
        return
    err.print(f"[dim]job {job.id}: {job.status} ({job.ref}, version {job.version or '-'})[/dim]")
    if job.error is not None:
        fail(job.error)
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
