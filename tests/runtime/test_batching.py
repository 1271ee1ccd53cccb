"""Batch-native delivery: many inputs to a runner call for every model, adaptive batching
across callers, per-input attributes, and isolation of a bad input from its neighbours."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from modelbus.errors import InvocationTimeout, ModelError, Overloaded, RunnerCrashed
from modelbus.registry.launch import RunnerSpec
from modelbus.runtime.invocation import CallOptions, Payload, Result
from modelbus.runtime.pool import Pool

from .conftest import MODELS, SpecFactory

Pools = Callable[..., Pool]
OPTIONS = CallOptions()


def op(name: str, **fields: Any) -> Payload:
    return Payload.from_json({"op": name, **fields})


def values(results: list[Any]) -> list[Any]:
    assert all(isinstance(r, Result) for r in results), results
    return [r.output.value() for r in results]


async def warm(pool: Pool) -> int:
    """One call, so a runner is up and the pool has measured an input; the calls so far."""
    [result] = await pool.invoke([op("pid")], OPTIONS, version="1")
    assert isinstance(result, Result), result
    return pool.stats().calls


async def eventually(check: Callable[[], bool], within_s: float = 15.0) -> None:
    for _ in range(int(within_s / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


def legacy(*, batch: bool = False) -> RunnerSpec:
    """A protocol-1 runner that declares no max_inputs (see tests/models/legacy)."""
    folder = MODELS / "legacy"
    env = {"LEGACY_BATCH": "1"} if batch else {}
    return RunnerSpec(
        key=f"legacy-{batch}", argv=(sys.executable, "runner.py"), cwd=folder, env=env
    )


async def test_inputs_of_a_model_without_apply_batch_share_one_call(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe(max_runners=1))
    before = await warm(pool)
    results = await pool.invoke([op("pid") for _ in range(10)], OPTIONS, version="1")
    assert len({v["pid"] for v in values(results)}) == 1
    stats = pool.stats()
    assert stats.calls == before + 1
    assert stats.invocations == 11  # counted per input


async def test_queued_inputs_are_split_evenly_over_the_runners(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe(min_runners=4, max_runners=4))
    pool.warm()
    await eventually(lambda: pool.stats().runners_alive == 4)
    before = await warm(pool)
    results = await pool.invoke([op("pid") for _ in range(100)], OPTIONS, version="1")
    per_runner = Counter(v["pid"] for v in values(results))
    assert sorted(per_runner.values()) == [25, 25, 25, 25]
    assert pool.stats().calls == before + 4


async def test_a_callers_max_batch_size_caps_its_calls(probe: SpecFactory, pools: Pools) -> None:
    pool = pools(probe(max_runners=1))
    before = await warm(pool)
    one_each = CallOptions(max_batch_size=1)
    assert len(values(await pool.invoke([op("pid")] * 5, one_each, version="1"))) == 5
    assert pool.stats().calls == before + 5
    pairs = CallOptions(max_batch_size=2)
    assert len(values(await pool.invoke([op("pid")] * 5, pairs, version="1"))) == 5
    assert pool.stats().calls == before + 5 + 3
    with pytest.raises(ValueError, match="at least 1"):
        CallOptions(max_batch_size=0)


@pytest.mark.parametrize("batch", [False, True], ids=["apply", "apply_batch"])
async def test_each_input_gets_its_own_attributes(
    probe: SpecFactory, pools: Pools, batch: bool
) -> None:
    pool = pools(probe(batch=batch, max_runners=1))
    before = await warm(pool)
    options = CallOptions(attributes={"listener": "l1", "id": "none"})
    own = [{"id": "m1"}, {}, {"id": "m3", "listener": "mine"}]
    results = await pool.invoke([op("context")] * 3, options, version="1", attributes=own)
    seen = [v["attrs"] for v in values(results)]
    assert seen == [
        {"listener": "l1", "id": "m1"},
        {"listener": "l1", "id": "none"},
        {"listener": "mine", "id": "m3"},
    ]
    assert pool.stats().calls == before + 1  # one frame carried all three
    if batch:
        assert {v["batch_size"] for v in values(results)} == {3}
    with pytest.raises(ValueError, match="2 attributes for 3 inputs"):
        await pool.invoke([op("context")] * 3, options, version="1", attributes=own[:2])


@pytest.mark.parametrize("batch", [False, True], ids=["loops", "batch"])
async def test_a_runner_that_declares_no_max_inputs(pools: Pools, batch: bool) -> None:
    """Without max_inputs a runner gets one input a call (its attributes merged at the call
    level, as protocol 1 has them), unless it said batch: true."""
    pool = pools(legacy(batch=batch), max_batch_size=8)
    await pool.invoke([Payload.from_json(0)], OPTIONS, version="1")  # measured: may batch
    before = pool.stats().calls
    options = CallOptions(attributes={"listener": "l1"})
    own = [{"id": str(i)} for i in range(5)]
    inputs = [Payload.from_json(i) for i in range(5)]
    got = values(await pool.invoke(inputs, options, version="1", attributes=own))
    assert [v["value"] for v in got] == [0, 1, 2, 3, 4]
    if batch:
        assert {v["inputs"] for v in got} == {5}
        assert pool.stats().calls == before + 1
    else:
        assert {v["inputs"] for v in got} == {1}
        assert pool.stats().calls == before + 5
        assert [v["attributes"] for v in got] == [
            {"listener": "l1", "id": str(i)} for i in range(5)
        ]


async def test_a_raising_input_fails_alone(probe: SpecFactory, pools: Pools) -> None:
    pool = pools(probe(max_runners=1))
    before = await warm(pool)
    first, error, last = await pool.invoke(
        [op("pid"), op("raise"), op("pid")], OPTIONS, version="1"
    )
    assert isinstance(first, Result) and isinstance(last, Result)
    assert isinstance(error, ModelError) and error.error_type == "ValueError"
    stats = pool.stats()
    assert stats.calls == before + 1 and stats.errors == 1 and stats.runners_lost == 0


async def test_a_hanging_input_times_out_alone(probe: SpecFactory, pools: Pools) -> None:
    pool = pools(probe(max_runners=1))
    before = await warm(pool)
    inputs = [op("pid"), op("pid"), op("sleep", seconds=60), op("pid"), op("pid")]
    results = await pool.invoke(inputs, CallOptions(timeout_s=2.0), version="1")
    assert [type(r) for r in results] == [Result, Result, InvocationTimeout, Result, Result]
    assert "timeout of 2 s" in str(results[2])
    stats = pool.stats()
    assert stats.calls == before + 1 + 5  # the whole chunk, then each input alone
    assert stats.runners_lost == 2  # killed with the chunk, and again with the input alone
    assert (stats.invocations, stats.errors) == (6, 1)


async def test_a_crashing_input_fails_alone(probe: SpecFactory, pools: Pools) -> None:
    pool = pools(probe(max_runners=1))
    before = await warm(pool)
    inputs = [op("pid"), op("pid"), op("exit", code=3), op("pid"), op("pid")]
    results = await pool.invoke(inputs, OPTIONS, version="1")
    assert [type(r) for r in results] == [Result, Result, RunnerCrashed, Result, Result]
    assert "exited with code 3" in str(results[2])
    assert pool.stats().calls == before + 1 + 5
    assert pool.stats().runners_lost == 2


async def test_a_crash_in_apply_batch_fails_its_input_alone(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe(batch=True, max_runners=1), max_batch_size=3)
    await warm(pool)
    inputs = [Payload.from_json(0), op("exit"), Payload.from_json(2), Payload.from_json(3)]
    results = await pool.invoke(inputs, OPTIONS, version="1")
    assert [type(r) for r in results] == [Result, RunnerCrashed, Result, Result]
    assert results[1].version == "1"


async def test_while_a_call_runs_new_inputs_wait_and_go_together(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe(max_runners=1))
    before = await warm(pool)
    slow = asyncio.create_task(pool.invoke([op("sleep", seconds=1.0)], OPTIONS, version="1"))
    await eventually(lambda: pool.stats().runners_busy == 1)
    callers = [
        asyncio.create_task(
            pool.invoke([op("context")], CallOptions(attributes={"caller": str(i)}), version="1")
        )
        for i in range(5)
    ]
    await eventually(lambda: pool.stats().queued == 5)
    assert values(await slow)[0]["slept"] == 1.0
    for i, caller in enumerate(callers):
        assert values(await caller)[0]["attrs"] == {"caller": str(i)}  # each its own
    assert pool.stats().calls == before + 2  # the slow call, then all five in one


async def test_callers_capturing_stdout_never_share_a_call(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe(max_runners=1))
    before = await warm(pool)
    slow = asyncio.create_task(pool.invoke([op("sleep", seconds=0.3)], OPTIONS, version="1"))
    await eventually(lambda: pool.stats().runners_busy == 1)
    capture = CallOptions(capture_stdout=True)
    callers = [
        asyncio.create_task(pool.invoke([op("print", text=t)], capture, version="1"))
        for t in ("from a", "from b")
    ]
    await slow
    [a], [b] = await asyncio.gather(*callers)
    assert isinstance(a, Result) and a.stdout == "from a\nwritten to fd 1\n"
    assert isinstance(b, Result) and b.stdout == "from b\nwritten to fd 1\n"
    assert pool.stats().calls == before + 3


async def test_a_cancelled_caller_does_not_stop_a_call_it_shares(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe(max_runners=1))
    await warm(pool)
    slow = asyncio.create_task(pool.invoke([op("sleep", seconds=1.0)], OPTIONS, version="1"))
    await eventually(lambda: pool.stats().runners_busy == 1)
    gone = asyncio.create_task(pool.invoke([op("sleep", seconds=1.0)], OPTIONS, version="1"))
    stays = asyncio.create_task(pool.invoke([op("pid")], OPTIONS, version="1"))
    await eventually(lambda: pool.stats().queued == 2)
    await slow
    await eventually(lambda: pool.stats().queued == 0)  # both in one call now
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    [result] = await stays
    assert isinstance(result, Result)
    assert pool.stats().runners_lost == 0  # the shared call was left to finish


async def test_a_waiting_invoke_of_many_inputs_counts_once_toward_max_queue(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe(max_runners=1), max_queue=1)
    await warm(pool)
    busy = asyncio.create_task(pool.invoke([op("sleep", seconds=1.0)], OPTIONS, version="1"))
    await eventually(lambda: pool.stats().runners_busy == 1)
    queued = asyncio.create_task(pool.invoke([op("pid")] * 3, OPTIONS, version="1"))
    await eventually(lambda: pool.stats().queued == 3)
    refused = await pool.invoke([op("pid"), op("pid")], OPTIONS, version="2")
    assert [type(r) for r in refused] == [Overloaded, Overloaded]
    assert refused[0].version == "2" and "1 calls are already waiting" in str(refused[0])
    assert len(values(await queued)) == 3
    await busy


async def test_a_big_invoke_takes_turns_with_callers_that_came_after_it(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe(max_runners=1), max_batch_size=2)
    await warm(pool)
    big = asyncio.create_task(pool.invoke([op("sleep", seconds=0.2)] * 6, OPTIONS, version="1"))
    await eventually(lambda: pool.stats().runners_busy == 1)
    [small] = await pool.invoke([op("pid")], OPTIONS, version="1")
    assert isinstance(small, Result)
    assert not big.done()  # served after one call of big, not after all three
    assert len(values(await big)) == 6


async def test_invokes_of_one_loop_iteration_share_a_call_even_on_an_idle_pool(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe(max_runners=1))
    before = await warm(pool)
    results = await asyncio.gather(
        *(pool.invoke([op("pid")], OPTIONS, version="1") for _ in range(5))
    )
    assert all(isinstance(r, Result) for [r] in results)
    assert pool.stats().calls == before + 1


async def test_on_results_hears_each_outcome_once_as_its_call_returns(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe(max_runners=1), max_batch_size=2)
    await warm(pool)
    told: list[tuple[list[int], list[Any]]] = []

    def on_results(indexes: Any, outcomes: Any) -> None:
        told.append((list(indexes), list(outcomes)))

    inputs = [op("pid"), op("raise"), op("pid"), op("exit"), op("pid")]
    results = await pool.invoke(inputs, OPTIONS, version="1", on_results=on_results)
    assert [type(r) for r in results] == [Result, ModelError, Result, RunnerCrashed, Result]
    # [0, 1] in one call; [2, 3] crashed together, so each ran again alone; then [4].
    assert [indexes for indexes, _ in told] == [[0, 1], [2], [3], [4]]
    for indexes, outcomes in told:
        assert all(results[i] is o for i, o in zip(indexes, outcomes, strict=True))

    def broken(indexes: Any, outcomes: Any) -> None:
        raise RuntimeError("a bug in the caller's callback")

    again = await pool.invoke([op("pid")] * 3, OPTIONS, version="1", on_results=broken)
    assert [type(r) for r in again] == [Result] * 3
