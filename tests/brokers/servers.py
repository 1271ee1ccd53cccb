"""Private broker processes for the tests that must stop, kill or misconfigure a broker.

    with RedisServer(tmp_path) as server:       # redis-server on a free port, AOF on
        url = server.url(stream="s")
        server.kill(); server.start()            # a crash and a restart, data kept

Most tests use the shared servers (Redis 127.0.0.1:6379, NATS 127.0.0.1:4222) with unique
names; these are for the rest. No pytest needed here (bench scripts use them too).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["BrokerServer", "NatsServer", "PostgresServer", "RedisServer", "free_port"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
POSTGRES = shutil.which("postgres") or "/usr/lib/postgresql/16/bin/postgres"
INITDB = shutil.which("initdb") or str(Path(POSTGRES).with_name("initdb"))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class BrokerServer:
    """A broker process on a fixed free port with its own data directory; ``start`` after
    ``kill`` or ``stop`` brings it back on the same port with the same data."""

    name = "broker"
    run_as: str | None = None  # the OS user running the process (PostgreSQL refuses root)

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log = directory / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, *, timeout_s: float = 15.0) -> None:
        """Start the process and wait until it accepts connections."""
        if self._process is not None:
            raise RuntimeError(f"{self.name} is already running")
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                user=self.run_as,
            )
        deadline = time.monotonic() + timeout_s
        while not _accepts(self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self._log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.name} did not listen on {self.port} in {timeout_s} s")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed on the way out."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: a clean shutdown."""
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> BrokerServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()


class RedisServer(BrokerServer):
    """``redis-server`` with an append-only file fsynced on every write (so a SIGKILL loses
    nothing that was acknowledged), optionally with a password."""

    name = "redis"

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        super().__init__(directory)
        self.password = password

    def command(self) -> list[str]:
        command = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        return command

    def url(self, *, password: str | None = None, **options: object) -> str:
        """``redis://[:PASSWORD@]127.0.0.1:PORT/0?OPTIONS``."""
        auth = f":{password}@" if password else ""
        query = "&".join(f"{k}={_text(v)}" for k, v in options.items())
        return f"redis://{auth}127.0.0.1:{self.port}/0?{query}"


class NatsServer(BrokerServer):
    """``nats-server -js`` with its store in the directory, optionally with a user and
    password and a larger ``max_payload``."""

    name = "nats"

    def __init__(
        self,
        directory: Path,
        *,
        user: str | None = None,
        password: str | None = None,
        max_payload_bytes: int | None = None,
    ) -> None:
        super().__init__(directory)
        self.user, self.password = user, password
        self.max_payload_bytes = max_payload_bytes

    def command(self) -> list[str]:
        command = [
            NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port),
            "-js", "-sd", str(self.directory / "jetstream"),
        ]  # fmt: skip
        if self.user:
            command += ["--user", self.user, "--pass", self.password or ""]
        if self.max_payload_bytes:
            config = self.directory / "nats.conf"
            config.write_text(f"max_payload: {self.max_payload_bytes}\n")
            command += ["-c", str(config)]
        return command

    def url(self, *, auth: str = "", **options: object) -> str:
        """``nats://[AUTH@]127.0.0.1:PORT?OPTIONS``."""
        at = f"{auth}@" if auth else ""
        query = "&".join(f"{k}={_text(v)}" for k, v in options.items())
        return f"nats://{at}127.0.0.1:{self.port}?{query}"


class PostgresServer(BrokerServer):
    """A PostgreSQL cluster of its own (``initdb`` on first start, trust authentication,
    database ``postgres``, fsync off: a SIGKILL of the server is not a power cut). Run as the
    ``postgres`` user when the tests run as root. The directory must be reachable by that
    user: pass one under /tmp made with :func:`tempfile.mkdtemp`, not pytest's tmp_path."""

    name = "postgres"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        if os.geteuid() == 0:
            self.run_as = "postgres"
            shutil.chown(self.directory, "postgres")
        self._data = self.directory / "db"

    def start(self, *, timeout_s: float = 15.0) -> None:
        if not self._data.exists():
            subprocess.run(
                [INITDB, "-D", str(self._data), "-U", "postgres", "--auth=trust", "-N"],
                check=True,
                capture_output=True,
                user=self.run_as,
            )
        super().start(timeout_s=timeout_s)

    def command(self) -> list[str]:
        return [
            POSTGRES, "-D", str(self._data), "-p", str(self.port), "-k", str(self.directory),
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=100",
        ]  # fmt: skip

    def url(self, **options: object) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/postgres?OPTIONS``."""
        query = "&".join(f"{k}={_text(v)}" for k, v in options.items())
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?{query}"


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
