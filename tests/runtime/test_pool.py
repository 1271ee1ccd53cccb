"""Pools of real runner processes: sizing, queueing, replacement, scale-down, batching."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelbus.errors import InvocationTimeout, ModelError, Overloaded, RunnerCrashed
from modelbus.runtime.invocation import CallOptions, Payload, Result
from modelbus.runtime.pool import Pool, PoolManager

from .conftest import SpecFactory

Pools = Callable[..., Pool]
OPTIONS = CallOptions()


def op(name: str, **fields: Any) -> Payload:
    return Payload.from_json({"op": name, **fields})


async def one(pool: Pool, payload: Payload, options: CallOptions = OPTIONS) -> Result:
    [result] = await pool.invoke([payload], options, version="1.0.0")
    assert isinstance(result, Result), result
    return result


async def failure(pool: Pool, payload: Payload, options: CallOptions = OPTIONS) -> Exception:
    [result] = await pool.invoke([payload], options, version="1.0.0")
    assert isinstance(result, Exception), result
    return result


async def eventually(check: Callable[[], bool], within_s: float = 15.0) -> None:
    """Wait until ``check()`` holds (state that settles in the background), or fail."""
    for _ in range(int(within_s / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


def loads(loads_file: Path) -> list[str]:
    return loads_file.read_text().split() if loads_file.exists() else []


async def test_load_runs_once_per_runner(
    probe: SpecFactory, pools: Pools, loads_file: Path
) -> None:
    pool = pools(probe(max_runners=1))
    pids = {(await one(pool, op("pid"))).output.value()["pid"] for _ in range(5)}
    state_pids = {(await one(pool, op("pid"))).output.value()["state_pid"] for _ in range(2)}
    assert len(pids) == 1
    assert state_pids == pids
    assert loads(loads_file) == [str(pids.pop())]


async def test_results_carry_version_duration_and_stdout(probe: SpecFactory, pools: Pools) -> None:
    pool = pools(probe())
    result = await one(pool, op("print", text="hi"), CallOptions(capture_stdout=True))
    assert result.version == "1.0.0"
    assert result.output == Payload.from_text("printed")
    assert result.stdout == "hi\nwritten to fd 1\n"
    assert result.duration_ms > 0


async def test_errors_are_returned_in_place_and_stamped_with_the_version(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe())
    results = await pool.invoke(
        [Payload.from_json(1), op("raise"), op("permanent")], OPTIONS, version="2.1.0"
    )
    assert isinstance(results[0], Result) and results[0].output == Payload.from_json(1)
    assert isinstance(results[1], ModelError) and not results[1].permanent
    assert isinstance(results[2], ModelError) and results[2].permanent
    assert results[1].version == results[2].version == "2.1.0"
    stats = pool.stats()
    assert (stats.invocations, stats.errors) == (3, 2)


async def test_several_inputs_go_to_apply_batch_in_chunks(probe: SpecFactory, pools: Pools) -> None:
    pool = pools(probe(batch=True, max_runners=1), max_batch_size=4)
    await one(pool, op("pid"))  # until a call is measured, a call carries one input
    results = await pool.invoke([Payload.from_json(i) for i in range(10)], OPTIONS, version="1")
    values = [r.output.value() for r in results if isinstance(r, Result)]
    assert [v["value"] for v in values] == list(range(10))
    assert [v["batch_size"] for v in values] == [4] * 8 + [2] * 2
    single = await one(pool, Payload.from_json(7))  # one input goes to apply
    assert single.output == Payload.from_json(7)


async def test_without_apply_batch_inputs_are_spread_over_the_runners(
    probe: SpecFactory, pools: Pools, loads_file: Path
) -> None:
    pool = pools(probe(max_runners=2))
    results = await pool.invoke([op("sleep", seconds=0.2) for _ in range(6)], OPTIONS, version="1")
    pids = {r.output.value()["pid"] for r in results if isinstance(r, Result)}
    assert len(results) == 6 and len(pids) == 2
    assert len(loads(loads_file)) == 2


async def test_max_runners_holds_under_concurrency(
    probe: SpecFactory, pools: Pools, loads_file: Path
) -> None:
    pool = pools(probe(max_runners=2))
    calls = [asyncio.create_task(one(pool, op("sleep", seconds=0.3))) for _ in range(8)]
    await eventually(lambda: pool.stats().runners_busy == 2)
    stats = pool.stats()
    assert stats.runners_alive == 2 and stats.queued == 6
    results = await asyncio.gather(*calls)
    assert len({r.output.value()["pid"] for r in results}) == 2
    assert len(loads(loads_file)) == 2
    assert pool.stats().runners_started == 2


async def test_waiting_callers_are_served_in_arrival_order(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe(max_runners=1))
    await one(pool, op("pid"))  # a warm runner
    finished: list[int] = []

    async def call(i: int) -> None:
        await one(pool, op("sleep", seconds=0.05 if i == 0 else 0))
        finished.append(i)

    tasks = []
    for i in range(6):
        tasks.append(asyncio.create_task(call(i)))
        await asyncio.sleep(0)  # let it reach the queue before the next one
    await asyncio.gather(*tasks)
    assert finished == list(range(6))


async def test_a_full_queue_is_overloaded(probe: SpecFactory, pools: Pools) -> None:
    pool = pools(probe(max_runners=1), max_queue=1)
    busy = asyncio.create_task(one(pool, op("sleep", seconds=0.5)))
    await eventually(lambda: pool.stats().runners_busy == 1)
    queued = asyncio.create_task(one(pool, op("pid")))
    await eventually(lambda: pool.stats().queued == 1)
    error = await failure(pool, op("pid"))
    assert isinstance(error, Overloaded) and not error.permanent
    assert error.version == "1.0.0"
    await asyncio.gather(busy, queued)


async def test_a_caller_waits_no_longer_than_the_queue_timeout(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe(max_runners=1), queue_timeout_s=0.3)
    await one(pool, op("pid"))  # a runner up already: a slow start would count as waiting
    busy = asyncio.create_task(one(pool, op("sleep", seconds=1)))
    await eventually(lambda: pool.stats().runners_busy == 1)
    error = await failure(pool, op("pid"))
    assert isinstance(error, Overloaded) and "free within 0.3 s" in error.message
    await busy
    assert pool.stats().queued == 0


async def test_a_timeout_kills_the_runner_and_the_pool_serves_on(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe(max_runners=1))
    first = (await one(pool, op("pid"))).output.value()["pid"]
    error = await failure(pool, op("sleep", seconds=30), CallOptions(timeout_s=0.5))
    assert isinstance(error, InvocationTimeout) and not error.permanent
    after = (await one(pool, op("pid"))).output.value()["pid"]
    assert after != first
    assert pool.stats().runners_lost == 1


@pytest.mark.parametrize(("name", "how"), [("exit", "code 3"), ("segfault", "signal SIGSEGV")])
async def test_a_crashed_runner_is_replaced(
    probe: SpecFactory, pools: Pools, name: str, how: str
) -> None:
    pool = pools(probe(max_runners=1))
    first = (await one(pool, op("pid"))).output.value()["pid"]
    error = await failure(pool, op(name, code=3))
    assert isinstance(error, RunnerCrashed) and how in error.message
    assert (await one(pool, op("pid"))).output.value()["pid"] != first


async def test_min_runners_are_kept_warm_and_replaced(
    probe: SpecFactory, pools: Pools, loads_file: Path
) -> None:
    pool = pools(probe(min_runners=1, max_runners=2))
    pool.warm()
    await eventually(lambda: pool.stats().runners_alive == 1)
    assert len(loads(loads_file)) == 1
    error = await failure(pool, op("exit"))
    assert isinstance(error, RunnerCrashed)
    await eventually(lambda: pool.stats().runners_alive == 1)
    assert len(loads(loads_file)) == 2


async def test_a_runner_dying_while_idle_is_replaced(
    probe: SpecFactory, pools: Pools, loads_file: Path
) -> None:
    pool = pools(probe(min_runners=1, max_runners=1))
    pid = (await one(pool, op("pid"))).output.value()["pid"]
    os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
    await eventually(lambda: len(loads(loads_file)) == 2 and pool.stats().runners_alive == 1)
    assert (await one(pool, op("pid"))).output.value()["pid"] != pid
    assert pool.stats().runners_lost == 1


async def test_idle_runners_above_the_minimum_are_stopped(probe: SpecFactory, pools: Pools) -> None:
    pool = pools(probe(min_runners=1, max_runners=3, idle_timeout_s=0.3))
    await pool.invoke([op("sleep", seconds=0.2) for _ in range(3)], OPTIONS, version="1")
    assert pool.stats().runners_alive == 3
    await eventually(lambda: pool.stats().runners_alive == 1)
    assert pool.stats().runners_lost == 0  # stopped on purpose, not lost
    assert isinstance(await one(pool, op("pid")), Result)


async def test_a_failing_load_fails_callers_and_is_not_retried_in_a_loop(
    probe: SpecFactory, pools: Pools, loads_file: Path
) -> None:
    pool = pools(probe(extra={"PROBE_FAIL_LOAD": "1"}, max_runners=2), restart_delay_s=60)
    results = await pool.invoke([op("pid"), op("pid"), op("pid")], OPTIONS, version="1")
    for result in results:
        assert isinstance(result, ModelError)
        assert "failed to load: cannot load: the weights file is missing" in result.message
    again = await failure(pool, op("pid"))
    assert isinstance(again, ModelError) and "failed to load" in again.message
    assert len(loads(loads_file)) <= 2  # no new start during the restart delay
    assert pool.stats().runners_alive == 0


async def test_a_cancelled_caller_does_not_leak_its_runner(
    probe: SpecFactory, pools: Pools
) -> None:
    pool = pools(probe(max_runners=1))
    task = asyncio.create_task(one(pool, op("sleep", seconds=30)))
    await eventually(lambda: pool.stats().runners_busy == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.stats().runners_busy == 0
    assert isinstance(await one(pool, op("pid")), Result)


async def test_close_stops_runners_and_turns_waiters_away(probe: SpecFactory, pools: Pools) -> None:
    pool = pools(probe(max_runners=1))
    pid = (await one(pool, op("pid"))).output.value()["pid"]
    busy = asyncio.create_task(one(pool, op("sleep", seconds=0.3)))
    await eventually(lambda: pool.stats().runners_busy == 1)
    waiting = asyncio.create_task(pool.invoke([op("pid")], OPTIONS, version="1"))
    await eventually(lambda: pool.stats().queued == 1)
    await pool.close()
    assert (await busy).output.value()["pid"] == pid  # finished within the grace period
    [turned_away] = await waiting
    assert isinstance(turned_away, Overloaded)
    assert pool.stats().runners_alive == 0
    assert isinstance(await failure(pool, op("pid")), Overloaded)


async def test_empty_invoke_is_empty(probe: SpecFactory, pools: Pools) -> None:
    assert await pools(probe()).invoke([], OPTIONS, version="1") == []


def test_a_pool_refuses_impossible_sizes(probe: SpecFactory) -> None:
    with pytest.raises(ValueError, match="min_runners"):
        Pool(probe(min_runners=3, max_runners=2))


async def test_manager_keeps_one_pool_per_build(
    probe: SpecFactory, managers: Callable[..., PoolManager]
) -> None:
    manager = managers()
    spec = probe(min_runners=1)
    pool = manager.get(spec)
    assert manager.get(spec) is pool
    other = manager.get(probe())
    assert other is not pool and set(manager.pools()) == {pool, other}
    await eventually(lambda: pool.stats().runners_alive == 1)  # warmed on creation
    await manager.remove(spec.key)
    assert manager.pools() == [other] and pool.stats().runners_alive == 0
    await one(other, op("pid"))
    await manager.close()
    assert manager.pools() == [] and other.stats().runners_alive == 0
