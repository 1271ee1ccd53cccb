"""NATS JetStream connector tests (real servers)."""
