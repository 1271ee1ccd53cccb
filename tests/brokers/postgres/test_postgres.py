"""The PostgreSQL outbox connector against the real server on 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import asyncpg
import pytest

from modelbus.connectors import make_sink, make_source
from modelbus.connectors.base import ConnectorContext, OutMessage
from modelbus.connectors.postgres import OutboxSettings, OutboxSink, OutboxSource, outbox_sql
from modelbus.errors import ConnectorConfigError, ConnectorError, DefinitionError

from ..helpers import (
    drain,
    held_by_killed_process,
    messages,
    n_of,
    nothing_within,
    receive_until,
    unique,
)
from .conftest import outbox_url

pytestmark = pytest.mark.postgres

Pair = tuple[OutboxSource, OutboxSink]


# ---- URLs


def test_url_options_are_parsed() -> None:
    settings = OutboxSettings.from_url(
        "postgres://u:secret@db:5433/app?table=jobs.events&lease_s=60&poll_s=5&create=true"
    )
    assert settings.table == "jobs.events" and settings.quoted_table == '"jobs"."events"'
    assert (settings.lease_s, settings.poll_s, settings.create) == (60, 5.0, True)
    assert settings.dsn == "postgres://u:secret@db:5433/app"
    assert "secret" not in settings.where()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/db",
        "postgresql://h/db?table=a;drop",
        "postgresql://h/db?table=a.b.c",
        "postgresql:///db?table=t",
        "postgresql://h/?table=t",
        "postgresql://h/db?table=t&lease_s=0",
        "postgresql://h/db?table=t&unknown=1",
    ],
)
def test_malformed_urls_are_refused(url: str, ctx: ConnectorContext) -> None:
    with pytest.raises(DefinitionError):
        make_source(url, ctx)


def test_the_outbox_sql_ships_with_the_package() -> None:
    sql = outbox_sql()
    for name in ("modelbus_create_outbox", "modelbus_capture", "modelbus_outbox_notify"):
        assert f"FUNCTION {name}()" in sql or f"FUNCTION {name}(name text)" in sql


# ---- delivery


async def test_publish_receive_ack(opened: Pair, admin: asyncpg.Connection, table: str) -> None:
    source, sink = opened
    await sink.publish(messages(5))
    got = await receive_until(source, 5)
    assert [n_of(d) for d in got] == list(range(5))  # id order
    for delivery in got:
        assert delivery.message_id.startswith(f"m-{n_of(delivery)}-")
        assert delivery.attributes == {"n": str(n_of(delivery))}
        assert delivery.attempt == 1 and delivery.enqueued_at is not None
    await source.ack(got)
    await source.ack(got)  # idempotent
    assert await admin.fetchval(f'SELECT count(*) FROM "{table}"') == 0
    assert await nothing_within(source, source.lease_s + 0.5)


async def test_release_with_delay_redelivers_later_with_next_attempt(opened: Pair) -> None:
    source, sink = opened
    await sink.publish(messages(1))
    (first,) = await receive_until(source, 1)
    released_at = time.monotonic()
    await source.release(first, 1.5)
    (again,) = await receive_until(source, 1, timeout_s=10)
    assert time.monotonic() - released_at >= 1.5 - 0.05  # the server's clock decides
    assert (again.message_id, again.body, again.attempt) == (first.message_id, first.body, 2)
    await source.release(again, 0)
    (third,) = await receive_until(source, 1, timeout_s=5)
    assert third.attempt == 3
    await source.ack([third])


async def test_an_expired_lease_redelivers_and_the_stale_claim_is_inert(opened: Pair) -> None:
    source, sink = opened
    await sink.publish(messages(1))
    (first,) = await receive_until(source, 1)
    assert await nothing_within(source, 1.0)
    (again,) = await receive_until(source, 1, timeout_s=5)
    assert (again.message_id, again.attempt) == (first.message_id, 2)
    await source.ack([first])  # the old claim: not an error, and it deletes nothing
    await source.release(first, 0)
    await source.extend([first], 60)
    assert await nothing_within(source, 0.5)
    await source.ack([again])
    assert await nothing_within(source, source.lease_s + 0.5)


async def test_extend_keeps_a_delivery_hidden(opened: Pair) -> None:
    source, sink = opened
    await sink.publish(messages(1))
    (first,) = await receive_until(source, 1)
    await source.extend([first], 5)
    assert await nothing_within(source, source.lease_s + 1)
    await source.ack([first])


async def test_batch_receive_in_id_order(opened: Pair) -> None:
    source, sink = opened
    await sink.publish(messages(25))
    batches = []
    while sum(map(len, batches)) < 25:
        batch = await source.receive(10, 2)
        assert 0 < len(batch) <= 10
        batches.append(batch)
        await source.ack(batch)
    assert [n_of(d) for b in batches for d in b] == list(range(25))
    assert max(map(len, batches)) == 10


async def test_a_1_mib_message_round_trips(opened: Pair) -> None:
    source, sink = opened
    body = os.urandom(1024 * 1024)
    await sink.publish([OutMessage(id="big", body=body)])
    (got,) = await receive_until(source, 1)
    assert got.body == body
    await source.ack([got])


async def test_a_notification_wakes_a_waiting_receive(
    postgres_url: str, table: str, ctx: ConnectorContext
) -> None:
    url = outbox_url(postgres_url, table, create=True, poll_s=3600)  # no polling to help
    sink, source = make_sink(url, ctx), make_source(url, ctx)
    await sink.open()
    await source.open()
    waiting = asyncio.create_task(source.receive(1, 30))
    await asyncio.sleep(0.3)
    await sink.publish(messages(1))
    got = await asyncio.wait_for(waiting, 10)
    assert len(got) == 1
    await source.ack(got)
    await source.close()
    await sink.close()


# ---- consumers


async def test_rows_of_a_killed_consumer_are_redelivered(opened: Pair, table_url: str) -> None:
    source, sink = opened
    await sink.publish(messages(3))
    taken = await held_by_killed_process(table_url, 3)
    assert len(taken) == 3
    got = await receive_until(source, 3, timeout_s=source.lease_s + 10)
    assert sorted(d.message_id for d in got) == sorted(taken)
    assert all(d.attempt == 2 for d in got)
    await source.ack(got)


async def test_competing_consumers_share_the_work_once(table_url: str, tmp_path: Path) -> None:
    ctx = ConnectorContext(listener="competing", data_dir=tmp_path)
    sink, one, two = (
        make_sink(table_url, ctx),
        make_source(table_url, ctx),
        make_source(table_url, ctx),
    )
    for connector in (sink, one, two):
        await connector.open()
    await sink.publish(messages(60))
    mine, theirs = await asyncio.gather(
        drain(one, idle_s=1.5, work_s=0.01), drain(two, idle_s=1.5, work_s=0.01)
    )
    assert len(mine) + len(theirs) == 60
    assert len(set(mine) | set(theirs)) == 60, "a row was processed twice"
    assert mine and theirs
    for connector in (one, two, sink):
        await connector.close()


# ---- the insert trigger


async def test_inserts_into_a_user_table_become_events_for_each_outbox(
    postgres_url: str, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    documents, first, second = unique("documents"), unique("events_a"), unique("events_b")
    url_a = outbox_url(postgres_url, first, create=True)
    url_b = outbox_url(postgres_url, second, create=True)
    a = make_source(url_a, ConnectorContext(listener="a", data_dir=tmp_path))
    b = make_source(url_b, ConnectorContext(listener="b", data_dir=tmp_path))
    await a.open()  # installs the functions and creates the outboxes
    await b.open()
    await admin.execute(f'CREATE TABLE "{documents}" (id serial PRIMARY KEY, title text)')
    await admin.execute(
        f'CREATE TRIGGER to_events AFTER INSERT ON "{documents}" FOR EACH ROW '
        f"EXECUTE FUNCTION modelbus_capture('{first}', '{second}')"
    )
    waiting = asyncio.create_task(a.receive(10, 20))
    await asyncio.sleep(0.2)
    await admin.execute(f'INSERT INTO "{documents}" (title) VALUES ($1), ($2)', "one", "two")
    got_a = await waiting
    got_a += await receive_until(a, 2 - len(got_a))
    got_b = await receive_until(b, 2)
    for got in (got_a, got_b):
        assert [json.loads(d.body) for d in got] == [
            {"id": 1, "title": "one"},
            {"id": 2, "title": "two"},
        ]
        assert got[0].attributes == {"table": f"public.{documents}", "operation": "INSERT"}
    await a.ack(got_a)
    await b.ack(got_b)
    await a.close()
    await b.close()


# ---- failures


async def test_a_missing_table_is_a_config_error_naming_the_listener(
    postgres_url: str, ctx: ConnectorContext
) -> None:
    url = outbox_url(postgres_url, unique("missing"))
    for connector in (make_source(url, ctx), make_sink(url, ctx)):
        with pytest.raises(ConnectorConfigError, match=ctx.listener):
            await connector.open()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://no_such_role_xyz@127.0.0.1:5432/test?table=t",
        "postgresql://postgres@127.0.0.1:5432/no_such_database_xyz?table=t",
    ],
)
async def test_bad_credentials_or_database_are_config_errors(
    url: str, ctx: ConnectorContext, postgres_url: str
) -> None:
    with pytest.raises(ConnectorConfigError, match=ctx.listener):
        await make_source(url, ctx).open()


async def test_an_unreachable_server_is_a_transient_error(ctx: ConnectorContext) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://postgres@127.0.0.1:{port}/test?table=t"
    with pytest.raises(ConnectorError, match=ctx.listener) as raised:
        await make_source(url, ctx).open()
    assert not raised.value.permanent


async def test_the_source_recovers_when_its_connections_are_killed(
    postgres_url: str, table: str, admin: asyncpg.Connection, ctx: ConnectorContext
) -> None:
    app = unique("victim")
    url = outbox_url(postgres_url, table, create=True, lease_s=5, poll_s=1, application_name=app)
    sink = make_sink(outbox_url(postgres_url, table, create=True), ctx)
    source = make_source(url, ctx)
    await sink.open()
    await source.open()
    await sink.publish(messages(2, prefix="before"))
    before = await receive_until(source, 2)
    await source.ack(before[:1])  # one settled, one in flight when the connections die
    killed = await admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        app,
    )
    assert killed >= 2  # the pool's connection and the LISTEN connection
    await sink.publish(messages(2, prefix="after"))
    got: list = []
    errors = 0
    deadline = time.monotonic() + 30
    while len(got) < 3 and time.monotonic() < deadline:
        try:
            batch = await source.receive(10, 1)
            await source.ack(batch)
            got += batch
        except ConnectorError:
            errors += 1  # the runtime backs off and retries; so do we
    assert sorted(d.message_id.split("-")[0] for d in got) == ["after", "after", "before"]
    assert [d.attempt for d in got if d.message_id == before[1].message_id] == [2]
    assert await admin.fetchval(f'SELECT count(*) FROM "{table}"') == 0
    # the LISTEN connection is back: a notification wakes a long receive
    waiting = asyncio.create_task(source.receive(1, 30))
    await asyncio.sleep(1.5)
    await sink.publish(messages(1, prefix="late"))
    assert len(await asyncio.wait_for(waiting, 5)) == 1
    await source.close()
    await sink.close()
