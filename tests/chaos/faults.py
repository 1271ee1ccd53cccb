"""Broker faults for the chaos suite: a broker that goes away and comes back, and a network
partition, each behind one small interface.

    async with restartable("redis", tmp_path) as fault:    # a private redis-server
        url = fault.url("in", lease_s=3)                     # reaches the broker through the fault
        await fault.down(); ...; await fault.up()

* :func:`restartable`: a private broker process on a free port (Redis, NATS, PostgreSQL:
  tests/brokers/servers.py), SIGKILLed by ``down`` and started again on the same port with
  its data by ``up``. RabbitMQ: a private node (tests/brokers/amqp/conftest.py), stopped
  with ``rabbitmqctl stop`` and booted again; where that cannot run (it needs root), the
  shared server behind a :class:`~tests.support.proxy.TcpProxy` that refuses and resets
  every connection, which is all a client sees of a stopped broker.
* :func:`partitioned`: the shared broker behind a proxy that ``down`` turns into a black hole
  (connections stay open, no byte passes: clients find out only through their timeouts).

``url`` is the listener's way to the broker (through the fault); ``direct_url`` is the way of
the test's own producer and collector (around a proxy, where there is one).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelbus.connectors import ConnectorContext
from tests.brokers.servers import BrokerServer, NatsServer, PostgresServer, RedisServer
from tests.support.proxy import TcpProxy

from .accounting import Collector, Tally, progress_to
from .brokers import BASE_MESSAGES, with_query
from .flow import inputs, publish

__all__ = ["COUNT", "Fault", "partitioned", "restartable", "run_with_fault"]

COUNT = max(150, BASE_MESSAGES // 10)  # inputs of one fault run
COLLECTOR_LEASE_S = 2  # what the collector held when its connection broke comes back soon
StatusOf = Callable[[], Awaitable[dict[str, Any]]]

SHARED = {
    "redis": ("127.0.0.1", 6379),
    "nats": ("127.0.0.1", 4222),
    "postgres": ("127.0.0.1", 5432),
    "amqp": ("127.0.0.1", 5672),
    "mqtt": ("127.0.0.1", 1883),
}
MQTT_SESSION_S = 60  # the persistent sessions a test leaves on the shared broker expire
SHARED_DATABASE = "test"


@dataclass
class Fault:
    kind: str
    address: str  # host:port the listener uses
    direct: str  # host:port the test's producer and collector use
    database: str
    down: Callable[[], object]
    up: Callable[[], object]
    names: list[str] = field(default_factory=list)
    options: dict[str, object] = field(default_factory=dict)  # on every URL of ``url``

    @classmethod
    def of_own(
        cls,
        kind: str,
        address: str,
        *,
        down: Callable[[], object],
        up: Callable[[], object],
        database: str = SHARED_DATABASE,
        options: dict[str, object] | None = None,
    ) -> Fault:
        """A broker of the test's own at ``address``: the listener and the test's producer
        and collector all reach it there."""
        return cls(
            kind=kind,
            address=address,
            direct=address,
            database=database,
            down=down,
            up=up,
            options=options or {},
        )

    def queue(self, role: str) -> str:
        """A fresh queue name for ``role`` (dropped at the end on shared brokers)."""
        name = f"mbtest-amqp-chaos-{role}-{uuid.uuid4().hex[:10]}"  # the amqp suite's prefix
        self.names.append(name)
        return name

    def url(self, name: str, *, lease_s: float | None = None, direct: bool = False) -> str:
        """A queue named ``name`` (made on first open); a source's lease when given."""
        address = self.direct if direct else self.address
        lease = {"lease_s": lease_s} if lease_s is not None else {}
        if self.kind == "redis":
            return _url(f"redis://{address}/0", stream=name, create=True, **lease)
        if self.kind == "nats":
            return _url(
                f"nats://{address}", stream=name, subject=f"{name}.in", create=True, **lease
            )
        if self.kind == "postgres":
            table = name.replace("-", "_")
            poll = {"poll_s": 1} if lease else {}
            return _url(
                f"postgresql://postgres@{address}/{self.database}",
                table=table,
                create=True,
                **lease,
                **poll,
            )
        if self.kind == "amqp":
            return _url(f"amqp://guest:guest@{address}/", queue=name, create=True)
        if self.kind == "kafka":  # no leases; a group per listener (the listener's name)
            return _url(f"kafka://{address}/{name}", create=True, partitions=2, session_timeout_s=2)
        if self.kind == "mqtt":  # no leases; a group of its own, so consumers compete in it
            return _url(
                f"mqtt://{address}/mbtest/{name}",
                group=name,
                session_expiry_s=MQTT_SESSION_S,
                **self.options,
            )
        raise AssertionError(self.kind)


async def _drop(kind: str, names: list[str]) -> None:
    """Remove the queues a test made on a shared broker."""
    if kind == "redis":
        from tests.brokers.redis.kit import drop_stream

        for name in names:
            await drop_stream(name)
    elif kind == "nats":
        from tests.brokers.nats.kit import drop_stream as drop_nats_stream

        for name in names:
            await drop_nats_stream(name)
    elif kind == "postgres":
        import asyncpg

        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{SHARED_DATABASE}")
        try:
            for name in names:
                await conn.execute(f'DROP TABLE IF EXISTS "{name.replace("-", "_")}"')
        finally:
            await conn.close()
    elif kind == "amqp":
        from tests.brokers.amqp.conftest import delete_queues

        for name in names:
            await delete_queues(name)


def _url(base: str, **options: object) -> str:
    query = "&".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items()
    )
    return f"{base}?{query}"


def _server(kind: str, directory: Path) -> BrokerServer:
    if kind == "redis":
        return RedisServer(directory)
    if kind == "nats":
        return NatsServer(directory)
    return PostgresServer(directory)


@contextlib.asynccontextmanager
async def restartable(kind: str, tmp_path: Path) -> AsyncIterator[Fault]:
    """A broker that ``down`` stops dead and ``up`` brings back (see the module docstring)."""
    if kind == "amqp":
        async with _restartable_rabbitmq() as fault:
            yield fault
        return
    if kind == "mqtt":
        async with _restartable_mosquitto() as fault:
            yield fault
        return
    if kind == "kafka":
        async with _restartable_tansu() as fault:
            yield fault
        return
    # PostgreSQL runs as its own user, which cannot enter pytest's private tmp_path
    directory = Path(tempfile.mkdtemp(prefix=f"chaos-{kind}-")) if kind == "postgres" else None
    server = _server(kind, directory or tmp_path / kind)
    server.start()
    address = f"127.0.0.1:{server.port}"
    try:
        yield Fault.of_own(kind, address, down=server.kill, up=server.start, database="postgres")
    finally:
        server.kill()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def _restartable_rabbitmq() -> AsyncIterator[Fault]:
    """A RabbitMQ node of the test's own, stopped (``rabbitmqctl stop``) and started again;
    where one cannot run (not root), the shared server behind a proxy that cuts and resets
    every connection instead."""
    from tests.brokers.amqp.conftest import PrivateRabbitMQ

    if PrivateRabbitMQ.unavailable() is not None:
        async with _proxied("amqp", cut=True) as fault:
            yield fault
        return
    folder = Path(tempfile.mkdtemp(prefix="chaos-rabbitmq-"))  # the rabbitmq user reads it
    node = PrivateRabbitMQ(folder)
    await node.start()
    address = f"127.0.0.1:{node.port}"
    try:
        yield Fault.of_own("amqp", address, down=node.stop, up=node.start)
    finally:
        with contextlib.suppress(Exception):
            await node.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def _restartable_mosquitto() -> AsyncIterator[Fault]:
    """A Mosquitto of the test's own, stopped (SIGTERM) and started again on the same port
    with its sessions and queued messages. Not SIGKILL: Mosquitto writes its persistence
    file on a timer or on shutdown, never before a PUBACK, so a killed Mosquitto loses what
    it acknowledged since the last save (modelbus.connectors.mqtt, Sink), which no client
    can make up for."""
    import signal

    from tests.brokers.mqtt.conftest import PrivateMosquitto

    folder = Path(tempfile.mkdtemp(prefix="chaos-mosquitto-"))
    broker = PrivateMosquitto(folder)
    await broker.start()
    address = f"127.0.0.1:{broker.port}"
    try:
        # Mosquitto 2.0 forgets shared subscriptions when it restarts (the connector's
        # docstring, ``shared``): one listener replica, plain subscriptions
        yield Fault.of_own(
            "mqtt", address, down=broker.stop, up=broker.start, options={"shared": False}
        )
    finally:
        await broker.stop(signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def _restartable_tansu() -> AsyncIterator[Fault]:
    """A tansu of the test's own keeping its topics, records and committed offsets in S3 (a
    private moto server): SIGKILLed and started again on the same port with all of it."""
    import urllib.request

    from tests.aws.motoserver import MotoServer
    from tests.brokers.kafka.tansu import Tansu

    moto = MotoServer()
    await asyncio.to_thread(moto.start)
    try:
        bucket = urllib.request.Request(f"{moto.endpoint_url}/tansu", method="PUT")
        await asyncio.to_thread(urllib.request.urlopen, bucket, None, 10)
        broker = Tansu(s3_endpoint=moto.endpoint_url)
        await asyncio.to_thread(broker.start)
        try:
            yield Fault.of_own("kafka", broker.bootstrap, down=broker.kill, up=broker.start)
        finally:
            await asyncio.to_thread(broker.close)
    finally:
        await asyncio.to_thread(moto.stop)


@contextlib.asynccontextmanager
async def partitioned(kind: str) -> AsyncIterator[Fault]:
    """The shared broker behind a proxy that ``down`` makes a black hole."""
    if kind == "kafka":
        async with _partitioned_tansu() as fault:
            yield fault
        return
    async with _proxied(kind, cut=False) as fault:
        yield fault


@contextlib.asynccontextmanager
async def _partitioned_tansu() -> AsyncIterator[Fault]:
    """A tansu of the test's own behind a proxy, which it advertises: a Kafka client asks
    the bootstrap server where the brokers are and connects there, so every client (the
    test's producer and collector too) goes through the proxy, and sits out the partition."""
    from tests.brokers.kafka.tansu import Tansu, free_port

    port = free_port()
    proxy = TcpProxy("127.0.0.1", port)
    await proxy.start()
    broker = Tansu(port=port, advertise=proxy.address)
    await asyncio.to_thread(broker.start)
    try:
        yield Fault.of_own("kafka", proxy.address, down=proxy.blackhole, up=proxy.restore)
    finally:
        await proxy.close()
        await asyncio.to_thread(broker.close)


@contextlib.asynccontextmanager
async def _proxied(kind: str, *, cut: bool) -> AsyncIterator[Fault]:
    host, port = SHARED[kind]
    proxy = TcpProxy(host, port)
    await proxy.start()
    fault = Fault(
        kind=kind,
        address=proxy.address,
        direct=f"{host}:{port}",
        database=SHARED_DATABASE,
        down=proxy.cut if cut else proxy.blackhole,
        up=proxy.restore,
    )
    try:
        yield fault
    finally:
        await proxy.close()
        with contextlib.suppress(Exception):
            await _drop(kind, fault.names)


async def _call(step: Callable[[], object]) -> None:
    if inspect.iscoroutinefunction(step):
        await step()
    else:
        await asyncio.to_thread(step)


async def _wait_state(status: StatusOf, state: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        now = await status()
        if now["state"] == state:
            return now
        assert time.monotonic() < deadline, f"listener not {state} within {timeout_s} s: {now}"
        await asyncio.sleep(0.1)


async def run_with_fault(
    fault: Fault,
    data_dir: Path,
    status: StatusOf,
    *,
    source: str,
    out: str,
    dead: str,
    hold_s: float,
    degraded_within_s: float,
    recovered_within_s: float,
    describe: Callable[[], str] = str,
    paced: bool = False,
) -> tuple[Tally, list[str], dict[str, Any]]:
    """Send COUNT inputs; a third of the way through bring the fault down until the listener
    says degraded and ``hold_s`` more, then up; wait for every outcome. ``describe`` says
    more when it stalls (the server's log). ``paced``: inputs trickle in over ~6 s, so the
    fault lands mid-run and inputs keep coming while the broker is away; else they are sent
    at once (and a fast listener may have drained them all before the fault)."""
    ctx = ConnectorContext(listener="chaos-collector", data_dir=data_dir)
    collector = Collector(ctx)
    events: list[str] = []
    started = time.monotonic()

    def note(event: str) -> None:
        events.append(f"{time.monotonic() - started:.1f}s {event} @{collector.settled_count()}")

    # MQTT drops what is published before anyone subscribed: the listener must be up first
    await _wait_state(status, "running", recovered_within_s)
    async with collector.running(
        fault_url(fault, out, lease_s=COLLECTOR_LEASE_S),
        fault_url(fault, dead, lease_s=COLLECTOR_LEASE_S),
    ):
        pacing = {"chunk": 5, "pace_s": 30 / COUNT} if paced else {}
        sending = publish(fault_url(fault, source), ctx, inputs(COUNT), **pacing)
        producer = asyncio.create_task(sending)
        try:
            assert await progress_to(COUNT // 3, collector.settled_count)
            await _call(fault.down)
            note("broker down")
            degraded = await _wait_state(status, "degraded", degraded_within_s)
            parts = sorted({part.split()[0] for part in degraded["problems"]})
            note(f"listener degraded ({', '.join(parts) or 'no part named'})")
            await asyncio.sleep(hold_s)
            await _call(fault.up)
            note("broker up")
            await _wait_state(status, "running", recovered_within_s)
            note("listener running")
            await producer
            done = await progress_to(COUNT, collector.settled_count)
            if done:
                await asyncio.sleep(1.0)  # late duplicates are counted too
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
    if not done:
        final = await status()
        missing = sorted(set(range(COUNT)) - collector.result_ns() - collector.letter_ns())
        pytest.fail(
            f"stalled: {events}\nmissing inputs: {spans(missing)}\n"
            f"producer done: {producer.done()}; "
            f"results {len(collector.results)}, letters {len(collector.letters)}; "
            f"status {final}\n{describe()[-6000:]}"
        )
    tally = Tally.of(
        fault.kind, range(COUNT), collector, seconds=time.monotonic() - started, events=events
    )
    return tally, events, degraded


def spans(numbers: list[int]) -> str:
    """``3-7, 9, 12-13`` for sorted ``numbers``."""
    parts: list[tuple[int, int]] = []
    for n in numbers:
        if parts and parts[-1][1] == n - 1:
            parts[-1] = (parts[-1][0], n)
        else:
            parts.append((n, n))
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in parts)


def fault_url(fault: Fault, url: str, *, lease_s: float | None = None) -> str:
    """The same queue, reached directly (the test's producer and collector), with a lease
    when given and the broker has leases."""
    direct = url.replace(fault.address, fault.direct)
    if lease_s is not None and fault.kind not in ("amqp", "mqtt", "kafka"):
        direct = with_query(
            direct, lease_s=lease_s, **({"poll_s": 1} if fault.kind == "postgres" else {})
        )
    return direct
