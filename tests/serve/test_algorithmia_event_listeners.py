"""Algorithmia's event-listener API on a real server: listeners created in Algorithmia's
shapes (raw HTTP and ``algorithmia-api-client`` 1.5.5) become ordinary modelbus listeners
that process messages from a real broker (SQS on moto_server, Kafka on tansu)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelbus.client import Client
from tests.aws.motoserver import FAKE_CREDENTIALS, MotoServer
from tests.brokers.kafka.tansu import Tansu
from tests.serve.conftest import eventually, unique
from tests.support.algorithmia_api import ApiClientEnv, api_client
from tests.support.fixtures import echo_as
from tests.support.server import ModelbusServer

__all__ = ["api_client"]

OWNER = "evt"
AWS_ENV = {
    **FAKE_CREDENTIALS,
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="module")
def aws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelbusServer]:
    """A server whose listeners reach moto with fake credentials from its environment."""
    tmp = tmp_path_factory.mktemp("algorithmia-events")
    with ModelbusServer.start(tmp / "data", env=AWS_ENV) as server:
        with server.client() as admin:
            admin.push(echo_as(tmp, OWNER, "echo", "events"), version="1.0.0")
        yield server


@pytest.fixture(scope="module")
def admin_client(aws_server: ModelbusServer) -> Iterator[Client]:
    with aws_server.client() as client:
        yield client


def sqs(moto: MotoServer) -> Any:
    import boto3

    return boto3.client(
        "sqs",
        region_name=moto.region,
        endpoint_url=moto.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def post(server: ModelbusServer, body: dict[str, Any], user: str = OWNER) -> httpx.Response:
    with server.http() as http:
        return http.post(f"/v1/users/{user}/event-listeners", json=body)


def sqs_request(queue_url: str, **changes: Any) -> dict[str, Any]:
    return {
        "sourceType": "AmazonSQS",
        "sourceURI": queue_url,
        "credentials": json.dumps({"region": "us-east-1"}),
        "algoOwner": OWNER,
        "algoName": "echo",
        "algoVersion": "1.0",
        **changes,
    }


def test_sqs_event_listener_runs_the_algorithm(
    aws_server: ModelbusServer, admin_client: Client, moto: MotoServer
) -> None:
    queue_url = sqs(moto).create_queue(QueueName=unique("algo-events"))["QueueUrl"]
    created = post(aws_server, sqs_request(queue_url, algoTimeoutSeconds=45))
    assert created.status_code == 201, created.text
    found = created.json()
    assert isinstance(found["id"], int)
    assert (found["sourceType"], found["algoOwner"], found["algoName"]) == (
        "AmazonSQS",
        OWNER,
        "echo",
    )
    assert found["algoVersion"] == "1.0.*"
    assert found["algoTimeoutSeconds"] == 45
    name = found["name"]
    # an ordinary listener: the native API shows it, with its source and timeout
    native = admin_client.listener(name)
    # moto's queue URL names the endpoint: the listener reads sqs://NAME there
    queue_name = queue_url.rsplit("/", 1)[1]
    assert native.definition.source.startswith(f"sqs://{queue_name}?region=us-east-1&")
    assert "endpoint_url=http%3A%2F%2F127.0.0.1" in native.definition.source
    assert native.definition.timeout_s == 45
    assert native.definition.model == f"{OWNER}/echo@1.0.*"

    sent = sqs(moto).send_message(QueueUrl=queue_url, MessageBody=json.dumps({"whoami": 1}))
    runs = eventually(
        lambda: [r for r in admin_client.runs(sent["MessageId"]) if r.status == "succeeded"],
        timeout_s=60,
    )
    assert runs[0].listener == name
    assert runs[0].version == "1.0.0"

    with aws_server.http() as http:
        by_id = http.get(f"/v1/users/{OWNER}/event-listeners/{found['id']}").json()
        by_name = http.get(f"/v1/users/{OWNER}/event-listeners/{name}").json()
        listed = http.get(f"/v1/users/{OWNER}/event-listeners").json()["results"]
        assert by_id == {**by_name, "status": by_id["status"]}
        assert name in [x["name"] for x in listed]
        replaced = http.put(
            f"/v1/users/{OWNER}/event-listeners/{found['id']}",
            json=sqs_request(queue_url, algoTimeoutSeconds=90, algoVersion="1.*"),
        )
        assert replaced.status_code == 200, replaced.text
        assert (replaced.json()["name"], replaced.json()["algoTimeoutSeconds"]) == (name, 90)
        assert admin_client.listener(name).definition.model == f"{OWNER}/echo@1.*"
        assert http.delete(f"/v1/users/{OWNER}/event-listeners/{found['id']}").status_code == 204
        gone = http.get(f"/v1/users/{OWNER}/event-listeners/{found['id']}")
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "ListenerNotFound"
    assert name not in [x.name for x in admin_client.listeners()]


def test_the_generated_client_creates_reads_and_deletes(
    aws_server: ModelbusServer, moto: MotoServer, api_client: ApiClientEnv
) -> None:
    queue_url = sqs(moto).create_queue(QueueName=unique("algo-generated"))["QueueUrl"]
    arn = "arn:aws:sqs:us-east-1:123456789012:" + queue_url.rsplit("/", 1)[1]
    out = api_client.run(
        aws_server,
        f"""
        import uuid
        listeners = api.EventlistenersApi(client)
        user = str(uuid.uuid5(uuid.NAMESPACE_URL, "modelbus:user:{OWNER}"))
        request = models.EventListenerRequest(
            algo_owner="{OWNER}", algo_name="echo", algo_version="1.0.0",
            algo_timeout_seconds=30, source_type="AmazonSQS", source_uri="{arn}",
            credentials=json.dumps({{"endpoint_url": "{moto.endpoint_url}"}}),
        )
        created = listeners.post_event_listeners_for_user_by_id(user, request)
        out["created"] = created.to_dict()
        # 1.5.5 wants UUIDs in the path: the integer id as a UUID
        listener = str(uuid.UUID(int=created.id))
        got = listeners.get_event_listener_by_id_for_user_by_id(user, listener)
        out["got"] = got.to_dict()
        listeners.delete_event_listener_for_user_by_id(user, listener)
        try:
            listeners.get_event_listener_by_id_for_user_by_id(user, listener)
        except ApiException as exc:
            out["after_delete"] = exc.status
        """,
    )
    assert out["created"]["algo_version"] == "1.0.0"
    assert out["created"]["algo_timeout_seconds"] == 30
    assert out["got"]["id"] == out["created"]["id"]
    assert out["got"]["source_uri"].startswith(
        "https://sqs.us-east-1.amazonaws.com/123456789012/algo-generated-"
    )
    assert out["after_delete"] == 404
    assert out["created"]["listener_owner"] == str(
        uuid.uuid5(uuid.NAMESPACE_URL, "modelbus:user:evt")
    )


def test_kafka_event_listener_from_escaped_json_credentials(
    aws_server: ModelbusServer, admin_client: Client
) -> None:
    topic = unique("algo-kafka")
    with Tansu() as broker:
        _make_topic(broker.bootstrap, topic)
        credentials = {
            "connection_type": "kafka_unauthenticated_plaintext",
            "broker_url": f"PLAINTEXT://{broker.bootstrap}",
            "topic": "ignored-when-sourceURI-names-one",
        }
        created = post(
            aws_server,
            {
                "sourceType": "Kafka",
                "sourceURI": topic,
                "credentials": json.dumps(credentials),  # Algorithmia's escaped JSON
                "algoOwner": OWNER,
                "algoName": "echo",
                "algoVersion": "1.0.0",
            },
        )
        assert created.status_code == 201, created.text
        found = created.json()
        assert found["sourceType"] == "Kafka"
        definition = admin_client.listener(found["name"]).definition
        assert definition.source == f"kafka://{broker.bootstrap}/{topic}"
        message_id = _produce(broker.bootstrap, topic, b'{"whoami": "kafka"}')
        runs = eventually(
            lambda: [r for r in admin_client.runs(message_id) if r.status == "succeeded"],
            timeout_s=60,
        )
        assert runs[0].listener == found["name"]
        admin_client.delete_listener(found["name"])


def test_kafka_sasl_ssl_credentials_become_the_url_options(aws_server: ModelbusServer) -> None:
    credentials = {
        "connection_type": "kafka_sasl_ssl",
        "broker_url": "SASL_SSL://127.0.0.1:1",
        "broker_username": "ann",
        "broker_password": "s3cret/+",
        "sasl_mechanism": "SCRAM-SHA-512",
    }
    body = {
        "sourceType": "Kafka",
        "sourceURI": "orders",
        "credentials": json.dumps(credentials),
        "algoOwner": OWNER,
        "algoName": "echo",
    }
    refused = post(aws_server, body)  # nothing listens on port 1: the check opens it
    assert refused.status_code in (400, 502), refused.text
    message = refused.json()["error"]["message"]
    assert "s3cret" not in message
    with aws_server.http() as http:
        stored = http.post(
            "/v1/listeners",
            params={"check": "false"},
            json={"name": unique("k"), "source": _translated(body), "model": "evt/echo"},
        )
    assert stored.status_code == 201, stored.text


def _translated(body: dict[str, Any]) -> str:
    from modelbus.web.api.event_listeners import source_url

    return source_url(body)


def test_kafka_translation() -> None:
    from modelbus.web.api.event_listeners import source_url

    sasl = {
        "sourceType": "Kafka",
        "sourceURI": "orders",
        "credentials": json.dumps(
            {
                "connection_type": "kafka_sasl_ssl",
                "broker_url": "SASL_SSL://b1:9093,SASL_SSL://b2:9093",
                "broker_username": "ann",
                "broker_password": "p@ss word",
                "sasl_mechanism": "SCRAM-SHA-512",
            }
        ),
    }
    assert source_url(sasl) == (
        "kafka://ann:p%40ss%20word@b1:9093,b2:9093/orders"
        "?security_protocol=SASL_SSL&sasl_mechanism=SCRAM-SHA-512"
    )
    plain = {"sourceType": "Kafka", "sourceURI": "kafka://h:9092/t", "credentials": ""}
    assert source_url(plain) == "kafka://h:9092/t"


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        ({"sourceType": "AzureSB"}, "sourceType AzureSB is not supported"),
        ({"sourceType": "GooglePubSub"}, "use one of AmazonSQS, Kafka"),
        (
            {"credentials": json.dumps({"access_key_id": "AKIA", "secret_access_key": "x"})},
            "credentials.access_key_id, credentials.secret_access_key not supported",
        ),
        ({"credentials": "{not json"}, "credentials is not a JSON text"),
        ({"credentials": "[" * 5000 + "]" * 5000}, "JSON nested too deeply"),  # was a 500
        ({"algoOwner": "someone-else"}, "/v1/users/someone-else/event-listeners"),
        ({"algoName": None}, "algoName is required"),
        ({"priority": 3}, "priority: not an Algorithmia event-listener field"),
        ({"sourceURI": "my-queue"}, "is not an SQS queue"),
        ({"algoTimeoutSeconds": -1}, "algoTimeoutSeconds must be a positive"),
        (
            {
                "sourceType": "Kafka",
                "sourceURI": "t",
                "credentials": json.dumps({"broker_url": "h:1", "ca_certificate": "PEM"}),
            },
            "credentials.ca_certificate is not supported",
        ),
        (
            {
                "sourceType": "Kafka",
                "sourceURI": "t",
                "credentials": json.dumps(
                    {"broker_url": "h:1", "connection_type": "kafka_sasl_ssl"}
                ),
            },
            "kafka_sasl_ssl needs credentials.broker_username",
        ),
    ],
)
def test_what_modelbus_cannot_do_is_refused_by_name(
    aws_server: ModelbusServer, changes: dict[str, Any], missing: str
) -> None:
    body = {k: v for k, v in sqs_request("https://sqs.us-east-1.amazonaws.com/1/q").items()}
    body.update(changes)
    refused = post(aws_server, {k: v for k, v in body.items() if v is not None})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "DefinitionError"
    assert missing in error["message"]


def test_a_body_nested_too_deep_is_not_json(aws_server: ModelbusServer) -> None:
    with aws_server.http() as http:
        refused = http.post(
            f"/v1/users/{OWNER}/event-listeners",
            content=b"[" * 5000 + b"]" * 5000,
            headers={"Content-Type": "application/json"},
        )
    assert refused.status_code == 400, refused.text  # was a 500 (RecursionError)
    assert "nested too deeply" in refused.json()["error"]["message"]


def _make_topic(bootstrap: str, topic: str) -> None:
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def make() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()

    asyncio.run(make())


def _produce(bootstrap: str, topic: str, body: bytes) -> str:
    """Produce one record; returns the message id modelbus gives it (TOPIC:PARTITION:OFFSET)."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    async def produce() -> str:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            sent = await producer.send_and_wait(topic, body)
        finally:
            await producer.stop()
        return f"{sent.topic}:{sent.partition}:{sent.offset}"

    return asyncio.run(produce())
