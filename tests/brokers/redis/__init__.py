"""Redis Streams connector tests (real servers)."""
