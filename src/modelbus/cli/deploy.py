"""``modelbus deploy keda``: the KEDA resources that scale the Deployment of nodes on
listeners' backlogs (the Kubernetes manifests themselves are in ``deploy/kubernetes/``;
docs/deploy.md walks through a production set-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelbus import errors
from modelbus.cli.options import Key, Url, open_client
from modelbus.cli.output import fail, out
from modelbus.client.schemas import ListenerFields
from modelbus.listeners.scaling import KedaOptions, KedaPlan, keda_plan

__all__ = ["app", "deploy_keda"]

# The options' defaults are the policy object's own.
_DEFAULT = KedaOptions()

app = typer.Typer(
    help="Print deployment resources: KEDA autoscaling of the nodes on listeners' backlogs.",
    no_args_is_help=True,
)


@app.command("keda")
def deploy_keda(
    listeners: Annotated[
        list[str],
        typer.Argument(metavar="LISTENER...", help="Listener(s) to scale on: one trigger each."),
    ],
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Read the listeners from this TOML listener file (works offline) instead "
            "of asking the server.",
        ),
    ] = None,
    deployment: Annotated[
        str,
        typer.Option(
            help="The Deployment of nodes to scale (the ScaledObject's name too); the "
            "default is deploy/kubernetes's."
        ),
    ] = _DEFAULT.deployment,
    namespace: Annotated[
        str | None,
        typer.Option(help="Namespace written into every resource [default: none: kubectl's]."),
    ] = None,
    min_replicas: Annotated[
        int,
        typer.Option(
            help="Fewest nodes (0 lets KEDA stop every node while all backlogs are empty: "
            "then nothing serves the HTTP API)."
        ),
    ] = _DEFAULT.min_replicas,
    max_replicas: Annotated[int, typer.Option(help="Most nodes.")] = _DEFAULT.max_replicas,
    target: Annotated[
        int,
        typer.Option(
            help="Backlog one node is meant to handle (messages, records or rows): KEDA runs "
            "about backlog / target nodes."
        ),
    ] = _DEFAULT.target,
    polling_interval_s: Annotated[
        int,
        typer.Option("--polling-interval-s", help="Seconds between two looks at the backlogs."),
    ] = _DEFAULT.polling_interval_s,
    cooldown_s: Annotated[
        int,
        typer.Option(
            "--cooldown-s",
            help="Seconds after the last busy look before scaling down to --min-replicas 0.",
        ),
    ] = _DEFAULT.cooldown_s,
    aws_region: Annotated[
        str | None,
        typer.Option(help="Region of SQS sources whose URL names none (KEDA needs one)."),
    ] = None,
    aws_pod_identity: Annotated[
        bool,
        typer.Option(
            "--aws-pod-identity",
            help="KEDA reads SQS with its pod identity (IRSA, EKS Pod Identity) instead of "
            "access keys from a Secret.",
        ),
    ] = False,
    nats_monitoring: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of the NATS monitoring endpoint [default: the source's first "
            "server, port 8222]."
        ),
    ] = None,
    url: Url = None,
    key: Key = None,
) -> None:
    """Print (as YAML, for kubectl apply -f -) a KEDA ScaledObject that scales the nodes on
    the backlog of each LISTENER: SQS queue length, Redis stream lag, RabbitMQ queue length,
    Kafka consumer lag, NATS JetStream pending messages, PostgreSQL outbox rows. Each
    trigger reads the queue, stream, group or consumer the listener really consumes.

    The listeners come from the server (--url, --key: their definitions, credentials
    masked), or from a listener file with --file (offline; the same file as serve
    --config). Sources KEDA cannot read (local://, dir://, webhooks, MQTT...) are refused
    with what to use instead.

    Credentials are never printed: a trigger that needs one gets a TriggerAuthentication
    reading a Secret you create; the comments at the top name each Secret and its keys.
    KEDA accepts one ScaledObject per Deployment: name every listener to scale on in one
    command.
    """
    options = KedaOptions(
        deployment=deployment,
        namespace=namespace,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target=target,
        polling_interval_s=polling_interval_s,
        cooldown_s=cooldown_s,
        aws_region=aws_region,
        aws_pod_identity=aws_pod_identity,
        nats_monitoring=nats_monitoring,
    )
    names = list(dict.fromkeys(listeners))
    try:
        found = _from_file(file, names) if file is not None else _from_server(url, key, names)
        plan = keda_plan(found, options)
    except errors.ModelbusError as exc:
        fail(exc)
    out.out(_yaml(plan, options), highlight=False, end="")


def _from_file(file: Path, names: list[str]) -> list[ListenerFields]:
    from modelbus.listeners.definition import load_definitions

    defined = {d.name: d for d in load_definitions(file)}
    missing = [n for n in names if n not in defined]
    if missing:
        known = ", ".join(defined) or "none"
        raise errors.DefinitionError(
            f"{file} defines no listener {', '.join(missing)} (it defines: {known})"
        )
    return [defined[n] for n in names]


def _from_server(url: str | None, key: str | None, names: list[str]) -> list[ListenerFields]:
    with open_client(url, key) as client:
        return [client.listener(name).definition for name in names]


def _yaml(plan: KedaPlan, options: KedaOptions) -> str:
    """The plan as a YAML stream, preceded by comments saying what each trigger reads and
    which Secrets to create."""
    import yaml

    lines = [f"# KEDA autoscaling of Deployment {options.deployment!r} (modelbus deploy keda)"]
    lines += [f"#   {line}" for line in plan.summary]
    if plan.secrets:
        lines.append("# Create these Secrets first (credentials are never printed; *** marks one):")
    for secret in plan.secrets:
        lines.append(f"#   Secret {secret.name} (listener {secret.listener!r}), keys:")
        lines += [f"#     {name}: {hint}" for name, hint in secret.keys.items()]
        where = f" -n {options.namespace}" if options.namespace else ""
        literals = " ".join(f"--from-literal={name}=..." for name in secret.keys)
        lines.append(f"#     kubectl{where} create secret generic {secret.name} {literals}")
    documents: list[Any] = plan.resources
    body = yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True, width=100)
    return "\n".join(lines) + "\n" + body
