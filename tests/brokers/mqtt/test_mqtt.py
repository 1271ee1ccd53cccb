"""The MQTT connector against the real Mosquitto on 127.0.0.1:1883 (and private instances
for broker restarts and passwords): every verb, as the connector contract defines it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from modelbus.connectors import ConnectorContext, OutMessage, make_sink, make_source
from modelbus.connectors.mqtt import (
    MqttSettings,
    MqttSink,
    MqttSource,
    decode_envelope,
    encode_envelope,
)
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError

from ..helpers import (
    ConsumerProcess,
    drain,
    free_port,
    messages,
    n_of,
    nothing_within,
    receive_until,
    unique,
)
from .conftest import PrivateMosquitto, mqtt_url, remove_sessions

VERSIONS = ["5", "3.1.1"]


def url_for(topic: str, version: str, **options: object) -> str:
    """A URL for both ends: version 3.1.1 sinks wrap messages in envelopes (ids and
    attributes travel); version 5 sessions expire soon after the test."""
    extra: dict[str, object] = {"session_expiry_s": 60} if version == "5" else {"envelope": True}
    return mqtt_url(topic, version=version, **extra, **options)


async def opened(url: str, ctx: ConnectorContext) -> tuple[MqttSource, MqttSink]:
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    assert isinstance(source, MqttSource) and isinstance(sink, MqttSink)
    await sink.open()
    await source.open()
    return source, sink


async def close(*ends: Any) -> None:
    for end in ends:
        await end.close()


# --- URLs and envelopes -----------------------------------------------------------------------


def test_url_options_are_parsed() -> None:
    settings = MqttSettings.from_url(
        "mqtts://bob:p%40ss@broker.example/sensors/%2B/temp/%23?version=3.1.1&group=g&inflight=5"
    )
    assert (settings.host, settings.port, settings.tls, settings.version) == (
        "broker.example",
        8883,
        True,
        4,
    )
    assert (settings.user, settings.password) == ("bob", "p@ss")
    assert settings.topic == "sensors/+/temp/#"
    assert (settings.group, settings.inflight) == ("g", 5)
    assert MqttSettings.from_url("mqtt://localhost/a/#").topic == "a/#"
    default = MqttSettings.from_url("mqtt://localhost/a")
    assert (default.port, default.version, default.user, default.group) == (1883, 5, None, None)
    assert (default.shared, default.keepalive_s) == (True, 10)
    assert not MqttSettings.from_url("mqtt://localhost/a?shared=false").shared


@pytest.mark.parametrize(
    "url",
    [
        "mqtt://localhost/",
        "mqtt://localhost/a?qos=0",
        "mqtt://localhost/a?qos=2",
        "mqtt://localhost/a?version=4.2",
        "mqtt://localhost/a?group=x/y",
        "mqtt://localhost/a?shared=maybe",
        "mqtt://localhost/a?keepalive_s=2",
        "mqtt://localhost/a?colour=blue",
        "mqtt://localhost/a#b",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(DefinitionError):
        MqttSettings.from_url(url)


def test_a_sink_refuses_a_wildcard_topic(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="wildcards"):
        make_sink("mqtt://localhost/a/%23", ConnectorContext(listener="l", data_dir=tmp_path))


def test_envelopes_round_trip_and_foreign_payloads_are_left_alone() -> None:
    header = {"id": "x", "attempt": 3, "attributes": {"a": "b"}}
    assert decode_envelope(encode_envelope(b"\x00body", header)) == (b"\x00body", header)
    assert decode_envelope(b'{"plain": "json"}') is None


# --- receiving and settling -----------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_published_messages_arrive_with_body_id_and_attributes(
    mosquitto: int, ctx: ConnectorContext, topic: str, version: str
) -> None:
    source, sink = await opened(url_for(topic, version), ctx)
    try:
        sent = messages(3)
        await sink.publish(sent)
        got = await receive_until(source, 3)
        assert [d.message_id for d in got] == [m.id for m in sent]
        assert [d.body for d in got] == [m.body for m in sent]
        for delivery in got:
            assert delivery.attributes["n"] == str(n_of(delivery))
            assert delivery.attributes["mqtt-topic"] == topic
            assert delivery.attempt == 1
        assert source.lease_s is None
        await source.ack(got)
        await source.ack(got)  # idempotent
    finally:
        await close(source, sink)
    # PUBACKed for good: the session, resumed, holds nothing.
    await source.open()
    try:
        assert await nothing_within(source, 0.5)
    finally:
        await source.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_attributes_with_control_characters_round_trip(
    mosquitto: int, ctx: ConnectorContext, topic: str, version: str
) -> None:
    # A dead letter's stack trace has newlines, which Mosquitto refuses in a user property
    # ("malformed UTF-8", connection dropped): the sink escapes them, the source unescapes.
    attributes = {
        "trace": 'Traceback:\n  File "m.py"\tline 1\r\n\x00end',
        "tenant": "100% acme",
        "key\nwith newline": "v",
        "plain": "%41 stays %41",
    }
    source, sink = await opened(url_for(topic, version), ctx)
    try:
        await sink.publish([OutMessage(id="esc-1", body=b"{}", attributes=attributes)])
        (got,) = await receive_until(source, 1)
        await source.ack([got])
    finally:
        await close(source, sink)
    assert {k: v for k, v in got.attributes.items() if k != "mqtt-topic"} == attributes


async def test_a_bare_3_1_1_message_gets_a_content_id_that_survives_a_resend(
    mosquitto: int, ctx: ConnectorContext, topic: str
) -> None:
    url = mqtt_url(topic, version="3.1.1")
    source, sink = await opened(url, ctx)
    try:
        await sink.publish([OutMessage(id="dropped", body=b"raw", attributes={"gone": "yes"})])
        (first,) = await receive_until(source, 1)
        assert first.body == b"raw" and first.message_id.startswith("sha256:")
        assert "gone" not in first.attributes
        await source.close()  # without PUBACK: the session keeps it
        await source.open()
        (again,) = await receive_until(source, 1)
        assert (again.message_id, again.attempt) == (first.message_id, 2)
        await source.ack([again])
    finally:
        await close(source, sink)


async def test_unacked_deliveries_come_back_to_the_same_replica_flagged_as_resends(
    mosquitto: int, ctx: ConnectorContext, topic: str
) -> None:
    source, sink = await opened(url_for(topic, "5"), ctx)
    try:
        await sink.publish(messages(2))
        got = await receive_until(source, 2)
        first_client = source.client_id
        await source.ack(got[:1])
        await source.close()
        await source.open()
        assert source.client_id == first_client  # same slot, same session
        (again,) = await receive_until(source, 1)
        assert (again.message_id, again.attempt) == (got[1].message_id, 2)
        await source.ack([got[1]])  # from the closed connection: skipped, not an error
        await source.ack([again])
        assert await nothing_within(source, 0.5)
    finally:
        await close(source, sink)


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_listener_moved_to_another_topic_gets_a_new_session(
    mosquitto: int, ctx: ConnectorContext, topic: str, version: str
) -> None:
    """A persistent session keeps its subscriptions: the source of a listener whose topic
    changed must not resume the old session, or the old topic's messages would keep coming."""
    old = make_source(url_for(topic, version), ctx)
    await old.open()
    old_client = old.client_id
    await old.close()
    new_url = url_for(f"{topic}-moved", version)
    source = make_source(new_url, ctx)
    await source.open()
    sink_old, sink_new = make_sink(url_for(topic, version), ctx), make_sink(new_url, ctx)
    await sink_old.open()
    await sink_new.open()
    try:
        wanted = messages(2, prefix="new")
        await sink_old.publish(messages(3, prefix="old"))
        await sink_new.publish(wanted)
        got = await receive_until(source, 2)
        await source.ack(got)
        assert sorted(d.message_id for d in got) == sorted(m.id for m in wanted)
        assert await nothing_within(source, 0.5)
        assert source.client_id != old_client
    finally:
        await close(source, sink_old, sink_new)


async def test_extend_is_a_no_op_because_the_session_holds_deliveries_until_acked(
    mosquitto: int, ctx: ConnectorContext, topic: str
) -> None:
    url = url_for(topic, "5")
    source, sink = await opened(url, ctx)
    other = make_source(url, ctx)
    await other.open()  # the same listener: another slot in the same group
    try:
        await sink.publish(messages(1))
        await asyncio.sleep(0.3)
        held = await source.receive(1, 0.5) or await other.receive(1, 0.5)
        assert len(held) == 1
        holder, idle = (source, other) if await nothing_within(other, 0) else (other, source)
        await holder.extend(held, 1.0)
        assert await nothing_within(idle, 1.5) and await nothing_within(holder, 0.2)
        await holder.ack(held)
    finally:
        await close(other, source, sink)


# --- release: retries kept by modelbus -------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_release_with_delay_hides_then_redelivers_with_the_next_attempt(
    mosquitto: int, ctx: ConnectorContext, topic: str, version: str
) -> None:
    source, sink = await opened(url_for(topic, version), ctx)
    try:
        await sink.publish(
            [OutMessage(id="keep-me", body=b"\x00\xffbinary", attributes={"k": "v"})]
        )
        (first,) = await receive_until(source, 1)
        released_at = time.monotonic()
        await source.release(first, 1.5)
        assert await nothing_within(source, 1.2)
        (again,) = await receive_until(source, 1, timeout_s=10)
        assert time.monotonic() - released_at >= 1.5
        assert (again.message_id, again.body, again.attempt) == ("keep-me", first.body, 2)
        assert again.attributes["k"] == "v" and again.attributes["mqtt-topic"] == topic
        await source.release(again, 0)
        (third,) = await receive_until(source, 1, timeout_s=5)
        assert (third.message_id, third.attempt) == ("keep-me", 3)
        await source.ack([third])
        assert await nothing_within(source, 0.5)
    finally:
        await close(source, sink)


async def test_a_released_message_is_kept_in_the_data_directory_across_a_restart(
    mosquitto: int, ctx: ConnectorContext, topic: str
) -> None:
    url = url_for(topic, "5")
    source, sink = await opened(url, ctx)
    await sink.publish(messages(1))
    (first,) = await receive_until(source, 1)
    await source.release(first, 1.0)
    await source.close()  # the process "stops" before the retry is due
    await asyncio.sleep(1.5)
    restarted = make_source(url, ctx)  # a new source of the same listener and data directory
    await restarted.open()
    try:
        (again,) = await receive_until(restarted, 1, timeout_s=10)
        assert (again.message_id, again.attempt) == (first.message_id, 2)
        await restarted.ack([again])
        assert await nothing_within(restarted, 1.2)  # published once, deleted after
    finally:
        await close(restarted, sink)


# --- redelivery, batches, order, size ---------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_deliveries_of_a_killed_consumer_come_back_when_it_restarts(
    mosquitto: int, ctx: ConnectorContext, topic: str, version: str
) -> None:
    url = url_for(topic, version)
    sink = make_sink(url, ctx)
    await sink.open()
    holder = ConsumerProcess("hold", url, ctx.listener, str(ctx.data_dir), "3")
    restarted = ConsumerProcess("drain", url, ctx.listener, str(ctx.data_dir), "1.5")
    try:
        await holder.start()
        assert await holder.line() == "ready"  # subscribed: what is published now is its
        await sink.publish(messages(3))
        taken = json.loads(await holder.line())
        assert len(taken) == 3
        await holder.kill()
        await restarted.start()  # same listener and data directory: the same session
        lines = await restarted.output()
        assert lines[0] == "ready" and lines[-1] == "done"
        pairs = list(zip(lines[1:-1:2], lines[2:-1:2], strict=True))
        assert sorted(i for i, _ in pairs) == sorted(taken)
        assert {a for _, a in pairs} == {"2"}
    finally:
        await holder.kill()
        await restarted.kill()
        await sink.close()


async def test_batch_receive_returns_several_and_never_more_than_asked(
    mosquitto: int, ctx: ConnectorContext, topic: str
) -> None:
    source, sink = await opened(url_for(topic, "5"), ctx)
    try:
        await sink.publish(messages(12))
        batches = []
        while sum(map(len, batches)) < 12:
            batch = await source.receive(5, 2.0)
            assert 0 < len(batch) <= 5
            batches.append(batch)
            await source.ack(batch)
        assert sorted(n_of(d) for b in batches for d in b) == list(range(12))
        assert max(map(len, batches)) > 1
    finally:
        await close(source, sink)


@pytest.mark.parametrize("version", VERSIONS)
async def test_one_consumer_receives_in_publish_order(
    mosquitto: int, ctx: ConnectorContext, topic: str, version: str
) -> None:
    source, sink = await opened(url_for(topic, version), ctx)
    try:
        await sink.publish(messages(50))
        got: list[Any] = []
        while len(got) < 50:
            batch = await receive_until(source, 10)  # 20 in flight at most: ack as we go
            assert batch
            await source.ack(batch)
            got += batch
        assert [n_of(d) for d in got] == list(range(50))
    finally:
        await close(source, sink)


async def test_a_one_mebibyte_message_round_trips(
    mosquitto: int, ctx: ConnectorContext, topic: str
) -> None:
    body = os.urandom(1024 * 1024)
    source, sink = await opened(url_for(topic, "5"), ctx)
    try:
        await sink.publish([OutMessage(id="big", body=body)])
        (got,) = await receive_until(source, 1)
        assert got.body == body
        await source.release(got, 0.1)
        (again,) = await receive_until(source, 1)
        assert again.body == body and again.attempt == 2
        await source.ack([again])
    finally:
        await close(source, sink)


# --- several consumers ----------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_competing_consumers_share_the_work_and_settle_each_message_once(
    mosquitto: int, ctx: ConnectorContext, topic: str, version: str
) -> None:
    url = url_for(topic, version)
    source, sink = await opened(url, ctx)
    other = ConsumerProcess("drain", url, ctx.listener, str(ctx.data_dir), "1.5")
    try:
        await other.start()
        assert await other.line() == "ready"
        await asyncio.sleep(0.5)  # its subscription is in place
        await sink.publish(messages(40))
        mine = await drain(source, idle_s=1.5, work_s=0.01)
        lines = await other.output()
        assert lines[-1] == "done"
        theirs = lines[:-1][::2]
    finally:
        await other.kill()
        await close(source, sink)
    assert not set(mine) & set(theirs), "a message was settled by both consumers"
    assert len(mine) + len(theirs) == 40 == len(set(mine) | set(theirs))
    assert mine and theirs, "one consumer got all the work"


async def test_two_listeners_each_receive_every_message(
    mosquitto: int, tmp_path: Path, topic: str
) -> None:
    contexts = [
        ConnectorContext(listener=unique("mbtest"), data_dir=tmp_path / "data") for _ in range(2)
    ]
    url = url_for(topic, "5")
    sources = [make_source(url, c) for c in contexts]
    sink = make_sink(url, contexts[0])
    try:
        for end in [*sources, sink]:
            await end.open()
        await sink.publish(messages(5))
        for source in sources:
            got = await receive_until(source, 5)
            assert sorted(n_of(d) for d in got) == list(range(5))
            await source.release(got[0], 0.1)  # a retry goes to this listener only
            (again,) = await receive_until(source, 1)
            await source.ack([*got[1:], again])
        for source in sources:
            assert await nothing_within(source, 0.5)
    finally:
        await close(*sources, sink)
        for context in contexts:
            remove_sessions(context, 1883)


# --- errors ---------------------------------------------------------------------------------


async def test_refused_credentials_are_configuration_errors_naming_the_listener(
    tmp_path: Path, ctx: ConnectorContext, topic: str
) -> None:
    broker = PrivateMosquitto(tmp_path / "auth", passwords={"alice": "secret"})
    await broker.start()
    try:
        for user in ("alice:wrong", "mallory:secret", ""):
            for end in (make_source, make_sink):
                opening = end(mqtt_url(topic, port=broker.port, user=user), ctx)
                with pytest.raises(ConnectorConfigError, match=ctx.listener) as caught:
                    await opening.open()
                assert "wrong" not in str(caught.value)
        source = make_source(mqtt_url(topic, port=broker.port, user="alice:secret"), ctx)
        await source.open()
        await source.close()
    finally:
        await broker.stop(signal.SIGKILL)


async def test_an_unreachable_broker_is_a_transient_error(ctx: ConnectorContext) -> None:
    for end in (make_source, make_sink):
        opening = end(mqtt_url("a", port=free_port(), timeout_s=2), ctx)
        with pytest.raises(ConnectorError, match=ctx.listener) as caught:
            await opening.open()
        assert not caught.value.permanent


# --- the broker restarted mid-run -------------------------------------------------------------


async def test_a_broker_restart_mid_run_loses_nothing(
    private_mosquitto: PrivateMosquitto, ctx: ConnectorContext, topic: str
) -> None:
    broker = private_mosquitto
    url = mqtt_url(topic, port=broker.port, timeout_s=2)
    sent = messages(300)
    source, sink = make_source(url, ctx), make_sink(url, ctx)
    await source.open()
    await sink.open()
    seen: set[str] = set()
    consuming = asyncio.create_task(_consume_like_the_runtime(source, seen, len(sent)))
    try:
        await _publish_like_the_runtime(sink, sent[:150])
        await asyncio.sleep(0.2)
        await broker.stop()  # mid-run, with messages in flight and queued
        await asyncio.sleep(0.5)
        await broker.start()
        await _publish_like_the_runtime(sink, sent[150:])
        await asyncio.wait_for(consuming, 60)
    finally:
        consuming.cancel()
        await close(source, sink)
        remove_sessions(ctx, broker.port)
    assert seen == {m.id for m in sent}


@pytest.mark.parametrize("version", VERSIONS)
async def test_an_unshared_session_keeps_what_comes_while_the_broker_restarts(
    private_mosquitto: PrivateMosquitto, ctx: ConnectorContext, topic: str, version: str
) -> None:
    """``shared=false``: a plain subscription, which Mosquitto restores with the session after
    a restart (its shared ones it forgets), so what is published after the restart and
    before the listener is back is queued for it."""
    broker = private_mosquitto
    url = url_for(topic, version, port=broker.port, timeout_s=2, shared=False)
    source = make_source(url, ctx)
    await source.open()  # the session and its subscription
    await source.close()
    await broker.stop()
    await broker.start()
    sent = messages(20)
    sink = make_sink(url, ctx)
    await sink.open()
    try:
        await sink.publish(sent)
    finally:
        await sink.close()
    source = make_source(url, ctx)
    await source.open()
    try:
        got = await receive_until(source, len(sent))
        await source.ack(got)
    finally:
        await source.close()
        remove_sessions(ctx, broker.port)
    assert sorted(d.message_id for d in got) == sorted(m.id for m in sent)


async def _publish_like_the_runtime(sink: MqttSink, sent: list[OutMessage]) -> None:
    """Publish in batches of 10; a failed batch is published again after reopening."""
    for start in range(0, len(sent), 10):
        while True:
            try:
                await sink.publish(sent[start : start + 10])
                break
            except ConnectorError:
                await asyncio.sleep(0.2)
                await _reopen(sink)


async def _consume_like_the_runtime(source: MqttSource, seen: set[str], total: int) -> None:
    """Receive and ack; on a ConnectorError close and reopen (with backoff), as the
    listener runtime does. Returns once every id was seen."""
    while len(seen) < total:
        try:
            got = await source.receive(20, 0.5)
            seen.update(d.message_id for d in got)
            await source.ack(got)
        except ConnectorError:
            await asyncio.sleep(0.2)
            await _reopen(source)


async def _reopen(end: MqttSource | MqttSink) -> None:
    await end.close()
    with contextlib.suppress(ConnectorError):  # still down: the next call comes back here
        await end.open()
