"""``modelbus deploy keda``: the ScaledObject and TriggerAuthentications it prints, for every
broker kind, checked against KEDA's CRD fields (tests/deploy/keda_schema.py says what that
covers), pointed at what each listener's source really consumes, refusing the sources KEDA
cannot scale on, and never printing a credential."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema
import kubernetes_validate
import pytest
import yaml

from modelbus.client import Client
from modelbus.client.schemas import ListenerFields
from modelbus.connectors import ConnectorContext, make_source
from modelbus.errors import DefinitionError
from modelbus.listeners.scaling import DEFAULT_DEPLOYMENT, KedaOptions, KedaPlan, keda_plan
from tests.deploy.keda_schema import SCALED_OBJECT, TRIGGER_AUTHENTICATION, TRIGGERS
from tests.support.server import MODELBUS, ModelbusServer, clean_env

MODEL = "acme/ocr@1.*"
REGION = KedaOptions(aws_region="eu-west-1")


def listener(name: str, source: str) -> ListenerFields:
    return ListenerFields(name=name, source=source, model=MODEL)


def plan_for(source: str, name: str = "orders", options: KedaOptions = REGION) -> KedaPlan:
    return keda_plan([listener(name, source)], options)


def trigger_of(source: str, name: str = "orders", options: KedaOptions = REGION) -> Any:
    scaled = plan_for(source, name, options).resources[-1]
    assert scaled["kind"] == "ScaledObject"
    (trigger,) = scaled["spec"]["triggers"]
    return trigger


def check_keda(plan: KedaPlan) -> None:
    """Every resource against the KEDA schema, every trigger against its scaler's keys, every
    authenticationRef resolved within the plan, every Secret key read by a
    TriggerAuthentication."""
    *auths, scaled = plan.resources
    for resource in plan.resources:
        # kubernetes-validate has no schema for KEDA's kinds, but it has one for the
        # ObjectMeta they share with every kind: checked here on a carrier ConfigMap.
        carrier = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": resource["metadata"]}
        kubernetes_validate.validate(carrier, kubernetes_validate.latest_version(), strict=True)
    jsonschema.validate(scaled, SCALED_OBJECT)
    spec = scaled["spec"]
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
    by_name = {}
    for auth in auths:
        jsonschema.validate(auth, TRIGGER_AUTHENTICATION)
        by_name[auth["metadata"]["name"]] = auth
    secrets = {s.name: s for s in plan.secrets}
    for trigger in spec["triggers"]:
        scaler = TRIGGERS[trigger["type"]]
        keys = set(trigger["metadata"])
        assert scaler.required <= keys, f"{trigger['type']}: missing {scaler.required - keys}"
        assert keys <= scaler.metadata, f"{trigger['type']}: unknown {keys - scaler.metadata}"
        if "authenticationRef" not in trigger:
            continue
        auth = by_name.pop(trigger["authenticationRef"]["name"])
        for ref in auth["spec"].get("secretTargetRef", []):
            assert ref["parameter"] in scaler.auth, f"{trigger['type']}: {ref['parameter']}"
            assert ref["key"] in secrets[ref["name"]].keys
    assert not by_name, f"TriggerAuthentications no trigger uses: {sorted(by_name)}"


# One source of every kind KEDA can scale on, with and without TLS and credentials.
SCALABLE = [
    "redis://127.0.0.1:6379/0?stream=orders",
    "rediss://app:pw@redis.example:6380/3?stream=orders&group=billing",
    "amqp://rabbitmq/?queue=orders",
    "amqps://app:pw@rabbitmq/prod?exchange=events&binding_key=orders.%23",
    "kafka://kafka:9092/orders",
    "kafka://app:pw@kafka:9093/orders?security_protocol=SASL_SSL&sasl_mechanism=SCRAM-SHA-256",
    "nats://nats:4222?stream=ORDERS&subject=orders.new",
    "nats://tok@nats:4222?stream=ORDERS&durable=billing",
    "postgresql://app:pw@db:5432/shop?table=public.orders_events",
    "sqs://orders",
    "https://sqs.us-west-2.amazonaws.com/123456789012/orders.fifo",
    "sqs://orders?endpoint_url=http://localstack:4566&region=us-east-1",
]


@pytest.mark.parametrize("source", SCALABLE)
def test_every_broker_kind_gives_valid_keda_resources(source: str) -> None:
    plan = plan_for(source)
    check_keda(plan)
    assert plan.resources[-1]["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": DEFAULT_DEPLOYMENT,
    }


def test_one_scaled_object_scales_on_several_listeners() -> None:
    listeners = [listener(f"l{i}", source) for i, source in enumerate(SCALABLE)]
    plan = keda_plan(listeners, REGION)
    check_keda(plan)
    kinds = [r["kind"] for r in plan.resources]
    assert kinds.count("ScaledObject") == 1 and kinds[-1] == "ScaledObject"
    scaled = plan.resources[-1]
    assert len(scaled["spec"]["triggers"]) == len(SCALABLE)
    assert scaled["metadata"]["annotations"]["modelbus/listeners"].split(",") == [
        x.name for x in listeners
    ]
    assert len(plan.summary) == len(SCALABLE)


def _source_of(url: str, name: str, tmp_path: Path) -> Any:
    return make_source(url, ConnectorContext(listener=name, data_dir=tmp_path))


@pytest.mark.parametrize(
    ("source", "name", "expected", "attribute"),
    [
        # default consumer group: the listener's own
        (
            "redis://r:6379/0?stream=orders",
            "orders",
            {"stream": "orders", "consumerGroup": "modelbus-orders", "address": "r:6379"},
            ("group", "consumerGroup"),
        ),
        (
            "redis://r/2?stream=orders&group=billing",
            "orders",
            {"consumerGroup": "billing", "databaseIndex": "2", "address": "r:6379"},
            ("group", "consumerGroup"),
        ),
        # a queue named in the URL, or the listener's own queue bound to an exchange
        ("amqp://h/?queue=jobs", "orders", {"queueName": "jobs"}, ("queue_name", "queueName")),
        (
            "amqp://h/?exchange=events",
            "orders",
            {"queueName": "modelbus.orders"},
            ("queue_name", "queueName"),
        ),
        (
            "amqp://h/?exchange=events&queue=mine",
            "orders",
            {"queueName": "mine"},
            ("queue_name", "queueName"),
        ),
        # Kafka: the group is the listener's name unless the URL gives one
        (
            "kafka://k:9092/clicks",
            "orders",
            {"topic": "clicks", "consumerGroup": "orders", "offsetResetPolicy": "earliest"},
            ("group", "consumerGroup"),
        ),
        (
            "kafka://k:9092/clicks?group=g1&offset_reset=latest",
            "orders",
            {"consumerGroup": "g1", "offsetResetPolicy": "latest"},
            ("group", "consumerGroup"),
        ),
        # NATS: modelbus-LISTENER with the characters a durable cannot hold replaced
        (
            "nats://n:4222?stream=EVENTS",
            "eu.orders",
            {"stream": "EVENTS", "consumer": "modelbus-eu_orders"},
            ("durable", "consumer"),
        ),
        (
            "nats://n:4222?stream=EVENTS&durable=billing",
            "orders",
            {"consumer": "billing", "natsServerMonitoringEndpoint": "n:8222"},
            ("durable", "consumer"),
        ),
    ],
)
def test_the_trigger_targets_what_the_source_consumes(
    source: str,
    name: str,
    expected: dict[str, str],
    attribute: tuple[str, str],
    tmp_path: Path,
) -> None:
    metadata = trigger_of(source, name)["metadata"]
    assert {k: metadata[k] for k in expected} == expected
    # ... and it is what the source itself uses, built from the same URL.
    source_attribute, key = attribute
    assert getattr(_source_of(source, name, tmp_path), source_attribute) == metadata[key]


def test_redis_scales_on_group_lag_with_tls_when_the_url_says() -> None:
    metadata = trigger_of("rediss://h:6380/0?stream=s")["metadata"]
    assert metadata["lagCount"] == "100" and metadata["enableTLS"] == "true"
    assert "enableTLS" not in trigger_of("redis://h/0?stream=s")["metadata"]


def test_kafka_sasl_and_tls_follow_the_url() -> None:
    url = "kafka://u:p@k:9093/t?security_protocol=SASL_SSL&sasl_mechanism=SCRAM-SHA-512"
    metadata = trigger_of(url)["metadata"]
    assert (metadata["sasl"], metadata["tls"]) == ("scram_sha512", "enable")
    plain = trigger_of("kafka://u:p@k:9092/t?security_protocol=SASL_PLAINTEXT")["metadata"]
    assert plain["sasl"] == "plaintext" and "tls" not in plain
    assert "sasl" not in trigger_of("kafka://k:9092/t")["metadata"]


def test_amqp_reads_the_queue_through_a_secret_host() -> None:
    plan = plan_for("amqps://app:pw@rabbit:5671/prod%2Feu?exchange=events")
    trigger = plan.resources[-1]["spec"]["triggers"][0]
    assert trigger["metadata"]["protocol"] == "amqp"
    assert trigger["metadata"]["mode"] == "QueueLength"
    (secret,) = plan.secrets
    # the connection URL the connector uses (vhost "prod/eu" encoded), password masked
    assert secret.keys["host"].startswith("amqps://app:***@rabbit:5671/prod%2Feu ")
    assert secret.keys["tls"] == "enable"


def test_amqp_without_queue_or_exchange_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"listener 'orders'.*queue=NAME or exchange=NAME"):
        plan_for("amqp://h/")


def test_postgresql_counts_the_rows_of_the_outbox() -> None:
    trigger = trigger_of("postgresql://app:pw@db/shop?table=events")
    assert trigger["metadata"]["query"].startswith('SELECT count(*) FROM "events" WHERE ')
    assert trigger["metadata"]["targetQueryValue"] == "100"


def test_sqs_region_endpoint_and_identity() -> None:
    queue_url = "https://sqs.us-west-2.amazonaws.com/123456789012/orders"
    metadata = trigger_of(queue_url, options=KedaOptions())["metadata"]
    assert metadata["queueURL"] == queue_url and metadata["awsRegion"] == "us-west-2"
    named = trigger_of("sqs://orders?region=ap-south-1", options=REGION)["metadata"]
    assert named["queueURL"] == "orders" and named["awsRegion"] == "ap-south-1"
    assert trigger_of("sqs://orders")["metadata"]["awsRegion"] == "eu-west-1"  # the option
    local = trigger_of("sqs://q?endpoint_url=http://127.0.0.1:5000&region=us-east-1")
    assert local["metadata"]["awsEndpoint"] == "http://127.0.0.1:5000"
    with pytest.raises(DefinitionError, match=r"listener 'orders'.*region.*--aws-region"):
        plan_for("sqs://orders", options=KedaOptions())
    pod = plan_for("sqs://orders", options=KedaOptions(aws_region="x-1", aws_pod_identity=True))
    check_keda(pod)
    assert pod.resources[0]["spec"] == {"podIdentity": {"provider": "aws"}}
    assert pod.secrets == []


def test_nats_monitoring_endpoint_can_be_given() -> None:
    options = KedaOptions(nats_monitoring="nats-monitor.nats:8222")
    metadata = trigger_of("nats://n?stream=S", options=options)["metadata"]
    assert metadata["natsServerMonitoringEndpoint"] == "nats-monitor.nats:8222"
    assert metadata["account"] == "$G"


@pytest.mark.parametrize(
    ("source", "advice"),
    [
        ("local://jobs", "broker"),
        ("dir:///srv/inbox", "SQS queue"),
        ("memory://q", "one process"),
        ("webhook://invoices?secret=hook-secret-1", "CPU"),
        ("mqtt://broker:1883/sensors/%23", "Bridge"),
        ("mqtts://broker/sensors", "Bridge"),
        ("s3://bucket/prefix", "sqs://"),
        ("sns://arn:aws:sns:us-east-1:123456789012:t", "sqs://"),
    ],
)
def test_sources_keda_cannot_scale_on_are_refused_saying_why(source: str, advice: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        keda_plan([listener("ok", "redis://r/0?stream=s"), listener("inbox", source)], REGION)
    message = caught.value.message
    assert "listener 'inbox' cannot drive KEDA" in message
    assert advice in message
    assert "hook-secret-1" not in message


def test_names_are_kubernetes_names_and_stay_distinct() -> None:
    names = ["a_b", "a.b", "A-b", "a-b", "x" * 100]
    plan = keda_plan([listener(n, "redis://u:p@r/0?stream=s") for n in names], REGION)
    check_keda(plan)  # the schema checks every name is a DNS label
    auth_names = [r["metadata"]["name"] for r in plan.resources[:-1]]
    assert len(set(auth_names)) == len(names)
    assert auth_names[3] == "modelbus-a-b"  # a name that needs no change keeps its form


def test_options_reach_every_resource() -> None:
    options = KedaOptions(
        deployment="nodes",
        namespace="prod",
        min_replicas=0,
        max_replicas=7,
        target=25,
        polling_interval_s=10,
        cooldown_s=60,
    )
    plan = plan_for("redis://u:p@r/0?stream=s", options=options)
    check_keda(plan)
    assert {r["metadata"]["namespace"] for r in plan.resources} == {"prod"}
    spec = plan.resources[-1]["spec"]
    assert plan.resources[-1]["metadata"]["name"] == "nodes"
    assert spec["scaleTargetRef"]["name"] == "nodes"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 7)
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (10, 60)
    assert spec["triggers"][0]["metadata"]["lagCount"] == "25"
    assert plan.secrets[0].name == "nodes-orders"
    assert "namespace" not in plan_for("redis://r/0?stream=s").resources[-1]["metadata"]


@pytest.mark.parametrize(
    "options",
    [
        KedaOptions(min_replicas=5, max_replicas=2),
        KedaOptions(max_replicas=0, min_replicas=0),
        KedaOptions(target=0),
        KedaOptions(deployment="Model_Bus"),
        KedaOptions(namespace="-prod"),
    ],
)
def test_options_kubernetes_or_keda_would_refuse_are_refused(options: KedaOptions) -> None:
    with pytest.raises(DefinitionError):
        plan_for("redis://r/0?stream=s", options=options)


# --- the command ----------------------------------------------------------------------------

SECRETS = {
    "redis": "Redis-Pa55word!",
    "amqp": "rabbit-Pa55/word",
    "kafka": "kafka-Pa55word",
    "nats": "nats-T0ken-xyz",
    "postgres": "pg-Pa55word",
    "webhook": "hook-s3cret-xyz",
}


def _listener_file(path: Path) -> Path:
    def esc(secret: str) -> str:
        return quote(secret, safe="")

    path.write_text(
        f"""
[[listeners]]
name = "orders"
source = "redis://app:{esc(SECRETS["redis"])}@redis:6379/0?stream=orders"
model = "{MODEL}"

[[listeners]]
name = "invoices"
source = "amqp://app:{esc(SECRETS["amqp"])}@rabbitmq:5672/prod?exchange=invoices"
model = "{MODEL}"

[[listeners]]
name = "clicks"
source = "kafka://app:{esc(SECRETS["kafka"])}@kafka:9093/clicks?security_protocol=SASL_SSL"
model = "{MODEL}"

[[listeners]]
name = "events"
source = "nats://{SECRETS["nats"]}@nats:4222?stream=EVENTS"
model = "{MODEL}"

[[listeners]]
name = "outbox"
source = "postgresql://app:{esc(SECRETS["postgres"])}@db:5432/shop?table=events"
model = "{MODEL}"

[[listeners]]
name = "docs"
source = "https://sqs.eu-west-1.amazonaws.com/123456789012/docs"
model = "{MODEL}"

[[listeners]]
name = "hooks"
source = "webhook://hooks?secret={SECRETS["webhook"]}"
model = "{MODEL}"
""",
        encoding="utf-8",
    )
    return path


def deploy_keda(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MODELBUS, "deploy", "keda", *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=60,
        check=False,
    )


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS.values():
        for form in {secret, quote(secret, safe="")}:
            assert form not in text, f"a credential is printed: {form}"


def test_command_prints_valid_yaml_from_a_listener_file_without_credentials(
    tmp_path: Path,
) -> None:
    file = _listener_file(tmp_path / "listeners.toml")
    names = ["orders", "invoices", "clicks", "events", "outbox", "docs"]
    result = deploy_keda(*names, "--file", str(file), "--namespace", "prod")
    assert result.returncode == 0, result.stderr
    _assert_no_secret(result.stdout + result.stderr)
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in documents][-1] == "ScaledObject"
    auths = [d for d in documents if d["kind"] == "TriggerAuthentication"]
    assert len(auths) == 5  # every broker but NATS (monitoring endpoint) needs one
    for document in auths:
        jsonschema.validate(document, TRIGGER_AUTHENTICATION)
    jsonschema.validate(documents[-1], SCALED_OBJECT)
    # the comments say what each trigger reads and which Secrets to create, masked
    assert "# KEDA autoscaling of Deployment 'modelbus'" in result.stdout
    assert "group 'modelbus-orders'" in result.stdout
    assert "host: amqp://app:***@rabbitmq:5672/prod" in result.stdout
    assert "kubectl -n prod create secret generic modelbus-orders" in result.stdout


def test_command_refuses_clearly(tmp_path: Path) -> None:
    file = _listener_file(tmp_path / "listeners.toml")
    unknown = deploy_keda("nope", "--file", str(file))
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "defines no listener nope" in unknown.stderr and "orders" in unknown.stderr
    hooks = deploy_keda("orders", "hooks", "--file", str(file))
    assert hooks.returncode == 1 and hooks.stdout == ""
    assert "listener 'hooks' cannot drive KEDA" in hooks.stderr
    _assert_no_secret(hooks.stderr)
    bad = deploy_keda("orders", "--file", str(file), "--min-replicas", "3", "--max-replicas", "2")
    assert bad.returncode == 1 and "min (3) <= max (2)" in bad.stderr
    none = deploy_keda("--file", str(file))
    assert none.returncode == 2  # a usage error: LISTENER is required


def test_help_documents_both_ways_and_every_option() -> None:
    result = subprocess.run(
        [MODELBUS, "deploy", "keda", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    for flag in (
        "--file",
        "--url",
        "--key",
        "--deployment",
        "--namespace",
        "--min-replicas",
        "--max-replicas",
        "--target",
        "--polling-interval-s",
        "--cooldown-s",
        "--aws-region",
        "--aws-pod-identity",
        "--nats-monitoring",
    ):
        assert flag in result.stdout, flag
    assert "from the server" in result.stdout and "listener file" in result.stdout


def test_command_reads_the_listener_from_the_server(
    admin: Client, modelbus_server: ModelbusServer
) -> None:
    """The server keeps credentials encrypted and returns them as ***: the command works
    from that copy, and prints the same triggers as from the file."""
    name = f"keda-{uuid.uuid4().hex[:8]}"
    password = "srv-Pa55word-redis"
    source = f"redis://app:{password}@redis.example:6379/0?stream=orders"
    admin.create_listener({"name": name, "source": source, "model": MODEL}, check=False)
    try:
        env = {"MODELBUS_URL": modelbus_server.url, "MODELBUS_API_KEY": modelbus_server.admin_key}
        result = deploy_keda(name, "--namespace", "prod", env=env)
    finally:
        admin.delete_listener(name)
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr
    *auths, scaled = yaml.safe_load_all(result.stdout)
    jsonschema.validate(scaled, SCALED_OBJECT)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == f"modelbus-{name}"
    assert trigger["metadata"]["address"] == "redis.example:6379"
    (auth,) = auths
    assert [r["parameter"] for r in auth["spec"]["secretTargetRef"]] == ["username", "password"]
    missing = deploy_keda("no-such-listener", env=env)
    assert missing.returncode == 1 and "no-such-listener" in missing.stderr


def test_docs_explain_every_option() -> None:
    help_text = subprocess.run(
        [MODELBUS, "deploy", "keda", "--help"], capture_output=True, text=True, check=True
    ).stdout
    docs = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    options = help_text.partition("Options:")[2]
    flags = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]+)", options, re.MULTILINE))
    flags -= {"--help", "--url", "--key"}  # the SDK's, documented once in the README
    assert flags, help_text
    assert not {f for f in flags if f"`{f}" not in docs}
