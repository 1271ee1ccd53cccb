"""RabbitMQ (classic and quorum queues) in the contract suite: see tests/brokers/amqp/kit.py."""

from tests.brokers.amqp.kit import KITS

__all__ = ["KITS"]
