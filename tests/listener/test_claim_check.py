"""The claim check (issue 14, item 10): results too large for the sinks go to an object
store, named by their digest, and the sinks get a reference; without one they are
dead-lettered. A folder (``dir://``) and, on moto's server, SQS's 256 KiB limit with S3."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from modelbus.errors import DefinitionError
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.envelopes import dead_letter_id
from tests.aws.kit import sqs_url
from tests.aws.motoserver import MotoServer, fake_credentials

from .conftest import FAST, Env, eventually

REGION = "us-east-1"
# moto answers its first calls slowly on a busy machine: more than FAST's 5 s
AWS = replace(FAST, open_timeout_s=30, publish_timeout_s=30, op_timeout_s=30)


@pytest.fixture
def queue_kind() -> str:
    return "memory"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def blob(value: dict[str, Any]) -> dict[str, Any]:
    """The model: ``{"n", "size"}`` -> ``{"n", "blob"}`` of about ``size`` bytes."""
    return {"n": value["n"], "blob": "x" * int(value["size"])}


async def queue_of_256_kib(moto: MotoServer) -> str:
    """A new queue whose MaximumMessageSize is SQS's long-standing 256 KiB (moto's default
    follows AWS's newer 1 MiB)."""
    from aiobotocore.session import get_session

    name = f"results-{uuid.uuid4().hex[:8]}"
    with fake_credentials():
        async with get_session().create_client(
            "sqs", region_name=REGION, endpoint_url=moto.endpoint_url
        ) as sqs:
            await sqs.create_queue(
                QueueName=name, Attributes={"MaximumMessageSize": str(256 * 1024)}
            )
    return sqs_url(moto.endpoint_url, name, wait_s=1)


def data_bytes(value: object) -> bytes:
    """A JSON result as the runner encodes it."""
    return json.dumps(value, separators=(",", ":")).encode()


async def test_a_result_over_over_bytes_is_stored_in_a_folder_and_referenced(
    env: Env, tmp_path: Path
) -> None:
    env.invoker.register("acme/echo", blob)
    source, out, store = env.url("in"), env.url("out"), tmp_path / "large"
    await env.start(
        env.definition(
            source=source,
            outputs=[out],
            claim_check={"url": f"dir://{store}", "over_bytes": 1000},
        )
    )
    big = await env.publish(source, b'{"n": 1, "size": 5000}')
    small = await env.publish(source, b'{"n": 2, "size": 10}')
    results = {m.attributes["sourcemessageid"]: m for m in await env.collect(out, 2, timeout_s=20)}

    assert json.loads(results[small].body)["data"] == blob({"n": 2, "size": 10})
    assert "claimcheck" not in results[small].attributes
    event = json.loads(results[big].body)
    reference = event["data"]["claim_check"]
    expected = data_bytes(blob({"n": 1, "size": 5000}))
    digest = hashlib.sha256(expected).hexdigest()
    assert reference == {
        "url": (store / f"{digest}.json").as_uri(),
        "size": len(expected),
        "sha256": digest,
        "content_type": "application/json",
    }
    assert (store / f"{digest}.json").read_bytes() == expected
    assert results[big].attributes["claimcheck"] == reference["url"]
    # the usual correlation, as CloudEvent attributes
    assert event["sourcemessageid"] == big and event["datacontenttype"] == "application/json"
    assert len(results[big].body) < 1000


async def test_over_sqs_limit_a_result_goes_to_s3_and_sqs_gets_the_reference(
    env: Env, moto: MotoServer
) -> None:
    from aiobotocore.session import get_session

    env.invoker.register("acme/echo", blob)
    bucket = f"claims-{uuid.uuid4().hex[:8]}"
    out = await queue_of_256_kib(moto)
    store = f"s3://{bucket}/large/?endpoint_url={moto.endpoint_url}&region={REGION}&create=true"
    source = env.url("in")
    with fake_credentials():
        listener = await env.start(
            env.definition(source=source, outputs=[out], claim_check={"url": store}), AWS
        )
        big = await env.publish(source, b'{"n": 1, "size": 300000}')  # over 256 KiB
        small = await env.publish(source, b'{"n": 2, "size": 100000}')  # under it
        await eventually(lambda: listener.status().counters["succeeded"] == 2, timeout_s=30)
        results = {
            m.attributes["sourcemessageid"]: m for m in await env.collect(out, 2, timeout_s=30)
        }
        reference = json.loads(results[big].body)["data"]["claim_check"]
        expected = data_bytes(blob({"n": 1, "size": 300000}))
        digest = hashlib.sha256(expected).hexdigest()
        assert reference["url"] == f"s3://{bucket}/large/{digest}"
        assert (reference["size"], reference["sha256"]) == (len(expected), digest)
        session = get_session()
        async with session.create_client(
            "s3", region_name=REGION, endpoint_url=moto.endpoint_url
        ) as s3:
            parts = urlsplit(reference["url"])
            stored = await s3.get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))
            assert await stored["Body"].read() == expected
            assert stored["ContentType"] == "application/json"
            listing = await s3.list_objects_v2(Bucket=bucket)
        assert [o["Key"] for o in listing["Contents"]] == [f"large/{digest}"]  # not the small
    assert json.loads(results[small].body)["data"] == blob({"n": 2, "size": 100000})


async def test_without_a_claim_check_a_result_over_sqs_limit_is_dead_lettered(
    env: Env, moto: MotoServer
) -> None:
    env.invoker.register("acme/echo", blob)
    out = await queue_of_256_kib(moto)
    source = env.url("in")
    with fake_credentials():
        listener = await env.start(env.definition(source=source, outputs=[out]), AWS)
        big = await env.publish(source, b'{"n": 1, "size": 300000}')
        await eventually(lambda: listener.status().counters["dead_lettered"] == 1, timeout_s=30)
    letter = await env.runs.get_dead_letter(dead_letter_id(listener.name, big))
    assert letter.permanent


def test_a_claim_check_store_is_s3_or_a_folder_and_never_the_source(tmp_path: Path) -> None:
    base = {"name": "l", "source": f"dir://{tmp_path}/in", "model": "acme/echo"}
    with pytest.raises(DefinitionError, match="claim check store is s3:// or dir://"):
        ListenerDefinition.from_mapping({**base, "claim_check": {"url": "sqs://q"}})
    with pytest.raises(DefinitionError, match="is the source itself"):
        ListenerDefinition.from_mapping({**base, "claim_check": {"url": f"dir://{tmp_path}/in"}})
    with pytest.raises(DefinitionError, match=r"claim_check\.over_bytes"):
        ListenerDefinition.from_mapping(
            {**base, "claim_check": {"url": "s3://b/p/", "over_bytes": 0}}
        )
    definition = ListenerDefinition.from_mapping(
        {**base, "claim_check": {"url": "s3://b/p/", "over_bytes": 1024}}
    )
    assert definition.claim_check is not None and definition.claim_check.over_bytes == 1024
