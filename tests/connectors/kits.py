"""Broker kits: what the connector contract suite needs to know about one broker.

A kit makes fresh, uniquely named queues (source URL + sink URL that reach the same
messages) and says what the broker promises (:class:`Capabilities`). To run the suite
against another broker, add a module ``kit_<broker>.py`` next to this one defining
``KITS = [YourKit]``: :func:`all_kits` picks it up, and every contract test runs against it.
A kit whose server is not reachable says why in :meth:`BrokerKit.unavailable` and its tests
are skipped.
"""

from __future__ import annotations

import atexit
import importlib
import os
import pkgutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

from modelbus.connectors import ConnectorContext

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What the contract suite may expect of a broker."""

    fifo: bool = False  # one consumer receives in publish order
    max_message_bytes: int = 1024 * 1024 + 4096  # the large-message test uses min(1 MiB, this)
    cross_process: bool = True  # another OS process can consume the same queue
    min_lease_s: float = 1.0  # the shortest lease (visibility timeout) the broker accepts
    # Sources of *different listeners* on one URL each get every message (consumer group,
    # durable consumer or subscription per listener); False for plain queues (SQS, local).
    fan_out: bool = False
    # Deliveries are leased: one left unsettled comes back after the lease (``lease_s``).
    # False (RabbitMQ, MQTT, Kafka): it stays with its consumer until acked or released, or
    # until that consumer goes away; ``extend`` then has nothing to do.
    leases: bool = True
    # A dead consumer's deliveries come back only when *that* consumer (same listener and
    # data directory) resumes its session (MQTT persistent sessions), not to another one.
    redelivers_to_same_consumer: bool = False
    # A delivery that comes back after its consumer died carries ``attempt >= 2``. False for
    # Kafka, which keeps no delivery count (attempts count releases only).
    counts_redeliveries: bool = True
    # ``Source.backlog`` gives a figure (False: MQTT, which cannot say).
    counts_backlog: bool = True
    # The broker pushes messages to a consumer ahead of its receives (RabbitMQ's prefetch
    # window): those leave the backlog before the runtime has them.
    pushes_ahead: bool = False


_servers: dict[str, Any] = {}


def process_server(name: str, start: Callable[[], T], stop: Callable[[T], object]) -> T:
    """A server shared by every test of this process (moto, tansu...): started by ``start``
    on first use, stopped by ``stop`` at exit."""
    if name not in _servers:
        server = _servers[name] = start()
        atexit.register(stop, server)
    return cast(T, _servers[name])


@dataclass(frozen=True, kw_only=True)
class QueueUrls:
    """One fresh queue: consumers use ``source_url`` (with the requested lease), publishers
    ``sink_url``."""

    source_url: str
    sink_url: str


class BrokerKit:
    """Base of the kits. Subclasses set ``name`` and ``capabilities`` and implement
    :meth:`new_queue`; :meth:`start`/:meth:`stop` bracket one test."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ctx = ConnectorContext(
            listener=f"contract-{uuid.uuid4().hex[:8]}", data_dir=self.data_dir
        )

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this kit cannot run here (its tests are then skipped), or None."""
        return None

    async def start(self) -> None:
        """Prepare for one test (connect an admin client...)."""

    async def stop(self) -> None:
        """Clean up after one test."""

    async def new_queue(self, *, lease_s: float) -> QueueUrls:
        """A fresh, empty queue whose consumers hold deliveries for ``lease_s``."""
        raise NotImplementedError

    def subprocess_env(self) -> dict[str, str]:
        """The environment of a consumer started in another process."""
        return dict(os.environ)

    @staticmethod
    def unique(prefix: str = "contract") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"


class MemoryKit(BrokerKit):
    name = "memory"
    capabilities = Capabilities(fifo=True, cross_process=False, min_lease_s=0.5)

    async def new_queue(self, *, lease_s: float) -> QueueUrls:
        name = self.unique()
        return QueueUrls(
            source_url=f"memory://{name}?lease_s={lease_s}", sink_url=f"memory://{name}"
        )


class LocalKit(BrokerKit):
    name = "local"
    capabilities = Capabilities(fifo=True, cross_process=True, min_lease_s=0.5)

    async def new_queue(self, *, lease_s: float) -> QueueUrls:
        name = self.unique()
        return QueueUrls(
            source_url=f"local://{name}?lease_s={lease_s}&poll_ms=20", sink_url=f"local://{name}"
        )


KITS: list[type[BrokerKit]] = [MemoryKit, LocalKit]


def all_kits() -> list[type[BrokerKit]]:
    """These kits plus ``KITS`` of every ``kit_*`` module in this package."""
    found = list(KITS)
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name.startswith("kit_"):
            found += importlib.import_module(f"{__package__}.{module.name}").KITS
    return found
