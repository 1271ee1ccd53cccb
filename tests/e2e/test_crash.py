"""Nothing is lost (delivery contract, point 3): messages are queued, a separate serving
process runs a listener over them with real runners, and it is SIGKILLed (with its runners)
twice at random moments and restarted; one runner is also killed on its own. In the end
every message has exactly one result id (duplicates delivered are counted, and allowed) or
one dead letter, and none is missing.

``local://`` runs 1,000 messages. SQS on moto runs 150: moto serves about 40 messages a
second with batches of 10 (NOTES.md) and every message costs a receive, a send, a delete and
our collector's receive and delete on it; 150 keeps that run near 20 s while still leaving
room for two kills mid-run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelbus.listeners.claims import DEFAULT_CLAIM_TTL_S
from modelbus.listeners.envelopes import output_id
from modelbus.store.database import Database
from modelbus.store.runs import RunStore
from tests.aws.motoserver import MotoServer
from tests.chaos.accounting import Collector, progress_to
from tests.chaos.flow import listener_file

from .brokers import Broker, LocalBroker, SqsBroker
from .node import BEHAVE, database_url, open_node
from .processes import Serving

LISTENER = "crash"
PERMANENT_EVERY = 97  # these inputs are refused by the model: they must be dead-lettered
STALL_S = 30.0  # no message settled for this long: the rest is lost (or stuck)


def unique_sources(collector: Collector) -> set[str]:
    return {m.attributes["sourcemessageid"] for m in collector.results} | {
        m.attributes["modelbus-source-message-id"] for m in collector.letters
    }


@pytest.fixture(params=["local", "sqs"])
async def crash_broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Broker]:
    data_dir = tmp_path / "data"
    if request.param == "local":
        yield LocalBroker(data_dir)
        return
    moto: MotoServer = request.getfixturevalue("moto")
    request.getfixturevalue("aws_credentials")
    async with SqsBroker.open(moto.endpoint_url, data_dir) as sqs:
        yield sqs


def _inputs(count: int) -> list[bytes]:
    return [
        json.dumps({"op": "permanent" if n % PERMANENT_EVERY == 0 else "ok", "n": n}).encode()
        for n in range(count)
    ]


async def _progress_to(target: int, progress: Callable[[], int]) -> bool:
    return await progress_to(target, progress, stall_s=STALL_S)


async def test_killed_twice_mid_run_nothing_is_lost(crash_broker: Broker, tmp_path: Path) -> None:
    broker = crash_broker
    count = 1000 if broker.kind == "local" else 150
    data_dir = tmp_path / "data"
    async with open_node(data_dir, start=False) as node:
        await node.push(BEHAVE, version="1.0.0")
    source = await broker.queue("crash-in", lease_s=3)
    out, dead = await broker.queue("crash-out"), await broker.queue("crash-dead")
    sent = await broker.send_many(source, _inputs(count))
    refused = {sent[n] for n in range(0, count, PERMANENT_EVERY)}
    serving = Serving(
        data_dir,
        listener_file(
            tmp_path / "listeners.toml",
            name=LISTENER,
            source=source,
            out=out,
            dead=dead,
            max_in_flight=16,
        ),
    )
    collector = Collector(broker.ctx)
    # each kill comes after a random share (10-25 %) of the messages settled in that life
    share = lambda: random.randint(count // 10, count // 4)  # noqa: E731
    runner_kill_at = int(count * 0.8)
    progress = lambda: len(unique_sources(collector))  # noqa: E731

    started = time.monotonic()
    timeline: list[str] = []

    def note(event: str) -> None:
        timeline.append(f"{time.monotonic() - started:.1f}s {event} ({progress()} settled)")

    async with collector.running(out, dead):
        await serving.start()
        note("serving")
        try:
            for _ in range(2):
                at = progress() + share()
                assert await _progress_to(at, progress), f"stalled before {at}:\n{serving.log()}"
                serving.kill()
                note("SIGKILL")
                await serving.start()
                note("serving again")
            if await _progress_to(runner_kill_at, progress):
                note(f"runner {serving.kill_a_runner()} SIGKILLed")
            if await _progress_to(count, progress):
                note("all settled")
                await asyncio.sleep(1.0)  # late duplicates, if any, are counted too
                # A redelivered message the killed server had claimed (its result out, its
                # record not written yet) waits for that claim to lapse, then is found done:
                # the source empties within a claim's lifetime.
                if await _source_empties(broker, source, within_s=DEFAULT_CLAIM_TTL_S + 15):
                    note("source empty")
            else:
                note(f"nothing settled for {STALL_S:g} s")
        finally:
            serving.stop()

    tally = _tally(sent, collector, refused)
    print(f"\ncrash test on {broker.kind}: {'; '.join(timeline)}\n{json.dumps(tally)}")
    assert tally["lost"] == 0
    assert tally["with result and dead letter"] == 0
    for message in collector.results:
        source_id = message.attributes["sourcemessageid"]
        assert json.loads(message.body)["id"] == output_id(LISTENER, source_id)
    assert {m.attributes["modelbus-source-message-id"] for m in collector.letters} == refused
    assert (await broker.depth(source)).total == 0
    await _check_records(data_dir, sent, refused)


def _tally(sent: list[str], collector: Collector, refused: set[str]) -> dict[str, Any]:
    by_source = Counter(m.attributes["sourcemessageid"] for m in collector.results)
    lettered = Counter(m.attributes["modelbus-source-message-id"] for m in collector.letters)
    settled = set(by_source) | set(lettered)
    return {
        "in": len(sent),
        "results": len(collector.results),
        "unique results": len(by_source),
        "duplicates": len(collector.results) - len(by_source),
        "dead letters": len(lettered),
        "duplicate dead letters": len(collector.letters) - len(lettered),
        "with result and dead letter": len(set(by_source) & set(lettered)),
        "lost": len(set(sent) - settled),
        "expected dead letters": len(refused),
    }


async def _check_records(data_dir: Path, sent: list[str], refused: set[str]) -> None:
    """The store agrees: one final run record per message, a dead letter for each refused."""
    database = await Database.open(database_url(data_dir))
    try:
        runs = RunStore(database.engine)
        page = await runs.list_runs(LISTENER, limit=len(sent) + 1)
        statuses = {record.message_id: record.status for record in page.items}
        assert statuses == {
            message_id: "dead_lettered" if message_id in refused else "succeeded"
            for message_id in sent
        }
        letters = await runs.dead_letter_ids(LISTENER)
        assert len(letters) == len(refused)
    finally:
        await database.close()


@pytest.fixture(autouse=True)
def _no_stray_env() -> Iterator[None]:
    """The serving process must not pick up a developer's MODELBUS_* settings."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("MODELBUS_")}
    yield
    os.environ.update(saved)


async def _source_empties(broker: Broker, source: str, *, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while (await broker.depth(source)).total:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.5)
    return True
