"""The worker processes of ``modelbus serve --workers N``: started, restarted, stopped.

With ``N > 1`` the serve process keeps the HTTP API, the console and async jobs, runs
listeners itself (it is worker 0), and :class:`Supervisor` runs ``N - 1`` **worker
processes** (:mod:`modelbus.web.worker`) on the same data directory, store, secret key,
artifact store and settings. Each registers as a node whose ``parent`` is the serve node
and runs listeners only, with runner pools of its own; the brokers spread each listener's
messages over every process, as over replicas, and a listener whose source cannot be
shared runs in the one process holding its lease.

* **Start** (:meth:`Supervisor.start`): ``python -m modelbus worker`` in a process group of
  its own (a Ctrl-C at a terminal reaches the serve process alone, which stops the workers
  in order), its settings written to its standard input. On Linux it gets
  ``PR_SET_PDEATHSIG``: a serve process that is killed (SIGKILL) takes its workers with it,
  like a machine crash; elsewhere a worker stops when its standard input closes.
* **Restart**: a worker that exits while the serve process runs is restarted after a
  backoff (1 s, doubled up to 60 s on each exit in a row; back to 1 s once a worker has run
  60 s). Every exit is logged with its status and the backoff; its node is marked stopped
  at once, so a crash loop shows in ``GET /v1/nodes`` as a trail of gone nodes with this
  parent, each restart a new node id.
* **Changes**: :meth:`Supervisor.sync` asks every worker to sync its listeners now (the
  listener manager calls it after each change it stores).
* **Stop** (:meth:`Supervisor.terminate`, then :meth:`Supervisor.stop`): no more restarts,
  SIGTERM to every worker (each drains its listeners to the stop deadline, as serve does),
  then wait for them: a worker still there ``stop_deadline_s`` + :data:`STOP_GRACE_S` later
  is killed.

Use from one event loop, the one that runs in the thread the serve process started from
(``PR_SET_PDEATHSIG`` fires when the thread that started the child ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Self

from modelbus import __version__
from modelbus.config import Settings
from modelbus.store.nodes import NodeIdentity, NodeStore

__all__ = [
    "MAX_RESTART_BACKOFF_S",
    "RESTART_BACKOFF_S",
    "STEADY_AFTER_S",
    "STOP_GRACE_S",
    "SYNC",
    "Supervisor",
    "WorkerSpec",
    "worker_command",
]

log = logging.getLogger("modelbus.web.supervisor")

RESTART_BACKOFF_S = 1.0
MAX_RESTART_BACKOFF_S = 60.0
STEADY_AFTER_S = 60.0  # a worker that ran this long restarts after the first backoff again
STOP_GRACE_S = 15.0  # past the stop deadline: closing pools and the database
SYNC = b"sync\n"  # the one command a worker reads after its spec: sync the listeners now


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerSpec:
    """What a worker process is told when it starts. ``index``: its number (1 to N-1; the
    serve process is worker 0); ``node_id``: the id it registers as a node with, chosen by
    the serve process (which marks it stopped when the process dies); ``parent``: the
    serve node's id."""

    settings: Settings
    index: int
    node_id: str
    parent: str

    def to_line(self) -> bytes:
        """The spec as the first line written to the worker's standard input."""
        values = {
            "index": self.index,
            "node_id": self.node_id,
            "parent": self.parent,
            "settings": self.settings.to_json(),
        }
        return json.dumps(values).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> Self:
        """The spec :meth:`to_line` wrote; raises ValueError for anything else."""
        try:
            values = json.loads(line)
            return cls(
                settings=Settings.from_json(values["settings"]),
                index=int(values["index"]),
                node_id=str(values["node_id"]),
                parent=str(values["parent"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a worker spec ({type(exc).__name__}: {exc})") from None

    def identity(self) -> NodeIdentity:
        """This worker as a node: listed at its serve node's address, ``parent`` set."""
        mine = NodeIdentity.of_this_process(address=self.settings.node_address, version=__version__)
        return dataclasses.replace(mine, id=self.node_id, parent=self.parent)


def worker_command() -> list[str]:
    """How a worker process is started: this Python, ``-m modelbus worker``."""
    return [sys.executable, "-m", "modelbus", "worker"]


class Supervisor:
    """The ``settings.workers - 1`` worker processes of serve node ``parent`` (see the module
    docstring). ``nodes`` marks a dead worker's node stopped; ``command`` starts one."""

    def __init__(
        self,
        settings: Settings,
        *,
        parent: str,
        nodes: NodeStore,
        command: Sequence[str] | None = None,
    ) -> None:
        self.settings = settings
        self.parent = parent
        self._nodes = nodes
        self._command = list(command or worker_command())
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.restarts = 0  # worker exits followed by a restart, since start

    @property
    def count(self) -> int:
        """How many worker processes this supervisor keeps running."""
        return self.settings.workers - 1

    @property
    def pids(self) -> dict[int, int]:
        """The running workers' process ids, by worker number."""
        return {index: p.pid for index, p in self._processes.items() if p.returncode is None}

    async def start(self) -> None:
        """Start every worker; returns once they are spawned (not once they run listeners)."""
        spawned = [asyncio.Event() for _ in range(self.count)]
        for index, event in enumerate(spawned, start=1):
            self._tasks.append(
                asyncio.create_task(self._keep(index, event), name=f"worker-{index}")
            )
        await asyncio.gather(*(event.wait() for event in spawned))
        pids = ", ".join(f"{i}: pid {pid}" for i, pid in sorted(self.pids.items()))
        log.info("started %d worker process(es) (%s)", self.count, pids)

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait until every worker has joined the store as a live node (it runs the
        listeners stored then, and follows changes from there). Raises TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while True:
                joined = [n for n in await self._nodes.live() if n.parent == self.parent]
                if len(joined) >= self.count:
                    return
                await asyncio.sleep(0.1)

    def sync(self) -> None:
        """Ask every running worker to sync its listeners with the store now. Never blocks;
        a request a worker has not read yet is not repeated."""
        for process in self._processes.values():
            pipe = process.stdin
            if process.returncode is not None or pipe is None or pipe.is_closing():
                continue
            if pipe.transport.get_write_buffer_size() == 0:
                pipe.write(SYNC)

    def terminate(self) -> None:
        """Stop restarting workers and send each SIGTERM (a graceful stop). Idempotent."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for index, process in self._processes.items():
            if process.returncode is None:
                log.info("stopping worker %d (pid %d)", index, process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)

    async def stop(self) -> None:
        """:meth:`terminate`, then wait for every worker to exit; those still running
        ``stop_deadline_s + STOP_GRACE_S`` later are killed."""
        self.terminate()
        if not self._tasks:
            return
        deadline_s = self.settings.stop_deadline_s + STOP_GRACE_S
        _, late = await asyncio.wait(self._tasks, timeout=deadline_s)
        if late:
            for index, process in self._processes.items():
                if process.returncode is None:
                    log.error(
                        "worker %d (pid %d) did not stop within %g s: killing it",
                        index,
                        process.pid,
                        deadline_s,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.wait(late, timeout=STOP_GRACE_S)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _keep(self, index: int, spawned: asyncio.Event) -> None:
        """Run worker ``index``; after each exit, again after a backoff, until stopped."""
        backoff_s, exits = RESTART_BACKOFF_S, 0
        try:
            while not self._stopping.is_set():
                began = time.monotonic()
                node_id = uuid.uuid4().hex
                how = await self._run_once(index, node_id, spawned)
                if self._stopping.is_set():
                    return
                ran_s = time.monotonic() - began
                if ran_s >= STEADY_AFTER_S:
                    backoff_s, exits = RESTART_BACKOFF_S, 0
                exits += 1
                self.restarts += 1
                log.error(
                    "worker %d (node %s) exited with %s after %.1f s; restarting it in %g s "
                    "(exit %d in a row)",
                    *(index, node_id[:8], how, ran_s, backoff_s, exits),
                )
                await self._forget(node_id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff_s)
                backoff_s = min(backoff_s * 2, MAX_RESTART_BACKOFF_S)
        finally:
            spawned.set()

    async def _run_once(self, index: int, node_id: str, spawned: asyncio.Event) -> str:
        """Start worker ``index`` as node ``node_id``, wait for it to exit; says how it did."""
        spec = WorkerSpec(settings=self.settings, index=index, node_id=node_id, parent=self.parent)
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                start_new_session=True,  # a terminal's Ctrl-C reaches the serve process alone
                preexec_fn=_die_with_parent(os.getpid()),
            )
        except OSError as exc:
            return f"no start ({exc})"
        finally:
            spawned.set()
        self._processes[index] = process
        assert process.stdin is not None
        process.stdin.write(spec.to_line())
        if self._stopping.is_set():  # terminate() ran while it was being started
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        return _how(await process.wait())

    async def _forget(self, node_id: str) -> None:
        """Mark a dead worker's node stopped: gone at once, its leases free for the others."""
        try:
            await self._nodes.leave(node_id)
        except Exception as exc:
            log.warning("could not mark worker node %s stopped: %s", node_id[:8], exc)


def _how(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"status {code}"


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` arming ``PR_SET_PDEATHSIG`` (SIGKILL) on Linux, else None. ``prctl``
    is looked up here, in the serve process, not in the forked child."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the serve process died before the signal was armed
            os._exit(1)

    return arm
