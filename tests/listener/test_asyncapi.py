"""The AsyncAPI builder: channel addresses, servers and bindings per broker scheme, model
schemas as payloads, the envelope's and dead letters' attributes, redaction; and the whole
document validated by the official ``@asyncapi/parser`` under Node."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from modelbus.client.refs import ModelRef
from modelbus.connectors import SCHEMES, Delivery
from modelbus.errors import ModelNotFound
from modelbus.listeners.asyncapi import (
    PLACES,
    ModelSchemas,
    describe_url,
    document,
    model_schemas,
)
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.envelopes import (
    Correlation,
    DeadLetterInfo,
    encode_dead_letter,
    encode_result,
)
from modelbus.runtime.invocation import Payload, Result
from tests.support.asyncapi import problems

API = "http://127.0.0.1:8080/"
STRICT = "test/strict@1.0.0"
SCHEMAS = {
    STRICT: ModelSchemas(
        version="1.0.0",
        input={
            "type": "object",
            "required": ["text"],
            "properties": {"text": {"$ref": "#/$defs/text"}},
            "$defs": {"text": {"type": "string"}},
        },
        output={"type": "object", "required": ["text"]},
    ),
    "test/gone@latest": ModelSchemas(problem="model test/gone does not exist"),
}


def listener(name: str, source: str, **fields: Any) -> ListenerDefinition:
    return ListenerDefinition.model_validate(
        {"name": name, "source": source, "model": STRICT, **fields}
    )


def build(*definitions: ListenerDefinition) -> dict[str, Any]:
    return document(list(definitions), SCHEMAS, api_url=API, version="9.9.9")


def server_of(doc: dict[str, Any], channel: str) -> list[dict[str, Any]]:
    refs = doc["channels"][channel].get("servers", [])
    return [doc["servers"][ref["$ref"].rsplit("/", 1)[1]] for ref in refs]


# (source URL, channel address, protocol, server hosts, channel bindings)
SOURCES = [
    ("local://jobs", "jobs", "modelbus-local", ["localhost"], {}),
    ("memory://jobs", "jobs", "modelbus-memory", ["localhost"], {}),
    ("dir:///srv/inbox", "/srv/inbox", "file", ["localhost"], {}),
    (
        "sqs://inbox?region=eu-west-1",
        "inbox",
        "sqs",
        ["sqs.eu-west-1.amazonaws.com"],
        {"sqs": {"queue": {"name": "inbox", "fifoQueue": False}, "bindingVersion": "0.2.0"}},
    ),
    (
        "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo",
        "orders.fifo",
        "sqs",
        ["sqs.eu-west-1.amazonaws.com"],
        {"sqs": {"queue": {"name": "orders.fifo", "fifoQueue": True}, "bindingVersion": "0.2.0"}},
    ),
    (
        "sqs://inbox?endpoint_url=http://127.0.0.1:4566",
        "inbox",
        "sqs",
        ["127.0.0.1:4566"],
        {"sqs": {"queue": {"name": "inbox", "fifoQueue": False}, "bindingVersion": "0.2.0"}},
    ),
    ("redis://r:6380/2?stream=jobs", "jobs", "redis", ["r:6380"], {}),
    (
        "amqp://rabbit/%2F?queue=jobs",
        "jobs",
        "amqp",
        ["rabbit"],
        {
            "amqp": {
                "is": "queue",
                "queue": {"name": "jobs", "vhost": "/"},
                "bindingVersion": "0.3.0",
            }
        },
    ),
    (
        "amqp://rabbit/prod?exchange=orders&binding_key=eu.%23",
        "eu.#",
        "amqp",
        ["rabbit"],
        {
            "amqp": {
                "is": "routingKey",
                "exchange": {"name": "orders", "vhost": "prod"},
                "bindingVersion": "0.3.0",
            }
        },
    ),
    (
        "nats://n1:4222,n2:4222?stream=JOBS&subject=jobs.new",
        "jobs.new",
        "nats",
        ["n1:4222", "n2:4222"],
        {},
    ),
    ("mqtt://broker:1883/sensors/%2B/temp", "sensors/+/temp", "mqtt", ["broker:1883"], {}),
    (
        "kafka://k1:9092,k2:9092/orders",
        "orders",
        "kafka",
        ["k1:9092", "k2:9092"],
        {"kafka": {"topic": "orders", "bindingVersion": "0.5.0"}},
    ),
    ("postgresql://app@db:5432/shop?table=outbox", "outbox", "postgresql", ["db:5432"], {}),
    (
        "webhook://github?secret=0123456789abcdef",
        "/v1/hooks/github",
        "http",
        ["127.0.0.1:8080"],
        {},
    ),
]


@pytest.mark.parametrize(("url", "address", "protocol", "hosts", "bindings"), SOURCES)
def test_source_channel_per_scheme(
    url: str, address: str, protocol: str, hosts: list[str], bindings: dict[str, Any]
) -> None:
    doc = build(listener("l1", url))
    channel = doc["channels"]["l1.source"]
    assert channel["address"] == address
    assert channel.get("bindings", {}) == bindings
    servers = server_of(doc, "l1.source")
    assert [s["host"] for s in servers] == hosts
    assert {s["protocol"] for s in servers} == {protocol}
    assert doc["operations"]["l1.receive"]["action"] == "receive"
    assert doc["operations"]["l1.receive"]["channel"] == {"$ref": "#/channels/l1.source"}


# (sink URL, channel address, protocol, channel bindings, send-operation bindings)
SINKS = [
    ("local://results", "results", "modelbus-local", {}, {}),
    ("dir:///srv/out", "/srv/out", "file", {}, {}),
    (
        "sns://alerts.fifo?region=us-east-1",
        "alerts.fifo",
        "sns",
        {"sns": {"name": "alerts.fifo", "ordering": {"type": "FIFO"}, "bindingVersion": "0.1.0"}},
        {},
    ),
    ("s3://bucket/results/?region=eu-west-1", "bucket/results/", "s3", {}, {}),
    (
        "amqp://rabbit/?exchange=results&routing_key=done",
        "done",
        "amqp",
        {
            "amqp": {
                "is": "routingKey",
                "exchange": {"name": "results", "vhost": "/"},
                "bindingVersion": "0.3.0",
            }
        },
        {"amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": "0.3.0"}},
    ),
    (
        "mqtt://broker/results?version=3.1.1",
        "results",
        "mqtt",
        {},
        {"mqtt": {"qos": 1, "bindingVersion": "0.2.0"}},
    ),
    ("nats://n1?subject=results", "results", "nats", {}, {}),
    (
        "kafka://k1:9092/results?security_protocol=SASL_SSL",
        "results",
        "kafka-secure",
        {"kafka": {"topic": "results", "bindingVersion": "0.5.0"}},
        {},
    ),
    ("redis://r/0?stream=results", "results", "redis", {}, {}),
    ("postgres://db/shop?table=results", "results", "postgresql", {}, {}),
    (
        "https://hooks.example.com/in?secret=0123456789abcdef",
        "/in",
        "https",
        {},
        {"http": {"method": "POST", "bindingVersion": "0.3.0"}},
    ),
]


@pytest.mark.parametrize(("url", "address", "protocol", "bindings", "send"), SINKS)
def test_output_and_error_channels_per_scheme(
    url: str, address: str, protocol: str, bindings: dict[str, Any], send: dict[str, Any]
) -> None:
    doc = build(listener("l1", "local://jobs", outputs=[url], error_sink="local://dead"))
    channel = doc["channels"]["l1.output.0"]
    assert channel["address"] == address
    assert channel.get("bindings", {}) == bindings
    assert {s["protocol"] for s in server_of(doc, "l1.output.0")} == {protocol}
    publish = doc["operations"]["l1.publish.0"]
    assert publish["action"] == "send"
    assert publish.get("bindings", {}) == send
    assert doc["channels"]["l1.errors"]["address"] == "dead"
    assert doc["operations"]["l1.dead-letter"]["action"] == "send"


def test_aws_url_without_region_says_so_with_a_server_variable() -> None:
    doc = build(listener("l1", "sqs://inbox"))
    (server,) = server_of(doc, "l1.source")
    assert server["host"] == "sqs.{region}.amazonaws.com"
    assert "names none" in server["variables"]["region"]["description"]


def test_source_consumer_defaults_applied() -> None:
    doc = build(
        listener("kl", "kafka://k1:9092/orders"),
        listener("rl", "redis://r/0?stream=s"),
        listener("nl", "nats://n1?stream=S"),
        listener("al", "amqp://rabbit/?exchange=orders"),
        listener("gl", "kafka://k1:9092/orders?group=billing"),
    )
    ops = doc["operations"]
    assert ops["kl.receive"]["x-modelbus"]["consumer"]["group"] == "kl"
    assert ops["kl.receive"]["bindings"]["kafka"]["groupId"] == {"type": "string", "enum": ["kl"]}
    assert ops["gl.receive"]["bindings"]["kafka"]["groupId"]["enum"] == ["billing"]
    assert ops["rl.receive"]["x-modelbus"]["consumer"]["group"] == "modelbus-rl"
    assert ops["nl.receive"]["x-modelbus"]["consumer"]["durable"] == "modelbus-nl"
    assert ops["al.receive"]["x-modelbus"]["consumer"]["queue"] == "modelbus.al"
    # a JetStream source without a subject filter has no single address: said, not invented
    assert doc["channels"]["nl.source"]["address"] is None
    assert "Every subject of the stream" in doc["channels"]["nl.source"]["description"]


def test_two_listeners_on_one_broker_share_its_server() -> None:
    doc = build(
        listener("a", "kafka://k1:9092/orders"),
        listener("b", "kafka://k1:9092/orders", outputs=["kafka://k1:9092/done"]),
    )
    assert list(doc["servers"]) == ["kafka-k1_9092"]
    assert doc["channels"]["a.source"]["servers"] == doc["channels"]["b.output.0"]["servers"]


SECRETS = ["hunter2-pw", "tok3n-value", "0123456789abcdef-secret", "sasl-pw-9"]


def test_no_credential_appears_anywhere() -> None:
    doc = build(
        listener(
            "l1",
            "amqp://app:hunter2-pw@rabbit/?queue=jobs",
            outputs=[
                "nats://tok3n-value@n1?subject=done",
                "https://hooks.example.com/in?secret=0123456789abcdef-secret",
                "kafka://user:sasl-pw-9@k1:9092/t?security_protocol=SASL_SSL",
            ],
            error_sink="redis://:hunter2-pw@r/0?stream=dead",
        ),
        listener("l2", "webhook://gh?secret=0123456789abcdef-secret"),
    )
    text = json.dumps(doc)
    for secret in SECRETS:
        assert secret not in text
    assert doc["channels"]["l1.source"]["x-modelbus-url"] == "amqp://***@rabbit/?queue=***"
    assert doc["channels"]["l1.output.0"]["x-modelbus-url"] == "nats://***@n1?subject=***"


def test_model_schemas_are_the_payloads() -> None:
    doc = build(
        listener("ce", "local://a", outputs=["local://b"]),
        listener("raw", "local://c", outputs=["local://d"], output_mode="raw"),
    )
    schemas = doc["components"]["schemas"]
    # the input schema is the model's, its local $refs rebased to where it now lives
    assert schemas["ce.input"]["properties"]["text"] == {
        "$ref": "#/components/schemas/ce.input/$defs/text"
    }
    raw_input = doc["channels"]["ce.source"]["messages"]["input"]
    assert raw_input["payload"] == {"$ref": "#/components/schemas/ce.input"}
    event = doc["channels"]["ce.source"]["messages"]["input-cloudevent"]
    assert event["payload"]["properties"]["data"] == {"$ref": "#/components/schemas/ce.input"}
    result = doc["channels"]["ce.output.0"]["messages"]["result"]
    assert result["contentType"] == "application/cloudevents+json"
    assert result["payload"]["properties"]["data"] == {"$ref": "#/components/schemas/ce.output"}
    assert result["payload"]["properties"]["type"] == {"const": "dev.modelbus.result"}
    assert result["payload"]["properties"]["source"] == {"const": "modelbus/listener/ce"}
    raw = doc["channels"]["raw.output.0"]["messages"]["result"]
    assert raw["payload"] == {"$ref": "#/components/schemas/raw.output"}
    assert "modelversion" in raw["headers"]["properties"]
    assert doc["operations"]["ce.receive"]["x-modelbus"]["version"] == "1.0.0"


def test_with_a_claim_check_a_result_may_be_a_reference() -> None:
    checked = {"url": "s3://large/results/"}
    doc = build(
        listener("ce", "local://a", outputs=["local://b"], claim_check=checked),
        listener("raw", "local://c", outputs=["local://d"], claim_check=checked, output_mode="raw"),
    )
    event = doc["channels"]["ce.output.0"]["messages"]["result"]
    data = event["payload"]["properties"]["data"]["oneOf"]
    assert data[0] == {"$ref": "#/components/schemas/ce.output"}
    assert data[1]["properties"]["claim_check"]["required"] == [
        "url",
        "size",
        "sha256",
        "content_type",
    ]
    assert "claimcheck" in event["headers"]["properties"]
    assert "claim check store" in event["description"]
    raw = doc["channels"]["raw.output.0"]["messages"]["result"]
    assert raw["payload"]["oneOf"][1]["title"] == "Claim check reference"


def test_unknown_model_is_said_not_invented() -> None:
    gone = ListenerDefinition(
        name="g", source="local://a", model="test/gone", outputs=["local://b"]
    )
    doc = build(gone)
    message = doc["channels"]["g.source"]["messages"]["input"]
    assert "payload" not in message
    assert "schema is unknown: model test/gone does not exist" in message["description"]
    result = doc["channels"]["g.output.0"]["messages"]["result"]
    assert result["payload"]["properties"]["data"] == {}
    assert "schemas" not in doc["components"]


def test_model_without_schemas_says_so() -> None:
    schemas = {STRICT: ModelSchemas(version="1.0.0")}
    doc = document([listener("l1", "local://a")], schemas, api_url=API, version="1")
    message = doc["channels"]["l1.source"]["messages"]["input"]
    assert "payload" not in message
    assert "declares no input schema" in message["description"]


def _sample() -> tuple[Correlation, Result, DeadLetterInfo]:
    correlation = Correlation(
        listener="l",
        model=STRICT,
        source_message_id="m",
        origin_id="m",
        attempt=2,
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        bucket="b",
        key="k",
        event=("e", "s", "t"),
    )
    result = Result(output=Payload.from_json({"text": "X"}), duration_ms=3.0, version="1.0.0")
    info = DeadLetterInfo(
        id="d",
        listener="l",
        model=STRICT,
        version="1.0.0",
        error_type="ModelError",
        error_message="boom",
        stacktrace="...",
        permanent=False,
        attempts=3,
    )
    return correlation, result, info


def test_envelope_and_dead_letter_attributes_match_the_encoders() -> None:
    """Every attribute and CloudEvent field the encoders write is in the document, with a
    description (a new attribute in envelopes.py that is not described fails here)."""
    correlation, result, info = _sample()
    doc = build(listener("l1", "local://a", outputs=["local://b"], error_sink="local://c"))
    message = doc["channels"]["l1.output.0"]["messages"]["result"]
    encoded = encode_result(correlation=correlation, result=result, id="i")
    for name in encoded.attributes:
        assert message["headers"]["properties"][name]["description"], name
    for name in json.loads(encoded.body):
        prop = message["payload"]["properties"][name]
        assert prop.get("description") or "const" in prop or name == "data", name
    dead = doc["channels"]["l1.errors"]["messages"]["dead-letter"]["headers"]
    delivery = Delivery(message_id="m", body=b"x", attributes={"custom": "1"})
    added = set(encode_dead_letter(delivery, info).attributes) - {"custom"}
    assert added == set(dead["properties"])
    assert all(dead["properties"][n]["description"] for n in added)
    assert "modelbus-version" not in dead["required"]
    assert "modelbus-error-type" in dead["required"]


def test_disabled_listener_is_described_as_paused() -> None:
    doc = build(listener("l1", "local://a", enabled=False))
    operation = doc["operations"]["l1.receive"]
    assert operation["x-modelbus"]["enabled"] is False
    assert "paused" in operation["summary"]


def test_a_url_that_cannot_be_read_is_described_as_such() -> None:
    place = describe_url("nats://n1", listener="l1", source=True, api_url=API)
    assert place.address is None
    assert place.note.startswith("This URL cannot be described")
    # an AMQP source naming neither queue nor exchange: why, with the password masked
    place = describe_url("amqp://app:hunter2-pw@rabbit/", listener="l1", source=True, api_url=API)
    assert place.note.startswith("This URL cannot be described") and "queue" in place.note
    assert "hunter2-pw" not in place.note and "://***@rabbit" in place.note


def test_every_connector_scheme_is_described() -> None:
    assert set(SCHEMES) <= set(PLACES)


def test_a_folder_source_carries_files() -> None:
    doc = build(listener("l1", "dir:///srv/inbox"))
    messages = doc["channels"]["l1.source"]["messages"]
    assert list(messages) == ["file"]
    assert messages["file"]["payload"] == {"type": "string", "format": "binary"}


async def test_model_schemas_names_what_does_not_resolve() -> None:
    async def manifest_of(ref: ModelRef) -> tuple[str, Any]:
        if ref.name == "gone":
            raise ModelNotFound("model test/gone does not exist")
        schemas = SimpleNamespace(input={"type": "object"}, output=None)
        return "1.0.0", SimpleNamespace(schemas=schemas)

    refs = [ModelRef.parse(STRICT), ModelRef.parse("test/gone"), ModelRef.parse(STRICT)]
    found = await model_schemas(refs, manifest_of)
    assert found == {
        STRICT: ModelSchemas(version="1.0.0", input={"type": "object"}),
        "test/gone@latest": ModelSchemas(problem="model test/gone does not exist"),
    }


def test_every_scheme_validates_with_the_official_parser() -> None:
    """One document with a listener on every source scheme and every sink scheme, in both
    output modes, with an unknown model among them: the official parser finds no error and
    no warning."""
    definitions = [listener(f"s{i}", url) for i, (url, *_) in enumerate(SOURCES)]
    sinks = [url for url, *_ in SINKS]
    definitions.append(listener("ce", "local://x", outputs=sinks, error_sink="local://dead"))
    definitions.append(
        listener("raw", "local://y", outputs=sinks, error_sink="sqs://dead", output_mode="raw")
    )
    definitions.append(ListenerDefinition(name="g", source="local://z", model="test/gone"))
    definitions.append(listener("n", "nats://n1?stream=S"))  # an address that is not fixed
    checked = {"url": "s3://large/results/", "over_bytes": 1000}
    definitions.append(listener("cc", "local://v", outputs=["sqs://q"], claim_check=checked))
    definitions.append(
        listener("ccr", "local://w", outputs=["sqs://q"], claim_check=checked, output_mode="raw")
    )
    doc = build(*definitions)
    assert problems(doc) == []


def test_the_parser_does_find_errors() -> None:
    """The validation is real: a binding that breaks its schema is reported."""
    doc = build(listener("l1", "amqp://rabbit/?queue=jobs"))
    doc["channels"]["l1.source"]["bindings"]["amqp"]["is"] = "mailbox"
    assert any("amqp" in p for p in problems(doc))
