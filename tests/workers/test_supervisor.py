"""The worker supervisor and its parts, with stand-in worker commands (real processes):
restarts with a growing backoff, the escalation to SIGKILL at stop, the sync command, the
spec a worker reads; and the settings behind ``--workers``."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from modelbus.config import Settings, default_workers
from modelbus.store.database import Database
from modelbus.store.nodes import NodeIdentity, NodeStore
from modelbus.web import supervisor as supervising
from modelbus.web.supervisor import SYNC, Supervisor, WorkerSpec

from .conftest import alive


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[NodeStore]:
    database = await Database.open(f"sqlite:///{tmp_path / 'store.sqlite'}")
    await database.migrate()
    yield NodeStore(database)
    await database.close()


def settings(tmp_path: Path, **values: object) -> Settings:
    base: dict[str, object] = {
        "data_dir": tmp_path,
        "database_url": f"sqlite:///{tmp_path / 'store.sqlite'}",
        "workers": 2,
    }
    return Settings(**{**base, **values})  # type: ignore[arg-type]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def until(check: Callable[[], bool | Awaitable[bool]], timeout_s: float) -> None:
    """Poll ``check`` until it is true; raises TimeoutError after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            found = check()
            if not isinstance(found, bool):
                found = await found
            if found:
                return
            await asyncio.sleep(0.02)


def read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


async def test_a_worker_that_keeps_dying_is_restarted_with_a_growing_backoff(
    tmp_path: Path,
    nodes: NodeStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(supervising, "RESTART_BACKOFF_S", 0.05)
    monkeypatch.setattr(supervising, "MAX_RESTART_BACKOFF_S", 0.2)
    caplog.set_level(logging.INFO, logger="modelbus.web.supervisor")
    dying = python("import sys; sys.stdin.readline(); sys.exit(3)")
    workers = Supervisor(settings(tmp_path, workers=3), parent="p" * 32, nodes=nodes, command=dying)
    await workers.start()
    await until(lambda: workers.restarts >= 8, 30)
    await workers.stop()
    exits = [r.getMessage() for r in caplog.records if "exited with status 3" in r.getMessage()]
    for index in (1, 2):  # each worker has its own backoff
        mine = [m for m in exits if m.startswith(f"worker {index} ")]
        assert len(mine) >= 3, exits
        assert "restarting it in 0.05 s (exit 1 in a row)" in mine[0]
        assert "restarting it in 0.1 s (exit 2 in a row)" in mine[1]
        assert "restarting it in 0.2 s (exit 3 in a row)" in mine[2]
        assert all("restarting it in 0.2 s" in m for m in mine[3:])  # capped
    assert workers.pids == {}
    restarts = workers.restarts
    await asyncio.sleep(0.3)
    assert workers.restarts == restarts  # stopped: no more restarts


async def test_a_dead_workers_node_is_marked_stopped_at_once(
    tmp_path: Path, nodes: NodeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervising, "RESTART_BACKOFF_S", 30.0)
    joined: list[str] = []

    # A stand-in worker that joins the store as its spec says, then dies.
    class Joining(Supervisor):
        async def _run_once(self, index: int, node_id: str, spawned: asyncio.Event) -> str:
            spec = WorkerSpec(settings=self.settings, index=index, node_id=node_id, parent="p")
            await nodes.join(spec.identity())
            joined.append(node_id)
            spawned.set()
            return "status 1"

    workers = Joining(settings(tmp_path), parent="p", nodes=nodes, command=["true"])
    await workers.start()

    async def marked() -> bool:
        return bool(joined) and (await nodes.nodes())[0].stopped_at is not None

    await until(marked, 10)
    [node] = await nodes.nodes()
    assert (node.id, node.parent, node.state) == (joined[0], "p", "gone")
    await workers.stop()


async def test_a_worker_that_ignores_sigterm_is_killed_after_the_deadline(
    tmp_path: Path,
    nodes: NodeStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(supervising, "STOP_GRACE_S", 0.3)
    stubborn = python(
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(120)"
    )
    workers = Supervisor(
        settings(tmp_path, stop_deadline_s=0.2), parent="p", nodes=nodes, command=stubborn
    )
    await workers.start()
    await asyncio.sleep(0.5)  # its SIGTERM handler is set
    [pid] = workers.pids.values()
    async with asyncio.timeout(10):
        await workers.stop()
    assert "did not stop within 0.5 s: killing it" in caplog.text
    assert not alive(pid)


async def test_workers_read_their_spec_then_a_sync_line_per_change(
    tmp_path: Path, nodes: NodeStore
) -> None:
    copy = tmp_path / "stdin.bin"
    echo = python(
        f"import sys\nwith open({str(copy)!r}, 'ab') as f:\n"
        "    for line in sys.stdin.buffer:\n        f.write(line); f.flush()"
    )
    workers = Supervisor(
        settings(tmp_path, secret_key="k" * 8), parent="p" * 32, nodes=nodes, command=echo
    )
    await workers.start()
    try:
        await until(lambda: b"\n" in read(copy), 10)
        workers.sync()
        await until(lambda: SYNC in read(copy), 10)
    finally:
        await workers.stop()  # its stdin closes: it exits
    spec_line, sync_line = copy.read_bytes().splitlines(keepends=True)
    spec = WorkerSpec.from_line(spec_line)
    assert (spec.index, spec.parent, len(spec.node_id)) == (1, "p" * 32, 32)
    assert spec.settings == settings(tmp_path, secret_key="k" * 8)
    assert sync_line == SYNC


def test_a_worker_refuses_what_is_not_a_spec() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modelbus", "worker"],
        input=b"{}\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert b"modelbus worker: not a worker spec" in done.stderr


def test_worker_spec_and_settings_go_through_one_line(tmp_path: Path) -> None:
    given = settings(
        tmp_path,
        secret_key="s3cret",
        listeners_file=tmp_path / "l.toml",
        stop_deadline_s=2.5,
        dir_roots=(tmp_path / "in", tmp_path / "out"),
    )
    spec = WorkerSpec(settings=given, index=2, node_id="n" * 32, parent="p" * 32)
    line = spec.to_line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert WorkerSpec.from_line(line) == spec
    assert Settings.from_json(given.to_json()) == given
    identity = spec.identity()
    assert isinstance(identity, NodeIdentity)
    assert (identity.id, identity.parent, identity.workers) == ("n" * 32, "p" * 32, 1)
    with pytest.raises(ValueError, match="not a worker spec"):
        WorkerSpec.from_line(json.dumps({"index": 1}).encode())


def test_workers_default_to_the_cores_and_are_at_least_one(tmp_path: Path) -> None:
    assert Settings.from_env({}, data_dir=tmp_path).workers == default_workers() >= 1
    assert Settings.from_env({"MODELBUS_WORKERS": "3"}, data_dir=tmp_path).workers == 3
    assert Settings.from_env({"MODELBUS_WORKERS": "3"}, data_dir=tmp_path, workers=1).workers == 1
    assert Settings.from_env({"MODELBUS_WORKERS": ""}, data_dir=tmp_path).workers >= 1
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(ValueError, match="at least 1"):
            Settings.from_env({"MODELBUS_WORKERS": bad}, data_dir=tmp_path)
    with pytest.raises(ValueError, match="at least 1"):
        settings(tmp_path, workers=0)
