"""Nothing is lost when processes die (DESIGN.md, delivery contract point 3), on every broker
a listener can read: inputs flow through a real ``modelbus serve`` (listener file, real
runners of the e2e ``behave`` model); at random moments the serving process is SIGKILLed and
restarted, twice, and one runner is SIGKILLed on its own. A downstream collector takes every
result and dead letter as it comes. In the end every input has exactly one outcome: one
result (redeliveries may publish it again, always under the same output id, so a dedupe
drops them) or one dead letter (every :data:`PERMANENT_EVERY`-th input is refused by the
model). ``modelbus serve`` runs the listeners itself: there is no separate listener worker.

Also checked at each kill: the runners of the killed server die with it (they sit in
sessions of their own, out of reach of the server's process group: PR_SET_PDEATHSIG).

Sizes: :func:`tests.chaos.brokers.messages` (``MODELBUS_CHAOS_MESSAGES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from pathlib import Path

import pytest

from modelbus.connectors import ConnectorContext
from tests.e2e.node import BEHAVE, open_node
from tests.e2e.processes import Serving, _children

from .accounting import STALL_S, Collector, Tally, progress_to, table
from .brokers import KINDS, messages, open_kit, with_query
from .flow import PERMANENT_EVERY, inputs, listener_file, publish

LEASE_S = 3


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] != "Z":
                found.append(pid)
    return found


async def kill_server(serving: Serving) -> list[int]:
    """SIGKILL the server; returns its runners that are still alive 5 s later."""
    assert serving.server is not None and serving.server.process is not None
    runners = _children(serving.server.process.pid)
    serving.kill()
    for _ in range(100):  # 5 s
        if not alive(runners):
            break
        await asyncio.sleep(0.05)
    return alive(runners)


async def kill_a_runner(serving: Serving, *, within_s: float = 20.0) -> str:
    """SIGKILL one runner once the server has one (it starts them on demand: right after a
    restart, a slow group join can leave it without any for a while)."""
    assert serving.server is not None and serving.server.process is not None
    deadline = time.monotonic() + within_s
    while not _children(serving.server.process.pid):
        if time.monotonic() > deadline:
            return "no runner to kill"
        await asyncio.sleep(0.05)
    return f"runner {serving.kill_a_runner()} SIGKILLed"


@pytest.mark.parametrize("kind", KINDS)
async def test_killed_processes_lose_nothing(kind: str, tmp_path: Path, report: list[str]) -> None:
    count = messages(kind)
    async with open_kit(kind, tmp_path) as kit:
        data_dir = kit.data_dir
        async with open_node(data_dir, start=False) as node:
            await node.push(BEHAVE, version="1.0.0")
        queues = [await kit.new_queue(lease_s=LEASE_S) for _ in range(3)]
        # a listener's group is its name unless the URL says otherwise (Kafka's kit does)
        source, out, dead = (
            (with_query(q.source_url, drop=("group",)), with_query(q.sink_url, drop=("group",)))
            for q in queues
        )
        config = listener_file(
            tmp_path / "listeners.toml", source=source[0], out=out[1], dead=dead[1]
        )
        serving = Serving(data_dir, config)
        ctx = ConnectorContext(listener="chaos-collector", data_dir=data_dir)
        collector = Collector(ctx)
        progress = collector.settled_count
        started = time.monotonic()
        events: list[str] = []

        def note(event: str) -> None:
            events.append(f"{time.monotonic() - started:.1f}s {event} @{progress()}")

        share = lambda: random.randint(count // 10, count // 4)  # noqa: E731
        survivors: list[int] = []
        async with collector.running(out[0], dead[0]):
            await serving.start()
            producer = asyncio.create_task(publish(source[1], ctx, inputs(count)))
            try:
                for _ in range(2):
                    # never past the end: under load the collector can lag the server by
                    # most of the run, and a restart can find nearly everything settled
                    at = min(count, progress() + share())
                    assert await progress_to(at, progress), (
                        f"stalled at {progress()} of {count}, before {at}:\n{serving.log()}"
                    )
                    survivors += await kill_server(serving)
                    note("serve SIGKILLed")
                    await serving.start()
                if await progress_to(int(count * 0.8), progress):
                    note(await kill_a_runner(serving))
                await producer
                if await progress_to(count, progress):
                    await asyncio.sleep(1.0)  # late duplicates, if any, are counted too
                else:
                    note(f"nothing settled for {STALL_S:g} s")
            finally:
                producer.cancel()
                with contextlib.suppress(BaseException):
                    await producer
                serving.stop()

    tally = Tally.of(
        kind, range(count), collector, seconds=time.monotonic() - started, events=events
    )
    report.append(table([tally], f"process kills on {kind}"))
    assert survivors == [], f"runners outlived their SIGKILLed server: {survivors}"
    tally.check(expected_dead=len(range(0, count, PERMANENT_EVERY)))


async def test_a_runner_busy_in_a_long_call_dies_with_its_server(tmp_path: Path) -> None:
    """The runner is mid-call (not reading its stdin) when the server is SIGKILLed: it must
    not run on for the rest of its call (an hour here)."""
    data_dir = tmp_path / "data"
    async with open_node(data_dir, start=False) as node:
        await node.push(BEHAVE, version="1.0.0")
    source, out, dead = (f"local://{role}?lease_s=30" for role in ("in", "out", "dead"))
    serving = Serving(
        data_dir, listener_file(tmp_path / "l.toml", source=source, out=out, dead=dead)
    )
    trace = tmp_path / "trace.jsonl"
    await serving.start()
    try:
        body = {"op": "sleep", "seconds": 3600, "trace": str(trace), "n": 0}
        await publish(
            source,
            ConnectorContext(listener="producer", data_dir=data_dir),
            [json.dumps(body).encode()],
        )
        deadline = time.monotonic() + 30
        while not (trace.exists() and trace.read_text()):
            assert time.monotonic() < deadline, f"the call never started:\n{serving.log()}"
            await asyncio.sleep(0.05)
        (pid,) = {json.loads(line)["pid"] for line in trace.read_text().splitlines()}
        assert alive([pid]) == [pid]
        assert await kill_server(serving) == []
        assert alive([pid]) == []
    finally:
        serving.stop()
