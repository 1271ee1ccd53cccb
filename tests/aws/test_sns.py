"""The SNS sink against a real moto_server: fan-out to SQS queues, raw and wrapped."""

from __future__ import annotations

import json

import pytest

from modelbus.connectors import make_sink as registry_make_sink
from modelbus.connectors.base import ConnectorContext, OutMessage, Sink
from modelbus.connectors.sns import SnsSettings, SnsSink, make_sink, unwrap_notification
from modelbus.connectors.sqs import make_source
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError

from .conftest import ClientFactory
from .helpers import opened, queue_arn, receive_n
from .kit import REGION, sqs_url, unique_name
from .motoserver import MotoServer, free_port


def sns_url(endpoint_url: str, topic: str, **options: str) -> str:
    query = "".join(f"&{k}={v}" for k, v in options.items())
    return f"sns://{topic}?endpoint_url={endpoint_url}&region={REGION}{query}"


async def subscribe_queue(client: ClientFactory, topic_arn: str, *, raw: bool, fifo: bool) -> str:
    """A new queue subscribed to the topic; returns the queue's name."""
    name = unique_name("raw" if raw else "wrapped", fifo=fifo)
    async with client("sqs") as sqs, client("sns") as sns:
        attributes = {"FifoQueue": "true"} if fifo else {}
        await sqs.create_queue(QueueName=name, Attributes=attributes)
        await sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn(name),
            Attributes={"RawMessageDelivery": "true" if raw else "false"},
        )
    return name


PUBLISHED = [
    OutMessage(id="j", body=b'{"text": "hello"}', attributes={"ce-id": "j", "n": "1"}),
    OutMessage(id="b", body=b"\x00\x01\xffbinary", attributes={"ce-id": "b", "n": "2"}),
    OutMessage(id="many", body="ünïcode".encode(), attributes={f"a{i}": str(i) for i in range(12)}),
]


def test_topic_arn_gives_name_and_region() -> None:
    settings = SnsSettings.from_url("sns://arn:aws:sns:eu-central-1:111122223333:results.fifo")
    assert settings.topic_name == "results.fifo"
    assert settings.topic_arn == "arn:aws:sns:eu-central-1:111122223333:results.fifo"
    assert settings.aws.region == "eu-central-1"
    assert settings.fifo


@pytest.mark.parametrize(
    "url", ["sns://topic?wait_s=3", "sns://bad/topic", "sns://bad*name", "sns://t?create=perhaps"]
)
def test_malformed_sns_urls_are_refused(url: str, ctx: ConnectorContext) -> None:
    with pytest.raises(DefinitionError):
        make_sink(url, ctx)


def test_registry_routes_sns_urls(ctx: ConnectorContext) -> None:
    sink = registry_make_sink("sns://results", ctx)
    assert isinstance(sink, SnsSink) and isinstance(sink, Sink)


def test_unwrap_ignores_what_is_not_a_notification() -> None:
    assert unwrap_notification(b"plain text") is None
    assert unwrap_notification(b'{"Type": "SubscriptionConfirmation"}') is None
    assert unwrap_notification(b"[1, 2]") is None


async def test_fan_out_to_raw_and_wrapped_queues(
    moto: MotoServer, ctx: ConnectorContext, client: ClientFactory
) -> None:
    sink = make_sink(sns_url(moto.endpoint_url, unique_name("fanout"), create="true"), ctx)
    async with opened(sink):
        raw_name = await subscribe_queue(client, sink.topic_arn, raw=True, fifo=False)
        wrapped_name = await subscribe_queue(client, sink.topic_arn, raw=False, fifo=False)
        raw = make_source(sqs_url(moto.endpoint_url, raw_name), ctx)
        wrapped = make_source(sqs_url(moto.endpoint_url, wrapped_name), ctx)
        await sink.publish(PUBLISHED)
        async with opened(raw, wrapped):
            raw_got = await receive_n(raw, len(PUBLISHED))
            wrapped_got = await receive_n(wrapped, len(PUBLISHED))
            await raw.ack(raw_got)
            await wrapped.ack(wrapped_got)
    expected = sorted((m.body, sorted(m.attributes.items())) for m in PUBLISHED)
    assert sorted((d.body, sorted(d.attributes.items())) for d in raw_got) == expected
    unwrapped = [unwrap_notification(d.body) for d in wrapped_got]
    assert sorted((b, sorted(a.items())) for b, a in filter(None, unwrapped)) == expected
    envelope = json.loads(wrapped_got[0].body)
    assert envelope["TopicArn"] == sink.topic_arn


async def test_fifo_topic_dedupes_and_keeps_group_order(
    moto: MotoServer, ctx: ConnectorContext, client: ClientFactory
) -> None:
    topic = unique_name("ordered", fifo=True)
    sink = make_sink(sns_url(moto.endpoint_url, topic, create="true", group_id="g"), ctx)
    sent = [OutMessage(id=f"m{i}", body=f"m{i}".encode()) for i in range(4)]
    async with opened(sink):
        queue = await subscribe_queue(client, sink.topic_arn, raw=True, fifo=True)
        await sink.publish(sent)
        await sink.publish(sent[:2])  # a retried publish: same deduplication ids
        source = make_source(sqs_url(moto.endpoint_url, queue), ctx)
        async with opened(source):
            got = await receive_n(source, len(sent))
            assert [d.body for d in got] == [m.body for m in sent]
            await source.ack(got)
            assert await source.receive(10, 1) == []


async def test_publishing_by_arn(
    moto: MotoServer, ctx: ConnectorContext, client: ClientFactory
) -> None:
    async with client("sns") as sns:
        arn = (await sns.create_topic(Name=unique_name("byarn")))["TopicArn"]
    sink = make_sink(f"sns://{arn}?endpoint_url={moto.endpoint_url}", ctx)
    async with opened(sink):
        queue = await subscribe_queue(client, arn, raw=True, fifo=False)
        await sink.publish(PUBLISHED[:1])
        source = make_source(sqs_url(moto.endpoint_url, queue), ctx)
        async with opened(source):
            [delivery] = await receive_n(source, 1)
            await source.ack([delivery])
    assert delivery.body == PUBLISHED[0].body


async def test_missing_topic_names_listener_and_topic(
    moto: MotoServer, ctx: ConnectorContext
) -> None:
    name = unique_name("nosuchtopic")
    for url in (
        sns_url(moto.endpoint_url, name),
        f"sns://arn:aws:sns:us-east-1:123456789012:{name}?endpoint_url={moto.endpoint_url}",
    ):
        sink = make_sink(url, ctx)
        with pytest.raises(ConnectorConfigError) as caught:
            await sink.open()
        assert name in str(caught.value)
        assert ctx.listener in str(caught.value)


async def test_oversized_message_is_refused(moto: MotoServer, ctx: ConnectorContext) -> None:
    sink = make_sink(sns_url(moto.endpoint_url, unique_name("big"), create="true"), ctx)
    async with opened(sink):
        with pytest.raises(ConnectorError) as caught:
            await sink.publish([OutMessage(id="big", body=b"x" * (257 * 1024))])
    assert caught.value.permanent
    assert "'big'" in str(caught.value)


async def test_unreachable_endpoint_is_transient(ctx: ConnectorContext) -> None:
    sink = make_sink(sns_url(f"http://127.0.0.1:{free_port()}", "anything"), ctx)
    with pytest.raises(ConnectorError) as caught:
        await sink.open()
    assert not caught.value.permanent
