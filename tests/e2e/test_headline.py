"""The headline story, end to end, on a real moto_server, with the real OCR example
(examples/ocr, pushed through the registry; its environment is built by the builder: slow
the first time, from the uv cache afterwards): a scanned page is put into an S3 bucket whose
notification goes to an SQS queue; a listener on that queue runs the OCR model; the
recognised text arrives on an output SQS queue and, through an SNS topic, on two subscribed
queues (one with raw message delivery, one with SNS's wrapped notifications), each with the
correlation (source message id, listener, model, resolved version, bucket, key).

The same story on the embedded default (a page dropped into a ``dir://`` folder yields a
result file with the text) is tests/serve/test_demo.py, through ``modelbus demo``.
"""

from __future__ import annotations

import ast
import difflib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modelbus.connectors import ConnectorContext
from modelbus.connectors.sns import unwrap_notification
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.envelopes import output_id
from tests.aws.motoserver import MotoServer

from .brokers import REGION, drain_url
from .node import EXAMPLES, Node, open_node

pytestmark = pytest.mark.slow

OCR = EXAMPLES / "ocr"
ACCOUNT = MotoServer.account_id


def expected_text() -> str:
    """EXPECTED_LINES of make_sample.py (read without importing it: it needs Pillow)."""
    tree = ast.parse((OCR / "make_sample.py").read_text())
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and ast.unparse(statement.targets[0]) == (
            "EXPECTED_LINES"
        ):
            return " ".join(ast.literal_eval(statement.value))
    raise AssertionError("make_sample.py has no EXPECTED_LINES")


def assert_reads_the_sample(text: str) -> None:
    squash = lambda s: " ".join(s.split()).lower()  # noqa: E731
    similarity = difflib.SequenceMatcher(None, squash(expected_text()), squash(text)).ratio()
    assert similarity > 0.95, text


@pytest.fixture
async def ocr_node(tmp_path: Path, aws_credentials: None) -> AsyncIterator[Node]:
    """A node with examples/ocr 1.0.0 published."""
    async with open_node(tmp_path / "data") as node:
        pushed = await node.push(OCR, version="1.0.0")
        assert pushed.version == "1.0.0"
        yield node


async def test_a_page_put_in_s3_is_read_and_the_text_fanned_out(
    ocr_node: Node, moto: MotoServer
) -> None:
    from aiobotocore.session import get_session

    tag = uuid.uuid4().hex[:10]
    bucket, events, out, topic = f"scans-{tag}", f"events-{tag}", f"text-{tag}", f"text-{tag}"
    fans = [f"fan-raw-{tag}", f"fan-wrapped-{tag}"]
    key = "inbox/page 1.png"  # the event carries it URL-encoded: inbox%2Fpage+1.png
    session = get_session()
    kw: dict[str, Any] = {"region_name": REGION, "endpoint_url": moto.endpoint_url}
    async with (
        session.create_client("s3", **kw) as s3,
        session.create_client("sqs", **kw) as sqs,
        session.create_client("sns", **kw) as sns,
    ):
        for queue in (events, out, *fans):
            await sqs.create_queue(QueueName=queue)
        topic_arn = (await sns.create_topic(Name=topic))["TopicArn"]
        for queue, raw in zip(fans, ("true", "false"), strict=True):
            await sns.subscribe(
                TopicArn=topic_arn,
                Protocol="sqs",
                Endpoint=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
                Attributes={"RawMessageDelivery": raw},
            )
        await s3.create_bucket(Bucket=bucket)
        await s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{events}",
                        "Events": ["s3:ObjectCreated:*"],
                    }
                ]
            },
        )
        aws = f"endpoint_url={moto.endpoint_url}&region={REGION}"
        definition = ListenerDefinition(
            name=f"ocr-{tag}",
            source=f"sqs://{events}?{aws}&wait_s=1",
            model="examples/ocr@1.*",
            outputs=[f"sqs://{out}?{aws}", f"sns://{topic}?{aws}"],
            timeout_s=120,
        )
        await ocr_node.manager.create(definition)
        await s3.put_object(
            Bucket=bucket, Key=key, Body=(OCR / "sample.png").read_bytes(), ContentType="image/png"
        )
        ctx = ConnectorContext(listener="e2e-test", data_dir=ocr_node.data_dir)
        drained = [
            await drain_url(f"sqs://{queue}?{aws}", ctx, 1, within_s=180, wait_s=1)
            for queue in (out, *fans)
        ]

    (direct,), (raw,), (wrapped,) = drained
    unwrapped = unwrap_notification(wrapped.body)
    assert unwrapped is not None, wrapped.body
    for body, attributes in (
        (direct.body, direct.attributes),
        (raw.body, raw.attributes),
        unwrapped,
    ):
        event = json.loads(body)
        assert_reads_the_sample(event["data"]["text"])
        source_id = attributes["sourcemessageid"]
        assert event["id"] == output_id(definition.name, source_id)
        assert attributes["listener"] == definition.name
        assert attributes["model"] == "examples/ocr@1.*"
        assert attributes["modelversion"] == event["modelversion"] == "1.0.0"
        assert (attributes["bucket"], attributes["key"]) == (bucket, key)
        assert event["subject"] == key
    assert len({m.attributes["sourcemessageid"] for m in (direct, raw)}) == 1
    counters = (await ocr_node.manager.status(definition.name)).counters
    assert counters["succeeded"] == 1
    assert counters["skipped_no_input"] == 1  # the s3:TestEvent of the notification setup
