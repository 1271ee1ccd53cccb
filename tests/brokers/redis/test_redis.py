"""The Redis Streams source and sink against real redis-server processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from modelbus.connectors import make_sink as registry_make_sink
from modelbus.connectors import make_source as registry_make_source
from modelbus.connectors.base import ConnectorContext, OutMessage
from modelbus.connectors.redis import (
    RedisHandle,
    RedisSettings,
    RedisSink,
    RedisSource,
    make_sink,
    make_source,
)
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError, MissingExtra

from ..helpers import (
    drain_through_outages,
    messages,
    numbers,
    opened,
    receive_for,
    receive_n,
    retry_until,
)
from ..servers import RedisServer
from .kit import redis_url

# ---------------------------------------------------------------------------- URLs, no server


def test_url_defaults_and_options() -> None:
    plain = RedisSettings.from_url("redis://localhost/3?stream=orders")
    assert (plain.host, plain.port, plain.db, plain.tls) == ("localhost", 6379, 3, False)
    assert plain.lease_s == 30 and plain.start == "all" and not plain.create
    assert plain.group is None and plain.maxlen is None and plain.body_field == "body"

    full = RedisSettings.from_url(
        "rediss://app:p%40ss@cache:6380?stream=s&group=g&consumer=c&lease_s=2.5&start=new"
        "&delete_acked=true&maxlen=1000&body_field=data&create=yes&wait_replicas=1"
        "&timeout_s=3&ca_file=/ca.pem"
    )
    assert (full.username, full.password, full.tls, full.ca_file) == (
        "app",
        "p@ss",
        True,
        "/ca.pem",
    )
    assert (full.group, full.consumer, full.lease_s, full.start) == ("g", "c", 2.5, "new")
    assert full.delete_acked and full.create and full.maxlen == 1000
    assert (full.body_field, full.wait_replicas, full.timeout_s) == ("data", 1, 3.0)
    assert full.address == "rediss://cache:6380/0"


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis://localhost", "stream"),
        ("redis://localhost?stream=s&colour=red", "unknown option 'colour'"),
        ("redis://localhost?stream=s&stream=t", "twice"),
        ("redis://localhost?stream=s&lease_s=0", "lease_s"),
        ("redis://localhost?stream=s&start=middle", "start"),
        ("redis://localhost/x?stream=s", "database number"),
        ("redis://localhost?stream=s&create=maybe", "true or false"),
    ],
)
def test_malformed_urls_are_refused(url: str, complaint: str) -> None:
    with pytest.raises(DefinitionError, match=complaint):
        RedisSettings.from_url(url)


def test_errors_never_show_the_password() -> None:
    with pytest.raises(DefinitionError) as caught:
        RedisSettings.from_url("redis://:hunter2@localhost?stream=s&bogus=1")
    assert "hunter2" not in str(caught.value)


def test_registry_gives_redis_connectors(ctx: ConnectorContext) -> None:
    assert isinstance(registry_make_source("redis://h?stream=s", ctx), RedisSource)
    assert isinstance(registry_make_sink("rediss://h?stream=s", ctx), RedisSink)


def test_missing_library_gives_the_install_hint(
    ctx: ConnectorContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(MissingExtra, match=r"modelbus\[redis\]"):
        make_source("redis://h?stream=s", ctx)


def test_group_defaults_to_one_per_listener(tmp_path: Path) -> None:
    a = make_source("redis://h?stream=s", ConnectorContext(listener="a", data_dir=tmp_path))
    b = make_source("redis://h?stream=s", ConnectorContext(listener="b", data_dir=tmp_path))
    a2 = make_source("redis://h?stream=s", ConnectorContext(listener="a", data_dir=tmp_path))
    assert a.group == a2.group == "modelbus-a" and b.group == "modelbus-b"
    assert a.consumer != a2.consumer  # replicas of one listener compete


# ------------------------------------------------------------------------ the shared server


async def test_publish_and_receive_round_trip(ctx: ConnectorContext, stream: str) -> None:
    source, sink = (
        make_source(redis_url(stream, create=True), ctx),
        make_sink(redis_url(stream, create=True), ctx),
    )
    body = bytes(range(256))  # binary, not text
    async with opened(source, sink):
        before = time.time()
        await sink.publish([OutMessage(id="x", body=body, attributes={"k": "v", "ü": "ñ\n"})])
        [delivery] = await receive_n(source, 1)
    assert delivery.body == body
    assert delivery.attributes == {"k": "v", "ü": "ñ\n"}
    assert delivery.attempt == 1
    assert isinstance(delivery.handle, RedisHandle)
    assert delivery.message_id == delivery.handle.entry_id
    assert delivery.enqueued_at is not None and abs(delivery.enqueued_at - before) < 5


async def test_batch_receive_keeps_stream_order(ctx: ConnectorContext, stream: str) -> None:
    source, sink = (
        make_source(redis_url(stream, create=True), ctx),
        make_sink(redis_url(stream, create=True), ctx),
    )
    async with opened(source, sink):
        await sink.publish(messages(25))
        first = await source.receive(10, 1)
        rest = await receive_n(source, 15)
    assert len(first) == 10
    assert numbers(first + rest) == list(range(25))


async def test_acked_deliveries_never_come_back(
    ctx: ConnectorContext, stream: str, admin: Any
) -> None:
    url = redis_url(stream, create=True, lease_s=0.5)
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    async with opened(source, sink):
        await sink.publish(messages(3))
        got = await receive_n(source, 3)
        await source.ack(got)
        await source.ack(got)  # idempotent
        assert await receive_for(source, 1.5) == []
    pending = await admin.xpending(stream, source.group)
    assert pending["pending"] == 0


async def test_release_delays_and_keeps_the_message_id(
    ctx: ConnectorContext, stream: str, admin: Any
) -> None:
    url = redis_url(stream, create=True)
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    async with opened(source, sink):
        await sink.publish([OutMessage(id="x", body=b"payload", attributes={"a": "1"})])
        [first] = await receive_n(source, 1)
        released_at = time.monotonic()
        await source.release(first, 1.5)
        assert await receive_for(source, 1.0) == []  # not before the delay
        [second] = await receive_n(source, 1)
        waited_s = time.monotonic() - released_at
        await source.release(second, 0)
        [third] = await receive_n(source, 1)
        await source.ack([third])
        assert await receive_for(source, 1.2) == []
    assert waited_s >= 1.5
    assert first.message_id == second.message_id == third.message_id
    assert [first.attempt, second.attempt, third.attempt] == [1, 2, 3]
    assert second.body == third.body == b"payload"
    assert second.attributes == third.attributes == {"a": "1"}
    assert second.enqueued_at == first.enqueued_at
    # Nothing left behind: the original acked, the copies acked and deleted.
    assert (await admin.xpending(stream, source.group))["pending"] == 0
    keys = [k.decode() async for k in admin.scan_iter(match=f"{stream}:*")]
    lengths = {
        k: await admin.execute_command("XLEN" if "due" not in k else "ZCARD", k) for k in keys
    }
    assert all(length == 0 for length in lengths.values()), lengths


async def test_a_release_reaches_only_its_own_group(tmp_path: Path, stream: str) -> None:
    url = redis_url(stream, create=True)
    a = make_source(url, ConnectorContext(listener="a", data_dir=tmp_path))
    b = make_source(url, ConnectorContext(listener="b", data_dir=tmp_path))
    sink = make_sink(url, ConnectorContext(listener="a", data_dir=tmp_path))
    async with opened(a, b, sink):
        await sink.publish(messages(1))
        [got_a] = await receive_n(a, 1)
        [got_b] = await receive_n(b, 1)
        await b.ack([got_b])
        await a.release(got_a, 0)
        [again_a] = await receive_n(a, 1)
        assert await receive_for(b, 1.2) == []
    assert again_a.message_id == got_a.message_id and again_a.attempt == 2


async def test_extend_keeps_a_delivery_from_other_consumers(
    ctx: ConnectorContext, stream: str
) -> None:
    url = redis_url(stream, create=True, lease_s=1)
    holder, other, sink = make_source(url, ctx), make_source(url, ctx), make_sink(url, ctx)
    async with opened(holder, other, sink):
        await sink.publish(messages(1))
        [held] = await receive_n(holder, 1)

        async def keep_extending() -> None:
            while True:
                await holder.extend([held], 1)
                await asyncio.sleep(0.3)

        extender = asyncio.create_task(keep_extending())
        try:
            seen = await receive_for(other, 2.5)  # more than twice the lease
        finally:
            extender.cancel()
        # Once the holder stops extending, its lease runs out and another consumer gets it.
        [taken] = await receive_n(other, 1)
    assert seen == []
    assert taken.message_id == held.message_id and taken.attempt == 2


async def test_extend_past_the_url_lease_is_renewed_until_due(
    ctx: ConnectorContext, stream: str
) -> None:
    url = redis_url(stream, create=True, lease_s=0.6)
    holder, other, sink = make_source(url, ctx), make_source(url, ctx), make_sink(url, ctx)
    async with opened(holder, other, sink):
        await sink.publish(messages(2))
        held = await receive_n(holder, 2)
        extended_at = time.monotonic()
        await holder.extend(held, 2.0)  # more than three of the URL's leases
        seen = await receive_for(other, 1.5)
        await holder.ack(held[1:])  # settled: no longer renewed, never redelivered
        [taken] = await receive_n(other, 1, within_s=5)
        taken_after_s = time.monotonic() - extended_at
        await other.ack([taken])
        assert await receive_for(other, 1.0) == []
    assert seen == []
    assert taken.message_id == held[0].message_id and taken_after_s >= 2.0


async def test_a_dead_consumers_delivery_is_claimed(
    ctx: ConnectorContext, stream: str, admin: Any
) -> None:
    url = redis_url(stream, create=True, lease_s=1)
    sink = make_sink(url, ctx)
    async with opened(sink):
        await sink.publish(messages(3))
        dead = make_source(url, ctx)
        async with opened(dead):
            taken = await receive_n(dead, 3)  # ... and it "dies" without acking
        survivor = make_source(url, ctx)
        async with opened(survivor):
            claimed = await receive_n(survivor, 3, within_s=10)
            detail = await admin.xpending_range(stream, survivor.group, "-", "+", 10)
            await survivor.ack(claimed)
    assert sorted(d.message_id for d in claimed) == sorted(d.message_id for d in taken)
    assert {d.attempt for d in claimed} == {2}
    assert {row["consumer"].decode() for row in detail} == {survivor.consumer}


async def test_extend_and_release_leave_an_entry_claimed_by_another_alone(
    ctx: ConnectorContext, stream: str, admin: Any
) -> None:
    url = redis_url(stream, create=True, lease_s=0.5)
    slow, quick, sink = make_source(url, ctx), make_source(url, ctx), make_sink(url, ctx)
    async with opened(slow, quick, sink):
        await sink.publish(messages(1))
        [late] = await receive_n(slow, 1)
        [claimed] = await receive_n(quick, 1, within_s=5)  # slow's lease ran out
        await slow.extend([late], 0.5)
        await slow.release(late, 0)
        owners = await admin.xpending_range(stream, quick.group, "-", "+", 10)
        parked = await admin.zcard(f"{stream}:modelbus:{quick.group}:due")
    assert claimed.message_id == late.message_id
    assert [row["consumer"].decode() for row in owners] == [quick.consumer]
    assert parked == 0  # the release made no copy


async def test_a_closed_source_can_be_opened_again(ctx: ConnectorContext, stream: str) -> None:
    url = redis_url(stream, create=True)
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    async with opened(sink):
        await sink.publish(messages(2))
        async with opened(source):
            [first] = await receive_n(source, 1)
            await source.ack([first])
        async with opened(source):  # what the runtime does to recover a failing source
            [second] = await receive_n(source, 1)
            await source.ack([second])
    assert numbers([first, second]) == [0, 1]


async def test_two_listeners_each_get_every_message(tmp_path: Path, stream: str) -> None:
    url = redis_url(stream, create=True)
    first = make_source(url, ConnectorContext(listener="first", data_dir=tmp_path))
    second = make_source(url, ConnectorContext(listener="second", data_dir=tmp_path))
    sink = make_sink(url, ConnectorContext(listener="first", data_dir=tmp_path))
    async with opened(first, second, sink):
        await sink.publish(messages(20))
        got_first = await receive_n(first, 20)
        got_second = await receive_n(second, 20)
        await first.ack(got_first)
        await second.ack(got_second)
    assert sorted(numbers(got_first)) == sorted(numbers(got_second)) == list(range(20))


async def test_replicas_of_one_listener_share_the_work(ctx: ConnectorContext, stream: str) -> None:
    url = redis_url(stream, create=True, lease_s=2)
    one, two, sink = make_source(url, ctx), make_source(url, ctx), make_sink(url, ctx)
    async with opened(one, two, sink):
        await sink.publish(messages(40))
        got: dict[str, list[int]] = {"one": [], "two": []}
        for _ in range(20):
            for name, source in (("one", one), ("two", two)):
                batch = await source.receive(3, 0.2)
                await source.ack(batch)
                got[name] += numbers(batch)
            if len(got["one"]) + len(got["two"]) == 40:
                break
        assert await receive_for(one, 0.3) == []
    assert got["one"] and got["two"]
    assert not set(got["one"]) & set(got["two"])
    assert sorted(got["one"] + got["two"]) == list(range(40))


async def test_a_one_mebibyte_message(ctx: ConnectorContext, stream: str) -> None:
    url = redis_url(stream, create=True)
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    body = os.urandom(1024 * 1024)
    async with opened(source, sink):
        await sink.publish([OutMessage(id="big", body=body)])
        [first] = await receive_n(source, 1)
        await source.release(first, 0)
        [again] = await receive_n(source, 1)
        await source.ack([again])
    assert first.body == again.body == body


async def test_an_entry_from_another_producer_arrives_as_json(
    ctx: ConnectorContext, stream: str, admin: Any
) -> None:
    await admin.xadd(stream, {"user": "ada", "action": "login"})
    source = make_source(redis_url(stream), ctx)
    async with opened(source):
        [delivery] = await receive_n(source, 1)
    assert json.loads(delivery.body) == {"user": "ada", "action": "login"}
    assert delivery.attributes == {}


async def test_body_field_option(ctx: ConnectorContext, stream: str, admin: Any) -> None:
    await admin.xadd(stream, {"data": b"\x00raw", "source": "sensor-1"})
    source = make_source(redis_url(stream, body_field="data"), ctx)
    async with opened(source):
        [delivery] = await receive_n(source, 1)
    assert delivery.body == b"\x00raw" and delivery.attributes == {"source": "sensor-1"}


async def test_start_new_skips_what_the_stream_holds(
    ctx: ConnectorContext, stream: str, admin: Any
) -> None:
    await admin.xadd(stream, {"body": "old"})
    url = redis_url(stream, start="new")
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    async with opened(source, sink):
        await sink.publish([OutMessage(id="new", body=b"new")])
        got = await receive_for(source, 1.0)
    assert [d.body for d in got] == [b"new"]


async def test_delete_acked_removes_entries(ctx: ConnectorContext, stream: str, admin: Any) -> None:
    url = redis_url(stream, create=True, delete_acked=True)
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    async with opened(source, sink):
        await sink.publish(messages(5))
        await source.ack(await receive_n(source, 5))
    assert await admin.xlen(stream) == 0


async def test_maxlen_trims_the_stream(ctx: ConnectorContext, stream: str, admin: Any) -> None:
    sink = make_sink(redis_url(stream, create=True, maxlen=10), ctx)
    async with opened(sink):
        for start in range(0, 1000, 100):
            await sink.publish(messages(100, prefix=f"b{start}-"))
    # MAXLEN ~ trims whole macro nodes (100 entries by default), so "about" 10.
    assert await admin.xlen(stream) <= 200


async def test_close_removes_an_idle_consumer(
    ctx: ConnectorContext, stream: str, admin: Any
) -> None:
    url = redis_url(stream, create=True)
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    async with opened(source, sink):
        await sink.publish(messages(1))
        await source.ack(await receive_n(source, 1))
        during = await admin.xinfo_consumers(stream, source.group)
    after = await admin.xinfo_consumers(stream, source.group)
    assert [c["name"].decode() for c in during] == [source.consumer]
    assert after == []


async def test_close_keeps_a_consumer_with_pending_deliveries(
    ctx: ConnectorContext, stream: str, admin: Any
) -> None:
    url = redis_url(stream, create=True)
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    async with opened(source, sink):
        await sink.publish(messages(1))
        await receive_n(source, 1)
    consumers = await admin.xinfo_consumers(stream, source.group)
    assert [(c["name"].decode(), c["pending"]) for c in consumers] == [(source.consumer, 1)]


async def test_wait_replicas_fails_without_enough_replicas(
    ctx: ConnectorContext, stream: str, admin: Any
) -> None:
    sink = make_sink(redis_url(stream, create=True, wait_replicas=1, timeout_s=0.5), ctx)
    async with opened(sink):
        with pytest.raises(ConnectorError, match="0 of 1 replicas") as caught:
            await sink.publish(messages(2))
    assert not caught.value.permanent
    assert await admin.xlen(stream) == 2  # on the primary, not known to be replicated


# ------------------------------------------------------------------------- failures at open


async def test_a_missing_stream_is_a_config_error_naming_the_listener(
    ctx: ConnectorContext, stream: str
) -> None:
    for connector in (make_source(redis_url(stream), ctx), make_sink(redis_url(stream), ctx)):
        with pytest.raises(ConnectorConfigError, match="redis-test") as caught:
            await connector.open()
        assert stream in str(caught.value) and "create=true" in str(caught.value)


async def test_a_key_of_another_type_is_a_config_error(
    ctx: ConnectorContext, stream: str, admin: Any
) -> None:
    await admin.set(stream, "not a stream")
    with pytest.raises(ConnectorConfigError, match="holds a string"):
        await make_source(redis_url(stream, create=True), ctx).open()


async def test_a_reserved_attribute_name_is_refused_permanently(
    ctx: ConnectorContext, stream: str, admin: Any
) -> None:
    sink = make_sink(redis_url(stream, create=True), ctx)
    async with opened(sink):
        with pytest.raises(ConnectorError) as caught:
            await sink.publish([OutMessage(id="a", body=b"1", attributes={"body": "x"})])
    assert caught.value.permanent and "reserved" in str(caught.value)
    assert await admin.exists(stream) == 0 or await admin.xlen(stream) == 0


async def test_bad_credentials_name_the_listener_not_the_password(
    ctx: ConnectorContext, tmp_path: Path
) -> None:
    with RedisServer(tmp_path / "redis", password="right-one") as server:
        assert isinstance(server, RedisServer)
        for password in ("wrong-one", None):
            url = server.url(password=password, stream="s", create=True)
            with pytest.raises(ConnectorConfigError, match="redis-test") as caught:
                await make_source(url, ctx).open()
            assert "wrong-one" not in str(caught.value)
        good = make_sink(server.url(password="right-one", stream="s", create=True), ctx)
        async with opened(good):
            await good.publish(messages(1))


async def test_unreachable_at_start_then_comes_up(ctx: ConnectorContext, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    url = server.url(stream="s", create=True, timeout_s=2)
    source = make_source(url, ctx)
    with pytest.raises(ConnectorError, match="redis-test") as caught:
        await source.open()
    assert not caught.value.permanent  # transient: the runtime retries with backoff
    server.start()
    try:
        await retry_until(source.open)
        await source.close()
    finally:
        server.kill()


async def test_nothing_is_lost_when_the_server_restarts_mid_run(
    ctx: ConnectorContext, tmp_path: Path
) -> None:
    """Publish and consume while redis-server is killed (SIGKILL) and restarted: the same
    source and sink objects resume, every published message is acked at least once, and a
    release parked before the crash still comes back."""
    with RedisServer(tmp_path / "redis") as server:
        url = server.url(stream="s", create=True, lease_s=1, timeout_s=2)
        source, sink = make_source(url, ctx), make_sink(url, ctx)
        published: set[bytes] = {b"parked"}
        acked: set[bytes] = set()
        async with opened(source, sink):
            await sink.publish([OutMessage(id="parked", body=b"parked")])
            [parked] = await receive_n(source, 1)
            await source.release(parked, 2.0)
            for round_ in range(6):
                batch = bodies(f"r{round_}-", 10)
                await retry_until(partial(sink.publish, batch))
                published |= {m.body for m in batch}
                if round_ == 3:
                    held = await source.receive(5, 0.5)  # in flight when the server dies
                    server.kill()
                    with pytest.raises(ConnectorError) as caught:
                        await source.ack(held)
                    assert not caught.value.permanent
                    server.start()
                deliveries = await retry_until(partial(source.receive, 10, 0.5))
                await retry_until(partial(source.ack, deliveries))
                acked |= {d.body for d in deliveries}
            acked |= {d.body for d in await drain_through_outages(source, quiet_s=3)}
    assert published <= acked


def bodies(prefix: str, count: int) -> list[OutMessage]:
    """Messages whose body is their id."""
    return [OutMessage(id=f"{prefix}{i}", body=f"{prefix}{i}".encode()) for i in range(count)]
