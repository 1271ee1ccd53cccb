"""The S3 sink and object reader against a real moto_server, including the headline path:
object created -> bucket notification -> SQS -> source -> reader fetches the object."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

import pytest

from modelbus.connectors import make_sink as registry_make_sink
from modelbus.connectors.aws import AwsOptions
from modelbus.connectors.base import ConnectorContext, OutMessage, Sink
from modelbus.connectors.s3 import S3ObjectReader, S3Settings, S3Sink, make_reader, make_sink
from modelbus.connectors.sqs import make_source
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError

from .conftest import ClientFactory
from .helpers import opened, queue_arn, receive_n
from .kit import REGION, sqs_url, unique_name
from .motoserver import MotoServer, free_port


def s3_url(endpoint_url: str, bucket: str, prefix: str = "", **options: str) -> str:
    query = "".join(f"&{k}={v}" for k, v in options.items())
    return f"s3://{bucket}/{prefix}?endpoint_url={endpoint_url}&region={REGION}{query}"


async def head(client: ClientFactory, bucket: str, key: str) -> dict[str, Any]:
    async with client("s3") as s3:
        answer: dict[str, Any] = await s3.head_object(Bucket=bucket, Key=key)
    return answer


def test_s3_url_options() -> None:
    settings = S3Settings.from_url(
        "s3://my-bucket/results/ocr/?region=eu-west-1&suffix=.txt&key_from=source"
        "&content_type=text/plain&create=true"
    )
    assert (settings.bucket, settings.prefix, settings.suffix) == (
        "my-bucket",
        "results/ocr/",
        ".txt",
    )
    assert (settings.key_from, settings.content_type, settings.create) == (
        "source",
        "text/plain",
        True,
    )
    assert settings.aws.region == "eu-west-1"
    assert S3Settings.from_url("s3://my-bucket").prefix == ""


@pytest.mark.parametrize(
    "url", ["s3://Bad_Bucket/x", "s3://b/x", "s3://bucket/x?key_from=hash", "s3://bucket?wait_s=1"]
)
def test_malformed_s3_urls_are_refused(url: str, ctx: ConnectorContext) -> None:
    with pytest.raises(DefinitionError):
        make_sink(url, ctx)


def test_registry_routes_s3_urls(ctx: ConnectorContext) -> None:
    sink = registry_make_sink("s3://bucket/prefix/", ctx)
    assert isinstance(sink, S3Sink) and isinstance(sink, Sink)


def test_reader_takes_endpoint_and_region_from_the_source_url(ctx: ConnectorContext) -> None:
    reader = make_reader("sqs://q?endpoint_url=http://127.0.0.1:9&region=eu-west-3&wait_s=2", ctx)
    assert reader._client.options == AwsOptions(
        endpoint_url="http://127.0.0.1:9", region="eu-west-3"
    )
    reader = make_reader("https://sqs.ap-south-1.amazonaws.com/123456789012/events", ctx)
    assert reader._client.options == AwsOptions(region="ap-south-1")


async def test_sink_writes_objects_with_content_type_and_metadata(
    moto: MotoServer, ctx: ConnectorContext, client: ClientFactory
) -> None:
    bucket = unique_name("results")
    sink = make_sink(s3_url(moto.endpoint_url, bucket, "out/", suffix=".res", create="true"), ctx)
    published = [
        OutMessage(id="j1", body=b'{"text": "hi"}', attributes={"source_id": "m-1"}),
        OutMessage(id="t1", body=b"plain words", attributes={"Trace Parent": "00-ab"}),
        OutMessage(id="b1", body=b"\x89PNG\x00", attributes={"content-type": "image/png"}),
        OutMessage(id="u1", body=b"\xff", attributes={"city": "Zürich"}),
    ]
    async with opened(sink):
        await sink.publish(published)
        await sink.publish(published[:1])  # again: overwrites, harmless
    expected_types = ["application/json", "text/plain; charset=utf-8", "image/png"]
    expected_types.append("application/octet-stream")
    async with S3ObjectReader(AwsOptions(endpoint_url=moto.endpoint_url), listener="t") as reader:
        for message, content_type in zip(published, expected_types, strict=True):
            data, got_type = await reader.read(bucket, f"out/{message.id}.res")
            assert (data, got_type) == (message.body, content_type)
    assert (await head(client, bucket, "out/j1.res"))["Metadata"] == {
        "modelbus-id": "j1",
        "source_id": "m-1",
    }
    assert (await head(client, bucket, "out/t1.res"))["Metadata"]["trace-parent"] == "00-ab"
    assert (await head(client, bucket, "out/u1.res"))["Metadata"]["city"] == "Z%C3%BCrich"


async def test_sink_names_objects_after_the_source_key(
    moto: MotoServer, ctx: ConnectorContext, client: ClientFactory
) -> None:
    bucket = unique_name("bysource")
    url = s3_url(
        moto.endpoint_url, bucket, "text/", key_from="source", suffix=".txt", create="true"
    )
    sink = make_sink(url, ctx)
    async with opened(sink):
        await sink.publish(
            [
                OutMessage(id="r1", body=b"ocr text", attributes={"key": "scans/page 1.pdf"}),
                OutMessage(id="r2", body=b"no key"),
            ]
        )
    assert (await head(client, bucket, "text/scans/page 1.pdf.txt"))["ContentLength"] == 8
    assert (await head(client, bucket, "text/r2.txt"))["ContentLength"] == 6


async def test_object_created_event_reaches_the_source_and_the_reader_fetches_it(
    moto: MotoServer, ctx: ConnectorContext, client: ClientFactory
) -> None:
    bucket, queue = unique_name("inbox"), unique_name("s3events")
    source_url = sqs_url(moto.endpoint_url, queue)
    async with client("s3") as s3, client("sqs") as sqs:
        await s3.create_bucket(Bucket=bucket)
        await sqs.create_queue(QueueName=queue)
        await s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": queue_arn(queue),
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}]}},
                    }
                ]
            },
        )
    document = b"%PDF-1.7 a scanned page"
    sink = make_sink(s3_url(moto.endpoint_url, bucket, "in/", content_type="application/pdf"), ctx)
    source = make_source(source_url, ctx)
    async with opened(sink, source):
        await sink.publish([OutMessage(id="scans/page 1.pdf", body=document)])
        test_event, created = await receive_n(source, 2)
        await source.ack([test_event, created])
    assert json.loads(test_event.body)["Event"] == "s3:TestEvent"
    [record] = json.loads(created.body)["Records"]
    assert record["eventSource"] == "aws:s3"
    assert record["eventName"].startswith("ObjectCreated:")
    event_bucket = record["s3"]["bucket"]["name"]
    event_key = unquote_plus(record["s3"]["object"]["key"])
    assert (event_bucket, event_key) == (bucket, "in/scans/page 1.pdf")
    async with make_reader(source_url, ctx) as reader:
        assert await reader.read(event_bucket, event_key) == (document, "application/pdf")


async def test_reader_missing_object_or_bucket_is_permanent(
    moto: MotoServer, ctx: ConnectorContext, client: ClientFactory
) -> None:
    bucket = unique_name("empty")
    async with client("s3") as s3:
        await s3.create_bucket(Bucket=bucket)
    async with make_reader(sqs_url(moto.endpoint_url, "q"), ctx) as reader:
        for where in ((bucket, "gone.pdf"), (unique_name("nobucket"), "x")):
            with pytest.raises(ConnectorError) as caught:
                await reader.read(*where)
            assert caught.value.permanent
            assert where[1] in str(caught.value)


async def test_reader_refuses_objects_over_its_limit(
    moto: MotoServer, ctx: ConnectorContext, client: ClientFactory
) -> None:
    bucket = unique_name("large")
    async with client("s3") as s3:
        await s3.create_bucket(Bucket=bucket)
        await s3.put_object(Bucket=bucket, Key="big", Body=b"x" * 2048)
        await s3.put_object(Bucket=bucket, Key="small", Body=b"y" * 10)
    options = AwsOptions(endpoint_url=moto.endpoint_url, region=REGION)
    async with S3ObjectReader(options, listener="t", max_bytes=1024) as reader:
        with pytest.raises(ConnectorError) as caught:
            await reader.read(bucket, "big")
        assert caught.value.permanent
        assert "2048" in str(caught.value)
        assert (await reader.read(bucket, "small"))[0] == b"y" * 10
    async with S3ObjectReader(options, listener="t", max_bytes=4096) as reader:
        assert (await reader.read(bucket, "big"))[0] == b"x" * 2048


async def test_sink_missing_bucket_names_listener_and_bucket(
    moto: MotoServer, ctx: ConnectorContext
) -> None:
    bucket = unique_name("nobucket")
    sink = make_sink(s3_url(moto.endpoint_url, bucket, "p/"), ctx)
    with pytest.raises(ConnectorConfigError) as caught:
        await sink.open()
    assert bucket in str(caught.value)
    assert ctx.listener in str(caught.value)


async def test_unreachable_s3_is_transient(ctx: ConnectorContext) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectorError) as caught:
        await make_sink(s3_url(endpoint, "some-bucket"), ctx).open()
    assert not caught.value.permanent
    async with make_reader(sqs_url(endpoint, "q"), ctx) as reader:
        with pytest.raises(ConnectorError) as caught:
            await reader.read("some-bucket", "key")
    assert not caught.value.permanent
