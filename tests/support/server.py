"""A REAL ``modelbus serve`` process for tests: free port, its own data dir, its admin key.

::

    with ModelbusServer.start(tmp_path / "data") as server:
        client = server.client()          # admin key
        ...
        server.kill()                      # SIGKILL the server and its runners
        server = server.restart()          # same data dir / database, admin key kept

The server's output goes to ``<data_dir>/../server-<n>.log`` (never to a pipe that could fill
up and block it); :meth:`ModelbusServer.log` reads it, and start-up failures include it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from modelbus.client import Client

MODELBUS = str(Path(sys.executable).with_name("modelbus"))
_ADMIN_KEY = re.compile(r"admin API key: (\S+)")
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without MODELBUS_* and OTEL_* settings, plus ``extra``;
    dir:// folders may be anywhere under the temporary directory, connectors may reach
    loopback; a server started with it runs its listeners in one process
    (``MODELBUS_WORKERS=1``, unless ``extra`` says otherwise, or ``--workers`` does),
    whatever the machine's cores, so that tests behave and last the same on every machine."""
    # nor OTEL_*: a developer's collector settings must not make test servers export
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELBUS_", "OTEL_"))}
    env["MODELBUS_WORKERS"] = "1"
    # The tests' folders are under the temporary directory (the default root, the working
    # directory, is the checkout).
    env["MODELBUS_DIR_ROOTS"] = tempfile.gettempdir()
    # Every test broker and receiver is on loopback, which the egress policy refuses
    # unless allowed (the server's own API stays refused).
    env["MODELBUS_ALLOW_HOSTS"] = "127.0.0.0/8,::1,localhost"
    env.update(extra or {})
    return env


PORT_TRIES = 3  # a free port another process takes before the server binds it: try another


class PortTaken(RuntimeError):
    """The port chosen for a server was taken before it could bind it."""


@dataclass(kw_only=True)
class ModelbusServer:
    """One running ``modelbus serve`` process (see the module docstring)."""

    data_dir: Path
    database_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    args: Sequence[str] = ()
    port: int = 0
    admin_key: str = ""
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        data_dir: Path,
        *,
        database_url: str | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        admin_key: str = "",
    ) -> ModelbusServer:
        """Start a server on a fresh free port and wait until ``/health`` answers; ``args``
        are more ``modelbus serve`` options (``--config FILE``, ``--metrics-public``...).
        ``admin_key``: the key printed by the first start of the store (another node of a
        PostgreSQL store prints none)."""
        server = cls(
            data_dir=data_dir,
            database_url=database_url,
            env=dict(env or {}),
            args=tuple(args),
            admin_key=admin_key,
        )
        server._launch()
        return server

    def restart(self) -> Self:
        """Stop this process (if alive) and start another on the same data and database,
        on a new port; the admin key stays the one printed on the first start."""
        self.stop()
        self._launch()
        return self

    def _launch(self) -> None:
        for _ in range(PORT_TRIES - 1):
            try:
                return self._launch_once()
            except PortTaken:  # another test's server took the free port first: another
                continue
        self._launch_once()

    def _launch_once(self) -> None:
        self.port = free_port()
        self.starts += 1
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server-{self.starts}.log"
        argv = [MODELBUS, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        if self.database_url:
            argv += ["--database-url", self.database_url]
        argv += list(self.args)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=clean_env(self.env),
                start_new_session=True,  # its own process group: runners die with it
            )
        self._wait_ready()
        found = _ADMIN_KEY.search(self.log())
        if found:
            self.admin_key = found[1]
        if not self.admin_key:
            self.stop()
            raise RuntimeError(f"no admin key was printed on first start:\n{self.log()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                if self.process.returncode == 2 and "is in use" in self.log():
                    raise PortTaken(self.port)
                raise RuntimeError(
                    f"modelbus serve exited ({self.process.returncode}):\n{self.log()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"modelbus serve did not answer within {START_TIMEOUT_S}s:\n{self.log()}"
        )

    def log(self) -> str:
        """Everything the current process wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def client(self, key: str | None = None) -> Client:
        """An SDK client for this server (the admin key unless ``key`` is given)."""
        return Client(self.url, key or self.admin_key, timeout_s=120.0)

    def http(self, key: str | None = None, **headers: str) -> httpx.Client:
        """A bare httpx client with ``Authorization: Bearer`` (admin unless ``key``)."""
        auth = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.Client(base_url=self.url, headers={**auth, **headers}, timeout=120.0)

    def kill(self) -> None:
        """SIGKILL the server and every process of its group (a machine crash, as far as
        the store is concerned)."""
        self._signal_group(signal.SIGKILL)
        self._reap(5.0)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (graceful stop), then SIGKILL whatever is left of the group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout_s)
        self._signal_group(signal.SIGKILL)
        self._reap(5.0)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    def _reap(self, timeout_s: float) -> None:
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def running_server(
    data_dir: Path,
    *,
    database_url: str | None = None,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> Iterator[ModelbusServer]:
    """:meth:`ModelbusServer.start` as a context manager that always stops the process."""
    server = ModelbusServer.start(data_dir, database_url=database_url, env=env, args=args)
    try:
        yield server
    finally:
        server.stop()
