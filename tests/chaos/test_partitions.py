"""A network partition mid-run: the listener reaches its broker through a proxy that
swallows every byte (connections stay open) for longer than the runtime's own timeouts; it
must say it is degraded, recover by itself once the network is back, and lose nothing.

``modelbus serve`` waits 30 s for a broker call before it calls it failed; to keep this under
CI's budget the listener runs in this process, wired as ``serve`` wires it
(:mod:`tests.e2e.node`: store, registry, real runners, listener manager) with 5 s timeouts,
and its status is what ``GET /v1/listeners/{name}/status`` returns. Broker restarts, through
a real ``serve`` and its HTTP status, are in test_broker_faults.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelbus.listeners.definition import ListenerDefinition
from tests.e2e.node import BEHAVE, FAST_RUNTIME, open_node

from .accounting import table
from .faults import COUNT, partitioned, run_with_fault
from .flow import LISTENER, PERMANENT_EVERY

PARTITION_S = max(FAST_RUNTIME.op_timeout_s, FAST_RUNTIME.publish_timeout_s) + 3


@pytest.mark.parametrize("kind", ["redis", "nats", "postgres", "amqp", "mqtt", "kafka"])
async def test_a_partition_longer_than_the_timeouts_degrades_recovers_and_loses_nothing(
    kind: str, tmp_path: Path, report: list[str]
) -> None:
    data_dir = tmp_path / "data"
    async with partitioned(kind) as fault, open_node(data_dir) as node:
        await node.push(BEHAVE, version="1.0.0")
        source = fault.url(fault.queue("in"), lease_s=3)
        out, dead = fault.url(fault.queue("out")), fault.url(fault.queue("dead"))
        definition = ListenerDefinition.from_mapping(
            {
                "name": LISTENER,
                "source": source,
                "model": "e2e/behave@1.*",
                "outputs": [out],
                "error_sink": dead,
                "max_in_flight": 32,
                "retry": {"max_attempts": 10, "initial_backoff_s": 0.2, "max_backoff_s": 1.0},
            }
        )
        await node.manager.create(definition, check=False)

        async def status() -> dict[str, Any]:
            found = await node.manager.status(LISTENER)
            return {"state": found.state, "problems": found.problems}

        tally, _, degraded = await run_with_fault(
            fault,
            data_dir,
            status,
            source=source,
            out=out,
            dead=dead,
            hold_s=PARTITION_S,
            paced=True,  # inputs keep coming: an idle consumer must notice the silence too
            degraded_within_s=30,  # op timeouts, or the clients' heartbeats (about 20 s)
            recovered_within_s=30,
        )
    report.append(table([tally], f"network partition on {kind} ({PARTITION_S:g} s black hole)"))
    assert degraded["problems"], degraded
    tally.check(expected_dead=len(range(0, COUNT, PERMANENT_EVERY)))
