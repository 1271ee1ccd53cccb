"""Fixtures for the RabbitMQ tests: the shared server on 127.0.0.1:5672 (guest/guest).

Every test uses queues and exchanges named ``mbtest-amqp-...``; the session removes them all
(delay queues included) at its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from modelbus.connectors import ConnectorContext

from ..helpers import unique

HOST = os.environ.get("MODELBUS_TEST_AMQP_HOST", "127.0.0.1")
PORT = int(os.environ.get("MODELBUS_TEST_AMQP_PORT", "5672"))
PREFIX = "mbtest-amqp"


def amqp_url(
    *, port: int = PORT, user: str = "guest:guest", vhost: str = "", **options: object
) -> str:
    """``amqp://guest:guest@HOST:PORT/VHOST?OPTIONS`` (booleans written true/false)."""
    query = urlencode(
        {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()}
    )
    return f"amqp://{user}@{HOST}:{port}/{vhost}" + (f"?{query}" if query else "")


async def _reachable() -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, PORT), 2)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


@pytest.fixture
async def rabbitmq() -> None:
    """Skip (saying why) when the shared RabbitMQ server does not answer."""
    if not await _reachable():
        pytest.skip(f"RabbitMQ is not reachable at {HOST}:{PORT}")


@pytest.fixture
def ctx(tmp_path: Path) -> ConnectorContext:
    return ConnectorContext(listener=unique("listener"), data_dir=tmp_path / "data")


@pytest.fixture
def queue_name() -> str:
    return unique(PREFIX)


@pytest.fixture(scope="session", autouse=True)
def _remove_test_queues() -> Iterator[None]:
    yield
    asyncio.run(delete_queues(PREFIX))


async def delete_queues(prefix: str) -> None:
    """Delete every queue and exchange whose name contains ``prefix`` (best effort)."""
    names = _list("list_queues", prefix) + _list("list_exchanges", prefix)
    if not names:
        return
    import aio_pika

    connection = await aio_pika.connect(host=HOST, port=PORT, timeout=5)
    async with connection:
        for name in names:
            channel = await connection.channel()
            try:
                await channel.queue_delete(name)
            except Exception:
                channel = await connection.channel()
                await channel.exchange_delete(name)


def _list(command: str, prefix: str) -> list[str]:
    rabbitmqctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    if not Path(rabbitmqctl).exists() or PORT != 5672:
        return []
    done = subprocess.run(
        [rabbitmqctl, "-q", command, "name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return [line.strip() for line in done.stdout.splitlines() if prefix in line]


@pytest.fixture
async def admin(rabbitmq: None) -> AsyncIterator[object]:
    """An aio-pika channel for arranging tests (declaring, inspecting)."""
    import aio_pika

    connection = await aio_pika.connect(host=HOST, port=PORT, timeout=5)
    async with connection:
        yield await connection.channel()


class PrivateRabbitMQ:
    """A RabbitMQ node of this test (``rabbitmq-server`` with its own name, ports and data
    directory under ``folder``); Debian's wrapper runs it as the ``rabbitmq`` user, so this
    needs root (to hand ``folder`` over) and the system's Erlang cookie."""

    def __init__(self, folder: Path) -> None:
        from ..helpers import free_port

        self.folder = folder
        self.port = free_port()
        self.node = f"mbtest{self.port}@localhost"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "enabled_plugins").write_text("[].\n")
        (folder / "rabbitmq.conf").write_text("loopback_users = none\n")
        (folder / "env.conf").touch()
        self.env = dict(
            os.environ,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_NODE_IP_ADDRESS=HOST,
            RABBITMQ_DIST_PORT=str(free_port()),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_MNESIA_BASE=str(folder / "mnesia"),
            RABBITMQ_LOG_BASE=str(folder / "log"),
            RABBITMQ_PID_FILE=str(folder / "pid"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(folder / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(folder / "rabbitmq"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(folder / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(folder / "env.conf"),
            RABBITMQ_FEATURE_FLAGS_FILE=str(folder / "feature_flags"),
        )
        _hand_over(folder)
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def unavailable() -> str | None:
        """Why a private node cannot run here, or None."""
        if shutil.which("rabbitmq-server") is None:
            return "rabbitmq-server is not installed"
        if os.geteuid() != 0:
            return "starting a private RabbitMQ node needs root (Debian runs it as rabbitmq)"
        return None

    async def start(self) -> None:
        log = (self.folder / "server.log").open("ab")
        self.process = await asyncio.to_thread(
            subprocess.Popen, ["rabbitmq-server"], env=self.env, stdout=log, stderr=log
        )
        deadline = asyncio.get_running_loop().time() + 60
        while not await _port_open(self.port):
            if self.process.poll() is not None or asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"rabbitmq-server did not start; see {self.folder}")
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """Stop the node the way an operator restarting it does (``rabbitmqctl stop``)."""
        await asyncio.to_thread(
            subprocess.run, ["rabbitmqctl", "-q", "-n", self.node, "stop"], env=self.env, timeout=60
        )
        if self.process is not None:
            await asyncio.to_thread(self.process.wait, 60)
            self.process = None


def _hand_over(folder: Path) -> None:
    import pwd

    try:
        account = pwd.getpwnam("rabbitmq")
    except KeyError:
        return
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, account.pw_uid, account.pw_gid)


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


@pytest.fixture
async def private_rabbitmq(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[PrivateRabbitMQ]:
    reason = PrivateRabbitMQ.unavailable()
    if reason:
        pytest.skip(reason)
    # Not under tmp_path: the rabbitmq user must be able to reach it.
    folder = Path("/tmp") / unique("mbtest-rabbitmq")
    node = PrivateRabbitMQ(folder)
    await node.start()
    try:
        yield node
    finally:
        with contextlib.suppress(Exception):
            await node.stop()
        shutil.rmtree(folder, ignore_errors=True)
