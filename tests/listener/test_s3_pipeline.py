"""The headline story on a real moto_server: an object lands in S3 -> bucket notification ->
SQS -> listener -> the model gets the object's bytes -> the result is published."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from modelbus.runtime.invocation import Payload
from modelbus.store.runs import Search
from tests.aws.motoserver import MotoServer, fake_credentials

from .conftest import Env, eventually

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def queue_kind() -> str:
    return "local"


@pytest.fixture(autouse=True)
def aws_credentials() -> Iterator[None]:
    with fake_credentials():
        yield


async def test_an_uploaded_document_is_read_by_the_model(env: Env, moto: MotoServer) -> None:
    from aiobotocore.session import get_session

    bucket, queue = "inbox-listener-test", "s3-events-listener-test"
    session = get_session()
    async with (
        session.create_client("s3", region_name=REGION, endpoint_url=moto.endpoint_url) as s3,
        session.create_client("sqs", region_name=REGION, endpoint_url=moto.endpoint_url) as sqs,
    ):
        await s3.create_bucket(Bucket=bucket)
        await sqs.create_queue(QueueName=queue)
        await s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": f"arn:aws:sqs:{REGION}:123456789012:{queue}",
                        "Events": ["s3:ObjectCreated:*"],
                    }
                ]
            },
        )

        def ocr(payload: Payload) -> dict[str, object]:
            return {"text": payload.data.decode().upper(), "mime": payload.mime}

        env.invoker.register("acme/ocr", ocr, takes_payload=True)
        out = env.url("text")
        source = f"sqs://{queue}?endpoint_url={moto.endpoint_url}&region={REGION}&wait_s=1"
        listener = await env.start(
            env.definition(name="ocr", source=source, model="acme/ocr@1.*", outputs=[out])
        )
        await s3.put_object(
            Bucket=bucket, Key="scans/page 1.txt", Body=b"hello world", ContentType="text/plain"
        )
        (result,) = await env.collect(out, 1, timeout_s=30)

    event = json.loads(result.body)
    assert event["data"] == {"text": "HELLO WORLD", "mime": "text/plain"}
    assert (event["bucket"], event["key"]) == (bucket, "scans/page 1.txt")
    assert event["subject"] == "scans/page 1.txt"
    await eventually(lambda: listener.status().counters["skipped_no_input"] == 1)  # TestEvent
    await eventually(lambda: listener.status().counters["succeeded"] == 1)
    assert len(env.invoker.calls) == 1
    # The run is found by the object's key (moto sends it URL-encoded, as S3 does).
    (run,) = (await env.runs.list_runs("ocr", search=Search(object_key="page 1.txt"))).items
    assert (run.status, run.object_key) == ("succeeded", f"{bucket}/scans/page 1.txt")
