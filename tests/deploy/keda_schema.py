"""KEDA's resources, as far as the tests check them: kubernetes-validate bundles the schemas
of Kubernetes' own kinds only, not of custom resources such as KEDA's.

Hand-encoded from KEDA's CRDs (``keda.sh/v1alpha1``: ``config/crd/bases`` of kedacore/keda,
2.x) and its scaler documentation. What is checked:

* ScaledObject and TriggerAuthentication: the fields ``modelbus deploy keda`` writes, their
  types, the CRD's required fields (``scaleTargetRef.name``, ``triggers[].type`` and
  ``metadata``, ``secretTargetRef[].parameter/name/key``, ``podIdentity.provider`` and its
  enum), trigger metadata as a map of strings, integer replica counts and intervals.
  Stricter than the CRD on purpose: a field outside that list fails, so a misspelt one
  cannot pass. Not encoded: the many fields we never write, and the CRD's CEL rule beyond
  ``minReplicaCount <= maxReplicaCount`` (the tests check that one themselves). Their
  ``metadata`` (ObjectMeta) is also validated by kubernetes-validate, on a carrier kind.
* Per scaler (:data:`TRIGGERS`): the metadata keys its documentation names (ours must be
  among them, the required ones present) and the TriggerAuthentication parameters it reads.
  KEDA itself decides at run time what a value means; that, and whether a broker answers,
  only a cluster can tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

API_VERSION = "keda.sh/v1alpha1"

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_OBJECT_META: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": _NAME,
        "namespace": _NAME,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_INTEGER = {"type": "integer", "minimum": 0}

SCALED_OBJECT: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": "ScaledObject"},
        "metadata": _OBJECT_META,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string", "minLength": 1},
                    },
                },
                "pollingInterval": _INTEGER,
                "cooldownPeriod": _INTEGER,
                "minReplicaCount": _INTEGER,
                "maxReplicaCount": _INTEGER,
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string", "minLength": 1},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {
                                        "enum": [
                                            "TriggerAuthentication",
                                            "ClusterTriggerAuthentication",
                                        ]
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}

TRIGGER_AUTHENTICATION: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": _OBJECT_META,
        "spec": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "podIdentity": {
                    "type": "object",
                    "required": ["provider"],
                    "additionalProperties": False,
                    "properties": {
                        "provider": {"enum": ["azure-workload", "gcp", "aws", "aws-eks", "none"]}
                    },
                },
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["parameter", "name", "key"],
                        "additionalProperties": False,
                        "properties": {
                            "parameter": {"type": "string", "minLength": 1},
                            "name": _NAME,
                            "key": {"type": "string", "pattern": r"^[-._a-zA-Z0-9]+$"},
                        },
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True)
class Scaler:
    """What one KEDA scaler's documentation names: its metadata keys (``required`` among
    them) and the parameters a TriggerAuthentication may give it."""

    required: frozenset[str]
    metadata: frozenset[str]
    auth: frozenset[str]


def _scaler(required: set[str], others: set[str], auth: set[str]) -> Scaler:
    return Scaler(frozenset(required), frozenset(required | others), frozenset(auth))


_TLS = {"tls", "ca", "cert", "key", "keyPassword"}
# "required": what KEDA needs without deprecated fields, as we write it (Redis takes
# ``address`` or ``host`` + ``port``: we write ``address``; RabbitMQ's ``queueLength`` is
# deprecated for ``mode`` + ``value``).
TRIGGERS: dict[str, Scaler] = {
    "aws-sqs-queue": _scaler(
        {"queueURL", "awsRegion"},
        {"queueURLFromEnv", "queueLength", "activationQueueLength", "awsEndpoint",
         "scaleOnInFlight", "scaleOnDelayed", "identityOwner"},
        {"awsAccessKeyID", "awsSecretAccessKey", "awsSessionToken", "awsRoleArn"},
    ),
    "redis-streams": _scaler(
        {"address", "stream"},
        {"host", "port", "usernameFromEnv", "passwordFromEnv", "consumerGroup",
         "pendingEntriesCount", "streamLength", "lagCount", "activationLagCount", "enableTLS",
         "unsafeSsl", "databaseIndex", "addressFromEnv", "hostFromEnv", "portFromEnv"},
        {"username", "password", *_TLS},
    ),
    "rabbitmq": _scaler(
        {"queueName", "mode", "value"},
        {"host", "protocol", "activationValue", "vhostName", "hostFromEnv", "usernameFromEnv",
         "passwordFromEnv", "unsafeSsl", "useRegex", "pageSize", "operation", "timeout",
         "excludeUnacknowledged"},
        {"host", "username", "password", "tls", "ca", "cert", "key"},
    ),
    "kafka": _scaler(
        {"bootstrapServers", "consumerGroup"},
        {"topic", "lagThreshold", "activationLagThreshold", "offsetResetPolicy",
         "allowIdleConsumers", "scaleToZeroOnInvalidOffset", "excludePersistentLag",
         "limitToPartitionsWithLag", "version", "partitionLimitation", "sasl", "tls",
         "unsafeSsl"},
        {"sasl", "username", "password", *_TLS},
    ),
    "nats-jetstream": _scaler(
        {"natsServerMonitoringEndpoint", "stream", "consumer"},
        {"account", "lagThreshold", "activationLagThreshold", "useHttps"},
        {"natsServerMonitoringEndpoint", "account"},
    ),
    "postgresql": _scaler(
        {"query", "targetQueryValue"},
        {"connectionFromEnv", "host", "userName", "passwordFromEnv", "port", "dbName",
         "sslmode", "activationTargetQueryValue"},
        {"connection", "host", "userName", "password", "port", "dbName", "sslmode"},
    ),
}  # fmt: skip
