"""``modelbus serve --workers N`` as real processes: the serve process, its worker
processes and their runners, on a SQLite store in the test's data directory, with short
heartbeats (``FAST``) so that nodes and leases move in seconds; listeners on the shared
Redis at 127.0.0.1:6379 (a unique stream per test, deleted afterwards)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from modelbus.client.schemas import NodeOut
from tests.serve.conftest import eventually
from tests.support.fixtures import MODELS_DIR
from tests.support.server import ModelbusServer

HEARTBEAT_S = 0.5
NODE_TIMEOUT_S = 3.0
FAST = ("--heartbeat-interval", str(HEARTBEAT_S), "--node-timeout", str(NODE_TIMEOUT_S))
REDIS = "redis://127.0.0.1:6379/0"


def start_serve(data_dir: Path, workers: int, *args: str) -> ModelbusServer:
    """``modelbus serve --workers N`` with the echo model pushed; returns once every worker
    has joined the store as a live node."""
    server = ModelbusServer.start(data_dir, args=(*FAST, "--workers", str(workers), *args))
    try:
        with server.client() as client:
            client.push(MODELS_DIR / "echo", version="1.0.0")
        eventually(lambda: len(live_workers(server)) == workers - 1, 60)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """``serve(workers, *args)`` starts a server (stopped at the end of the test)."""
    started: list[ModelbusServer] = []

    def start(workers: int, *args: str) -> ModelbusServer:
        server = start_serve(tmp_path / f"data-{len(started)}", workers, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        pids = [n.pid for n in live_workers(server)] if server_alive(server) else []
        server.stop(timeout_s=60)
        for pid in pids:  # never leave a worker behind, even when a test failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def server_alive(server: ModelbusServer) -> bool:
    return server.process is not None and server.process.poll() is None


def this_node(server: ModelbusServer) -> NodeOut:
    with server.client() as client:
        return next(n for n in client.nodes() if n.this)


def live_workers(server: ModelbusServer) -> list[NodeOut]:
    """The live worker nodes of ``server``'s node."""
    with server.client() as client:
        nodes = client.nodes(gone=False)
    me = next(n for n in nodes if n.this)
    return [n for n in nodes if n.parent == me.id]


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def redis() -> Iterator[Redis]:
    client = Redis(host="127.0.0.1", port=6379)
    yield client
    client.close()


@pytest.fixture
def streams(redis: Redis) -> Iterator[tuple[str, str]]:
    """A unique (input, output) pair of stream names, deleted afterwards."""
    name = f"workers-{uuid.uuid4().hex[:10]}"
    yield name, f"{name}-out"
    redis.delete(name, f"{name}-out")


def redis_listener(name: str, stream: str, out: str, **options: str) -> dict[str, Any]:
    query = "&".join(f"{k}={v}" for k, v in {"create": "true", **options}.items())
    return {
        "name": name,
        "source": f"{REDIS}?stream={stream}&{query}",
        "model": "test/echo@1.0.0",
        "outputs": [f"{REDIS}?stream={out}&create=true"],
    }


def add_messages(redis: Redis, stream: str, bodies: list[bytes]) -> list[str]:
    """XADD each body (field ``body``); returns the entry ids (the messages' broker ids)."""
    pipe = redis.pipeline(transaction=False)
    for body in bodies:
        pipe.xadd(stream, {"body": body})
    return [i.decode() for i in pipe.execute()]


def run_records(data_dir: Path, listener: str) -> dict[str, tuple[str, int]]:
    """The listener's run records in the store: message id -> (status, attempts)."""
    with contextlib.closing(sqlite3.connect(data_dir / "modelbus.sqlite", timeout=30)) as db:
        rows = db.execute(
            "SELECT message_id, status, attempts FROM runs WHERE listener = ?", (listener,)
        ).fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}
