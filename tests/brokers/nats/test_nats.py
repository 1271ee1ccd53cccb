"""The NATS JetStream source and sink against real nats-server processes."""

from __future__ import annotations

import asyncio
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
from modelbus.connectors.nats import (
    NatsHandle,
    NatsSettings,
    NatsSink,
    NatsSource,
    default_durable,
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
from ..servers import NatsServer
from .kit import nats_url

# ---------------------------------------------------------------------------- URLs, no server


def test_url_defaults_and_options() -> None:
    plain = NatsSettings.from_url("nats://broker?stream=orders")
    assert plain.servers == ("nats://broker:4222",)
    assert plain.lease_s == 30 and plain.start == "all" and not plain.create
    assert plain.durable is None and plain.max_deliver is None and plain.subject is None

    full = NatsSettings.from_url(
        "nats://app:p%40ss@a:4223,b?stream=s&subject=s.in&durable=d&lease_s=2&max_deliver=9"
        "&max_ack_pending=50&start=new&create=true&timeout_s=3&tls=true&ca_file=/ca.pem"
    )
    assert full.servers == ("nats://a:4223", "nats://b:4222")
    assert (full.user, full.password, full.token) == ("app", "p@ss", None)
    assert (full.stream, full.subject, full.durable) == ("s", "s.in", "d")
    assert (full.lease_s, full.max_deliver, full.max_ack_pending) == (2.0, 9, 50)
    assert full.start == "new" and full.create and full.tls and full.ca_file == "/ca.pem"

    token = NatsSettings.from_url("nats://s3cret@broker:4222?stream=s")
    assert (token.token, token.user, token.password) == ("s3cret", None, None)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("nats://h?stream=s&colour=red", "unknown option 'colour'"),
        ("nats://h?stream=a.b", "stream="),
        ("nats://h?stream=s&durable=x*y", "durable="),
        ("nats://h?stream=s&lease_s=-1", "lease_s"),
        ("nats://h:port?stream=s", "HOST:PORT"),
        ("nats://h?stream=s&start=later", "start"),
        ("amqp://h?stream=s", "not a nats"),
    ],
)
def test_malformed_urls_are_refused(url: str, complaint: str) -> None:
    with pytest.raises(DefinitionError, match=complaint):
        NatsSettings.from_url(url)


def test_a_source_needs_a_stream_and_a_sink_a_subject(ctx: ConnectorContext) -> None:
    with pytest.raises(DefinitionError, match="stream"):
        make_source("nats://h?subject=x", ctx)
    with pytest.raises(DefinitionError, match="subject"):
        make_sink("nats://h?stream=x", ctx)


def test_errors_never_show_the_password() -> None:
    with pytest.raises(DefinitionError) as caught:
        NatsSettings.from_url("nats://u:hunter2@h?stream=s&bogus=1")
    assert "hunter2" not in str(caught.value)


def test_registry_gives_nats_connectors(ctx: ConnectorContext) -> None:
    assert isinstance(registry_make_source("nats://h?stream=s", ctx), NatsSource)
    assert isinstance(registry_make_sink("nats://h?subject=s.in", ctx), NatsSink)


def test_missing_library_gives_the_install_hint(
    ctx: ConnectorContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)
    with pytest.raises(MissingExtra, match=r"modelbus\[nats\]"):
        make_source("nats://h?stream=s", ctx)


def test_durable_defaults_to_one_per_listener(tmp_path: Path) -> None:
    source = make_source(
        "nats://h?stream=s", ConnectorContext(listener="ocr.v1 x", data_dir=tmp_path)
    )
    assert source.durable == default_durable("ocr.v1 x") == "modelbus-ocr_v1_x"


# ------------------------------------------------------------------------ the shared server


async def test_publish_and_receive_round_trip(ctx: ConnectorContext, stream: str) -> None:
    url = nats_url(stream, create=True)
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    body = bytes(range(256))
    awkward = {
        "plain": "v",
        "unicode": "ñü",
        "lines": "first\r\nsecond",
        "padded": "  spaced  ",
        "lookalike": "=?utf-8?b?aGk=?=",
        "empty": "",
    }
    async with opened(source, sink):
        before = time.time()
        await sink.publish([OutMessage(id="x", body=body, attributes=awkward)])
        [delivery] = await receive_n(source, 1)
    assert delivery.body == body
    assert delivery.attributes == awkward
    assert delivery.attempt == 1
    assert isinstance(delivery.handle, NatsHandle)
    assert delivery.message_id == str(delivery.handle.sequence) == "1"
    assert delivery.enqueued_at is not None and abs(delivery.enqueued_at - before) < 5


async def test_publishing_an_id_twice_stores_it_once(ctx: ConnectorContext, stream: str) -> None:
    url = nats_url(stream, create=True)
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    async with opened(source, sink):
        batch = messages(3)
        await sink.publish(batch)
        await sink.publish(batch)  # the runtime retrying a batch
        got = await receive_for(source, 1.0)
    assert numbers(got) == [0, 1, 2]


async def test_batch_receive_keeps_stream_order(ctx: ConnectorContext, stream: str) -> None:
    url = nats_url(stream, create=True)
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    async with opened(source, sink):
        await sink.publish(messages(25))
        first = await source.receive(10, 1)
        rest = await receive_n(source, 15)
    assert len(first) == 10
    assert numbers(first + rest) == list(range(25))


async def test_acked_deliveries_never_come_back(
    ctx: ConnectorContext, stream: str, js: Any
) -> None:
    url = nats_url(stream, create=True, lease_s=0.5)
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    async with opened(source, sink):
        await sink.publish(messages(3))
        got = await receive_n(source, 3)
        await source.ack(got)
        await source.ack(got)  # idempotent
        assert await receive_for(source, 1.5) == []
        info = await js.consumer_info(stream, source.durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_release_delays_and_keeps_the_message_id(ctx: ConnectorContext, stream: str) -> None:
    url = nats_url(stream, create=True)
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
        assert await receive_for(source, 1.0) == []
    assert waited_s >= 1.5
    assert first.message_id == second.message_id == third.message_id
    assert [first.attempt, second.attempt, third.attempt] == [1, 2, 3]
    assert second.body == third.body == b"payload" and third.attributes == {"a": "1"}


async def test_extend_keeps_a_delivery_from_other_consumers(
    ctx: ConnectorContext, stream: str
) -> None:
    url = nats_url(stream, create=True, lease_s=1)
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
        [taken] = await receive_n(other, 1)
    assert seen == []
    assert taken.message_id == held.message_id and taken.attempt == 2


async def test_extend_past_the_url_lease_is_renewed_until_due(
    ctx: ConnectorContext, stream: str
) -> None:
    url = nats_url(stream, create=True, lease_s=0.6)
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


async def test_a_dead_consumers_delivery_is_redelivered(ctx: ConnectorContext, stream: str) -> None:
    url = nats_url(stream, create=True, lease_s=1)
    sink = make_sink(url, ctx)
    async with opened(sink):
        await sink.publish(messages(3))
        dead = make_source(url, ctx)
        async with opened(dead):
            taken = await receive_n(dead, 3)  # ... and it "dies" without acking
        survivor = make_source(url, ctx)
        async with opened(survivor):
            again = await receive_n(survivor, 3, within_s=10)
            await survivor.ack(again)
    assert sorted(d.message_id for d in again) == sorted(d.message_id for d in taken)
    assert {d.attempt for d in again} == {2}


async def test_a_closed_source_can_be_opened_again(ctx: ConnectorContext, stream: str) -> None:
    url = nats_url(stream, create=True)
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
    url = nats_url(stream, create=True)
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
    url = nats_url(stream, create=True, lease_s=5)
    one, two, sink = make_source(url, ctx), make_source(url, ctx), make_sink(url, ctx)
    async with opened(one, two, sink):
        await sink.publish(messages(40))
        got: dict[str, list[int]] = {"one": [], "two": []}
        for _ in range(30):
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


async def test_the_consumer_follows_the_url(ctx: ConnectorContext, stream: str, js: Any) -> None:
    first = make_source(nats_url(stream, create=True, lease_s=3, max_deliver=7), ctx)
    async with opened(first):
        created = (await js.consumer_info(stream, first.durable)).config
    second = make_source(nats_url(stream, lease_s=4, max_ack_pending=20), ctx)
    async with opened(second):
        updated = (await js.consumer_info(stream, second.durable)).config
    assert (created.ack_wait, created.max_deliver, created.filter_subject) == (
        3.0,
        7,
        f"{stream}.in",
    )
    assert (updated.ack_wait, updated.max_deliver, updated.max_ack_pending) == (4.0, -1, 20)


async def test_a_message_over_max_payload_is_refused_permanently(
    ctx: ConnectorContext, stream: str
) -> None:
    url = nats_url(stream, create=True)
    sink = make_sink(url, ctx)
    async with opened(sink):
        with pytest.raises(ConnectorError, match="max_payload") as caught:
            await sink.publish([OutMessage(id="big", body=os.urandom(1024 * 1024))])
    assert caught.value.permanent and "nats-test" in str(caught.value)


async def test_a_bad_attribute_name_is_refused_permanently(
    ctx: ConnectorContext, stream: str
) -> None:
    sink = make_sink(nats_url(stream, create=True), ctx)
    async with opened(sink):
        for name in ("has space", "colon:name", "Nats-Expected-Stream"):
            with pytest.raises(ConnectorError) as caught:
                await sink.publish([OutMessage(id="a", body=b"1", attributes={name: "x"})])
            assert caught.value.permanent


# ------------------------------------------------------------------------- failures at open


async def test_a_missing_stream_is_a_config_error_naming_the_listener(
    ctx: ConnectorContext, stream: str
) -> None:
    for connector in (make_source(nats_url(stream), ctx), make_sink(nats_url(stream), ctx)):
        with pytest.raises(ConnectorConfigError, match="nats-test") as caught:
            await connector.open()
        assert stream in str(caught.value)


async def test_a_subject_no_stream_captures_is_a_config_error(
    ctx: ConnectorContext, stream: str
) -> None:
    sink = make_sink(f"nats://127.0.0.1:4222?subject={stream}.nowhere", ctx)
    with pytest.raises(ConnectorConfigError, match="no JetStream stream captures"):
        await sink.open()


async def test_a_private_server(ctx: ConnectorContext, tmp_path: Path) -> None:
    """On a server of our own: bad credentials, then a 1 MiB message once max_payload
    allows it."""
    server = NatsServer(
        tmp_path / "nats", user="app", password="right-one", max_payload_bytes=8 << 20
    )
    with server:
        for auth in ("app:wrong-one", ""):
            url = server.url(auth=auth, stream="s", subject="s.in", create=True)
            with pytest.raises(ConnectorConfigError, match="nats-test") as caught:
                await make_source(url, ctx).open()
            assert "wrong-one" not in str(caught.value)
        url = server.url(auth="app:right-one", stream="s", subject="s.in", create=True)
        source, sink = make_source(url, ctx), make_sink(url, ctx)
        body = os.urandom(1024 * 1024)
        async with opened(source, sink):
            await sink.publish([OutMessage(id="big", body=body, attributes={"a": "b"})])
            [first] = await receive_n(source, 1)
            await source.release(first, 0)
            [again] = await receive_n(source, 1)
            await source.ack([again])
    assert first.body == again.body == body and again.attempt == 2


async def test_unreachable_at_start_then_comes_up(ctx: ConnectorContext, tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    source = make_source(server.url(stream="s", subject="s.in", create=True), ctx)
    with pytest.raises(ConnectorError, match="nats-test") as caught:
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
    """Publish and consume while nats-server is killed (SIGKILL) and restarted: the same
    source and sink objects resume (the client reconnects), every published message is
    acked at least once, and a delayed release from before the crash still comes back."""
    with NatsServer(tmp_path / "nats") as server:
        url = server.url(stream="s", subject="s.in", create=True, lease_s=1, timeout_s=2)
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
