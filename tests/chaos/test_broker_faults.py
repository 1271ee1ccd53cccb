"""Broker faults mid-run: nothing is lost, the listener says it is degraded while its broker
is away, and recovers by itself.

* A broker restart (:func:`tests.chaos.faults.restartable`): a real ``modelbus serve`` runs
  the listener; its broker process is SIGKILLed mid-run and started again a few seconds
  later. ``GET /v1/listeners/{name}/status`` must show ``degraded`` while it is down and
  ``running`` again afterwards, with no help.
* A network partition: test_partitions.py (using :func:`run_with_fault` of this module).

In both, inputs keep coming during the fault, and the accounting must balance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.node import BEHAVE, open_node
from tests.e2e.processes import Serving

from .accounting import table
from .faults import COUNT, restartable, run_with_fault
from .flow import LISTENER, PERMANENT_EVERY, listener_file

DOWN_S = 4.0  # the broker stays away this long after the listener said degraded


@pytest.mark.parametrize("kind", ["redis", "nats", "postgres", "amqp", "mqtt", "kafka"])
async def test_a_broker_restart_mid_run_degrades_recovers_and_loses_nothing(
    kind: str, tmp_path: Path, report: list[str]
) -> None:
    data_dir = tmp_path / "data"
    async with open_node(data_dir, start=False) as node:
        await node.push(BEHAVE, version="1.0.0")
    async with restartable(kind, tmp_path) as fault:
        source = fault.url(fault.queue("in"), lease_s=3)
        out, dead = fault.url(fault.queue("out")), fault.url(fault.queue("dead"))
        config = listener_file(tmp_path / "l.toml", source=source, out=out, dead=dead)
        serving = Serving(data_dir, config)
        await serving.start()
        assert serving.server is not None
        http = httpx.AsyncClient(
            base_url=serving.server.url,
            headers={"Authorization": f"Bearer {serving.server.admin_key}"},
            timeout=10,
        )

        async def status() -> dict[str, Any]:
            answer = await http.get(f"/v1/listeners/{LISTENER}/status")
            answer.raise_for_status()
            return dict(answer.json())

        try:
            tally, _, degraded = await run_with_fault(
                fault,
                data_dir,
                status,
                source=source,
                out=out,
                dead=dead,
                hold_s=DOWN_S,
                paced=True,  # the broker goes away mid-run, with inputs still coming
                degraded_within_s=40,  # serve's own op timeout is 30 s
                recovered_within_s=60,  # reconnects back off up to 30 s
                describe=serving.log,
            )
        finally:
            await http.aclose()
            serving.stop()
    report.append(table([tally], f"broker restart on {kind} (modelbus serve)"))
    assert degraded["problems"], degraded  # it says which part is failing
    tally.check(expected_dead=len(range(0, COUNT, PERMANENT_EVERY)))
