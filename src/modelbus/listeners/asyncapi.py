"""AsyncAPI 3.0: every listener described for event-driven tooling.

:func:`document` is a pure function of the listener definitions and what the registry says
of their models (:class:`ModelSchemas`, gathered by :func:`model_schemas`). For each
listener it describes:

* a **source channel** (operation ``LISTENER.receive``) with the messages it accepts: the
  bare body (its payload the model's input JSON Schema where the model declares one) and a
  structured CloudEvent carrying it (binary-mode CloudEvents, SNS notifications and S3
  object-created notifications are decoded too, as the description says);
* an **output channel** per sink (``LISTENER.publish.N``): the result, a CloudEvent whose
  ``data`` is the model's output (schema where declared) and whose attributes carry the
  correlation, or the bare result in ``raw`` output mode;
* an **error channel** (``LISTENER.dead-letter``) when the listener has an error sink: the
  original body untouched, plus the ``modelbus-*`` dead-letter attributes.

The envelope's and the dead letters' attribute names are read from what
:mod:`modelbus.listeners.envelopes` really encodes (a sample result and dead letter are
encoded once), so the document cannot drift from the messages.

Each URL becomes a server (protocol, host, path) and a channel address; official AsyncAPI
bindings are given where one exists for the broker and says something true (Kafka topic and
consumer group, AMQP queue or exchange, MQTT QoS, SQS queue, SNS topic, HTTP method), and
how modelbus consumes (its consumer group, durable consumer or queue, defaults applied) is
under ``x-modelbus``. What cannot be known (the region of an AWS URL that names none, a
model that does not resolve, an input schema the model does not declare, a URL that does
not parse) is said in a description, never invented. Every URL is shown through
:func:`~modelbus.connectors.redact_url` (``x-modelbus-url``); names (queues, topics, paths)
are read from the definitions as given, which the API redacts for keys that may not see the
URLs whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from modelbus.client.refs import ModelRef
from modelbus.connectors import (
    Delivery,
    backlog_of,
    credentials_of,
    has_placeholder,
    redact_text,
    redact_url,
    scheme_of,
)
from modelbus.errors import ModelbusError
from modelbus.listeners.claimcheck import CLAIM_CHECK_ATTRIBUTE
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.envelopes import (
    CLOUDEVENTS_JSON,
    RESULT_TYPE,
    Correlation,
    DeadLetterInfo,
    encode_dead_letter,
    encode_result,
)
from modelbus.runtime.invocation import Payload, Result

if TYPE_CHECKING:
    from modelbus.registry.manifest import Manifest

__all__ = [
    "ASYNCAPI_VERSION",
    "PLACES",
    "ModelSchemas",
    "Place",
    "describe_url",
    "document",
    "model_schemas",
]

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"
AMQP_BINDING = "0.3.0"
MQTT_BINDING = "0.2.0"
SQS_BINDING = "0.2.0"
SNS_BINDING = "0.1.0"
HTTP_BINDING = "0.3.0"

# Where the source's consumer coordinates (defaults applied) are reported to readers.
_CONSUMER_KEYS = ("queue", "stream", "group", "durable", "topic", "table", "offset_reset")
_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelSchemas:
    """What the registry says of a listener's model now: the ``version`` its spec resolves
    to and the model's ``input``/``output`` JSON Schemas (None: not declared), or the
    ``problem`` that keeps them from being known (the model or version does not exist)."""

    version: str | None = None
    input: Mapping[str, Any] | None = None
    output: Mapping[str, Any] | None = None
    problem: str | None = None


ManifestOf = Callable[[ModelRef], Awaitable[tuple[str, "Manifest"]]]


async def model_schemas(
    refs: Iterable[ModelRef], manifest_of: ManifestOf
) -> dict[str, ModelSchemas]:
    """What ``manifest_of`` (:meth:`Registry.manifest_of <modelbus.registry.catalog.Registry.
    manifest_of>`: version label and manifest) says of each distinct reference, by its text.
    A reference that does not resolve gives a :class:`ModelSchemas` naming the problem:
    modelbus errors are not raised."""
    found: dict[str, ModelSchemas] = {}
    for ref in refs:
        if str(ref) in found:
            continue
        try:
            version, manifest = await manifest_of(ref)
        except ModelbusError as exc:
            found[str(ref)] = ModelSchemas(problem=exc.message)
            continue
        schemas = manifest.schemas
        found[str(ref)] = ModelSchemas(version=version, input=schemas.input, output=schemas.output)
    return found


def document(
    definitions: Sequence[ListenerDefinition],
    schemas: Mapping[str, ModelSchemas],
    *,
    api_url: str,
    version: str,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``definitions`` (JSON-ready). ``schemas`` by model
    reference text (missing: unknown); ``api_url`` is this server's base URL (where
    ``webhook://`` sources receive); ``version`` the document's ``info.version``."""
    doc = _Document(api_url=api_url)
    for definition in definitions:
        doc.add(definition, schemas.get(definition.model))
    return doc.render(version)


# --- places: what a URL says about where messages are -------------------------------------


@dataclass(kw_only=True)
class Place:
    """One connector URL as AsyncAPI sees it: its server(s), address and bindings."""

    url: str  # redacted
    protocol: str | None = None
    hosts: tuple[str, ...] = ()
    pathname: str | None = None
    protocol_version: str | None = None
    server_note: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    address: str | None = None
    note: str = ""
    channel_bindings: dict[str, Any] = field(default_factory=dict)
    receive_bindings: dict[str, Any] = field(default_factory=dict)
    send_bindings: dict[str, Any] = field(default_factory=dict)
    consumer: dict[str, str] = field(default_factory=dict)
    files: bool = False  # a folder: its messages are files


def describe_url(url: str, *, listener: str, source: bool, api_url: str) -> Place:
    """Where ``url`` (a source of ``listener`` when ``source``, else a sink) puts messages.
    Never raises: a URL that cannot be read gives a place with no address saying why.

    The place's ``url`` is ``url`` by its shape (:func:`redact_url`); its address and
    bindings are read from ``url`` as given: the API hands in the URLs whole only to a key
    that may see them (``listeners:manage``), redacted to any other, whose document then
    shows ``***`` where a name would be (and no consumer, whose names come from them)."""
    shown = redact_url(url)
    try:
        scheme = scheme_of(url)
        describe = PLACES.get(scheme)
        if describe is None:
            return Place(
                url=shown, note=f"This URL cannot be described: {scheme}:// is unknown here."
            )
        place = describe(_Url.of(url), api_url)
        if source and not has_placeholder(url):
            place.consumer = _consumer(url, listener)
            _consumer_bindings(place)
        return place
    except (ModelbusError, ValueError, ImportError) as exc:
        why = redact_text(str(exc), credentials_of(url))
        return Place(url=shown, note=f"This URL cannot be described: {why}")


@dataclass(frozen=True, kw_only=True, slots=True)
class _Url:
    url: str  # redacted
    raw: str
    scheme: str
    hosts: tuple[str, ...]
    path: str
    query: dict[str, str]

    @classmethod
    def of(cls, url: str) -> _Url:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        return cls(
            url=redact_url(url),
            raw=url,
            scheme=parts.scheme.lower(),
            hosts=tuple(h for h in netloc.split(",") if h),
            path=unquote(parts.path),
            query=dict(parse_qsl(parts.query)),
        )

    @property
    def name(self) -> str:
        """Host and path as one name (``local://jobs``, ``dir:///srv/in``)."""
        return ",".join(self.hosts) + self.path


def _consumer(url: str, listener: str) -> dict[str, str]:
    backlog = backlog_of(url, listener)
    if backlog is None:
        return {}
    return {k: backlog.where[k] for k in _CONSUMER_KEYS if backlog.where.get(k)}


def _consumer_bindings(place: Place) -> None:
    group = place.consumer.get("group")
    if place.protocol in ("kafka", "kafka-secure") and group:
        place.receive_bindings["kafka"] = {
            "groupId": {"type": "string", "enum": [group]},
            "bindingVersion": KAFKA_BINDING,
        }


def _embedded(protocol: str, what: str) -> Callable[[_Url, str], Place]:
    def place(url: _Url, api_url: str) -> Place:
        return Place(
            url=url.url,
            protocol=protocol,
            hosts=("localhost",),
            server_note=what,
            address=url.name,
        )

    return place


def _folder(url: _Url, api_url: str) -> Place:
    place = _embedded("file", "Folders on the modelbus node's file system.")(url, api_url)
    place.files = True
    return place


def _aws_host(url: _Url, service: str, region: str | None) -> tuple[str, dict[str, Any]]:
    endpoint = url.query.get("endpoint_url")
    if endpoint:
        return urlsplit(endpoint).netloc, {}
    region = region or url.query.get("region")
    if region:
        return f"{service}.{region}.amazonaws.com", {}
    note = "The AWS region: the URL names none, so the environment's (AWS_REGION, profile)."
    return f"{service}.{{region}}.amazonaws.com", {"region": {"description": note}}


def _sqs(url: _Url, api_url: str) -> Place:
    if url.scheme in ("http", "https"):  # a queue URL: https://sqs.REGION.amazonaws.com/ACCT/Q
        account, _, name = url.path.strip("/").rpartition("/")
        variables: dict[str, Any] = {}
        host, pathname = ",".join(url.hosts), f"/{account}" if account else None
    else:
        name = url.name
        host, variables = _aws_host(url, "sqs", None)
        pathname = None
    return Place(
        url=url.url,
        protocol="sqs",
        hosts=(host,),
        pathname=pathname,
        variables=variables,
        address=name,
        channel_bindings={
            "sqs": {
                "queue": {"name": name, "fifoQueue": name.endswith(".fifo")},
                "bindingVersion": SQS_BINDING,
            }
        },
    )


def _sns(url: _Url, api_url: str) -> Place:
    target = url.raw.split("://", 1)[1].split("?", 1)[0]
    region = None
    if target.startswith("arn:"):
        arn = target.split(":")
        region, name = (arn[3], arn[5]) if len(arn) >= 6 else (None, target)
    else:
        name = target
    host, variables = _aws_host(url, "sns", region)
    kind = "FIFO" if name.endswith(".fifo") else "standard"
    return Place(
        url=url.url,
        protocol="sns",
        hosts=(host,),
        variables=variables,
        address=name,
        channel_bindings={
            "sns": {"name": name, "ordering": {"type": kind}, "bindingVersion": SNS_BINDING}
        },
    )


def _s3(url: _Url, api_url: str) -> Place:
    host, variables = _aws_host(url, "s3", None)
    key_from = url.query.get("key_from", "id")
    naming = "the source object's key" if key_from == "source" else "the result's id"
    return Place(
        url=url.url,
        protocol="s3",
        hosts=(host,),
        variables=variables,
        address=url.name,
        note=f"Each message is an object named PREFIX + {naming} + suffix.",
    )


def _redis(url: _Url, api_url: str) -> Place:
    return Place(
        url=url.url,
        protocol=url.scheme,
        hosts=url.hosts,
        pathname=url.path or "/0",
        address=url.query.get("stream"),
        note="A Redis stream (entries added with XADD, read by a consumer group).",
    )


def _amqp(url: _Url, api_url: str) -> Place:
    vhost = url.path[1:] if len(url.path) > 1 else "/"
    queue, exchange = url.query.get("queue"), url.query.get("exchange")
    place = Place(url=url.url, protocol=url.scheme, hosts=url.hosts, protocol_version="0.9.1")
    place.pathname = f"/{vhost}" if vhost != "/" else None
    place.send_bindings["amqp"] = {
        "deliveryMode": 2,
        "mandatory": url.query.get("mandatory", "true").lower() in ("true", "1", "yes"),
        "bindingVersion": AMQP_BINDING,
    }
    place.receive_bindings["amqp"] = {"ack": True, "bindingVersion": AMQP_BINDING}
    if exchange:
        key = url.query.get("routing_key") or url.query.get("binding_key") or ""
        place.address = key or None
        place.note = f"Exchange {exchange!r}" + (f", key {key!r}." if key else ".")
        ex = {"name": exchange, "vhost": vhost}
        place.channel_bindings["amqp"] = {
            "is": "routingKey",
            "exchange": ex,
            "bindingVersion": AMQP_BINDING,
        }
    else:
        place.address = queue
        place.channel_bindings["amqp"] = {
            "is": "queue",
            "queue": {"name": queue or "", "vhost": vhost},
            "bindingVersion": AMQP_BINDING,
        }
    return place


def _nats(url: _Url, api_url: str) -> Place:
    stream, subject = url.query.get("stream"), url.query.get("subject")
    note = f"JetStream stream {stream!r}." if stream else "JetStream."
    if subject is None:
        note += " Every subject of the stream (no subject filter)."
    return Place(url=url.url, protocol="nats", hosts=url.hosts, address=subject, note=note)


def _mqtt(url: _Url, api_url: str) -> Place:
    qos = {"qos": 1, "bindingVersion": MQTT_BINDING}
    return Place(
        url=url.url,
        protocol=url.scheme,
        hosts=url.hosts,
        protocol_version=url.query.get("version", "5"),
        address=url.path.lstrip("/"),
        receive_bindings={"mqtt": dict(qos)},
        send_bindings={"mqtt": dict(qos)},
    )


def _kafka(url: _Url, api_url: str) -> Place:
    secure = "SSL" in url.query.get("security_protocol", "").upper()
    topic = url.path.strip("/")
    return Place(
        url=url.url,
        protocol="kafka-secure" if secure else "kafka",
        hosts=url.hosts,
        address=topic,
        channel_bindings={"kafka": {"topic": topic, "bindingVersion": KAFKA_BINDING}},
    )


def _postgres(url: _Url, api_url: str) -> Place:
    return Place(
        url=url.url,
        protocol="postgresql",
        hosts=url.hosts,
        pathname=url.path or None,
        address=url.query.get("table"),
        note="A PostgreSQL outbox table: a row is a message.",
    )


def _webhook_in(url: _Url, api_url: str) -> Place:
    api = urlsplit(api_url)
    base = api.path.rstrip("/")
    return Place(
        url=url.url,
        protocol=api.scheme or "http",
        hosts=(api.netloc,),
        pathname=base or None,
        server_note="This modelbus server's HTTP API.",
        address=f"/v1/hooks/{url.name}",
        note="Signed webhooks POSTed to modelbus (header X-Modelbus-Signature).",
        receive_bindings={"http": {"method": "POST", "bindingVersion": HTTP_BINDING}},
    )


def _webhook_out(url: _Url, api_url: str) -> Place:
    return Place(
        url=url.url,
        protocol=url.scheme,
        hosts=url.hosts,
        address=url.path or "/",
        note="Each result is POSTed here (headers Idempotency-Key, X-Modelbus-Id, "
        "X-Modelbus-Signature when signed).",
        send_bindings={"http": {"method": "POST", "bindingVersion": HTTP_BINDING}},
    )


# scheme -> how its URLs are described (every scheme of modelbus.connectors.SCHEMES)
PLACES: dict[str, Callable[[_Url, str], Place]] = {
    "memory": _embedded("modelbus-memory", "In-process queues of one modelbus process."),
    "local": _embedded("modelbus-local", "The embedded durable queues of the modelbus node."),
    "dir": _folder,
    "sqs": _sqs,
    "sns": _sns,
    "s3": _s3,
    "redis": _redis,
    "rediss": _redis,
    "amqp": _amqp,
    "amqps": _amqp,
    "nats": _nats,
    "mqtt": _mqtt,
    "mqtts": _mqtt,
    "kafka": _kafka,
    "postgresql": _postgres,
    "postgres": _postgres,
    "webhook": _webhook_in,
    "http": _webhook_out,
    "https": _webhook_out,
}


# --- messages: what the envelopes module encodes --------------------------------------------

_ATTRIBUTES: dict[str, str] = {
    "sourcemessageid": "The broker id of the source message.",
    "originid": "The id of the first message of a pipeline (carried hop after hop).",
    "listener": "The listener that produced this.",
    "model": "The model reference of the listener (OWNER/NAME@SPEC).",
    "attempt": "The delivery attempt that succeeded (1 = first).",
    "traceparent": "W3C trace context of the listener's span.",
    "modelversion": "The version that ran.",
    "durationms": "How long the model ran, in milliseconds.",
    "bucket": "The bucket (or folder) of the source object, for object-created events.",
    "key": "The key of the source object, for object-created events.",
    "sourceeventid": "The id of the incoming CloudEvent, when the message was one.",
    "sourceeventsource": "The source of the incoming CloudEvent, when the message was one.",
    "sourceeventtype": "The type of the incoming CloudEvent, when the message was one.",
    "content-type": "The MIME type of the body.",
    "specversion": "CloudEvents version.",
    "id": "Deterministic id: the same for every redelivery of the same source message.",
    "source": "modelbus/listener/LISTENER.",
    "type": "Always " + RESULT_TYPE + ".",
    "subject": "The source object's key, else the source message id.",
    "time": "When the result was published.",
    "datacontenttype": "The MIME type of the result.",
    "data": "The result (JSON results as JSON, text as a string).",
    "data_base64": "A binary result, base64-encoded.",
    "modelbus-dead-letter-id": "Deterministic id of this dead letter.",
    "modelbus-listener": "The listener that dead-lettered the message.",
    "modelbus-model": "The model reference of the listener.",
    "modelbus-version": "The version that failed, when one was resolved.",
    "modelbus-source-message-id": "The broker id of the original message.",
    "modelbus-error-type": "The error's type (e.g. ModelError, InputRejected, InvocationTimeout).",
    "modelbus-error-message": "The error's message (truncated; the full record is stored).",
    "modelbus-error-stacktrace": "The stack trace (truncated; the full record is stored).",
    "modelbus-permanent": "true when the failure was permanent (no retry), else false.",
    "modelbus-attempts": "How many attempts were made.",
}


@dataclass(frozen=True, slots=True)
class _Shape:
    """The names an encoder always writes (``required``) and may write (``optional``)."""

    required: tuple[str, ...]
    optional: tuple[str, ...]


def _shape(minimal: Iterable[str], full: Iterable[str]) -> _Shape:
    base = list(dict.fromkeys(minimal))
    return _Shape(tuple(base), tuple(n for n in dict.fromkeys(full) if n not in base))


@cache
def _samples() -> tuple[_Shape, _Shape, _Shape]:
    """(result attributes, result CloudEvent fields, dead-letter attributes added), read
    from what :mod:`~modelbus.listeners.envelopes` encodes for a minimal and a full sample."""
    lean = Correlation(
        listener="l", model="o/m@1.*", source_message_id="m", origin_id="m", attempt=1,
        traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    )  # fmt: skip
    rich = Correlation(
        listener="l", model="o/m@1.*", source_message_id="m", origin_id="m", attempt=1,
        traceparent=lean.traceparent, bucket="b", key="k", event=("e", "s", "t"),
    )  # fmt: skip
    result = Result(output=Payload.from_json({}), duration_ms=1.0, version="1.0.0")
    binary = Result(output=Payload(b"\0", "binary"), duration_ms=1.0, version="1.0.0")

    def event(c: Correlation, r: Result) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(encode_result(correlation=c, result=r, id="i").body)
        return decoded

    lean_event = {k: v for k, v in event(lean, result).items() if k != "data"}
    full_event = [*event(rich, result), *event(rich, binary)]
    attrs = _shape(
        encode_result(correlation=lean, result=result, id="i").attributes,
        encode_result(correlation=rich, result=result, id="i").attributes,
    )
    delivery = Delivery(message_id="m", body=b"", attributes={})
    info = DeadLetterInfo(
        id="d", listener="l", model="o/m@1.*", version=None, error_type="E", error_message="",
        stacktrace="", permanent=True, attempts=1,
    )  # fmt: skip
    dead = _shape(
        encode_dead_letter(delivery, info).attributes,
        encode_dead_letter(delivery, _with_version(info)).attributes,
    )
    return attrs, _shape(lean_event, full_event), dead


def _with_version(info: DeadLetterInfo) -> DeadLetterInfo:
    return replace(info, version="1.0.0")


def _strings(shape: _Shape, *, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name in (*shape.required, *shape.optional):
        props[name] = {"type": "string", "description": _ATTRIBUTES.get(name, "")}
    props.update(extra or {})
    return {"type": "object", "required": list(shape.required), "properties": props}


def _headers_open(schema: dict[str, Any]) -> dict[str, Any]:
    """A headers schema that also admits other attributes (brokers add their own)."""
    return {**schema, "additionalProperties": True}


# --- the document ----------------------------------------------------------------------------


def _ident(text: str) -> str:
    return _ID_CHARS.sub("_", text).strip("_") or "x"


def _rebase(schema: Any, pointer: str) -> Any:
    """``schema`` with its local ``$ref``s (``#/...``) pointing under ``pointer``, where it
    is placed in the document."""
    if isinstance(schema, dict):
        out = {k: _rebase(v, pointer) for k, v in schema.items()}
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            out["$ref"] = pointer + ref[1:]
        return out
    if isinstance(schema, list):
        return [_rebase(v, pointer) for v in schema]
    return schema


@dataclass
class _Document:
    api_url: str
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    server_ids: dict[tuple[str, ...], str] = field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    schemas: dict[str, Any] = field(default_factory=dict)

    def render(self, version: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "asyncapi": ASYNCAPI_VERSION,
            "info": {"title": "modelbus listeners", "version": version, "description": _INFO},
            "defaultContentType": "application/json",
        }
        if self.servers:
            doc["servers"] = self.servers
        doc["channels"] = self.channels
        doc["operations"] = self.operations
        components = {k: v for k, v in (("schemas", self.schemas), ("messages", self.messages))}
        doc["components"] = {k: v for k, v in components.items() if v}
        return doc

    def add(self, d: ListenerDefinition, found: ModelSchemas | None) -> None:
        name = d.name
        found = found or ModelSchemas(problem="the model was not looked up")
        inputs = self._model_schema(f"{name}.input", found.input)
        output = self._model_schema(f"{name}.output", found.output)
        source = describe_url(d.source, listener=name, source=True, api_url=self.api_url)
        self._receive(d, source, found, inputs)
        for i, url in enumerate(d.outputs):
            sink = describe_url(url, listener=name, source=False, api_url=self.api_url)
            self._publish(d, i, sink, found, output)
        if d.error_sink:
            sink = describe_url(d.error_sink, listener=name, source=False, api_url=self.api_url)
            self._dead_letter(d, sink)

    def _model_schema(self, key: str, schema: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if schema is None:
            return None
        pointer = f"#/components/schemas/{_ident(key)}"
        self.schemas[_ident(key)] = _rebase(dict(schema), pointer)
        return {"$ref": pointer}

    # -- servers and channels

    def _server_refs(self, place: Place) -> list[dict[str, str]]:
        refs = []
        for host in place.hosts:
            key = (place.protocol or "", host, place.pathname or "", place.protocol_version or "")
            ident = self.server_ids.get(key)
            if ident is None:
                ident = self._new_server_id(place.protocol or "server", host)
                self.server_ids[key] = ident
                self.servers[ident] = self._server(place, host)
            refs.append({"$ref": f"#/servers/{ident}"})
        return refs

    def _new_server_id(self, protocol: str, host: str) -> str:
        base = _ident(f"{protocol}-{host}")
        ident, n = base, 2
        while ident in self.servers:
            ident, n = f"{base}-{n}", n + 1
        return ident

    @staticmethod
    def _server(place: Place, host: str) -> dict[str, Any]:
        server: dict[str, Any] = {"host": host, "protocol": place.protocol}
        optional = {
            "pathname": place.pathname,
            "protocolVersion": place.protocol_version,
            "description": place.server_note,
            "variables": place.variables or None,
        }
        server.update({k: v for k, v in optional.items() if v})
        return server

    def _channel(
        self, ident: str, place: Place, title: str, messages: dict[str, dict[str, Any]]
    ) -> str:
        channel: dict[str, Any] = {"address": place.address, "title": title}
        notes = [place.note] if place.note else []
        if place.address is None and not place.note.startswith("This URL cannot"):
            notes.append("The address is not fixed by the URL.")
        if notes:
            channel["description"] = " ".join(notes)
        servers = self._server_refs(place) if place.protocol else []
        if servers:
            channel["servers"] = servers
        channel["messages"] = messages
        if place.channel_bindings:
            channel["bindings"] = place.channel_bindings
        channel["x-modelbus-url"] = place.url
        self.channels[ident] = channel
        return ident

    def _operation(
        self,
        ident: str,
        *,
        action: str,
        channel: str,
        summary: str,
        bindings: dict[str, Any],
        extra: dict[str, Any],
    ) -> None:
        operation: dict[str, Any] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "messages": [
                {"$ref": f"#/channels/{channel}/messages/{m}"}
                for m in self.channels[channel]["messages"]
            ],
        }
        if bindings:
            operation["bindings"] = bindings
        operation["x-modelbus"] = extra
        self.operations[ident] = operation

    # -- the three roles

    def _receive(
        self,
        d: ListenerDefinition,
        place: Place,
        found: ModelSchemas,
        inputs: dict[str, Any] | None,
    ) -> None:
        ident = _ident(f"{d.name}.source")
        messages = _file_messages(d) if place.files else _input_messages(d, found, inputs)
        self._channel(ident, place, f"{d.name}: source", messages)
        extra: dict[str, Any] = {"listener": d.name, "model": d.model, "enabled": d.enabled}
        if found.version:
            extra["version"] = found.version
        if place.consumer:
            extra["consumer"] = place.consumer
        if d.filter is not None:
            extra["filter"] = d.filter
        extra["maxAttempts"] = d.retry.max_attempts
        self._operation(
            _ident(f"{d.name}.receive"),
            action="receive",
            channel=ident,
            summary=f"Listener {d.name} runs {d.model} on every message"
            + ("" if d.enabled else " (paused: disabled)"),
            bindings=place.receive_bindings,
            extra=extra,
        )

    def _publish(
        self,
        d: ListenerDefinition,
        index: int,
        place: Place,
        found: ModelSchemas,
        output: dict[str, Any] | None,
    ) -> None:
        ident = _ident(f"{d.name}.output.{index}")
        attrs, event, _ = _samples()
        headers = _headers_open(_strings(attrs))
        described = _schema_note("output", found, output)
        if d.claim_check is not None:  # a large result's data is a reference to it instead
            headers["properties"][CLAIM_CHECK_ATTRIBUTE] = {
                "type": "string",
                "description": "On a result stored in the claim check store: its URL.",
            }
            described += _CLAIM_CHECKED
            output = {"oneOf": [output if output is not None else {}, _REFERENCE]}
        if d.output_mode == "raw":
            message: dict[str, Any] = {
                "name": "result",
                "title": f"Result of {d.model} (raw)",
                "description": described + " The bare result; the correlation is in the "
                "message attributes.",
                "headers": headers,
            }
            if output is not None:
                message["contentType"] = "application/json"
                message["payload"] = output
        else:
            data = output if output is not None else {}
            payload = _strings(event, extra={"data": data, "specversion": {"const": "1.0"}})
            payload["properties"]["type"] = {"const": RESULT_TYPE}
            payload["properties"]["source"] = {"const": f"modelbus/listener/{d.name}"}
            payload["properties"]["data_base64"]["contentEncoding"] = "base64"
            payload["properties"]["time"]["format"] = "date-time"
            message = {
                "name": "result",
                "title": f"Result of {d.model} as a CloudEvent",
                "description": described + " A structured CloudEvent carrying the correlation "
                "(also in the message attributes).",
                "contentType": CLOUDEVENTS_JSON,
                "headers": headers,
                "payload": payload,
            }
        self._channel(ident, place, f"{d.name}: output {index + 1}", {"result": message})
        self._operation(
            _ident(f"{d.name}.publish.{index}"),
            action="send",
            channel=ident,
            summary=f"Listener {d.name} publishes each result here before acknowledging",
            bindings=place.send_bindings,
            extra={"listener": d.name, "outputMode": d.output_mode},
        )

    def _dead_letter(self, d: ListenerDefinition, place: Place) -> None:
        ident = _ident(f"{d.name}.errors")
        _, _, dead = _samples()
        message = {
            "name": "dead-letter",
            "title": f"Dead letter of listener {d.name}",
            "description": "The original message, body and attributes untouched, plus the "
            "modelbus-* attributes describing the failure. Its payload is the source's.",
            "headers": _headers_open(_strings(dead)),
        }
        self._channel(ident, place, f"{d.name}: dead letters", {"dead-letter": message})
        self._operation(
            _ident(f"{d.name}.dead-letter"),
            action="send",
            channel=ident,
            summary=f"Listener {d.name} dead-letters what cannot succeed here",
            bindings=place.send_bindings,
            extra={"listener": d.name},
        )


def _input_messages(
    d: ListenerDefinition, found: ModelSchemas, inputs: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """What a source channel carries: the bare body, and a structured CloudEvent of it."""
    raw: dict[str, Any] = {
        "name": "input",
        "title": f"Input of {d.model}",
        "summary": "The bare body: JSON if it parses, else text, else binary.",
        "description": _schema_note("input", found, inputs) + _DECODING,
    }
    if inputs is not None:
        raw["contentType"] = "application/json"
        raw["payload"] = inputs
    event_payload = {
        "type": "object",
        "required": ["specversion", "id", "source", "type"],
        "properties": {
            "specversion": {"type": "string"},
            "id": {"type": "string"},
            "source": {"type": "string"},
            "type": {"type": "string"},
            "datacontenttype": {"type": "string"},
            "data": inputs if inputs is not None else {},
            "data_base64": {"type": "string", "contentEncoding": "base64"},
        },
    }
    event = {
        "name": "input-cloudevent",
        "title": f"Input of {d.model} as a structured CloudEvent",
        "contentType": CLOUDEVENTS_JSON,
        "payload": event_payload,
    }
    return {"input": raw, "input-cloudevent": event}


def _file_messages(d: ListenerDefinition) -> dict[str, dict[str, Any]]:
    """What a folder source carries: files, each given to the model as binary."""
    file = {
        "name": "file",
        "title": f"A file for {d.model}",
        "summary": "A new file in the folder (or under it), once completely written.",
        "description": "Each file is given to the model as binary, with its content type; "
        "the results carry its path as the key attribute. Dotfiles and temporary names are "
        "ignored.",
        "payload": {"type": "string", "format": "binary"},
    }
    return {"file": file}


def _schema_note(kind: str, found: ModelSchemas, ref: dict[str, Any] | None) -> str:
    if found.problem:
        return f"The model's {kind} schema is unknown: {found.problem}."
    if ref is None:
        at = f" (version {found.version})" if found.version else ""
        return f"The model{at} declares no {kind} schema: any JSON, text or binary."
    return f"The model's {kind} schema (version {found.version})."


_CLAIM_CHECKED = (
    " A result too large for a sink (or over the claim check's over_bytes) is stored in the "
    "listener's claim check store, and its data is then a reference to it."
)

# The data of a result published as a reference (modelbus.listeners.claimcheck).
_REFERENCE = {
    "type": "object",
    "title": "Claim check reference",
    "required": ["claim_check"],
    "properties": {
        "claim_check": {
            "type": "object",
            "required": ["url", "size", "sha256", "content_type"],
            "properties": {
                "url": {"type": "string", "description": "s3://BUCKET/KEY or file:///PATH"},
                "size": {"type": "integer", "description": "The result's size in bytes."},
                "sha256": {"type": "string", "description": "Its SHA-256, hex (the key's name)."},
                "content_type": {"type": "string", "description": "Its MIME type."},
            },
        }
    },
}

_DECODING = (
    " Also accepted: a CloudEvent in structured or binary mode (its data is the input), an "
    "SNS notification wrapping any of these, and an S3 object-created notification (the "
    "object is fetched and given to the model as binary)."
)

_INFO = (
    "Every event listener of this modelbus server: the channel it receives from, the "
    "channels it publishes results to and the channel it dead-letters to. Official bindings "
    "are given where AsyncAPI has one for the broker; how modelbus consumes a source "
    "(consumer group, durable consumer, queue) is under x-modelbus. Redis streams, "
    "PostgreSQL outboxes, S3 and modelbus's embedded queues, folders and in-process queues "
    "have no AsyncAPI binding: they are described by protocol, address and x-modelbus-url "
    "(credentials masked) only."
)
