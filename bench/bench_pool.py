"""Throughput of a pool of real runner processes (the probe test model, which echoes).

    .venv/bin/python bench/bench_pool.py [--n 2000]

Prints calls per second for: one caller calling one input at a time; 8 concurrent callers
on 2 runners; one invoke of N inputs through apply_batch. It measures the protocol and the
pool, not a model: the probe model does nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from modelbus.registry.launch import RunnerSpec, install_runtime, python_argv, runner_env
from modelbus.runtime.invocation import CallOptions, Payload
from modelbus.runtime.pool import Pool

PROBE = Path(__file__).resolve().parents[1] / "tests" / "models" / "probe"
OPTIONS = CallOptions()


def spec(runtime: Path, *, batch: bool, max_runners: int) -> RunnerSpec:
    argv = python_argv(
        sys.executable,
        entrypoint="model:apply",
        load=None,
        apply_batch="model:batched" if batch else None,
    )
    env = runner_env(model_dir=PROBE, runtime_dir=runtime, extra={})
    return RunnerSpec(key=f"bench-{batch}", argv=argv, cwd=PROBE, env=env, max_runners=max_runners)


async def sequential(pool: Pool, n: int) -> float:
    payload = Payload.from_json({"hello": "world"})
    started = time.perf_counter()
    for _ in range(n):
        await pool.invoke([payload], OPTIONS, version="1")
    return n / (time.perf_counter() - started)


async def concurrent(pool: Pool, n: int, callers: int = 8) -> float:
    payload = Payload.from_json({"hello": "world"})

    async def caller() -> None:
        for _ in range(n // callers):
            await pool.invoke([payload], OPTIONS, version="1")

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return n / (time.perf_counter() - started)


async def batched(pool: Pool, n: int) -> float:
    payloads = [Payload.from_json({"i": i}) for i in range(n)]
    started = time.perf_counter()
    await pool.invoke(payloads, OPTIONS, version="1")
    return n / (time.perf_counter() - started)


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        runtime = install_runtime(Path(data_dir))
        single = Pool(spec(runtime, batch=False, max_runners=2))
        many = Pool(spec(runtime, batch=True, max_runners=2))
        try:
            await single.invoke([Payload.from_json(0)], OPTIONS, version="1")  # warm up
            await many.invoke([Payload.from_json(0)], OPTIONS, version="1")
            print(f"sequential, 1 caller:      {await sequential(single, n):8.0f} calls/s")
            print(f"8 callers, 2 runners:      {await concurrent(single, n):8.0f} calls/s")
            print(f"one invoke, apply_batch:   {await batched(many, n * 10):8.0f} inputs/s")
        finally:
            await single.close()
            await many.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    asyncio.run(main(parser.parse_args().n))
