"""Scaling nodes on listeners' backlogs with KEDA: what ``modelbus deploy keda`` prints.

Every node runs every listener (DESIGN.md, "Processes and nodes"), and KEDA accepts one
``ScaledObject`` per workload, so :func:`keda_plan` makes **one ScaledObject for the
Deployment of nodes with one trigger per listener**; the HPA that KEDA drives runs as many
replicas as the most demanding trigger asks for (between the minimum and the maximum).

Each trigger reads exactly what the listener's source consumes, as its connector names it
(:func:`modelbus.connectors.backlog_of`: the queue, stream, consumer group or durable
consumer, defaults applied; never a formula repeated here):

=============  ================================  =============================================
source         KEDA trigger                      backlog figure it scales on
=============  ================================  =============================================
``sqs://``     ``aws-sqs-queue``                 messages visible + in flight
``redis://``   ``redis-streams`` (``lagCount``)  entries not yet delivered to the group (Redis 7+)
``amqp://``    ``rabbitmq`` (``QueueLength``)    messages ready in the listener's queue
``kafka://``   ``kafka``                         the group's lag on the topic
``nats://``    ``nats-jetstream``                messages the durable has not acked (in flight too)
``postgresql`` ``postgresql`` (a query)          outbox rows available, in flight or not
=============  ================================  =============================================

Other sources have no backlog KEDA can read, and :func:`keda_plan` refuses them saying why
and what to use instead (:data:`UNSCALABLE`).

Credentials are never written out. A trigger that needs one names a
``TriggerAuthentication`` which reads it from a Secret the operator creates;
:attr:`KedaPlan.secrets` lists each Secret's keys with what goes in them, credentials
shown as ``***`` (:func:`modelbus.connectors.mask_credentials`: the value to write, its
password left to fill in); the comments name the source by its shape
(:func:`modelbus.connectors.redact_url`). The plan is built from a
definition alone (a listener file, or the server's copy, whose credentials are already
``***``): no broker is contacted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelbus.client.schemas import ListenerFields
from modelbus.connectors import Backlog, backlog_of, mask_credentials, redact_url, scheme_of
from modelbus.errors import DefinitionError

__all__ = [
    "DEFAULT_DEPLOYMENT",
    "KEDA_API_VERSION",
    "UNSCALABLE",
    "KedaOptions",
    "KedaPlan",
    "SecretSpec",
    "keda_plan",
]

KEDA_API_VERSION = "keda.sh/v1alpha1"
# The Deployment of deploy/kubernetes/deployment.yaml.
DEFAULT_DEPLOYMENT = "modelbus"
_NATS_MONITORING_PORT = 8222  # nats-server's default HTTP monitoring port
_NATS_DEFAULT_ACCOUNT = "$G"  # the global account of a server configured without accounts
_KAFKA_SASL = {
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
}
_BROKERS = "sqs://, redis://, amqp://, kafka://, nats:// or postgresql://"

_WHY: dict[str, str] = {
    "local": "a local:// queue is a SQLite file on one node's disk: KEDA cannot read it and "
    "other nodes cannot share it. Put the messages on a broker (" + _BROKERS + ") and "
    "scale on that",
    "dir": "a dir:// folder is drained by one node at a time (the others wait on its lease), "
    "so more nodes would not go faster, and KEDA cannot read a folder. For a bucket, send "
    "its object-created notifications to an SQS queue, make that queue (sqs://...) the "
    "source and scale on it",
    "memory": "a memory:// queue lives inside one process (tests and the SDK's harness)",
    "webhook": "webhooks are queued on the node that received the POST: there is no shared "
    "backlog to read. Scale on CPU (KEDA's cpu trigger) or on request rate (the KEDA HTTP "
    "add-on), or have senders publish to a broker (" + _BROKERS + ")",
    "mqtt": "MQTT brokers publish no backlog of a subscription that KEDA can read (KEDA has "
    "no MQTT scaler). Bridge the topic into a broker that keeps one (RabbitMQ's MQTT plugin "
    "into a queue, NATS's MQTT support into JetStream) and listen there, or scale on CPU",
    "s3": "s3:// is not a source: S3 events reach a listener through an SQS queue. Send the "
    "bucket's notifications to SQS, make that queue (sqs://...) the source and scale on it",
    "sns": "sns:// is only a sink. Subscribe an SQS queue to the topic, make that queue "
    "(sqs://...) the source and scale on it",
}
# Sources KEDA cannot scale on, by scheme: why, and what to do instead.
UNSCALABLE: Mapping[str, str] = {
    **_WHY,
    "mqtts": _WHY["mqtt"],
    "http": _WHY["webhook"],
    "https": _WHY["webhook"],
}
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True, kw_only=True, slots=True)
class KedaOptions:
    """How the nodes scale.

    ``deployment``: the Deployment of nodes (the ScaledObject takes its name too).
    ``namespace``: written into every resource when given, else left to ``kubectl``.
    ``target``: the backlog one replica is meant to handle (KEDA's per-trigger target,
    averaged over the replicas). ``aws_region``: the SQS region when a source URL names
    none. ``aws_pod_identity``: KEDA reads SQS with its own pod identity (IRSA, EKS Pod
    Identity) instead of access keys from a Secret. ``nats_monitoring``: ``HOST:PORT`` of
    the NATS monitoring endpoint (default: the source's first server, port 8222).
    """

    deployment: str = DEFAULT_DEPLOYMENT
    namespace: str | None = None
    min_replicas: int = 1
    max_replicas: int = 10
    target: int = 100
    polling_interval_s: int = 30
    cooldown_s: int = 300
    aws_region: str | None = None
    aws_pod_identity: bool = False
    nats_monitoring: str | None = None

    def check(self) -> None:
        """Raise DefinitionError for names Kubernetes would refuse, or numbers KEDA would
        refuse or that make no sense."""
        for what, name in (("deployment", self.deployment), ("namespace", self.namespace)):
            if name is not None and not _DNS_LABEL.fullmatch(name):
                raise DefinitionError(
                    f"{what} {name!r} is not a Kubernetes name: at most 63 lower case "
                    "letters, digits and '-', starting and ending with a letter or digit"
                )
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise DefinitionError(
                f"replicas: need 0 <= min ({self.min_replicas}) <= max ({self.max_replicas}) "
                "and max >= 1"
            )
        if self.target < 1 or self.polling_interval_s < 1 or self.cooldown_s < 0:
            raise DefinitionError(
                "target and polling interval must be at least 1, cooldown at least 0"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class SecretSpec:
    """A Secret the operator creates for one listener's TriggerAuthentication: its
    ``name`` and, per key, what to put there (credentials shown as ``***``)."""

    name: str
    listener: str
    keys: Mapping[str, str]


@dataclass(frozen=True, kw_only=True, slots=True)
class KedaPlan:
    """What to apply: ``resources`` (the TriggerAuthentications, then the ScaledObject, as
    plain dicts ready for YAML), the ``secrets`` they read, and one line per listener
    saying what its trigger reads (``summary``)."""

    resources: list[dict[str, Any]]
    secrets: list[SecretSpec]
    summary: list[str]


@dataclass(frozen=True, slots=True)
class _Credential:
    parameter: str  # KEDA's name for it (also the Secret's key)
    hint: str  # what goes in it, credentials masked


@dataclass(frozen=True, kw_only=True, slots=True)
class _Trigger:
    type: str
    metadata: dict[str, str]
    reads: str  # for the summary
    credentials: list[_Credential] = field(default_factory=list)
    pod_identity: str | None = None  # a KEDA podIdentity provider instead of a Secret


def keda_plan(listeners: Sequence[ListenerFields], options: KedaOptions) -> KedaPlan:
    """The ScaledObject scaling ``options.deployment`` on the backlogs of ``listeners`` (one
    trigger each), with the TriggerAuthentications and Secrets their credentials need.

    Raises DefinitionError when no listener is given, when the options do not hold
    (:meth:`KedaOptions.check`), or naming the listener whose source KEDA cannot scale on
    (why, and what to use), whose URL is malformed, or whose SQS region is unknown."""
    if not listeners:
        raise DefinitionError("name at least one listener to scale on")
    options.check()
    resources: list[dict[str, Any]] = []
    secrets: list[SecretSpec] = []
    summary: list[str] = []
    triggers: list[dict[str, Any]] = []
    for listener in listeners:
        trigger = _trigger(listener, options)
        entry: dict[str, Any] = {"type": trigger.type, "metadata": trigger.metadata}
        if trigger.credentials or trigger.pod_identity:
            auth_name = _k8s_name(options.deployment, listener.name)
            resources.append(_trigger_authentication(auth_name, trigger, options))
            entry["authenticationRef"] = {"name": auth_name}
            if trigger.credentials:
                keys = {c.parameter: c.hint for c in trigger.credentials}
                secrets.append(SecretSpec(name=auth_name, listener=listener.name, keys=keys))
        triggers.append(entry)
        summary.append(f"listener {listener.name!r}: {trigger.type} on {trigger.reads}")
    resources.append(_scaled_object(listeners, triggers, options))
    return KedaPlan(resources=resources, secrets=secrets, summary=summary)


def _trigger(listener: ListenerFields, options: KedaOptions) -> _Trigger:
    try:
        backlog = backlog_of(listener.source, listener.name)
    except DefinitionError as exc:
        raise DefinitionError(f"listener {listener.name!r}: {exc.message}") from None
    if backlog is None:
        scheme = scheme_of(listener.source)
        why = UNSCALABLE.get(scheme, f"KEDA cannot read the backlog of {scheme}:// sources")
        raise DefinitionError(
            f"listener {listener.name!r} cannot drive KEDA: its source "
            f"{redact_url(listener.source)} has no backlog KEDA can read: {why}"
        )
    build = _BUILDERS[backlog.broker]
    return build(listener, backlog, options)


# --- one trigger per broker -------------------------------------------------------------


def _sqs(listener: ListenerFields, backlog: Backlog, options: KedaOptions) -> _Trigger:
    where = backlog.where
    region = where["region"] or options.aws_region
    if not region:
        raise DefinitionError(
            f"listener {listener.name!r}: KEDA needs the SQS queue's region: add "
            "region=REGION to the source URL, or give it in the options (--aws-region)"
        )
    metadata = {
        "queueURL": where["queue_url"] or where["queue"],
        "queueLength": str(options.target),
        "awsRegion": region,
    }
    if where["endpoint_url"]:
        metadata["awsEndpoint"] = where["endpoint_url"]
    reads = f"SQS queue {where['queue']!r} ({region})"
    if options.aws_pod_identity:
        return _Trigger(type="aws-sqs-queue", metadata=metadata, reads=reads, pod_identity="aws")
    allowed = f"allowed sqs:GetQueueAttributes on {where['queue']}"
    credentials = [
        _Credential("awsAccessKeyID", f"the access key id of an IAM user {allowed}"),
        _Credential("awsSecretAccessKey", "that access key's secret"),
    ]
    return _Trigger(type="aws-sqs-queue", metadata=metadata, reads=reads, credentials=credentials)


def _redis(listener: ListenerFields, backlog: Backlog, options: KedaOptions) -> _Trigger:
    where = backlog.where
    metadata = {
        "address": f"{where['host']}:{where['port']}",
        "databaseIndex": where["db"],
        "stream": where["stream"],
        "consumerGroup": where["group"],
        "lagCount": str(options.target),
        "activationLagCount": "0",
    }
    if where["tls"] == "true":
        metadata["enableTLS"] = "true"
    source = redact_url(listener.source)
    credentials = [_Credential(name, f"the {name} of {source}") for name in backlog.secrets]
    reads = f"stream {where['stream']!r}, group {where['group']!r} at {metadata['address']}"
    return _Trigger(type="redis-streams", metadata=metadata, reads=reads, credentials=credentials)


def _amqp(listener: ListenerFields, backlog: Backlog, options: KedaOptions) -> _Trigger:
    where = backlog.where
    metadata = {
        "protocol": "amqp",
        "mode": "QueueLength",
        "value": str(options.target),
        "queueName": where["queue"],
    }
    url = mask_credentials(backlog.secrets["url"])
    credentials = [_Credential("host", f"{url} (the connection URL; *** is the password)")]
    if where["tls"] == "true":
        credentials.append(_Credential("tls", "enable"))
    reads = f"queue {where['queue']!r}, vhost {where['vhost']!r} at {where['host']}"
    return _Trigger(type="rabbitmq", metadata=metadata, reads=reads, credentials=credentials)


def _kafka(listener: ListenerFields, backlog: Backlog, options: KedaOptions) -> _Trigger:
    where = backlog.where
    metadata = {
        "bootstrapServers": where["bootstrap_servers"],
        "consumerGroup": where["group"],
        "topic": where["topic"],
        "lagThreshold": str(options.target),
        # KEDA's default is latest; the listener's group starts where its URL says.
        "offsetResetPolicy": where["offset_reset"],
    }
    if where["sasl_mechanism"]:
        metadata["sasl"] = _KAFKA_SASL[where["sasl_mechanism"]]
    if where["security_protocol"] in ("SSL", "SASL_SSL"):
        metadata["tls"] = "enable"
    source = redact_url(listener.source)
    credentials = [_Credential(name, f"the SASL {name} of {source}") for name in backlog.secrets]
    reads = f"topic {where['topic']!r}, group {where['group']!r}"
    return _Trigger(type="kafka", metadata=metadata, reads=reads, credentials=credentials)


def _nats(listener: ListenerFields, backlog: Backlog, options: KedaOptions) -> _Trigger:
    where = backlog.where
    first = where["servers"].split(",")[0].removeprefix("nats://")
    endpoint = options.nats_monitoring or f"{first.rpartition(':')[0]}:{_NATS_MONITORING_PORT}"
    metadata = {
        "natsServerMonitoringEndpoint": endpoint,
        "account": _NATS_DEFAULT_ACCOUNT,
        "stream": where["stream"],
        "consumer": where["durable"],
        "lagThreshold": str(options.target),
        "useHttps": "false",
    }
    reads = f"stream {where['stream']!r}, consumer {where['durable']!r} (monitoring {endpoint})"
    return _Trigger(type="nats-jetstream", metadata=metadata, reads=reads)


def _postgresql(listener: ListenerFields, backlog: Backlog, options: KedaOptions) -> _Trigger:
    where = backlog.where
    metadata = {"query": where["query"], "targetQueryValue": str(options.target)}
    url = mask_credentials(backlog.secrets["url"])
    credentials = [_Credential("connection", f"{url} (*** is the password, if any)")]
    reads = f"outbox {where['table']!r} on {where['host']}:{where['port']}/{where['database']}"
    return _Trigger(type="postgresql", metadata=metadata, reads=reads, credentials=credentials)


_BUILDERS = {
    "sqs": _sqs,
    "redis": _redis,
    "amqp": _amqp,
    "kafka": _kafka,
    "nats": _nats,
    "postgresql": _postgresql,
}


# --- resources ---------------------------------------------------------------------------


def _metadata(name: str, options: KedaOptions) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if options.namespace:
        meta["namespace"] = options.namespace
    meta["labels"] = {"app.kubernetes.io/name": "modelbus", "app.kubernetes.io/component": "node"}
    return meta


def _trigger_authentication(name: str, trigger: _Trigger, options: KedaOptions) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if trigger.pod_identity:
        spec["podIdentity"] = {"provider": trigger.pod_identity}
    if trigger.credentials:
        spec["secretTargetRef"] = [
            {"parameter": c.parameter, "name": name, "key": c.parameter}
            for c in trigger.credentials
        ]
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "TriggerAuthentication",
        "metadata": _metadata(name, options),
        "spec": spec,
    }


def _scaled_object(
    listeners: Sequence[ListenerFields], triggers: list[dict[str, Any]], options: KedaOptions
) -> dict[str, Any]:
    meta = _metadata(options.deployment, options)
    meta["annotations"] = {"modelbus/listeners": ",".join(x.name for x in listeners)}
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": options.deployment,
            },
            "pollingInterval": options.polling_interval_s,
            "cooldownPeriod": options.cooldown_s,
            "minReplicaCount": options.min_replicas,
            "maxReplicaCount": options.max_replicas,
            "triggers": triggers,
        },
    }


_NOT_NAME = re.compile(r"[^a-z0-9-]+")
_MAX_NAME = 63  # a DNS label: valid as the name of any kind of resource


def _k8s_name(*parts: str) -> str:
    """``parts`` joined by ``-`` as a Kubernetes resource name (lower case letters, digits
    and ``-``); when that changes or shortens them, a hash of the original keeps two
    listeners whose names differ only there apart."""
    wanted = "-".join(parts)
    name = _NOT_NAME.sub("-", wanted.lower()).strip("-")
    if name == wanted and len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(wanted.encode()).hexdigest()[:8]
    return f"{name[: _MAX_NAME - 9].rstrip('-')}-{digest}"
