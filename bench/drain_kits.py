"""One kit per broker for ``bench_drain.py``: where its queues are, how to preload one, and
the careful hand-written batched consumer loop ("the traditional implementation") written
with the same client library the modelbus connector uses.

Every hand loop does, per batch of up to ``batch`` messages: receive the batch -> call the
model on it (``model``: the same runner processes the listener uses) -> publish the results
and wait until the broker has them durably -> only then ack the inputs, in one call where
the broker allows it. ``progress.started()`` is called when the first batch arrives and
``progress.acked(n)`` after each ack; the harness cancels the loop when it has seen enough.

A kit's :meth:`Kit.fresh` makes new, empty input and output names for one measure;
:meth:`Kit.listener_source` is the URL a modelbus listener consumes the input with, and
:meth:`Kit.reader_url` the URL the harness reads results with (for latencies);
:meth:`Kit.count_results` counts what a consumer published on the output (every side must
have published exactly one result per message).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import socket
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.aws.motoserver import MotoServer, fake_credentials
from tests.brokers.kafka.tansu import Tansu
from tests.brokers.servers import BrokerServer

from modelbus.connectors import ConnectorContext, OutMessage, make_sink, make_source

HOST = "127.0.0.1"
REGION = "us-east-1"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

Model = Callable[[list[bytes]], Awaitable[list[bytes]]]


class Progress:
    """What a consumer has done so far: when its first delivery came, how many it acked."""

    def __init__(self) -> None:
        self.first_at: float | None = None
        self.done = 0
        self.changed = asyncio.Event()
        self._watched: list[asyncio.Task[None]] = []

    def started(self) -> None:
        if self.first_at is None:
            self.first_at = asyncio.get_running_loop().time()

    def acked(self, count: int) -> None:
        self.done += count
        self.changed.set()

    def watch(self, task: asyncio.Task[None]) -> None:
        """Make :meth:`wait_for` fail at once if ``task`` (the consumer) ends."""
        self._watched.append(task)
        task.add_done_callback(lambda _task: self.changed.set())

    async def wait_for(self, count: int) -> None:
        """Return when ``count`` messages are acked; raise if a watched consumer ended."""
        while self.done < count:
            for task in self._watched:
                if task.done():
                    task.result()
                    raise RuntimeError("the consumer ended")
            self.changed.clear()
            await self.changed.wait()


@dataclass(frozen=True)
class Names:
    """One measure's input and output, as modelbus URLs and as the broker's own names."""

    in_url: str
    out_url: str
    native: dict[str, str] = field(default_factory=dict)


def ctx(data_dir: Path, name: str = "bench") -> ConnectorContext:
    return ConnectorContext(listener=name, data_dir=data_dir)


def tag() -> str:
    return uuid.uuid4().hex[:8]


class Kit:
    """The base: preload through modelbus's own sink (500 messages per publish call)."""

    name = ""
    client = ""  # the client library both sides use

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    async def start(self, stack: AsyncExitStack) -> None:
        """Start what this broker needs (a private server, clients); closed by ``stack``."""

    async def fresh(self) -> Names:
        raise NotImplementedError

    def listener_source(self, names: Names) -> str:
        return names.in_url

    def reader_url(self, names: Names) -> str:
        return names.out_url

    async def prepare(self, names: Names, side: str, listener: str) -> None:
        """Called before anything is published to ``names`` for a consumer of ``side``
        (``listener``: the name the modelbus listener will have)."""

    async def count_results(self, names: Names) -> int:
        """How many messages are on the output now (read after a drain)."""
        raise NotImplementedError

    async def preload(self, names: Names, bodies: list[bytes]) -> None:
        sink = make_sink(names.in_url, ctx(self.data_dir))
        await sink.open()
        try:
            for start in range(0, len(bodies), 500):
                await sink.publish(
                    [OutMessage(id=uuid.uuid4().hex, body=b) for b in bodies[start : start + 500]]
                )
        finally:
            await sink.close()

    async def hand_loop(self, names: Names, model: Model, batch: int, progress: Progress) -> None:
        raise NotImplementedError

    async def cleanup(self, names: Names) -> None:
        """Delete what :meth:`fresh` made."""


# --- local:// -----------------------------------------------------------------------------


class LocalKit(Kit):
    name = "local"
    client = "modelbus SqliteQueue (its only client)"

    async def fresh(self) -> Names:
        t = tag()
        return Names(f"local://bench-in-{t}", f"local://bench-out-{t}")

    async def hand_loop(self, names: Names, model: Model, batch: int, progress: Progress) -> None:
        from modelbus.connectors.local import make_sink as local_sink
        from modelbus.connectors.local import make_source as local_source

        source = local_source(names.in_url, ctx(self.data_dir))
        sink = local_sink(names.out_url, ctx(self.data_dir))
        await source.open()
        await sink.open()
        try:
            while True:
                deliveries = await source.receive(batch, 1.0)
                if not deliveries:
                    continue
                progress.started()
                outputs = await model([d.body for d in deliveries])
                await sink.publish([OutMessage(id=uuid.uuid4().hex, body=o) for o in outputs])
                await source.ack(deliveries)
                progress.acked(len(deliveries))
        finally:
            await source.close()
            await sink.close()

    async def count_results(self, names: Names) -> int:
        # The queue's documented file (connectors/local.py), read-only: consuming the
        # results through a source would lease them one batch at a time.
        path = self.data_dir / "queues" / f"{names.out_url.split('://')[1]}.sqlite"
        if not path.exists():
            return 0

        def count() -> int:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])

        return await asyncio.to_thread(count)

    async def cleanup(self, names: Names) -> None:
        for url in (names.in_url, names.out_url):
            for path in (self.data_dir / "queues").glob(f"{url.split('://')[1]}.sqlite*"):
                path.unlink(missing_ok=True)


# --- Redis Streams --------------------------------------------------------------------------


class RedisKit(Kit):
    name = "redis"
    client = "redis-py (asyncio, hiredis)"

    async def start(self, stack: AsyncExitStack) -> None:
        from redis.asyncio import Redis

        self.redis = Redis(host=HOST, port=6379)
        stack.push_async_callback(self.redis.aclose)

    async def fresh(self) -> Names:
        stream = f"bench-{tag()}"
        base = f"redis://{HOST}:6379/0?stream="
        return Names(
            f"{base}{stream}-in&create=true",
            f"{base}{stream}-out&create=true",
            {"in": f"{stream}-in", "out": f"{stream}-out"},
        )

    async def preload(self, names: Names, bodies: list[bytes]) -> None:
        for start in range(0, len(bodies), 1000):
            async with self.redis.pipeline(transaction=False) as pipe:
                for body in bodies[start : start + 1000]:
                    pipe.xadd(names.native["in"], {"body": body})
                await pipe.execute()

    async def hand_loop(self, names: Names, model: Model, batch: int, progress: Progress) -> None:
        source, out = names.native["in"], names.native["out"]
        await self.redis.xgroup_create(source, "hand", id="0", mkstream=True)
        while True:
            answer = await self.redis.xreadgroup(
                "hand", "c", {source: ">"}, count=batch, block=1000
            )
            for _stream, entries in answer:
                progress.started()
                outputs = await model([fields[b"body"] for _, fields in entries])
                async with self.redis.pipeline(transaction=False) as pipe:
                    for output in outputs:
                        pipe.xadd(out, {"body": output})
                    await pipe.execute()
                await self.redis.xack(source, "hand", *[entry_id for entry_id, _ in entries])
                progress.acked(len(entries))

    async def count_results(self, names: Names) -> int:
        return int(await self.redis.xlen(names.native["out"]))

    async def cleanup(self, names: Names) -> None:
        await self.redis.delete(*names.native.values())


# --- NATS JetStream -------------------------------------------------------------------------


class NatsKit(Kit):
    name = "nats"
    client = "nats-py"

    async def start(self, stack: AsyncExitStack) -> None:
        import nats

        self.nc = await nats.connect(f"nats://{HOST}:4222")
        stack.push_async_callback(self.nc.close)
        self.js = self.nc.jetstream()

    async def fresh(self) -> Names:
        stream = f"bench-{tag()}"
        await self.js.add_stream(name=stream, subjects=[f"{stream}.in", f"{stream}.out"])
        base = f"nats://{HOST}:4222?stream={stream}&subject={stream}"
        return Names(f"{base}.in", f"{base}.out", {"stream": stream})

    async def preload(self, names: Names, bodies: list[bytes]) -> None:
        subject = f"{names.native['stream']}.in"
        for start in range(0, len(bodies), 500):
            futures = [await self.js.publish_async(subject, b) for b in bodies[start : start + 500]]
            await asyncio.gather(*futures)

    async def hand_loop(self, names: Names, model: Model, batch: int, progress: Progress) -> None:
        stream = names.native["stream"]
        await self.js.add_consumer(stream, durable_name="hand", filter_subject=f"{stream}.in")
        subscription = await self.js.pull_subscribe_bind(durable="hand", stream=stream)
        try:
            while True:
                try:
                    messages = await subscription.fetch(batch, timeout=1)
                except TimeoutError:
                    continue
                progress.started()
                outputs = await model([m.data for m in messages])
                # Concurrent publishes, each awaiting its PubAck (the result is stored).
                await asyncio.gather(*(self.js.publish(f"{stream}.out", o) for o in outputs))
                for message in messages:
                    await message.ack()
                await self.nc.flush()  # the server has read the acks (as the connector does)
                progress.acked(len(messages))
        finally:
            await subscription.unsubscribe()

    async def count_results(self, names: Names) -> int:
        out = f"{names.native['stream']}.out"
        info = await self.js.stream_info(names.native["stream"], subjects_filter=out)
        return int((info.state.subjects or {}).get(out, 0))

    async def cleanup(self, names: Names) -> None:
        await self.js.delete_stream(names.native["stream"])


# --- RabbitMQ -------------------------------------------------------------------------------


class AmqpKit(Kit):
    name = "amqp"
    client = "aio-pika"

    async def start(self, stack: AsyncExitStack) -> None:
        import aio_pika

        self.connection = await aio_pika.connect(host=HOST)
        stack.push_async_callback(self.connection.close)

    async def fresh(self) -> Names:
        queue = f"bench-{tag()}"
        channel = await self.connection.channel()
        for name in (queue, f"{queue}.out"):
            await channel.declare_queue(name, durable=True)
        await channel.close()
        base = f"amqp://guest:guest@{HOST}/?queue="
        return Names(f"{base}{queue}", f"{base}{queue}.out", {"in": queue, "out": f"{queue}.out"})

    async def hand_loop(self, names: Names, model: Model, batch: int, progress: Progress) -> None:
        """Prefetch ``batch``; persistent publishes with publisher confirms, concurrently;
        then one ``ack(multiple=True)`` for the batch."""
        import aio_pika

        channel = await self.connection.channel(publisher_confirms=True)
        try:
            await channel.set_qos(prefetch_count=batch)
            source = await channel.declare_queue(names.native["in"], durable=True, passive=True)
            inbox: asyncio.Queue[Any] = asyncio.Queue()
            await source.consume(inbox.put)
            while True:
                taken = [await inbox.get()]
                while len(taken) < batch and not inbox.empty():
                    taken.append(inbox.get_nowait())
                progress.started()
                outputs = await model([m.body for m in taken])
                persistent = aio_pika.DeliveryMode.PERSISTENT
                await asyncio.gather(
                    *(
                        channel.default_exchange.publish(
                            aio_pika.Message(o, delivery_mode=persistent), names.native["out"]
                        )
                        for o in outputs
                    )
                )
                await taken[-1].ack(multiple=True)
                progress.acked(len(taken))
        finally:
            await channel.close()

    async def count_results(self, names: Names) -> int:
        channel = await self.connection.channel()
        try:
            queue = await channel.declare_queue(names.native["out"], durable=True, passive=True)
            return int(queue.declaration_result.message_count or 0)
        finally:
            await channel.close()

    async def cleanup(self, names: Names) -> None:
        channel = await self.connection.channel()
        for queue in (names.native["in"], names.native["out"]):
            await channel.queue_delete(queue)
        await channel.close()


# --- MQTT -----------------------------------------------------------------------------------


class Mosquitto(BrokerServer):
    """A private Mosquitto on a free port that queues without limit for an offline session
    (the shared one drops what exceeds ``max_queued_messages``, 1000 by default)."""

    name = "mosquitto"

    def command(self) -> list[str]:
        config = self.directory / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} {HOST}\nallow_anonymous true\npersistence false\n"
            f"user {getpass.getuser()}\nmax_queued_messages 0\nmax_inflight_messages 0\n"
        )
        return ["mosquitto", "-c", str(config)]


class MqttKit(Kit):
    """Each consumer's persistent session (MQTT 5, one shared-subscription group) is made
    before the preload, so that Mosquitto queues the messages for it; so is a counting
    session on the output, which :meth:`count_results` drains after the run.

    The listener's session is made by opening (and closing) the MQTT source the listener
    will open: the connector names its client id itself (a prefix, a hash of its
    subscriptions, a slot: connectors/mqtt.py), so the listener resumes exactly that session.
    """

    name = "mqtt"
    client = "paho-mqtt (MQTT 5, QoS 1, manual acks, TCP_NODELAY)"

    async def start(self, stack: AsyncExitStack) -> None:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-mqtt-")))
        self.server = stack.enter_context(Mosquitto(folder))

    async def fresh(self) -> Names:
        topic = f"bench/{tag()}"
        base = f"mqtt://{HOST}:{self.server.port}/{topic}"
        t = tag()
        native = {"topic": topic, "listener": f"bl{t}", "hand": f"bh{t}", "count": f"bc{t}"}
        return Names(f"{base}", f"{base}/out", native)

    def listener_source(self, names: Names) -> str:
        g = names.native["listener"]
        return f"{names.in_url}?group={g}&client_id={g}&inflight=100&session_expiry_s=600"

    def reader_url(self, names: Names) -> str:
        return f"{names.out_url}?group=reader&inflight=100"

    def _count_url(self, names: Names) -> str:
        g = names.native["count"]
        return f"{names.out_url}?group={g}&client_id={g}&inflight=1000&session_expiry_s=600"

    async def prepare(self, names: Names, side: str, listener: str) -> None:
        await self._source_session(self._count_url(names), "bench-count")
        if side == "hand":
            group = names.native["hand"]
            await asyncio.to_thread(self._subscribe_session, group, group, names.native["topic"])
        else:
            await self._source_session(self.listener_source(names), listener)

    async def _source_session(self, url: str, listener: str) -> None:
        """Open and close the connector's source for ``url`` as ``listener`` would: the
        broker keeps its persistent session (and queues for it) under the client id the
        connector chose, which the same source opened again resumes."""
        source = make_source(url, ctx(self.data_dir, listener))
        await source.open()
        await source.close()

    def _subscribe_session(self, client_id: str, group: str, topic: str) -> None:
        client = _paho(client_id, self.server.port)
        subscribed = threading.Event()
        client.on_subscribe = lambda *_args: subscribed.set()
        client.loop_start()
        try:
            client.subscribe(f"$share/{group}/{topic}", qos=1)
            if not subscribed.wait(10):
                raise RuntimeError(f"Mosquitto did not confirm the subscription of {client_id}")
        finally:
            client.disconnect()
            client.loop_stop()

    async def count_results(self, names: Names) -> int:
        """Resume the counting session and take what it queued, until a second passes
        without a message."""
        source = make_source(self._count_url(names), ctx(self.data_dir, "bench-count"))
        await source.open()
        count = 0
        try:
            while deliveries := await source.receive(1000, 1.0):
                count += len(deliveries)
                await source.ack(deliveries)
        finally:
            await source.close()
        return count

    async def hand_loop(self, names: Names, model: Model, batch: int, progress: Progress) -> None:
        """paho on its network thread; messages and PUBACKs handed to the event loop."""
        loop = asyncio.get_running_loop()
        group = names.native["hand"]
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        published: dict[int, asyncio.Future[None]] = {}

        def on_publish(_c: Any, _u: Any, mid: int, *_rest: Any) -> None:
            loop.call_soon_threadsafe(_resolve, published, mid)

        client = _paho(group, self.server.port, receive_maximum=batch)
        client.on_message = lambda _c, _u, m: loop.call_soon_threadsafe(inbox.put_nowait, m)
        client.on_publish = on_publish
        client.loop_start()
        try:
            while True:
                taken = [await inbox.get()]
                while len(taken) < batch and not inbox.empty():
                    taken.append(inbox.get_nowait())
                progress.started()
                outputs = await model([m.payload for m in taken])
                futures = []
                for output in outputs:
                    future = loop.create_future()
                    info = client.publish(f"{names.native['topic']}/out", output, qos=1)
                    published[info.mid] = future
                    futures.append(future)
                await asyncio.gather(*futures)
                for message in taken:
                    client.ack(message.mid, message.qos)
                progress.acked(len(taken))
        finally:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)


def _resolve(published: dict[int, asyncio.Future[None]], mid: int) -> None:
    future = published.pop(mid, None)
    if future is not None and not future.done():
        future.set_result(None)


def _paho(client_id: str, port: int, *, receive_maximum: int = 100) -> Any:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5,
        manual_ack=True,
    )
    client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
    )
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 600
    properties.ReceiveMaximum = receive_maximum
    client.connect(HOST, port, clean_start=False, properties=properties)
    return client


# --- Kafka (tansu) --------------------------------------------------------------------------


class KafkaKit(Kit):
    name = "kafka"
    client = "aiokafka"
    partitions = 4

    async def start(self, stack: AsyncExitStack) -> None:
        self.tansu = stack.enter_context(Tansu())

    async def fresh(self) -> Names:
        t = tag()
        base = f"kafka://{self.tansu.bootstrap}/bench-{t}"
        create = f"create=true&partitions={self.partitions}"
        names = Names(f"{base}-in?{create}", f"{base}-out?{create}")
        for url in (names.in_url, names.out_url):  # the sinks create the topics
            sink = make_sink(url, ctx(self.data_dir))
            await sink.open()
            await sink.close()
        return Names(names.in_url, names.out_url, {"in": f"bench-{t}-in", "out": f"bench-{t}-out"})

    def listener_source(self, names: Names) -> str:
        return f"{names.in_url}&session_timeout_s=2"

    def reader_url(self, names: Names) -> str:
        return f"{names.out_url}&session_timeout_s=2&group=reader-{tag()}"

    async def preload(self, names: Names, bodies: list[bytes]) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.tansu.bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = [await producer.send(names.native["in"], body) for body in bodies]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    async def count_results(self, names: Names) -> int:
        """Read the output topic from the start until a second passes without a record
        (tansu's end offsets count record batches, not records)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.tansu.bootstrap, enable_auto_commit=False
        )
        await consumer.start()
        try:
            topic = names.native["out"]
            consumer.assign([TopicPartition(topic, p) for p in range(self.partitions)])
            await consumer.seek_to_beginning()
            count = 0
            while fetched := await consumer.getmany(timeout_ms=1000, max_records=10_000):
                count += sum(len(records) for records in fetched.values())
            return count
        finally:
            await consumer.stop()

    async def hand_loop(self, names: Names, model: Model, batch: int, progress: Progress) -> None:
        """getmany -> model -> send every result, wait for all -> commit the batch."""
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        consumer = AIOKafkaConsumer(
            names.native["in"],
            bootstrap_servers=self.tansu.bootstrap,
            group_id=f"hand-{tag()}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.tansu.bootstrap, acks="all")
        await consumer.start()
        await producer.start()
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=batch)
                records = [r for rs in fetched.values() for r in rs]
                if not records:
                    continue
                progress.started()
                outputs = await model([r.value for r in records])
                futures = [await producer.send(names.native["out"], o) for o in outputs]
                await asyncio.gather(*futures)
                await consumer.commit()
                progress.acked(len(records))
        finally:
            await consumer.stop()
            await producer.stop()


# --- PostgreSQL outbox ----------------------------------------------------------------------


class PostgresKit(Kit):
    name = "postgres"
    client = "asyncpg"

    async def start(self, stack: AsyncExitStack) -> None:
        import asyncpg

        self.conn = await asyncpg.connect(PG_URL)
        stack.push_async_callback(self.conn.close)

    async def fresh(self) -> Names:
        t = tag()
        table, out = f"bench_in_{t}", f"bench_out_{t}"
        names = Names(
            f"{PG_URL}?table={table}&create=true",
            f"{PG_URL}?table={out}&create=true",
            {"in": table, "out": out},
        )
        for url in (names.in_url, names.out_url):  # the sinks create the outbox tables
            sink = make_sink(url, ctx(self.data_dir))
            await sink.open()
            await sink.close()
        return names

    async def preload(self, names: Names, bodies: list[bytes]) -> None:
        await self.conn.execute(
            f"INSERT INTO {names.native['in']} (payload) SELECT * FROM unnest($1::bytea[])",
            bodies,
        )

    async def hand_loop(self, names: Names, model: Model, batch: int, progress: Progress) -> None:
        """One transaction per batch: claim with SKIP LOCKED, insert the results, delete the
        inputs, commit (the outbox's own strength: result and ack commit together)."""
        import asyncpg

        table, out = names.native["in"], names.native["out"]
        claim = f"SELECT id, payload FROM {table} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
        insert = f"INSERT INTO {out} (payload) SELECT * FROM unnest($1::bytea[])"
        remove = f"DELETE FROM {table} WHERE id = ANY($1::bigint[])"
        conn = await asyncpg.connect(PG_URL)
        try:
            while True:
                async with conn.transaction():
                    rows = await conn.fetch(claim, batch)
                    if rows:
                        progress.started()
                        outputs = await model([bytes(r["payload"]) for r in rows])
                        await conn.execute(insert, outputs)
                        await conn.execute(remove, [r["id"] for r in rows])
                if rows:
                    progress.acked(len(rows))
                else:
                    await asyncio.sleep(0.05)
        finally:
            await conn.close()

    async def count_results(self, names: Names) -> int:
        return int(await self.conn.fetchval(f"SELECT count(*) FROM {names.native['out']}"))

    async def cleanup(self, names: Names) -> None:
        await self.conn.execute(
            f"DROP TABLE IF EXISTS {names.native['in']}; DROP TABLE IF EXISTS {names.native['out']}"
        )


# --- Amazon SQS (moto) ----------------------------------------------------------------------


class SqsKit(Kit):
    name = "sqs"
    client = "aiobotocore"

    async def start(self, stack: AsyncExitStack) -> None:
        from aiobotocore.session import get_session

        stack.enter_context(fake_credentials())
        self.moto = stack.enter_context(MotoServer())
        self.sqs = await stack.enter_async_context(
            get_session().create_client("sqs", region_name=REGION, endpoint_url=self.endpoint)
        )

    @property
    def endpoint(self) -> str:
        return str(self.moto.endpoint_url)

    async def fresh(self) -> Names:
        t = tag()
        native = {}
        for role in ("in", "out"):
            name = f"bench-{role}-{t}"
            native[role] = (await self.sqs.create_queue(QueueName=name))["QueueUrl"]
            native[f"{role}-name"] = name
        options = f"endpoint_url={self.endpoint}&region={REGION}&wait_s=1"
        return Names(
            f"sqs://{native['in-name']}?{options}", f"sqs://{native['out-name']}?{options}", native
        )

    async def preload(self, names: Names, bodies: list[bytes]) -> None:
        async def send(chunk: list[bytes]) -> None:
            entries = [{"Id": str(i), "MessageBody": b.decode()} for i, b in enumerate(chunk)]
            answer = await self.sqs.send_message_batch(QueueUrl=names.native["in"], Entries=entries)
            if answer.get("Failed"):
                raise RuntimeError(f"preload refused: {answer['Failed']}")

        chunks = [bodies[i : i + 10] for i in range(0, len(bodies), 10)]
        for start in range(0, len(chunks), 8):  # 8 concurrent SendMessageBatch calls
            await asyncio.gather(*(send(c) for c in chunks[start : start + 8]))

    async def hand_loop(self, names: Names, model: Model, batch: int, progress: Progress) -> None:
        """``batch // 10`` concurrent pollers (SQS hands out at most 10 per call), each:
        ReceiveMessage(10) -> model -> SendMessageBatch -> DeleteMessageBatch."""
        await asyncio.gather(
            *(self._poller(names, model, progress) for _ in range(max(1, batch // 10)))
        )

    async def _poller(self, names: Names, model: Model, progress: Progress) -> None:
        in_url, out_url = names.native["in"], names.native["out"]
        while True:
            answer = await self.sqs.receive_message(
                QueueUrl=in_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            messages = answer.get("Messages", [])
            if not messages:
                continue
            progress.started()
            outputs = await model([m["Body"].encode() for m in messages])
            results = [{"Id": str(i), "MessageBody": o.decode()} for i, o in enumerate(outputs)]
            sent = await self.sqs.send_message_batch(QueueUrl=out_url, Entries=results)
            if sent.get("Failed"):
                continue  # the inputs come back after their visibility timeout
            receipts = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ]
            await self.sqs.delete_message_batch(QueueUrl=in_url, Entries=receipts)
            progress.acked(len(messages))

    async def count_results(self, names: Names) -> int:
        answer = await self.sqs.get_queue_attributes(
            QueueUrl=names.native["out"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        return sum(int(v) for v in answer["Attributes"].values())

    async def cleanup(self, names: Names) -> None:
        for role in ("in", "out"):
            await self.sqs.delete_queue(QueueUrl=names.native[role])


KITS: dict[str, type[Kit]] = {
    kit.name: kit
    for kit in (LocalKit, SqsKit, RedisKit, AmqpKit, NatsKit, MqttKit, KafkaKit, PostgresKit)
}


def body(n: int, sent_at: float) -> bytes:
    """About 200 bytes of JSON; ``sent`` is the enqueue time (epoch s) the latency uses."""
    return json.dumps({"n": n, "sent": sent_at, "text": "x" * 150}).encode()
