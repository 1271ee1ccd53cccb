"""Fresh SQS (source, sink) pairs on unique queues, for the shared connector contract suite.

    with MotoServer() as moto, fake_credentials():
        source, sink = make_sqs_pair(moto.endpoint_url, ctx, visibility_timeout_s=2)
        await source.open(); await sink.open()

Both ends are returned unopened; whichever opens first creates the queue (``create=true``).
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from modelbus.connectors.base import ConnectorContext
from modelbus.connectors.sqs import SqsSink, SqsSource, make_sink, make_source

__all__ = ["make_sqs_pair", "sqs_url", "unique_name"]

REGION = "us-east-1"


def unique_name(prefix: str, *, fifo: bool = False) -> str:
    """A queue, topic or bucket name no other test uses (lower case, so buckets take it)."""
    name = f"{prefix}-{uuid.uuid4().hex[:16]}"
    return f"{name}.fifo" if fifo else name


def sqs_url(endpoint_url: str, queue_name: str, **options: object) -> str:
    """``sqs://QUEUE?endpoint_url=...&region=us-east-1&...`` (options added as given)."""
    query = {"endpoint_url": endpoint_url, "region": REGION}
    query.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()})
    return f"sqs://{queue_name}?{urlencode(query)}"


def make_sqs_pair(
    endpoint_url: str,
    ctx: ConnectorContext,
    *,
    fifo: bool = False,
    visibility_timeout_s: int | None = None,
    wait_s: int = 1,
) -> tuple[SqsSource, SqsSink]:
    """An unopened source and sink on one new queue at ``endpoint_url`` (moto).

    ``visibility_timeout_s`` sets the source's lease (default: the queue's 30 s); ``wait_s``
    caps each long poll (1 s keeps tests brisk). Needs AWS credentials in the environment:
    :func:`tests.aws.motoserver.fake_credentials`."""
    name = unique_name("contract", fifo=fifo)
    options: dict[str, object] = {"create": True, "wait_s": wait_s}
    if visibility_timeout_s is not None:
        options["visibility_timeout_s"] = visibility_timeout_s
    url = sqs_url(endpoint_url, name, **options)
    return make_source(url, ctx), make_sink(url, ctx)
