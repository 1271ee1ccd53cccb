"""Drain benchmarks on RabbitMQ and MQTT: careful hand-written consumer loops (the
"traditional implementation") beside the same loop written on modelbus's connectors, in the
same run, on the same servers.

    .venv/bin/python bench/bench_broker_loops_amqp_mqtt.py --messages 20000 --batch 100

Each case preloads ``--messages`` JSON messages of about 200 bytes into a fresh input queue
(RabbitMQ: durable queue, persistent messages, publisher confirms; MQTT: a topic of a fresh
shared-subscription group with a persistent session, QoS 1), then drains it: receive -> a
trivial function -> publish the result (confirmed / PUBACKed) -> only then ack the input.
"one" settles one message at a time, "batch" up to ``--batch`` at once. It prints one line per
case: msg/s and the ratio of the modelbus connector loop to the hand-written loop.

Servers: RabbitMQ on 127.0.0.1:5672 (guest/guest), Mosquitto on 127.0.0.1:1883. Mosquitto
keeps at most ``max_queued_messages`` (1000 by default) for a client: the MQTT cases preload
no more than that per round and refill as they drain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aio_pika
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from modelbus.connectors import ConnectorContext, OutMessage, make_sink, make_source

HOST = "127.0.0.1"
MQTT_WINDOW = 900  # stay under Mosquitto's default max_queued_messages


def trivial(body: bytes) -> bytes:
    """The 'model': parse, add a field, serialise."""
    document = json.loads(body)
    document["ok"] = True
    return json.dumps(document).encode()


def payload(i: int) -> bytes:
    return json.dumps({"n": i, "text": "x" * 170, "id": uuid.uuid4().hex[:8]}).encode()


# --- RabbitMQ ---------------------------------------------------------------------------------


async def amqp_preload(name: str, count: int) -> None:
    connection = await aio_pika.connect(host=HOST)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for queue_name in (name, f"{name}.out"):
            await channel.declare_queue(queue_name, durable=True)
        for start in range(0, count, 500):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(
                            payload(i), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                        ),
                        name,
                    )
                    for i in range(start, min(count, start + 500))
                )
            )


async def amqp_cleanup(name: str) -> None:
    connection = await aio_pika.connect(host=HOST)
    async with connection:
        channel = await connection.channel()
        for queue_name in (name, f"{name}.out", f"{name}.modelbus-delay.0"):
            await channel.queue_delete(queue_name)


async def amqp_by_hand(name: str, count: int, batch: int) -> None:
    """aio-pika: prefetch ``batch``, publish the results with confirms, then ack (multiple)."""
    connection = await aio_pika.connect(host=HOST)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=batch)
        source = await channel.declare_queue(name, durable=True, passive=True)
        inbox: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        await source.consume(inbox.put)
        done = 0
        while done < count:
            taken = [await inbox.get()]
            while len(taken) < batch and not inbox.empty():
                taken.append(inbox.get_nowait())
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(
                            trivial(m.body), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                        ),
                        f"{name}.out",
                    )
                    for m in taken
                )
            )
            await taken[-1].ack(multiple=True)
            done += len(taken)


# --- MQTT -------------------------------------------------------------------------------------


class _PahoThread:
    """A paho client on its own network thread, with manual acks and TCP_NODELAY."""

    def __init__(self, client_id: str, *, clean: bool) -> None:
        self.inbox: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean, manual_ack=True
        )
        self.client.on_socket_open = lambda c, u, s: s.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        self.client.on_message = lambda c, u, m: self.inbox.put(m)
        self.client.connect(HOST, 1883)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_by_hand(
    topic: str, group: str, feed: Callable[[int], None], count: int, batch: int
) -> None:
    client = _PahoThread(f"bench-{group}", clean=False)
    client.client.subscribe(f"$share/{group}/{topic}", qos=1)
    time.sleep(0.3)
    done = 0
    while done < count:
        feed(done)
        taken = [client.inbox.get(timeout=30)]
        while len(taken) < batch:
            try:
                taken.append(client.inbox.get_nowait())
            except queue.Empty:
                break
        infos = [client.client.publish(f"{topic}/out", trivial(m.payload), qos=1) for m in taken]
        for info in infos:
            info.wait_for_publish(30)
        for message in taken:
            client.client.ack(message.mid, 1)
        done += len(taken)
    client.close()


class _MqttFeeder:
    """Keeps at most MQTT_WINDOW messages queued for the consumers (Mosquitto's limit)."""

    def __init__(self, topic: str, count: int) -> None:
        self.topic, self.count, self.sent = topic, count, 0
        self.client = _PahoThread(f"bench-feed-{uuid.uuid4().hex[:8]}", clean=True)

    def __call__(self, done: int) -> None:
        target = min(self.count, done + MQTT_WINDOW)
        infos = [
            self.client.client.publish(self.topic, payload(i), qos=1)
            for i in range(self.sent, target)
        ]
        for info in infos:
            info.wait_for_publish(30)
        self.sent = max(self.sent, target)


# --- modelbus connectors ------------------------------------------------------------------------


async def connector_loop(
    source_url: str, sink_url: str, count: int, batch: int, feed: Callable[[int], Any]
) -> None:
    """The same drain on modelbus's Source and Sink: receive -> publish results -> ack."""
    ctx = ConnectorContext(
        listener=f"bench-{uuid.uuid4().hex[:8]}", data_dir=Path(tempfile.mkdtemp())
    )
    source, sink = make_source(source_url, ctx), make_sink(sink_url, ctx)
    await source.open()
    await sink.open()
    done = 0
    while done < count:
        fed = feed(done)
        if fed is not None:
            await fed
        taken = await source.receive(batch, 5.0)
        results = [OutMessage(id=f"{d.message_id}-out", body=trivial(d.body)) for d in taken]
        await sink.publish(results)
        await source.ack(taken)
        done += len(taken)
    await source.close()
    await sink.close()


# --- running ----------------------------------------------------------------------------------


async def timed(label: str, count: int, run: Awaitable[None]) -> float:
    started = time.perf_counter()
    await run
    rate = count / (time.perf_counter() - started)
    print(f"  {label:<28} {rate:>9.0f} msg/s", flush=True)
    return rate


async def amqp_case(count: int, batch: int) -> tuple[float, float]:
    rates = []
    for which in ("hand", "modelbus"):
        name = f"bench-amqp-{uuid.uuid4().hex[:8]}"
        await amqp_preload(name, count)
        try:
            if which == "hand":
                run = amqp_by_hand(name, count, batch)
            else:
                url = f"amqp://guest:guest@{HOST}/?queue={name}"
                run = connector_loop(
                    url,
                    f"amqp://guest:guest@{HOST}/?queue={name}.out",
                    count,
                    batch,
                    lambda _: None,
                )
            rates.append(await timed(f"amqp {which} batch={batch}", count, run))
        finally:
            await amqp_cleanup(name)
    return rates[0], rates[1]


async def mqtt_case(count: int, batch: int) -> tuple[float, float]:
    rates = []
    for which in ("hand", "modelbus"):
        topic, group = f"bench/{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:8]}"
        feeder = _MqttFeeder(topic, count)
        try:
            if which == "hand":
                run = asyncio.to_thread(mqtt_by_hand, topic, group, feeder, count, batch)
            else:
                options = f"group={group}&inflight={max(batch, 20)}&session_expiry_s=60"
                url, sink_url = f"mqtt://{HOST}/{topic}?{options}", f"mqtt://{HOST}/{topic}/out"
                run = connector_loop(url, sink_url, count, batch, _threaded(feeder))
            rates.append(await timed(f"mqtt {which} batch={batch}", count, run))
        finally:
            feeder.client.close()
    return rates[0], rates[1]


def _threaded(feeder: _MqttFeeder) -> Callable[[int], Awaitable[None]]:
    return lambda done: asyncio.to_thread(feeder, done)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--brokers", default="amqp,mqtt")
    args = parser.parse_args()
    for broker in args.brokers.split(","):
        case = amqp_case if broker == "amqp" else mqtt_case
        for batch in (1, args.batch):
            hand, ours = await case(args.messages, batch)
            print(f"{broker} batch={batch}: modelbus/hand-written = {ours / hand:.2f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
