"""Fixtures of the end-to-end tests: the node (store, registry, real runner pools,
listener manager) in this process, and a broker: ``local://`` or SQS on a real moto_server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.aws.motoserver import MotoServer, fake_credentials

from .brokers import Broker, LocalBroker, SqsBroker
from .node import BEHAVE, Node, open_node


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """One real moto_server for the e2e session (unique queue names per test)."""
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws_credentials() -> Iterator[None]:
    with fake_credentials():
        yield


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    """Everything ``modelbus serve`` runs, in this process, on a fresh data dir, with the
    behave model published as 1.0.0."""
    async with open_node(tmp_path / "data") as opened:
        await opened.push(BEHAVE, version="1.0.0")
        yield opened


@pytest.fixture(params=["local", "sqs"])
async def broker(request: pytest.FixtureRequest, node: Node) -> AsyncIterator[Broker]:
    """Each test using it runs once on ``local://`` and once on SQS (moto)."""
    if request.param == "local":
        yield LocalBroker(node.data_dir)
        return
    moto: MotoServer = request.getfixturevalue("moto")
    request.getfixturevalue("aws_credentials")
    async with SqsBroker.open(moto.endpoint_url, node.data_dir) as sqs:
        yield sqs


async def eventually(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]],
    timeout_s: float = 20.0,
    what: str = "condition",
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s")
        await asyncio.sleep(0.05)


class Trace:
    """The behave model's trace file: one JSON line per call start and end."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def starts(self, id: str | None = None) -> list[float]:
        return [
            e["t"] for e in self.lines() if e["event"] == "start" and (id is None or e["id"] == id)
        ]

    def max_concurrent(self) -> int:
        """The most calls that were running at one moment."""
        running = peak = 0
        events = sorted(self.lines(), key=lambda e: (e["t"], e["event"] == "start"))
        for event in events:
            running += 1 if event["event"] == "start" else -1
            peak = max(peak, running)
        return peak


@pytest.fixture
def trace(tmp_path: Path) -> Trace:
    return Trace(tmp_path / "trace.jsonl")
