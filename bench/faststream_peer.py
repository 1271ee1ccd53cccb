"""FastStream as a peer of the drain benchmark: the same preloaded messages drained by a
FastStream app written as its users write one, with the model *in process*.

    pip install -e '.[bench]'          # faststream[redis,rabbit,nats,kafka] 0.7.8, psutil

Two variants per broker (``faststream-each``, ``faststream-batch``):

* **each**: FastStream's idiomatic per-message handler, ``@broker.subscriber(...)`` under
  ``@broker.publisher(output)``, returning the echoed body: FastStream publishes the return
  value, then acks.
* **batch**: its batch subscriber (``batch=True``), the handler getting the list of bodies
  and publishing every result before returning (Kafka: a batch publisher returning the list;
  Redis: the results through one pipeline; NATS: concurrent JetStream publishes awaiting
  their PubAcks), then FastStream acks the batch. RabbitMQ has no batch subscriber in
  FastStream: no batch variant there.

The model is the echo model in process: the handler gets the body decoded by FastStream
(JSON to ``dict``) and returns it as is, which FastStream encodes as JSON again; that is
what the behave model does in its runners for the other two sides.

Set up so that nothing is dropped and every ack follows its publish (the traps of
NOTES.md, "Measured 2026-12-06"): ack policy ``NACK_ON_ERROR`` everywhere (the default
``REJECT_ON_ERROR`` drops a failed message on RabbitMQ and terminates it on NATS; Kafka's
``ACK_FIRST`` default commits before the handler runs), aiokafka's ``max_batch_size``
raised to 1 MiB (at its 16 KiB default the batch publisher fails past ~57 results of 200 B),
the Redis consumer group created at ``0`` before the preload (FastStream creates it at
``$``, after the backlog), and FastStream's per-message INFO log lines turned off
(a logger at WARNING). Receive sizes match the other sides: ``--batch`` messages per
read, RabbitMQ ``prefetch_count`` = ``--batch``, publishes durable (RabbitMQ persistent,
Kafka ``acks=all``, JetStream PubAcks).

Counting: FastStream acks inside its subscriber's ``consume`` (the ack middleware wraps the
handler and the publish) and has no hook after the ack, so the peer wraps each subscriber's
``consume``: a call that returns a response has published and acked the messages its handler
counted. The harness counts the results on the output afterwards, like for every side.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from drain_kits import HOST, Kit, Names, Progress, tag

FASTSTREAM_VERSION = "0.7.8"
INSTALL_HINT = "pip install -e '.[bench]'"
VARIANTS = ("each", "batch")
KAFKA_MAX_BATCH_BYTES = 1024 * 1024
GROUP = "faststream"
# FastStream logs two INFO lines per message (and one per task at stop): a logger that
# keeps warnings and errors only. (Its ``log_level`` option is the level those lines are
# logged *at*, not a threshold.)
LOGGER = logging.getLogger("bench.faststream")
LOGGER.setLevel(logging.WARNING)

Stop = Callable[[], Awaitable[None]]

# The number of messages the handler of the current consume() call took (see _counted).
_TAKEN: ContextVar[list[int]] = ContextVar("taken")


def missing() -> str | None:
    """Why the peer cannot run (FastStream not installed, or another version), else None."""
    try:
        import faststream
    except ImportError:
        return f"FastStream is not installed ({INSTALL_HINT})"
    version = getattr(faststream, "__version__", None) or _version()
    if version != FASTSTREAM_VERSION:
        return f"FastStream {version} is installed, the peer is written for {FASTSTREAM_VERSION}"
    return None


def _version() -> str:
    from importlib.metadata import version

    return version("faststream")


def _took(count: int, progress: Progress) -> None:
    progress.started()
    _TAKEN.get().append(count)


def _counted(subscriber: Any, progress: Progress) -> None:
    """Count the messages of every ``consume`` call that returned a response (published and
    acked); a failed call (its handler or publish raised: nacked) counts nothing."""
    consume = subscriber.consume

    async def counted(message: Any) -> Any:
        taken: list[int] = []
        token = _TAKEN.set(taken)
        try:
            response = await consume(message)
        finally:
            _TAKEN.reset(token)
        if response is not None and taken:
            progress.acked(sum(taken))
        return response

    subscriber.consume = counted


class Peer:
    """One broker's FastStream app. :meth:`prepare` and :meth:`preload` run before the
    consumer; :meth:`start` starts the app and returns its stop."""

    name = ""
    variants: tuple[str, ...] = VARIANTS

    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    async def prepare(self, names: Names) -> None:
        """Called before anything is published to ``names``."""

    async def preload(self, names: Names, bodies: list[bytes]) -> None:
        await self.kit.preload(names, bodies)

    def app(self, names: Names, variant: str, batch: int, progress: Progress) -> Any:
        """The broker with its subscriber and publisher declared (not started)."""
        raise NotImplementedError

    async def start(
        self, names: Names, variant: str, batch: int, progress: Progress, stops: list[Stop]
    ) -> None:
        """Start the app; its stop goes in ``stops`` first (a start cut short is stopped)."""
        broker = self.app(names, variant, batch, progress)

        async def stop() -> None:
            # Stopping closes the connection under a subscriber's blocked read, which
            # FastStream logs as an error ("Message fetch error"): not one of the run's.
            LOGGER.setLevel(logging.CRITICAL)
            try:
                await broker.stop()
            finally:
                LOGGER.setLevel(logging.WARNING)

        stops.append(stop)
        await broker.start()


class RedisPeer(Peer):
    name = "redis"

    async def prepare(self, names: Names) -> None:
        redis = self.kit.redis  # type: ignore[attr-defined]
        await redis.xgroup_create(names.native["in"], GROUP, id="0", mkstream=True)

    async def preload(self, names: Names, bodies: list[bytes]) -> None:
        """The same bodies, in the field FastStream reads (``__data__``; a raw body there
        is taken as is)."""
        redis = self.kit.redis  # type: ignore[attr-defined]
        for start in range(0, len(bodies), 1000):
            async with redis.pipeline(transaction=False) as pipe:
                for body in bodies[start : start + 1000]:
                    pipe.xadd(names.native["in"], {"__data__": body})
                await pipe.execute()

    def app(self, names: Names, variant: str, batch: int, progress: Progress) -> Any:
        from faststream import AckPolicy
        from faststream.redis import RedisBroker, StreamSub
        from faststream.redis.annotations import Pipeline

        broker = RedisBroker(f"redis://{HOST}:6379", logger=LOGGER)
        output = broker.publisher(stream=names.native["out"])
        source = StreamSub(
            names.native["in"],
            group=GROUP,
            consumer="c",
            max_records=batch,
            batch=variant == "batch",
        )
        subscribe = broker.subscriber(stream=source, ack_policy=AckPolicy.NACK_ON_ERROR)
        if variant == "each":

            @subscribe
            @output
            async def echo(body: dict[str, Any]) -> dict[str, Any]:
                _took(1, progress)
                return body

        else:

            @subscribe
            async def echo_batch(bodies: list[dict[str, Any]], pipe: Pipeline) -> None:
                _took(len(bodies), progress)
                for body in bodies:
                    await output.publish(body, pipeline=pipe)
                await pipe.execute()

        _counted(subscribe, progress)
        return broker


class AmqpPeer(Peer):
    name = "amqp"
    variants = ("each",)

    def app(self, names: Names, variant: str, batch: int, progress: Progress) -> Any:
        from faststream import AckPolicy
        from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

        broker = RabbitBroker(
            f"amqp://guest:guest@{HOST}/",
            default_channel=Channel(prefetch_count=batch),
            logger=LOGGER,
        )
        output = broker.publisher(
            RabbitQueue(names.native["out"], durable=True, declare=False), persist=True
        )
        subscribe = broker.subscriber(
            RabbitQueue(names.native["in"], durable=True, declare=False),
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )

        @subscribe
        @output
        async def echo(body: dict[str, Any]) -> dict[str, Any]:
            _took(1, progress)
            return body

        _counted(subscribe, progress)
        return broker


class NatsPeer(Peer):
    name = "nats"

    def app(self, names: Names, variant: str, batch: int, progress: Progress) -> Any:
        from faststream import AckPolicy
        from faststream.nats import JStream, NatsBroker, PullSub

        stream_name = names.native["stream"]
        stream = JStream(stream_name, declare=False)
        broker = NatsBroker(f"nats://{HOST}:4222", logger=LOGGER)
        output = broker.publisher(f"{stream_name}.out", stream=stream)
        subscribe = broker.subscriber(
            f"{stream_name}.in",
            stream=stream,
            durable=f"{GROUP}-{tag()}",
            pull_sub=PullSub(batch_size=batch, batch=variant == "batch"),
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )
        if variant == "each":

            @subscribe
            @output
            async def echo(body: dict[str, Any]) -> dict[str, Any]:
                _took(1, progress)
                return body

        else:

            @subscribe
            async def echo_batch(bodies: list[dict[str, Any]]) -> None:
                _took(len(bodies), progress)
                await asyncio.gather(*(output.publish(body) for body in bodies))

        _counted(subscribe, progress)
        return broker


class KafkaPeer(Peer):
    name = "kafka"

    def app(self, names: Names, variant: str, batch: int, progress: Progress) -> Any:
        from faststream import AckPolicy
        from faststream.kafka import KafkaBroker

        broker = KafkaBroker(
            self.kit.tansu.bootstrap,  # type: ignore[attr-defined]
            acks="all",
            max_batch_size=KAFKA_MAX_BATCH_BYTES,
            logger=LOGGER,
        )
        each = variant == "each"
        output = broker.publisher(names.native["out"], batch=not each)
        subscribe = broker.subscriber(
            names.native["in"],
            group_id=f"{GROUP}-{tag()}",
            auto_offset_reset="earliest",
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            batch=not each,
            max_records=batch,
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )
        if each:

            @subscribe
            @output
            async def echo(body: dict[str, Any]) -> dict[str, Any]:
                _took(1, progress)
                return body

        else:

            @subscribe
            @output
            async def echo_batch(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
                _took(len(bodies), progress)
                return bodies

        _counted(subscribe, progress)
        return broker


PEERS: dict[str, type[Peer]] = {
    peer.name: peer for peer in (RedisPeer, AmqpPeer, NatsPeer, KafkaPeer)
}


def sides(broker: str) -> list[str]:
    """The FastStream sides of ``broker`` (none where FastStream has no peer)."""
    peer = PEERS.get(broker)
    return [f"faststream-{v}" for v in peer.variants] if peer else []
