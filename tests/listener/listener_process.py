"""A listener in its own OS process (for the crash test): every model call takes WORK_S.

    python listener_process.py DATA_DIR DB_FILE NAME SOURCE_URL OUTPUT_URL WORK_S

Prints "ready" once running, then the source message id of each input the model finished.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import create_async_engine

from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.lifecycle import ListenerRuntime, RuntimeOptions
from modelbus.listeners.metrics import Metrics
from modelbus.listeners.records import RunWriter
from modelbus.runtime.invocation import Payload
from modelbus.store.runs import RunStore
from modelbus.testing import FunctionInvoker


async def main(
    data_dir: str, db_file: str, name: str, source: str, output: str, work_s: str
) -> None:
    async def slow(payload: Payload) -> Any:
        await asyncio.sleep(float(work_s))
        print(payload.value()["n"], flush=True)
        return payload.value()

    invoker = FunctionInvoker()
    invoker.register("acme/echo", slow, takes_payload=True)
    engine = create_async_engine(f"sqlite+aiosqlite:///{db_file}", connect_args={"timeout": 30})
    definition = ListenerDefinition(
        name=name, source=source, outputs=[output], model="acme/echo", max_in_flight=4
    )
    listener = ListenerRuntime(
        definition,
        invoker=invoker,
        runs=RunWriter(RunStore(engine)),
        metrics=Metrics(CollectorRegistry()).listener(name),
        data_dir=Path(data_dir),
        # Killed, it leaves its run claims to expire: soon, so the next process runs them.
        options=RuntimeOptions(claim_ttl_s=2.0),
    )
    await listener.start()
    await listener.wait_for_state("running")
    print("ready", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
