"""Fixtures for the MQTT tests: the shared Mosquitto on 127.0.0.1:1883, and private
Mosquitto instances (``/usr/sbin/mosquitto`` on a free port, a temp config, persistence) for
the tests that stop the broker or need passwords.

Sessions: every test's sources are closed, then their persistent sessions are removed from
the broker (a clean-session connect under each client id the test's data directory used).
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from modelbus.connectors import ConnectorContext

from ..helpers import free_port, unique

HOST = "127.0.0.1"
PORT = int(os.environ.get("MODELBUS_TEST_MQTT_PORT", "1883"))
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def mqtt_url(topic: str, *, port: int = PORT, user: str = "", **options: object) -> str:
    """``mqtt://[USER@]HOST:PORT/TOPIC?OPTIONS`` (booleans written true/false)."""
    query = urlencode(
        {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()}
    )
    auth = f"{user}@" if user else ""
    return f"mqtt://{auth}{HOST}:{port}/{topic}" + (f"?{query}" if query else "")


async def reachable(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 2)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


@pytest.fixture
async def mosquitto() -> int:
    """The shared broker's port; skips (saying why) when it does not answer."""
    if not await reachable(PORT):
        pytest.skip(f"Mosquitto is not reachable at {HOST}:{PORT}")
    return PORT


@pytest.fixture
def topic() -> str:
    return f"mbtest/{unique('t')}"


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ConnectorContext]:
    """A listener of its own; its persistent sessions are removed after the test."""
    context = ConnectorContext(listener=unique("mbtest"), data_dir=tmp_path / "data")
    yield context
    remove_sessions(context, PORT)


def remove_sessions(ctx: ConnectorContext, port: int) -> None:
    """End the sessions of every client id ``ctx``'s sources used on ``port`` (a source takes
    a slot, a lock file named after its client id, in the data directory)."""
    for lock in sorted((ctx.data_dir / "mqtt" / "slots").glob("*.lock")):
        _end_session(lock.name.removesuffix(".lock"), port)


def _end_session(client_id: str, port: int) -> None:
    from paho.mqtt.client import Client, MQTTv311
    from paho.mqtt.enums import CallbackAPIVersion

    client = Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=MQTTv311
    )
    try:
        client.connect(HOST, port, keepalive=5)
        client.loop(0.2)
        client.disconnect()
    except OSError:
        pass  # the broker is gone: so is the session


class PrivateMosquitto:
    """A Mosquitto of this test on a free port, with persistence in ``folder``."""

    def __init__(self, folder: Path, *, passwords: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} {HOST}",
            f"user {getpass.getuser()}",
            "persistence true",
            f"persistence_location {folder}/",
            "autosave_interval 1",
            "autosave_on_changes true",
            "max_queued_messages 0",
            f"log_dest file {folder}/mosquitto.log",
        ]
        if passwords:
            password_file = folder / "passwords"
            password_file.touch()
            for user, password in passwords.items():
                subprocess.run(
                    [MOSQUITTO_PASSWD, "-b", str(password_file), user, password], check=True
                )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    async def start(self) -> None:
        self.process = await asyncio.to_thread(
            subprocess.Popen, [MOSQUITTO, "-c", str(self.config)], stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not await reachable(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mosquitto did not start: {(self.folder / 'mosquitto.log').read_text()}"
                )
            await asyncio.sleep(0.05)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM writes the persistence file first)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            await asyncio.to_thread(self.process.wait, 10)
        self.process = None


@pytest.fixture
async def private_mosquitto(tmp_path: Path) -> AsyncIterator[PrivateMosquitto]:
    if shutil.which(MOSQUITTO) is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    broker = PrivateMosquitto(tmp_path / "mosquitto")
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop(signal.SIGKILL)
