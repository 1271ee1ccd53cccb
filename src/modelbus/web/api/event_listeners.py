"""Algorithmia's event-listener API over the listener manager: an event listener created
here is an ordinary modelbus listener (it shows in ``/v1/listeners``, has run records and
dead letters), whose source is the Algorithmia ``sourceType``/``sourceURI``/``credentials``
translated into a connector URL.

* ``POST /v1/users/{user}/event-listeners`` creates one from Algorithmia's request:
  ``sourceType``, ``sourceURI``, ``credentials`` (a string, JSON inside), ``algoOwner``
  (``user``), ``algoName``, ``algoVersion`` (``1.2.3``, ``1.2.*``, Algorithmia's ``1.2``...;
  none: the latest published), ``algoTimeoutSeconds`` (the per-call timeout). It is named
  ``{algoName}-events-{hex}`` and opened at once: a queue that cannot be read is refused.
* ``GET /v1/users/{user}/event-listeners`` lists, in Algorithmia's page shape, every listener
  whose model ``user`` owns (those made natively too); ``GET``/``PUT``/``DELETE
  .../event-listeners/{id}`` read, replace or delete one. ``id`` is an integer derived from
  the listener's name (Algorithmia's clients want a number); the name is accepted too.

Source types:

* ``AmazonSQS``: ``sourceURI`` is a queue URL (``https://sqs.REGION.amazonaws.com/ACCOUNT/
  NAME``, or an ``http`` URL of a local SQS such as moto), an ARN
  (``arn:aws:sqs:REGION:ACCOUNT:NAME``) or ``sqs://NAME``. ``credentials`` is ``""`` or a JSON
  object with ``region``, ``endpoint_url`` and/or ``profile``: AWS keys come from the
  server's environment (botocore's chain), so access keys in ``credentials`` are refused.
* ``Kafka``: ``credentials`` is Algorithmia's escaped JSON connection configuration
  (``connection_type`` ``kafka_unauthenticated_plaintext`` or ``kafka_sasl_ssl``,
  ``broker_url``, ``topic``, ``broker_username``, ``broker_password``, ``sasl_mechanism``);
  ``sourceURI`` is the topic (or ``kafka://HOST:PORT/TOPIC``, which wins over the
  configuration). A ``ca_certificate`` is refused: brokers are verified against the system's
  certificate authorities.
* ``AzureSB`` is refused until modelbus has an Azure Service Bus connector; any other type too.

Every refusal is ``400`` in the one error shape, naming the field and what to send instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from modelbus.errors import DefinitionError, ListenerNotFound, UserNotFound
from modelbus.listeners.credentials import credentials_of, redact_definition, restore_masked
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.manager import ListenerInfo
from modelbus.runtime import jsondoc
from modelbus.store.keys import KeyInfo
from modelbus.web.api.algorithmia import algorithmia_spec
from modelbus.web.api.algorithms import algorithmia_body, json_body
from modelbus.web.api.auth import (
    Key,
    ListenerManagerKey,
    can_manage_listener,
    require_listener_model,
)
from modelbus.web.api.context import services
from modelbus.web.api.errors import responses
from modelbus.web.server import Services

router = APIRouter(tags=["algorithmia"])

SOURCE_TYPES = ("AmazonSQS", "Kafka")
_FIELDS = (
    "sourceType",
    "sourceURI",
    "credentials",
    "algoOwner",
    "algoName",
    "algoVersion",
    "algoTimeoutSeconds",
)
_SQS_CREDENTIALS = ("region", "endpoint_url", "profile")
_KAFKA_CREDENTIALS = (
    "connection_type",
    "broker_url",
    "topic",
    "broker_username",
    "broker_password",
    "sasl_mechanism",
    "ca_certificate",
    "id",
)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SQS_ARN = re.compile(r"^arn:aws[\w-]*:sqs:([\w-]+):(\d+):([\w.-]+)$")
# Ids are JavaScript-safe integers (under 2**53).
_ID_HEX_DIGITS = 13


def event_listener_id(name: str) -> int:
    """The integer id Algorithmia's clients see for listener ``name`` (stable)."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:_ID_HEX_DIGITS], 16)


def user_id(owner: str) -> str:
    """The UUID standing for user ``owner`` where a client wants one in the path."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"modelbus:user:{owner}"))


def _listener_ids(name: str) -> tuple[str, ...]:
    """What a path may name listener ``name`` by: the name, its integer id, or that integer
    as a UUID (``algorithmia-api-client`` 1.5.5 takes only UUIDs in the path)."""
    number = event_listener_id(name)
    return (name, str(number), str(uuid.UUID(int=number)))


# --- Algorithmia's request -> a listener definition ---------------------------------------


def definition_from_request(user: str, body: dict[str, Any], name: str) -> ListenerDefinition:
    """The listener an Algorithmia event-listener request describes; raises
    :class:`DefinitionError` naming what modelbus cannot do with it."""
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise DefinitionError(
            f"{', '.join(unknown)}: not an Algorithmia event-listener field "
            f"(fields: {', '.join(_FIELDS)})"
        )
    owner = _text(body, "algoOwner", default=user)
    if owner != user:
        raise DefinitionError(
            f"algoOwner {owner!r} is not {user!r}: a user's event listeners are those of "
            f"their algorithms; create it under /v1/users/{owner}/event-listeners"
        )
    version = body.get("algoVersion") or "latest"
    timeout = body.get("algoTimeoutSeconds")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise DefinitionError("algoTimeoutSeconds must be a positive number of seconds")
    return ListenerDefinition.from_mapping(
        {
            "name": name,
            "source": source_url(body),
            "model": f"{owner}/{_text(body, 'algoName')}@{algorithmia_spec(str(version))}",
            **({"timeout_s": timeout} if timeout is not None else {}),
        }
    )


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value:
        raise DefinitionError(f"{key} is required (a string)")
    return value


def source_url(body: dict[str, Any]) -> str:
    """The connector URL for Algorithmia's ``sourceType``/``sourceURI``/``credentials``."""
    kind = body.get("sourceType")
    if kind == "AmazonSQS":
        return _sqs_url(_text(body, "sourceURI"), _credentials(body, _SQS_CREDENTIALS))
    if kind == "Kafka":
        return _kafka_url(str(body.get("sourceURI") or ""), _credentials(body, _KAFKA_CREDENTIALS))
    if kind == "AzureSB":
        raise DefinitionError(
            "sourceType AzureSB is not supported: modelbus has no Azure Service Bus connector "
            f"yet (supported here: {', '.join(SOURCE_TYPES)}; every connector modelbus has is "
            "available to native listeners, POST /v1/listeners)"
        )
    raise DefinitionError(
        f"sourceType {kind!r} is not supported: use one of {', '.join(SOURCE_TYPES)}"
    )


def _credentials(body: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """``credentials``: a JSON text (Algorithmia escapes it into a string), or an object."""
    raw = body.get("credentials")
    if raw is None or raw == "":
        return {}
    found = raw
    if isinstance(raw, str):
        try:
            found = jsondoc.loads(raw)
        except ValueError as exc:
            raise DefinitionError(f"credentials is not a JSON text: {exc}") from exc
    if not isinstance(found, dict):
        raise DefinitionError("credentials must hold a JSON object")
    unknown = sorted(set(found) - set(known))
    if unknown:
        raise DefinitionError(
            f"credentials.{', credentials.'.join(unknown)} not supported for "
            f"{body.get('sourceType')} (known: {', '.join(known)})"
            + (_AWS_KEYS if body.get("sourceType") == "AmazonSQS" else "")
        )
    return found


_AWS_KEYS = (
    ": modelbus takes AWS credentials from its environment (botocore's chain: variables, "
    'shared files, instance or task role); name a profile with {"profile": "NAME"}'
)


def _sqs_url(uri: str, credentials: dict[str, Any]) -> str:
    options = {k: str(v) for k, v in credentials.items() if v not in (None, "")}
    arn = _SQS_ARN.match(uri)
    if arn:
        region, account, queue = arn.groups()
        uri = f"https://sqs.{region}.amazonaws.com/{account}/{queue}"
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https") and not parts.netloc.endswith(".amazonaws.com"):
        # a local SQS (moto, ElasticMQ): its queue URL's host is the endpoint
        account_queue = parts.path.strip("/").split("/")
        if len(account_queue) != 2:
            raise DefinitionError(f"sourceURI {uri!r} is not a queue URL (.../ACCOUNT/NAME)")
        options.setdefault("endpoint_url", f"{parts.scheme}://{parts.netloc}")
        uri = f"sqs://{account_queue[1]}"
    elif parts.scheme not in ("https", "sqs"):
        raise DefinitionError(
            f"sourceURI {uri!r} is not an SQS queue: give its URL "
            "(https://sqs.REGION.amazonaws.com/ACCOUNT/NAME) or ARN (arn:aws:sqs:...)"
        )
    if not options:
        return uri
    return f"{uri}{'&' if urlsplit(uri).query else '?'}{urlencode(options)}"


def _kafka_url(uri: str, credentials: dict[str, Any]) -> str:
    if credentials.get("ca_certificate"):
        raise DefinitionError(
            "credentials.ca_certificate is not supported: modelbus verifies Kafka brokers "
            "against the system's certificate authorities (add the CA there)"
        )
    if uri.startswith("kafka://"):
        given = urlsplit(uri)
        broker, topic = given.netloc, given.path.strip("/")
    else:
        broker, topic = (
            str(credentials.get("broker_url") or ""),
            uri or str(credentials.get("topic") or ""),
        )
    # Algorithmia's broker_url may carry a listener name: SASL_SSL://host:9093,...
    broker = ",".join(re.sub(r"^[A-Za-z_]+://", "", b.strip()) for b in broker.split(",") if b)
    if not broker or not topic:
        raise DefinitionError(
            "a Kafka event listener needs a broker and a topic: sourceURI TOPIC with "
            "credentials.broker_url, or sourceURI kafka://HOST:PORT/TOPIC"
        )
    kind = credentials.get("connection_type", "kafka_unauthenticated_plaintext")
    if kind == "kafka_unauthenticated_plaintext":
        return f"kafka://{broker}/{topic}"
    if kind != "kafka_sasl_ssl":
        raise DefinitionError(
            f"credentials.connection_type {kind!r} is not supported: "
            "kafka_unauthenticated_plaintext or kafka_sasl_ssl"
        )
    mechanism = credentials.get("sasl_mechanism")
    user, password = credentials.get("broker_username"), credentials.get("broker_password")
    if not (mechanism and user and password):
        raise DefinitionError(
            "kafka_sasl_ssl needs credentials.broker_username, broker_password and "
            "sasl_mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
        )
    userinfo = f"{quote(str(user), safe='')}:{quote(str(password), safe='')}"
    query = urlencode({"security_protocol": "SASL_SSL", "sasl_mechanism": mechanism})
    return f"kafka://{userinfo}@{broker}/{topic}?{query}"


# --- a listener -> Algorithmia's object ----------------------------------------------------


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


_SOURCE_TYPES = {"sqs": "AmazonSQS", "kafka": "Kafka"}


def event_listener_object(info: ListenerInfo, state: str, *, whole: bool) -> dict[str, Any]:
    """A listener in the shape of Algorithmia's event listener objects (the fields
    ``algorithmia-api-client`` 1.5.5 requires), plus modelbus's own. Its URLs are shown
    whole when ``whole`` (a key that may manage it), else by their shape; ``credentials``
    is ``"***"`` when the source carries some."""
    d = info.definition if whole else redact_definition(info.definition)
    ref = d.ref
    timeout = d.timeout_s
    return {
        "id": event_listener_id(d.name),
        "sourceType": _SOURCE_TYPES.get(d.source_scheme, d.source_scheme),
        "sourceURI": d.source,
        "algoOwner": ref.owner,
        "algoName": ref.name,
        "algoVersion": ref.spec,
        "algoTimeoutSeconds": round(timeout) if timeout is not None else None,
        "listenerOwner": user_id(ref.owner),
        "credentials": "***" if credentials_of(info.definition.source) else "",
        "name": d.name,
        "algorithm": f"{ref.owner}/{ref.name}",
        "version": ref.spec,
        "type": d.source_scheme,
        "source": d.source,
        "outputs": list(d.outputs),
        "error_sink": d.error_sink,
        "enabled": d.enabled,
        "status": state,
        "created": _iso(info.created_at),
        "updated": _iso(info.updated_at),
    }


async def _object(running: Services, info: ListenerInfo, key: KeyInfo) -> dict[str, Any]:
    state = (await running.listeners.status(info.name)).state
    return event_listener_object(info, state, whole=can_manage_listener(key, info.definition.model))


async def _owner(running: Services, user: str) -> str:
    """The owner ``user`` names: itself, or the owner whose :func:`user_id` it is."""
    if not _UUID.match(user):
        return user
    owners = {m.owner for m in await running.registry.list_models()}
    owners |= {info.definition.ref.owner for info in await running.listeners.list()}
    for owner in owners:
        if user_id(owner) == user.lower():
            return owner
    raise UserNotFound(f"no user has id {user} (no model or listener of theirs exists)")


async def _owned(running: Services, user: str, listener_id: str) -> ListenerInfo:
    """The listener of ``user`` with this id (or name); :class:`ListenerNotFound` else."""
    owner = await _owner(running, user)
    for info in await running.listeners.list():
        if info.definition.ref.owner == owner and listener_id.lower() in _listener_ids(info.name):
            return info
    raise ListenerNotFound(f"user {owner} has no event listener {listener_id!r}")


# --- routes ---------------------------------------------------------------------------------

EVENT_LISTENER_BODY = json_body(
    "Algorithmia's event-listener request.",
    {
        "sourceType": {"type": "string", "enum": list(SOURCE_TYPES)},
        "sourceURI": {"type": "string"},
        "credentials": {"type": "string", "description": "JSON text (escaped)."},
        "algoOwner": {"type": "string"},
        "algoName": {"type": "string"},
        "algoVersion": {"type": "string"},
        "algoTimeoutSeconds": {"type": "number"},
    },
)


@router.post(
    "/v1/users/{user}/event-listeners",
    summary="Create an event listener from Algorithmia's request (Algorithmia API)",
    status_code=201,
    responses=responses(400, 409),
    openapi_extra=EVENT_LISTENER_BODY,
)
async def create_event_listener(
    request: Request, user: str, key: ListenerManagerKey
) -> JSONResponse:
    running = services(request)
    user = await _owner(running, user)
    body = await algorithmia_body(request)
    name = f"{_text(body, 'algoName')}-events-{uuid.uuid4().hex[:12]}"
    definition = definition_from_request(user, body, name)
    require_listener_model(key, definition.name, definition.model)  # as the native route
    running.credentials.remember_definition(definition)
    info = await running.listeners.create(definition, check=True)
    return JSONResponse(await _object(running, info, key), status_code=201)


@router.get(
    "/v1/users/{user}/event-listeners",
    summary="Listeners whose model USER owns (Algorithmia API shape)",
    responses=responses(),
)
async def user_event_listeners(
    request: Request,
    user: str,
    key: Key,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    marker: str | None = None,
) -> dict[str, Any]:
    running = services(request)
    user = await _owner(running, user)
    items = [
        await _object(running, info, key)
        for info in await running.listeners.list()
        if info.definition.ref.owner == user
    ]
    start = int(marker) if marker and marker.isdigit() else 0
    end = start + limit
    next_marker = str(end) if end < len(items) else None
    next_link = str(request.url.include_query_params(marker=next_marker)) if next_marker else None
    return {"marker": next_marker, "next_link": next_link, "results": items[start:end]}


@router.get(
    "/v1/users/{user}/event-listeners/{listener_id}",
    summary="One event listener, by id or name (Algorithmia API)",
    responses=responses(404),
)
async def get_event_listener(
    request: Request, user: str, listener_id: str, key: Key
) -> dict[str, Any]:
    running = services(request)
    return await _object(running, await _owned(running, user, listener_id), key)


@router.put(
    "/v1/users/{user}/event-listeners/{listener_id}",
    summary="Replace an event listener's source, algorithm and timeout (Algorithmia API)",
    responses=responses(400, 404),
    openapi_extra=EVENT_LISTENER_BODY,
)
async def update_event_listener(
    request: Request, user: str, listener_id: str, key: ListenerManagerKey
) -> dict[str, Any]:
    running = services(request)
    stored = await _owned(running, user, listener_id)
    require_listener_model(key, stored.name, stored.definition.model)
    body = await algorithmia_body(request)
    definition = definition_from_request(stored.definition.ref.owner, body, stored.name)
    definition = restore_masked(definition, stored.definition)  # a URL read back redacted
    require_listener_model(key, definition.name, definition.model)
    running.credentials.remember_definition(definition)
    await running.listeners.apply([definition], check=True)
    return await _object(running, await running.listeners.get(stored.name), key)


@router.delete(
    "/v1/users/{user}/event-listeners/{listener_id}",
    summary="Stop and delete an event listener (Algorithmia API)",
    status_code=204,
    response_class=Response,
    responses=responses(404),
)
async def delete_event_listener(
    request: Request, user: str, listener_id: str, key: ListenerManagerKey
) -> Response:
    running = services(request)
    info = await _owned(running, user, listener_id)
    require_listener_model(key, info.name, info.definition.model)
    await running.listeners.delete(info.name)
    return Response(status_code=204)
