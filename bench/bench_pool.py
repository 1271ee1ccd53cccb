"""Throughput of a pool of real runner processes (test models that echo their input).

    .venv/bin/python bench/bench_pool.py [--n 2000] [--calls 200] [--inputs 100] [--runners 2]

Prints, for the probe model: calls per second of one caller calling one input at a time,
and of 8 concurrent callers on 2 runners; inputs per second of one invoke of 10 x N inputs
through apply_batch. Then the drain case, for the echo model ``tests/e2e/models/behave``
(no apply_batch): ``--calls`` concurrent invokes of ``--inputs`` JSON inputs of about 200
bytes each, run twice in the same run: one input per runner call (``max_batch_size=1``,
how every model without apply_batch ran before batch-native calls) and batched (the pool's
default). It measures the protocol and the pool, not a model: the models do nothing.
Compare figures within one run only (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from modelbus.registry.launch import RunnerSpec, install_runtime, python_argv, runner_env
from modelbus.runtime.invocation import CallOptions, Payload, Result
from modelbus.runtime.pool import Pool

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "tests" / "models" / "probe"
BEHAVE = ROOT / "tests" / "e2e" / "models" / "behave"
OPTIONS = CallOptions()


def spec(runtime: Path, folder: Path, *, batch: bool, max_runners: int) -> RunnerSpec:
    argv = python_argv(
        sys.executable,
        entrypoint="model:apply",
        load=None,
        apply_batch="model:batched" if batch else None,
    )
    env = runner_env(model_dir=folder, runtime_dir=runtime, extra={})
    key = f"bench-{folder.name}-{batch}"
    return RunnerSpec(key=key, argv=argv, cwd=folder, env=env, max_runners=max_runners)


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


async def drain(pool: Pool, calls: int, inputs: int, options: CallOptions) -> tuple[float, int]:
    """``calls`` concurrent invokes of ``inputs`` echo inputs: (inputs/s, runner calls)."""
    text = "x" * 160
    batches = [
        [Payload.from_json({"id": c * inputs + i, "text": text}) for i in range(inputs)]
        for c in range(calls)
    ]
    calls_before = pool.stats().calls
    started = time.perf_counter()
    results = await asyncio.gather(*(pool.invoke(b, options, version="1") for b in batches))
    elapsed = time.perf_counter() - started
    ok = sum(isinstance(r, Result) for batch in results for r in batch)
    if ok != calls * inputs:
        raise SystemExit(f"only {ok} of {calls * inputs} inputs succeeded")
    return calls * inputs / elapsed, pool.stats().calls - calls_before


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        runtime = install_runtime(Path(data_dir))
        single = Pool(spec(runtime, PROBE, batch=False, max_runners=2))
        many = Pool(spec(runtime, PROBE, batch=True, max_runners=2))
        echo = Pool(spec(runtime, BEHAVE, batch=False, max_runners=args.runners))
        try:
            await single.invoke([Payload.from_json(0)], OPTIONS, version="1")  # warm up
            await many.invoke([Payload.from_json(0)], OPTIONS, version="1")
            await echo.invoke([Payload.from_json(0)] * args.runners, OPTIONS, version="1")
            n = args.n
            print(f"sequential, 1 caller:      {await sequential(single, n):8.0f} calls/s")
            print(f"8 callers, 2 runners:      {await concurrent(single, n):8.0f} calls/s")
            print(f"one invoke, apply_batch:   {await batched(many, n * 10):8.0f} inputs/s")
            total = args.calls * args.inputs
            print(
                f"drain: {args.calls} concurrent invokes of {args.inputs} ({total} inputs), "
                f"{args.runners} runners, echo model without apply_batch:"
            )
            one_each = CallOptions(max_batch_size=1)
            for label, options in (("one input a call", one_each), ("batched", OPTIONS)):
                rate, runner_calls = await drain(echo, args.calls, args.inputs, options)
                per_call = total / max(runner_calls, 1)
                print(
                    f"  {label + ':':18} {rate:8.0f} inputs/s  "
                    f"({runner_calls} runner calls, {per_call:.1f} inputs each)"
                )
        finally:
            await single.close()
            await many.close()
            await echo.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="calls of the probe measures")
    parser.add_argument("--calls", type=int, default=200, help="concurrent invokes (drain)")
    parser.add_argument("--inputs", type=int, default=100, help="inputs per invoke (drain)")
    parser.add_argument("--runners", type=int, default=2, help="echo runners (drain)")
    asyncio.run(main(parser.parse_args()))
