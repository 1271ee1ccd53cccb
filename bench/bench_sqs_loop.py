"""A careful hand-written SQS consumer loop, the "traditional implementation" that the
listener's SQS throughput is compared with (run both in the same session, on the same server).

    .venv/bin/python bench/bench_sqs_loop.py --messages 400 --batch 10 --runs 3

Each run preloads ``--messages`` JSON messages of about 200 bytes into a fresh input queue,
then ``--workers`` loops each do: ReceiveMessage (up to ``--batch``, long poll) -> a trivial
function on every body -> SendMessageBatch of the results to an output queue -> only then
DeleteMessageBatch of the inputs (ack after the result is published, as the listener does),
until every message is done. It prints one JSON line per run and the median msg/s.

By default it starts its own moto_server (``tests/aws/motoserver.py``); ``--endpoint-url``
points it at another SQS. moto is slow and says nothing about real SQS speed (NOTES.md):
compare numbers from the same endpoint only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiobotocore.session import get_session
from tests.aws.motoserver import MotoServer, fake_credentials

REGION = "us-east-1"


def trivial(body: str) -> str:
    """The 'model': parse, add a field, serialise."""
    document = json.loads(body)
    document["length"] = len(document["text"])
    return json.dumps(document)


async def preload(sqs: Any, queue_url: str, count: int) -> None:
    for start in range(0, count, 10):
        entries = [
            {"Id": str(i), "MessageBody": json.dumps({"n": start + i, "text": "x" * 170})}
            for i in range(min(10, count - start))
        ]
        answer = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        assert not answer.get("Failed"), answer


async def trivial_batch(bodies: list[str]) -> list[str]:
    return [trivial(body) for body in bodies]


async def worker(
    sqs: Any,
    in_url: str,
    out_url: str,
    batch: int,
    done: list[int],
    total: int,
    transform: Callable[[list[str]], Awaitable[list[str]]] = trivial_batch,
) -> None:
    """Receive -> ``transform`` the bodies (default: :func:`trivial` on each) -> send the
    results -> delete the inputs, until ``total`` messages are done (by every worker)."""
    while sum(done) < total:
        answer = await asyncio.wait_for(
            sqs.receive_message(QueueUrl=in_url, MaxNumberOfMessages=batch, WaitTimeSeconds=1),
            timeout=30,
        )
        messages = answer.get("Messages", [])
        if not messages:
            continue
        outputs = await transform([m["Body"] for m in messages])
        results = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(outputs)]
        sent = await asyncio.wait_for(
            sqs.send_message_batch(QueueUrl=out_url, Entries=results), timeout=30
        )
        if sent.get("Failed"):
            continue  # leave the inputs; they come back after their visibility timeout
        receipts = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ]
        await asyncio.wait_for(
            sqs.delete_message_batch(QueueUrl=in_url, Entries=receipts), timeout=30
        )
        done.append(len(messages))


async def one_run(endpoint_url: str, messages: int, batch: int, workers: int) -> dict[str, Any]:
    session = get_session()
    async with session.create_client("sqs", region_name=REGION, endpoint_url=endpoint_url) as sqs:
        tag = uuid.uuid4().hex[:10]
        in_url = (await sqs.create_queue(QueueName=f"bench-in-{tag}"))["QueueUrl"]
        out_url = (await sqs.create_queue(QueueName=f"bench-out-{tag}"))["QueueUrl"]
        await preload(sqs, in_url, messages)
        done: list[int] = []
        started = time.perf_counter()
        await asyncio.gather(
            *(worker(sqs, in_url, out_url, batch, done, messages) for _ in range(workers))
        )
        elapsed_s = time.perf_counter() - started
        await sqs.delete_queue(QueueUrl=in_url)
        await sqs.delete_queue(QueueUrl=out_url)
    processed = sum(done)
    return {
        "processed": processed,
        "duplicates": processed - messages,
        "seconds": round(elapsed_s, 3),
        "msg_per_s": round(processed / elapsed_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--batch", type=int, default=10, choices=range(1, 11), metavar="1-10")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--endpoint-url", help="an SQS endpoint (default: a fresh moto_server)")
    args = parser.parse_args()
    with ExitStack() as stack:
        endpoint = args.endpoint_url
        if endpoint is None:
            stack.enter_context(fake_credentials())
            endpoint = stack.enter_context(MotoServer()).endpoint_url
        rates = []
        for run in range(args.runs):
            result = asyncio.run(one_run(endpoint, args.messages, args.batch, args.workers))
            print(
                json.dumps({"run": run + 1, "batch": args.batch, "workers": args.workers, **result})
            )
            rates.append(result["msg_per_s"])
    print(json.dumps({"median_msg_per_s": statistics.median(rates), "endpoint": endpoint}))


if __name__ == "__main__":
    main()
