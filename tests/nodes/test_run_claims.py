"""A redelivered message runs once across nodes: two ``modelbus serve`` nodes on one
PostgreSQL store compete for a Redis stream whose leases lapse while messages wait for a
runner (``extend_lease`` off), and each message still runs once (issue 14, item 9)."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from modelbus.client.schemas import ListenerStatusOut
from tests.serve.conftest import eventually

from .conftest import Nodes

pytestmark = pytest.mark.postgres

REDIS = "redis://127.0.0.1:6379/0"
MESSAGES = 16
SLEEP_S = 1.0  # each run; two runners per node, each running several in one call: 3-4 s
LEASE_S = 2.5  # > timeout_s (checked), < the wait: the broker hands them out again


def test_a_message_redelivered_while_it_runs_on_another_node_runs_once(nodes: Nodes) -> None:
    a = nodes.start("a")
    nodes.start("b")
    nodes.push_echo()
    stream, results = f"claims-{uuid.uuid4().hex[:8]}", f"claims-out-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS)
    try:
        client.xgroup_create(stream, "modelbus-slow", id="0", mkstream=True)
        with a.client() as api:
            api.create_listener(
                {
                    "name": "slow",
                    "source": f"{REDIS}?stream={stream}&lease_s={LEASE_S}",
                    "model": "test/echo@1.0.0",
                    "outputs": [f"{REDIS}?stream={results}&create=true"],
                    "extend_lease": False,
                    "timeout_s": 2.0,
                    "retry": {"initial_backoff_s": 0.5, "max_backoff_s": 1.0},
                }
            )
            eventually(lambda: running(api.listener_status("slow")) == 2, 60)
        for n in range(MESSAGES):
            client.xadd(stream, {"body": json.dumps({"n": n, "sleep": SLEEP_S})})

        def settled() -> ListenerStatusOut | None:
            with a.client() as api:
                status = api.listener_status("slow")
            done = status.counters["succeeded"] >= MESSAGES and not status.counters["in_flight"]
            return status if done else None

        status = eventually(settled, 90)
        ran = [json.loads(body[b"body"])["data"]["n"] for _, body in client.xrange(results)]
        assert sorted(ran) == list(range(MESSAGES))  # each message ran once: one result each
        assert status.counters["succeeded"] == MESSAGES
        # Messages were handed out again while they ran (their leases lapsed while they
        # waited for a runner), to the other node too; those waited (released), not ran.
        received = {part.node: part.counters["received"] for part in status.nodes}
        assert status.counters["received"] > MESSAGES, received
        assert all(n >= 1 for n in received.values()), received
        assert status.counters["retried"] >= 1
    finally:
        client.delete(stream, results)
        client.close()


def running(status: ListenerStatusOut) -> int:
    """On how many nodes the listener runs."""
    return sum(part.state == "running" for part in status.nodes)
