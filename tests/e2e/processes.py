"""A real ``modelbus serve --config FILE`` process under test control: started, SIGKILLed
(with its runners), restarted, stopped with SIGTERM; one of its runners killed on its own.

It is :class:`tests.support.server.ModelbusServer` (free port, its own data dir, logs in a
file, its own process group) with the listener file given, driven from async tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from pathlib import Path

from tests.support.server import ModelbusServer


class Serving:
    """``modelbus serve --data-dir DATA_DIR --config CONFIG`` (see the module docstring)."""

    def __init__(self, data_dir: Path, config: Path) -> None:
        self.data_dir, self.config = data_dir, config
        self.server: ModelbusServer | None = None

    async def start(self) -> None:
        """Start (or start again, on the same data) and wait until ``/health`` answers:
        by then the listener file is applied and the listeners are started."""
        if self.server is None:
            self.server = await asyncio.to_thread(
                ModelbusServer.start, self.data_dir, args=["--config", str(self.config)]
            )
        else:
            await asyncio.to_thread(self.server.restart)

    def log(self) -> str:
        return self.server.log() if self.server else ""

    def kill(self) -> None:
        """SIGKILL the server and its runners (its whole process group)."""
        assert self.server is not None
        self.server.kill()

    def kill_a_runner(self) -> int:
        """SIGKILL one runner process (a child of the server); returns its pid."""
        assert self.server is not None and self.server.process is not None
        children = _children(self.server.process.pid)
        assert children, "the server has no runner running"
        victim = random.choice(children)
        os.kill(victim, signal.SIGKILL)
        return victim

    def stop(self) -> int | None:
        """SIGTERM (graceful: listeners drain) and wait; SIGKILL what is left. Returns the
        server's exit status."""
        if self.server is None or self.server.process is None:
            return None
        self.server.stop(timeout_s=60)
        return self.server.process.returncode


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found
