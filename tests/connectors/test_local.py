"""What local:// (and memory://) promise beyond the shared contract."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from modelbus.connectors import ConnectorContext, OutMessage, make_sink, make_source
from modelbus.connectors.local import LocalOptions, SqliteQueue
from modelbus.connectors.memory import BROKER
from modelbus.errors import ConnectorError, DefinitionError


@pytest.fixture
def ctx(tmp_path: Path) -> ConnectorContext:
    return ConnectorContext(listener="t", data_dir=tmp_path)


@pytest.mark.parametrize("scheme", ["memory", "local"])
async def test_publishing_an_id_still_queued_is_a_no_op(
    scheme: str, ctx: ConnectorContext, tmp_path: Path
) -> None:
    url = f"{scheme}://dedupe-{tmp_path.name}"
    sink, source = make_sink(url, ctx), make_source(url, ctx)
    await sink.open()
    await source.open()
    try:
        await sink.publish([OutMessage(id="same", body=b"1"), OutMessage(id="same", body=b"2")])
        await sink.publish([OutMessage(id="same", body=b"3")])
        (only,) = await source.receive(10, 0.5)
        assert only.body == b"1"
        await source.ack([only])
        await sink.publish([OutMessage(id="same", body=b"4")])  # settled: a new message now
        (again,) = await source.receive(10, 0.5)
        assert (again.body, again.attempt) == (b"4", 1)
    finally:
        await source.close()
        await sink.close()


PUBLISH_AND_DIE = """
import asyncio, os, sys
from pathlib import Path
from modelbus.connectors import ConnectorContext, OutMessage, make_sink

async def main():
    ctx = ConnectorContext(listener="p", data_dir=Path(sys.argv[1]))
    sink = make_sink("local://crashy", ctx)
    await sink.open()
    await sink.publish([OutMessage(id=f"m{i}", body=b"x") for i in range(50)])
    os._exit(9)  # die without closing anything

asyncio.run(main())
"""


async def test_messages_survive_the_process_that_published_them(ctx: ConnectorContext) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISH_AND_DIE, str(ctx.data_dir)
    )
    assert await asyncio.wait_for(process.wait(), 60) == 9
    source = make_source("local://crashy", ctx)
    await source.open()
    try:
        got = await source.receive(100, 1)
        assert sorted(d.message_id for d in got) == sorted(f"m{i}" for i in range(50))
    finally:
        await source.close()


async def test_a_receiver_wakes_when_this_process_publishes(ctx: ConnectorContext) -> None:
    source = make_source("local://wake?poll_ms=60000", ctx)  # polling would take a minute
    sink = make_sink("local://wake", ctx)
    await source.open()
    await sink.open()
    try:
        waiting = asyncio.create_task(source.receive(1, 30))
        await asyncio.sleep(0.1)
        await sink.publish([OutMessage(id="now", body=b"x")])
        (got,) = await asyncio.wait_for(waiting, 10)
        assert got.message_id == "now"
    finally:
        await source.close()
        await sink.close()


async def test_counts_and_closed_queue(ctx: ConnectorContext) -> None:
    queue = SqliteQueue(LocalOptions.from_url("local://c").path(ctx.data_dir))
    await queue.open()
    await queue.publish([OutMessage(id="a", body=b"1"), OutMessage(id="b", body=b"2")])
    taken, _ = await queue.receive(1, 30)
    assert len(taken) == 1
    assert await queue.counts() == (2, 1)
    await queue.close()
    with pytest.raises(ConnectorError, match="not open"):
        await queue.counts()


@pytest.mark.parametrize(
    ("url", "advice"),
    [
        ("local://bad name", "queue name"),
        ("local://.hidden", "queue name"),
        ("local://q/sub", "expected local://NAME"),
        ("local://q?lease=3", "unknown option 'lease'"),
        ("local://q?lease_s=-1", "is not valid"),
        ("local://q?synchronous=off", "is not valid"),
        ("memory://q?poll_ms=3", "unknown option"),
    ],
)
def test_bad_urls_are_refused(url: str, advice: str, ctx: ConnectorContext) -> None:
    with pytest.raises(DefinitionError, match=advice):
        make_source(url, ctx)


async def test_memory_outage_fails_every_operation_until_lifted(ctx: ConnectorContext) -> None:
    queue = BROKER.queue("outage-test")
    source = make_source("memory://outage-test", ctx)
    queue.outage("broker unreachable")
    with pytest.raises(ConnectorError, match="broker unreachable"):
        await source.open()
    with pytest.raises(ConnectorError):
        queue.publish([OutMessage(id="x", body=b"")])
    queue.outage(None)
    await source.open()
    BROKER.delete("outage-test")
