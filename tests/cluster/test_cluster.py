"""Several nodes as one cluster: three ``modelbus serve`` processes on loopback, one fresh
PostgreSQL database, moto's S3 as the artifact store (conftest.py).

* A model pushed on node A is called on B and C; an async job submitted on A is read, with
  its result, on C (and one submitted on C on A).
* A listener on Redis, RabbitMQ or SQS runs on every node (their sources are shared: the
  replicas compete for the messages). A producer (:class:`Producer`) sends numbered inputs
  (the e2e ``behave`` model echoes ``n``; every :data:`~tests.chaos.flow.PERMANENT_EVERY`-th
  input is refused and must be dead-lettered): a backlog at once, then more at a pace,
  holding the last quarter back. Once the drain is under way a fourth node D starts, and
  meanwhile node A is SIGKILLed. What is left before the reserve goes out when D answers
  (its consumer joins while B and C drain it), the reserve once it runs. A downstream
  collector takes every result and dead letter: in the end nothing is lost, every input
  has one outcome, and duplicates (what A had in hand comes back to the others after its
  lease) all carry the one output id of their input. The chaos suite's accounting
  (tests/chaos/accounting.py) counts and prints it, with the timeline (``@N``: inputs
  settled by then; ``waiting``: sent, not settled) and what each node ran, from the
  per-node breakdown of the listener's status, where D must have run a share.

Sizes: ``MODELBUS_CLUSTER_MESSAGES`` inputs on Redis and RabbitMQ (default
:data:`DEFAULT_MESSAGES`, CI-sized for 2 cores; the full run is
``MODELBUS_CLUSTER_MESSAGES=10000``), ``MODELBUS_CLUSTER_MESSAGES_SQS`` on SQS (default
:data:`DEFAULT_SQS_MESSAGES`: moto drains about 40 msg/s, NOTES.md, so a few hundred
there say as much as thousands and keep the test within its time).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from modelbus.connectors import ConnectorContext, make_sink
from modelbus.connectors.base import OutMessage, Sink
from tests.chaos.accounting import STALL_S, Collector, Tally, progress_to, table
from tests.chaos.brokers import open_kit, with_query
from tests.chaos.flow import PERMANENT_EVERY, inputs
from tests.e2e.node import BEHAVE
from tests.serve.conftest import eventually
from tests.support.server import ModelbusServer

from .conftest import BUCKET, Cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DEFAULT_MESSAGES = 2000
DEFAULT_SQS_MESSAGES = 200
LEASE_S = 3
PACE_S = 1.0  # the producer's pace while a node starts (see Producer)
LISTENER = "cluster"


def messages(kind: str) -> int:
    """How many inputs a run on ``kind`` sends (see the module docstring)."""
    if kind == "sqs":
        return int(os.environ.get("MODELBUS_CLUSTER_MESSAGES_SQS", DEFAULT_SQS_MESSAGES))
    return int(os.environ.get("MODELBUS_CLUSTER_MESSAGES", DEFAULT_MESSAGES))


def node_ids(server: ModelbusServer, *, gone: bool = True) -> dict[str, str]:
    """Node id -> state, as ``GET /v1/nodes`` on ``server`` lists them."""
    with server.client() as client:
        return {node.id: node.state for node in client.nodes(gone=gone)}


def this_node(server: ModelbusServer) -> str:
    with server.client() as client:
        return str(next(node.id for node in client.nodes() if node.this))


def test_push_and_jobs_on_one_node_seen_from_the_others(cluster: Cluster) -> None:
    a, b, c = (cluster.start(name) for name in ("a", "b", "c"))
    assert len(node_ids(c, gone=False)) == 3
    for server in (a, b, c):
        health = httpx.get(f"{server.url}/health", timeout=10).json()
        assert health["artifacts"]["store"].startswith(f"s3://{BUCKET}/models/ at ")

    with a.client() as on_a:
        pushed = on_a.push(BEHAVE, version="1.0.0")
    with b.client() as on_b, c.client() as on_c:
        # B and C never saw the folder: they fetch the archive A stored in S3
        assert on_b.call("e2e/behave", {"op": "ok", "n": 1}).value["n"] == 1
        answer = on_c.call("e2e/behave@1.0.0", {"op": "ok", "n": 2})
        assert answer.value["n"] == 2 and answer.version == pushed.version

    with a.client() as on_a, c.client() as on_c:
        jobs = [on_a.submit("e2e/behave", {"op": "ok", "n": n}) for n in range(5)]
        refused = on_a.submit("e2e/behave", {"op": "permanent", "n": 99})
        for n, job in enumerate(jobs):
            done = on_c.wait(job.id, timeout_s=60)
            assert done.status == "succeeded", done
            assert done.unwrap().value["n"] == n
            assert on_a.job(job.id).unwrap().value == done.unwrap().value  # one job, one result
        failed = on_c.wait(refused.id, timeout_s=60)
        assert failed.status == "failed" and failed.error is not None
        back = on_a.wait(on_c.submit("e2e/behave", {"op": "ok", "n": 7}).id, timeout_s=60)
        assert back.unwrap().value["n"] == 7


@dataclass(kw_only=True)
class Producer:
    """Sends the inputs as a busy producer would while nodes come and go.

    First a backlog of :attr:`ahead` inputs at once; then a :attr:`chunk` every
    :data:`PACE_S` whenever fewer than ``ahead`` wait unsettled, holding the last
    :attr:`reserve` back: inputs keep coming for at least twenty paces after the first
    backlog, however fast the nodes drain, so that a node started meanwhile starts
    mid-drain. :meth:`release` lets every input up to a given one go at once: the test
    releases what is left before the reserve when the new node answers (its consumer joins
    while the others drain that), and the reserve once it runs (a backlog to share, whatever
    the machine's speed)."""

    url: str
    ctx: ConnectorContext
    bodies: list[bytes]
    settled: Callable[[], int]
    sent: int = 0
    released: int = 0
    _more: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ahead(self) -> int:
        return len(self.bodies) // 4

    @property
    def reserve(self) -> int:
        return len(self.bodies) // 4

    @property
    def chunk(self) -> int:
        return max(5, len(self.bodies) // 40)

    def waiting(self) -> int:
        """Inputs sent and not settled yet (waiting on the broker or in flight)."""
        return self.sent - self.settled()

    def release(self, upto: int) -> None:
        """Send every input before number ``upto`` at once (then pace on as before)."""
        self.released = max(self.released, upto)
        self._more.set()

    async def run(self) -> None:
        total = len(self.bodies)
        sink = make_sink(self.url, self.ctx)
        await sink.open()
        try:
            await self._send(sink, self.ahead)
            while self.sent < total:
                if self.sent < self.released:
                    await self._send(sink, min(self.chunk, self.released - self.sent))
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._more.wait(), PACE_S)
                self._more.clear()
                if self.sent >= self.released and self.waiting() < self.ahead:
                    await self._send(sink, min(self.chunk, total - self.reserve - self.sent))
        finally:
            await sink.close()

    async def _send(self, sink: Sink, count: int) -> None:
        """Send the next ``count`` inputs (none if ``count`` <= 0), as ``in-N`` messages."""
        end = self.sent + count
        for at in range(self.sent, end, 100):
            chunk = self.bodies[at : min(at + 100, end)]
            self.sent = at + len(chunk)  # counted first: their results may come back at once
            await sink.publish(
                [OutMessage(id=f"in-{at + i}", body=body) for i, body in enumerate(chunk)]
            )


async def start_node(cluster: Cluster, name: str) -> ModelbusServer:
    """Start a node without blocking the event loop (the collector keeps reading)."""
    return await asyncio.to_thread(cluster.start, name)


async def kill_node(server: ModelbusServer) -> None:
    await asyncio.to_thread(server.kill)


@pytest.mark.parametrize("kind", ["redis", "amqp", "sqs"])
async def test_a_node_killed_and_one_added_mid_drain_lose_nothing(
    kind: str, cluster: Cluster, tmp_path: Path, report: list[str]
) -> None:
    count = messages(kind)
    async with open_kit(kind, tmp_path) as kit:
        a, b, c = [await start_node(cluster, name) for name in ("a", "b", "c")]
        ids = {name: this_node(server) for name, server in zip("abc", (a, b, c), strict=True)}
        with a.client() as on_a:
            on_a.push(BEHAVE, version="1.0.0")
        queues = [await kit.new_queue(lease_s=LEASE_S) for _ in range(3)]
        # a listener's group is its name unless the URL says otherwise
        source, out, dead = (
            (with_query(q.source_url, drop=("group",)), with_query(q.sink_url, drop=("group",)))
            for q in queues
        )
        with a.client() as on_a:
            on_a.create_listener(
                {
                    "name": LISTENER,
                    "source": source[0],
                    "model": "e2e/behave@1.*",
                    "outputs": [out[1]],
                    "error_sink": dead[1],
                    "max_in_flight": 32,
                    "retry": {"max_attempts": 10, "initial_backoff_s": 0.2, "max_backoff_s": 1.0},
                }
            )

        def running_on(server: ModelbusServer, names: str) -> Callable[[], bool]:
            """Whether the listener runs on exactly the nodes ``names``, as ``server`` says."""

            def check() -> bool:
                with server.client() as client:
                    status = client.listener_status(LISTENER)
                wanted = {ids[name] for name in names}
                return {p.node: p.state for p in status.nodes} == dict.fromkeys(wanted, "running")

            return check

        await asyncio.to_thread(eventually, running_on(c, "abc"), 60)

        ctx = ConnectorContext(listener="cluster-collector", data_dir=tmp_path / "collector")
        collector = Collector(ctx)
        progress = collector.settled_count
        started = time.monotonic()
        events: list[str] = []

        def note(event: str) -> None:
            events.append(f"{time.monotonic() - started:.1f}s {event} @{progress()}")

        producer = Producer(url=source[1], ctx=ctx, bodies=inputs(count), settled=progress)

        async def produce() -> None:
            await producer.run()
            note(f"all {count} inputs sent")

        starting: asyncio.Task[ModelbusServer] | None = None
        async with collector.running(out[0], dead[0]):
            producing = asyncio.create_task(produce())
            try:
                assert await progress_to(1, progress), "the drain did not start"
                # D starts mid-drain (a node takes seconds to start, more on a busy machine)
                starting = asyncio.create_task(start_node(cluster, "d"))
                note(f"node D starting, {producer.waiting()} waiting")
                # and A is SIGKILLed meanwhile, once some inputs are through
                assert await progress_to(count // 8, progress), "stalled before the kill"
                await kill_node(a)
                note(f"node A SIGKILLed, {producer.waiting()} waiting")
                d = await starting
                ids["d"] = this_node(d)
                note(f"node D answers, {producer.waiting()} waiting")
                producer.release(count - producer.reserve)
                await asyncio.to_thread(eventually, running_on(c, "bcd"), 60)
                note(f"node D runs the listener, {producer.waiting()} waiting")
                producer.release(count)
                if await progress_to(count, progress):
                    await asyncio.sleep(LEASE_S + 1.0)  # late duplicates, if any, are counted too
                else:
                    note(f"nothing settled for {STALL_S:g} s, {producer.sent} sent")
                if producing.done():
                    producing.result()  # a producer that failed says why
            finally:
                producing.cancel()
                if starting is not None:
                    with contextlib.suppress(Exception):
                        await starting  # a node that started is stopped with the cluster

        tally = Tally.of(
            kind, range(count), collector, seconds=time.monotonic() - started, events=events
        )
        report.append(table([tally], f"cluster of nodes on {kind}: A killed, D added"))
        tally.check(expected_dead=len(range(0, count, PERMANENT_EVERY)))

        def a_gone() -> dict[str, str]:
            listed = node_ids(b)
            return listed if listed.get(ids["a"]) == "gone" else {}

        # the cluster's view: A is gone (killed, not stopped), D joined and took its share
        with b.client() as on_b:
            listed = await asyncio.to_thread(eventually, a_gone, 30)
            assert {listed[ids[name]] for name in "bcd"} == {"live"}
            parts = {p.node: p for p in on_b.listener_status(LISTENER).nodes}
        assert set(parts) == {ids[name] for name in "bcd"}
        share = {name: int(parts[ids[name]].counters["succeeded"]) for name in "bcd"}
        report.append(f"   {kind}: succeeded per node (A's count died with it): {share}")
        assert share["d"] > 0  # D, started mid-drain, ran some of it
