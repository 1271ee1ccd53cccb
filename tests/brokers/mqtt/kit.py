"""Broker kits for the connector contract suite (tests/connectors/): MQTT 5 and MQTT 3.1.1
on the shared Mosquitto on 127.0.0.1:1883.

Every queue is a fresh topic with a fresh shared-subscription group (so consumers in other
processes, whatever their listener name, compete in it). MQTT has no leases, and a delivery
held by a consumer that dies comes back only when that consumer's session resumes (the same
listener and data directory), which :class:`Capabilities` says with ``leases=False`` and
``redelivers_to_same_consumer=True``.
"""

from __future__ import annotations

from typing import ClassVar

from tests.connectors.kits import BrokerKit, Capabilities, QueueUrls

from .conftest import HOST, PORT, mqtt_url, remove_sessions

__all__ = ["KITS", "Mqtt5Kit", "Mqtt311Kit"]

CONSUMER_PROCESS_LISTENER = "contract"  # what tests/connectors/consumer_process.py calls itself


class Mqtt5Kit(BrokerKit):
    name = "mqtt5"
    version: ClassVar[str] = "5"
    capabilities = Capabilities(
        fifo=True,
        cross_process=True,
        leases=False,
        redelivers_to_same_consumer=True,
        counts_backlog=False,
    )

    @classmethod
    def unavailable(cls) -> str | None:
        import socket

        try:
            socket.create_connection((HOST, PORT), timeout=2).close()
        except OSError as exc:
            return f"Mosquitto is not reachable at {HOST}:{PORT} ({exc})"
        return None

    async def new_queue(self, *, lease_s: float) -> QueueUrls:
        topic = f"mbtest/{self.unique()}"
        options: dict[str, object] = {"group": self.unique("group")}
        if self.version == "5":
            options["session_expiry_s"] = 60
        else:
            options["envelope"] = True
        url = mqtt_url(topic, version=self.version, **options)
        return QueueUrls(source_url=url, sink_url=url)

    async def stop(self) -> None:
        remove_sessions(self.ctx, PORT)
        contract = self.ctx.__class__(listener=CONSUMER_PROCESS_LISTENER, data_dir=self.data_dir)
        remove_sessions(contract, PORT)


class Mqtt311Kit(Mqtt5Kit):
    name = "mqtt311"
    version = "3.1.1"


KITS: list[type[BrokerKit]] = [Mqtt5Kit, Mqtt311Kit]
