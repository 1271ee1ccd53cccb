"""Connectors, chosen by the URL's scheme and imported lazily.

Each connector module defines ``make_source(url, ctx) -> Source`` and/or
``make_sink(url, ctx) -> Sink``, and where the source's backlog can be read from outside
the listener (by an autoscaler), ``backlog(url, listener) -> Backlog``; a broker's client
library is imported inside the module, never here, so a missing extra only matters to the
listeners that use that broker.

The rest of modelbus reaches connectors only through this module (and the contract in
:mod:`modelbus.connectors.base`): it also gives what every part needs of connector URLs,
:func:`redact_url` and its kin (:mod:`modelbus.connectors.urls`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modelbus.connectors.base import (
    DEAD_LETTER_ID,
    Backlog,
    ConnectorContext,
    Delivery,
    Inbox,
    ObjectReader,
    OutMessage,
    Sink,
    Source,
)
from modelbus.connectors.egress import Egress
from modelbus.connectors.policy import ConnectorPolicy
from modelbus.connectors.urls import (
    MASK,
    credentials_of,
    has_placeholder,
    mask_credentials,
    redact_text,
    redact_url,
    restore_url,
)
from modelbus.errors import ConnectorError, DefinitionError, ModelbusError

__all__ = [
    "DEAD_LETTER_ID",
    "MASK",
    "OBJECT_READERS",
    "SCHEMES",
    "WEBHOOK_SIGNATURE_HEADER",
    "Backlog",
    "ConnectorContext",
    "ConnectorPolicy",
    "Delivery",
    "Egress",
    "Inbox",
    "ObjectReader",
    "OutMessage",
    "Sink",
    "Source",
    "backlog_of",
    "check_policy",
    "credentials_of",
    "has_placeholder",
    "is_shared_source",
    "make_inbox",
    "make_object_reader",
    "make_sink",
    "make_source",
    "mask_credentials",
    "redact_text",
    "redact_url",
    "restore_url",
    "scheme_of",
]

# scheme -> module implementing it
SCHEMES: dict[str, str] = {
    "memory": "modelbus.connectors.memory",
    "local": "modelbus.connectors.local",
    "dir": "modelbus.connectors.directory",
    "sqs": "modelbus.connectors.sqs",
    "sns": "modelbus.connectors.sns",
    "s3": "modelbus.connectors.s3",
    "kafka": "modelbus.connectors.kafka",
    "postgresql": "modelbus.connectors.postgres",
    "postgres": "modelbus.connectors.postgres",
    "amqp": "modelbus.connectors.amqp",
    "amqps": "modelbus.connectors.amqp",
    "mqtt": "modelbus.connectors.mqtt",
    "mqtts": "modelbus.connectors.mqtt",
    "redis": "modelbus.connectors.redis",
    "rediss": "modelbus.connectors.redis",
    "nats": "modelbus.connectors.nats",
    "webhook": "modelbus.connectors.webhook",
    "http": "modelbus.connectors.webhook",
    "https": "modelbus.connectors.webhook",
}

# The header that signs webhooks, both ways (see modelbus.connectors.webhook).
WEBHOOK_SIGNATURE_HEADER = "X-Modelbus-Signature"

# eventSource of object-created notifications -> module whose make_reader fetches the objects
OBJECT_READERS: dict[str, str] = {
    "aws:s3": "modelbus.connectors.s3",
    "modelbus:dir": "modelbus.connectors.directory",
}


def scheme_of(url: str) -> str:
    """The connector scheme of ``url``; SQS queue URLs (``https://sqs.REGION.amazonaws.com/...``)
    count as ``sqs``, any other ``http(s)://`` URL is a webhook. Raises DefinitionError for
    an unknown scheme."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") and parts.hostname and parts.hostname.startswith("sqs."):
        return "sqs"
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise DefinitionError(f"unknown connector scheme in {url!r}: use one of {known}")
    return scheme


def _module(url: str) -> Any:
    return importlib.import_module(SCHEMES[scheme_of(url)])


def make_source(url: str, ctx: ConnectorContext) -> Source:
    """A Source for ``url``. Raises DefinitionError if the scheme has no source or the URL is
    malformed, PolicyRefused if the context's policy refuses its host or folder (host names
    are resolved: this may block), MissingExtra if the broker's client library is not
    installed."""
    module = _module(url)
    factory = getattr(module, "make_source", None)
    if factory is None:
        raise DefinitionError(f"{scheme_of(url)}:// can be an output sink but not a source")
    _check_egress(url, ctx)
    source: Source = factory(url, ctx)
    return source


def is_shared_source(url: str) -> bool:
    """Whether the source at ``url`` may run on several nodes at once, its replicas
    competing for its messages (the connector's ``shared_source(url)``; True for a connector
    that has none). False for sources bound to one machine or one consumer (``local://``,
    ``dir://``, MQTT with ``shared=false``): those run on one node at a time. Raises
    DefinitionError for an unknown scheme or a malformed URL."""
    try:
        module = _module(url)
    except ImportError:  # a connector that cannot load here runs nowhere here anyway
        return True
    shared = getattr(module, "shared_source", None)
    return True if shared is None else bool(shared(url))


def make_sink(url: str, ctx: ConnectorContext) -> Sink:
    """A Sink for ``url``; raises like :func:`make_source`."""
    module = _module(url)
    factory = getattr(module, "make_sink", None)
    if factory is None:
        raise DefinitionError(f"{scheme_of(url)}:// can be a source but not an output sink")
    _check_egress(url, ctx)
    sink: Sink = factory(url, ctx)
    return sink


def check_policy(url: str, ctx: ConnectorContext) -> None:
    """Whether ``ctx``'s policy lets a connector use ``url`` (its hosts: the egress policy;
    the connector's own ``check_policy(url, ctx)`` when it has one, e.g. a ``dir://``
    folder's roots), without making the connector. Raises PolicyRefused; host names are
    resolved (this may block). Other problems of the URL are not looked at."""
    _check_egress(url, ctx)
    try:
        module = _module(url)
    except (ImportError, ModelbusError):
        return
    own = getattr(module, "check_policy", None)
    if own is not None:
        own(url, ctx)


def _check_egress(url: str, ctx: ConnectorContext) -> None:
    if ctx.policy.egress is not None:
        ctx.policy.egress.check_url(url, redact_url(url))


def backlog_of(url: str, listener: str) -> Backlog | None:
    """Where the backlog of listener ``listener``'s source ``url`` can be read from outside
    the listener (see :class:`~modelbus.connectors.base.Backlog`), or None when the source
    keeps none that another process could read (``local://``, ``dir://``, webhooks, MQTT,
    ``memory://``). Only parses the URL: no broker is contacted and no client library is
    imported. Raises DefinitionError for an unknown scheme or a malformed URL."""
    reader = getattr(_module(url), "backlog", None)
    if reader is None:
        return None
    backlog: Backlog = reader(url, listener)
    return backlog


def make_object_reader(event_source: str, source_url: str, ctx: ConnectorContext) -> ObjectReader:
    """The reader of the objects that ``event_source`` notifications (``aws:s3``,
    ``modelbus:dir``) arriving on the listener's source ``source_url`` announce. Raises
    ConnectorError(permanent) when this listener cannot fetch them (an unknown event source,
    folder events from anywhere but its own folder), MissingExtra without the client library."""
    name = OBJECT_READERS.get(event_source)
    if name is None:
        raise ConnectorError(
            f"this listener cannot fetch objects announced by {event_source!r} events",
            permanent=True,
        )
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ConnectorError(
            f"{event_source} objects cannot be fetched: {exc}; install modelbus[all]",
            permanent=True,
        ) from exc
    reader: ObjectReader = module.make_reader(source_url, ctx)
    return reader


def make_inbox(data_dir: Path) -> Inbox:
    """The intake of the events modelbus's own HTTP server receives for listeners: the
    webhooks of ``webhook://NAME`` sources (:mod:`modelbus.connectors.webhook`)."""
    inbox: Inbox = importlib.import_module(SCHEMES["webhook"]).make_inbox(data_dir)
    return inbox
