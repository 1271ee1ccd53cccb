"""The nodes benchmark: how the drain of one backlog scales with the number of nodes.

    .venv/bin/python bench/bench_nodes.py                        # Redis, 1, 2 and 3 nodes
    .venv/bin/python bench/bench_nodes.py --broker amqp --messages 5000
    .venv/bin/python bench/bench_nodes.py --nodes 1,2 --messages 200   # a smoke run

For each node count of ``--nodes`` (default ``1,2,3``), in that order, the harness

1. makes a fresh PostgreSQL database on ``--postgres`` and starts that many ``modelbus
   serve --workers 1`` processes on loopback on it, with one secret key and one shared
   artifact folder (``--artifacts``), and pushes the e2e ``behave`` model (it echoes its JSON
   input) on the first;
2. creates one listener on a fresh input of ``--broker`` (default ``redis``), results to an
   output on the same broker, ``max_in_flight`` = ``--batch``, everything else default, and
   waits until it runs on every node (shared sources: the nodes' replicas compete for the
   messages);
3. preloads ``--messages`` JSON messages of about 200 bytes (the same backlog every run) and
   times from the start of the preload until the output holds one result per message;
4. reads the CPU seconds each node used meanwhile (its ``modelbus serve`` process and its
   runner processes, through psutil: the ``bench`` extra), then stops the nodes and drops
   the database.

A run has a deadline (``--deadline-min-s`` plus one second per ``--deadline-rate``
messages); a run past it is reported as ``stalled`` with how many results had come, and the
harness goes on with the next node count. Columns of the table it prints:

* ``nodes``: how many nodes drained the backlog;
* ``msg/s``: messages drained per second (the backlog over the timed span);
* ``x 1 node``: that rate over the 1-node rate measured in the same run (``-`` when the
  run has no 1-node measure or it did not finish);
* ``cpu s per node``: CPU seconds (user + system) of each node, server and runners, over
  the timed span, node by node;
* ``cpu s``: their sum; ``msg/cpu s``: messages per CPU second over all nodes (flat when
  the work scales per core; on a 2-core machine the third node can only add rate if the
  first two left a core idle);
* ``results``: results counted on the output; ``status``: ``ok``, ``duplicates`` (more
  results than messages: every message has one), ``stalled`` or ``failed`` (with why).

The broker is one of the shared ones: ``redis`` (127.0.0.1:6379), ``amqp`` (RabbitMQ
127.0.0.1:5672, guest/guest), ``nats`` (127.0.0.1:4222), ``postgres`` (the outbox table),
``sqs`` (moto, started on a free port: slow, use few messages) or ``kafka`` (tansu, started
on a free port). Lines starting with ``{`` repeat each run as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack, ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
from cryptography.fernet import Fernet
from drain_kits import KITS, Kit, Names, body
from tests.e2e.node import BEHAVE
from tests.support.server import ModelbusServer

BROKERS = tuple(name for name in KITS if name not in ("local", "mqtt"))  # shareable sources
READY_S = 60.0  # the listener runs on every node within this
POLL_S = 0.2


@dataclass(frozen=True, kw_only=True)
class Options:
    """What one invocation measures (the command line, parsed)."""

    broker: str
    node_counts: tuple[int, ...]
    messages: int
    batch: int
    postgres_url: str
    deadline_min_s: float
    deadline_rate: float

    def deadline_s(self) -> float:
        return self.deadline_min_s + self.messages / self.deadline_rate


@dataclass(frozen=True, kw_only=True)
class Run:
    """One drain with ``nodes`` nodes; ``status``: ok, duplicates, stalled or failed."""

    nodes: int
    status: str
    results: int
    seconds: float | None = None
    msg_per_s: float | None = None
    cpu_s: tuple[float, ...] = ()
    detail: str = ""


class Database:
    """A fresh database on the PostgreSQL server ``admin_url`` names (dropped on exit)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"modelbus_bench_nodes_{uuid.uuid4().hex[:12]}"
        self.url = admin_url.rsplit("/", 1)[0] + "/" + self.name

    async def __aenter__(self) -> str:
        await self._admin(f'CREATE DATABASE "{self.name}"')
        return self.url

    async def __aexit__(self, *exc: object) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    async def _admin(self, statement: str) -> None:
        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            await conn.execute(statement, timeout=60)
        finally:
            await conn.close(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and of its live descendants (runners)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def start_nodes(count: int, tmp: Path, database_url: str) -> list[ModelbusServer]:
    """``count`` nodes on one database and one artifact folder, the model pushed on the first."""
    env = {
        "MODELBUS_SECRET_KEY": Fernet.generate_key().decode(),
        "MODELBUS_ARTIFACTS": str(tmp / "artifacts"),
    }
    (tmp / "artifacts").mkdir(parents=True)
    servers: list[ModelbusServer] = []
    for index in range(count):
        servers.append(
            ModelbusServer.start(
                tmp / f"node-{index}",
                database_url=database_url,
                env=env,
                args=("--workers", "1"),
                admin_key=servers[0].admin_key if servers else "",
            )
        )
        if index == 0:
            with servers[0].client() as client:
                client.push(BEHAVE, version="1.0.0")
    return servers


def wait_running(server: ModelbusServer, listener: str, count: int) -> None:
    """Block until ``listener`` runs on ``count`` nodes, as ``server`` sees it."""
    deadline = time.monotonic() + READY_S
    with server.client() as client:
        while time.monotonic() < deadline:
            parts = client.listener_status(listener).nodes
            if len(parts) == count and all(p.state == "running" for p in parts):
                return
            time.sleep(POLL_S)
    raise TimeoutError(f"the listener did not run on {count} nodes within {READY_S:g} s")


async def drain(kit: Kit, options: Options, nodes: int, tmp: Path) -> Run:
    """One measure with ``nodes`` nodes (see the module docstring)."""
    names = await kit.fresh()
    listener = f"bench-nodes-{nodes}-{uuid.uuid4().hex[:6]}"
    await kit.prepare(names, "modelbus", listener)
    bodies = [body(n, 0.0) for n in range(options.messages)]
    with ExitStack() as stack:
        async with Database(options.postgres_url) as database_url:
            servers = await asyncio.to_thread(start_nodes, nodes, tmp, database_url)
            for server in servers:
                stack.callback(server.stop)
            with servers[0].client() as client:
                client.create_listener(
                    {
                        "name": listener,
                        "source": kit.listener_source(names),
                        "model": "e2e/behave@1.*",
                        "outputs": [names.out_url],
                        "max_in_flight": options.batch,
                    }
                )
            await asyncio.to_thread(wait_running, servers[0], listener, nodes)
            pids = [server.process.pid for server in servers if server.process is not None]
            cpu_before = [cpu_seconds(pid) for pid in pids]
            started = time.monotonic()
            await kit.preload(names, bodies)
            results = await results_by(kit, names, options.messages, started + options.deadline_s())
            seconds = time.monotonic() - started
            cpu = tuple(
                cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)
            )
            stack.close()  # the nodes stop before their database goes
    await kit.cleanup(names)
    if results < options.messages:
        return Run(
            nodes=nodes,
            status="stalled",
            results=results,
            cpu_s=cpu,
            detail=f"{results} of {options.messages} results after {seconds:.0f} s",
        )
    return Run(
        nodes=nodes,
        status="ok" if results == options.messages else "duplicates",
        results=results,
        seconds=seconds,
        msg_per_s=options.messages / seconds,
        cpu_s=cpu,
    )


async def results_by(kit: Kit, names: Names, target: int, deadline: float) -> int:
    """Poll the output until it holds ``target`` results or the deadline passes."""
    count = 0
    while time.monotonic() < deadline:
        count = await kit.count_results(names)
        if count >= target:
            return count
        await asyncio.sleep(POLL_S)
    return count


async def measure(kit: Kit, options: Options, nodes: int, tmp: Path) -> Run:
    """:func:`drain`, a failure reported as a row rather than raised."""
    try:
        return await drain(kit, options, nodes, tmp)
    except Exception as exc:  # the table says why; the next run goes on
        return Run(
            nodes=nodes, status="failed", results=0, detail=f"{type(exc).__name__}: {exc}"[:300]
        )


COLUMNS = (
    "nodes",
    "msg/s",
    "x 1 node",
    "cpu s per node",
    "cpu s",
    "msg/cpu s",
    "results",
    "status",
)


def rows(runs: list[Run], messages: int) -> list[list[str]]:
    """The table's cells, the 1-node run of the same invocation as the baseline."""
    baseline = next((r.msg_per_s for r in runs if r.nodes == 1 and r.msg_per_s), None)
    out = []
    for run in runs:
        total = sum(run.cpu_s)
        out.append(
            [
                str(run.nodes),
                f"{run.msg_per_s:,.0f}" if run.msg_per_s else "-",
                f"{run.msg_per_s / baseline:.2f}" if run.msg_per_s and baseline else "-",
                " / ".join(f"{c:.1f}" for c in run.cpu_s) or "-",
                f"{total:.1f}" if run.cpu_s else "-",
                f"{messages / total:,.0f}" if run.msg_per_s and total else "-",
                f"{run.results:,}",
                f"{run.status} {run.detail}".strip(),
            ]
        )
    return out


def table(runs: list[Run], messages: int) -> str:
    cells = [list(COLUMNS), *rows(runs, messages)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS) - 1)]
    lines = []
    for row in cells:
        lines.append("  ".join([*(c.rjust(w) for c, w in zip(row, widths, strict=False)), row[-1]]))
    lines.insert(1, "  ".join("-" * w for w in widths) + "  ------")
    return "\n".join(lines)


async def main(options: Options) -> int:
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-nodes-") as folder:
        async with AsyncExitStack() as stack:
            kit = KITS[options.broker](Path(folder) / "kit")
            await kit.start(stack)
            for nodes in options.node_counts:
                run = await measure(kit, options, nodes, Path(folder) / f"run-{len(runs)}")
                runs.append(run)
                print(
                    json.dumps(
                        {"broker": options.broker, "messages": options.messages, **asdict(run)}
                    ),
                    flush=True,
                )
    print(
        f"\n{options.broker}: drain of {options.messages:,} messages (~200 B), "
        f"max_in_flight {options.batch}, modelbus serve --workers 1 per node"
    )
    print(table(runs, options.messages))
    return 0 if all(r.status in ("ok", "duplicates") for r in runs) else 1


def parse(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--broker", choices=BROKERS, default="redis", help="default redis")
    p.add_argument("--nodes", default="1,2,3", help="node counts, comma-separated (default 1,2,3)")
    p.add_argument("--messages", type=int, default=20_000, help="backlog size (default 20000)")
    p.add_argument(
        "--batch", type=int, default=32, help="the listener's max_in_flight (default 32)"
    )
    p.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a database URL on the server the fresh databases are made on "
        "(default postgresql://postgres@127.0.0.1:5432/test)",
    )
    p.add_argument("--deadline-min-s", type=float, default=60.0, help="default 60")
    p.add_argument(
        "--deadline-rate",
        type=float,
        default=200.0,
        help="the deadline grows one second per this many messages (default 200)",
    )
    args = p.parse_args(argv)
    counts = tuple(int(n) for n in args.nodes.split(",") if n.strip())
    if not counts or min(counts) < 1:
        p.error("--nodes takes positive counts, e.g. 1,2,3")
    return Options(
        broker=args.broker,
        node_counts=counts,
        messages=args.messages,
        batch=args.batch,
        postgres_url=args.postgres,
        deadline_min_s=args.deadline_min_s,
        deadline_rate=args.deadline_rate,
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
