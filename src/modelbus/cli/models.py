"""``modelbus models``: push a model folder, publish a version, list models, versions and
builds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from modelbus.cli.options import AsJson, Key, Url, open_client, split_model
from modelbus.cli.output import err, new_table, out, print_json, when
from modelbus.client import Bump
from modelbus.client.operations import model_name
from modelbus.registry.manifest import Manifest

app = typer.Typer(help="Push, list and inspect models.", no_args_is_help=True)


@app.command("push")
def models_push(
    path: Annotated[
        Path,
        typer.Argument(
            help="Model folder: with a modelbus.toml, or an Algorithmia ADK algorithm "
            "(algorithmia.conf, requirements.txt, src/Algorithm.py).",
            exists=True,
        ),
    ],
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
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="OWNER/NAME of an Algorithmia ADK algorithm [default: its algorithmia.conf's "
            "username/algoname].",
        ),
    ] = None,
    url: Url = None,
    key: Key = None,
) -> None:
    """Upload a model folder, build it (showing the build output) and publish a version.

    Without --version or --bump the push is a build callable by its hash only
    (OWNER/NAME@sha256:...); publish it later with `modelbus models publish`.

    A folder without modelbus.toml but with algorithmia.conf is an Algorithmia ADK
    algorithm: it runs unmodified (see docs/algorithmia.md).
    """
    if version and bump:
        raise typer.BadParameter("give --version or --bump, not both")
    chosen = _bump(bump)
    named = model_name(name)
    # every problem of the folder, named by its path, before uploading
    Manifest.load(path, name=(named.owner, named.name) if named else None)
    # the build log is printed as it comes: a failed build is then told in one line
    with open_client(url, key, log_shown=True) as client, err.status(f"pushing {path} ..."):
        pushed = client.push(
            path,
            version=version,
            bump=chosen,
            publish=not no_publish,
            on_log=_log_line,
            name=name,
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


@app.command("publish")
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
    owner, name = split_model(model)
    chosen = _bump(bump)
    with open_client(url, key) as client:
        published = client.publish(owner, name, build=build, version=version, bump=chosen)
    out.print(f"{published.owner}/{published.name} {published.version} {published.build} published")


def _bump(bump: str | None) -> Bump | None:
    if bump not in (None, "major", "minor", "patch"):
        raise typer.BadParameter("--bump must be major, minor or patch")
    return bump  # type: ignore[return-value]


def _log_line(line: str) -> None:
    err.print(f"[dim]{escape(line)}[/dim]", highlight=False)


@app.command("list")
def models_list(url: Url = None, key: Key = None, as_json: AsJson = False) -> None:
    """List the models this key may see, with their latest published version."""
    with open_client(url, key) as client:
        found = client.models()
    if as_json:
        print_json([m.model_dump() for m in found])
        return
    table = new_table("model", "latest", "description", "created")
    for m in found:
        table.add_row(
            f"{m.owner}/{m.name}", m.latest_version or "-", m.description, when(m.created_at)
        )
    out.print(table)


@app.command("versions")
def models_versions(
    model: Annotated[str, typer.Argument(help="OWNER/NAME")],
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """List the versions of a model, newest first."""
    owner, name = split_model(model)
    with open_client(url, key) as client:
        found = client.versions(owner, name)
    if as_json:
        print_json([v.model_dump() for v in found])
        return
    table = new_table("version", "build", "published", "created")
    for v in found:
        table.add_row(v.version, v.build, "yes" if v.published else "no", when(v.created_at))
    out.print(table)


@app.command("builds")
def models_builds(
    model: Annotated[str, typer.Argument(help="OWNER/NAME")],
    log: Annotated[
        str | None,
        typer.Option(
            "--log",
            help="Print the build log of this build hash instead, followed by the logs of "
            "the environment builds other nodes ran for it.",
        ),
    ] = None,
    url: Url = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """List the builds of a model, or print one build's log with --log HASH."""
    owner, name = split_model(model)
    with open_client(url, key) as client:
        if log:
            build = client.build(log)
            for text in (build.log or "", *(build.node_logs or {}).values()):
                out.print(text, markup=False, highlight=False)
            return
        found = client.builds(owner, name)
    if as_json:
        print_json([b.model_dump() for b in found])
        return
    table = new_table("build", "status", "versions", "created")
    for b in found:
        table.add_row(b.hash, b.status, ", ".join(b.versions) or "-", when(b.created_at))
    out.print(table)
