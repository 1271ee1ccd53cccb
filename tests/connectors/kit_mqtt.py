"""MQTT 5 and 3.1.1 (Mosquitto) in the contract suite: see tests/brokers/mqtt/kit.py."""

from tests.brokers.mqtt.kit import KITS

__all__ = ["KITS"]
