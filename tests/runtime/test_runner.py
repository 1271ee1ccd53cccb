"""One runner process, driven through modelbus.runtime.pool.Runner: real processes, no mocks."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelbus.errors import InputRejected, InvocationTimeout, ModelError, RunnerCrashed
from modelbus.registry.launch import RunnerSpec
from modelbus.runtime.invocation import Payload
from modelbus.runtime.runner import Runner
from modelbus_runner.protocol import MAX_HEADER_BYTES

from .conftest import MODELS, SpecFactory

Start = Callable[..., Any]


def op(name: str, **fields: Any) -> Payload:
    return Payload.from_json({"op": name, **fields})


async def call_one(runner: Runner, payload: Payload, **kwargs: Any) -> Payload | ModelError:
    reply = await runner.call([payload], timeout_s=kwargs.pop("timeout_s", 10.0), **kwargs)
    assert len(reply.outputs) == 1
    return reply.outputs[0]


async def test_ready_then_json_text_and_binary_come_back_with_their_kind(
    probe: SpecFactory, start_runner: Start
) -> None:
    runner = await start_runner(probe())
    assert runner.alive and not runner.batch
    blob = bytes(range(256)) * 40
    reply = await runner.call([Payload.from_json({"a": [1, "ü"]})], timeout_s=10.0)
    assert reply.outputs == (Payload(b'{"a": [1, "\xc3\xbc"]}', "json"),)
    assert reply.stdout is None and reply.duration_ms > 0
    assert await call_one(runner, Payload.from_text("plain ü")) == Payload.from_text("plain ü")
    assert await call_one(runner, Payload.from_binary(blob, "image/png")) == Payload(blob, "binary")


async def test_the_model_sees_content_type_mime_and_attributes(
    probe: SpecFactory, start_runner: Start
) -> None:
    runner = await start_runner(probe())
    out = await call_one(runner, op("context"), attributes={"traceparent": "00-abc"})
    assert isinstance(out, Payload)
    assert out.value() == {"type": "json", "mime": None, "attrs": {"traceparent": "00-abc"}}


async def test_a_batch_runner_says_so_and_gets_one_output_per_input(
    probe: SpecFactory, start_runner: Start
) -> None:
    runner = await start_runner(probe(batch=True))
    assert runner.batch
    inputs = [Payload.from_json(i) for i in range(5)] + [op("raise", message="no")]
    reply = await runner.call(inputs, timeout_s=10.0)
    values = [o.value() for o in reply.outputs[:5] if isinstance(o, Payload)]
    assert [v["value"] for v in values] == [0, 1, 2, 3, 4]
    assert {v["batch_size"] for v in values} == {6}
    error = reply.outputs[5]
    assert isinstance(error, ModelError) and error.error_type == "ValueError"


async def test_prints_are_captured_when_asked_and_never_corrupt_frames(
    probe: SpecFactory, start_runner: Start
) -> None:
    runner = await start_runner(probe())  # load() prints too
    reply = await runner.call(
        [op("print", text="hello from print")], timeout_s=10.0, capture_stdout=True
    )
    assert reply.outputs == (Payload.from_text("printed"),)
    assert reply.stdout == "hello from print\nwritten to fd 1\n"
    silent = await runner.call([op("print", text="not captured")], timeout_s=10.0)
    assert silent.outputs == (Payload.from_text("printed"),)
    assert silent.stdout is None
    again = await runner.call([op("pid")], timeout_s=10.0, capture_stdout=True)
    assert again.stdout == ""


async def test_a_model_exception_is_a_model_error_with_its_traceback(
    probe: SpecFactory, start_runner: Start
) -> None:
    runner = await start_runner(probe())
    error = await call_one(runner, op("raise", message="the input is odd"))
    assert isinstance(error, ModelError)
    assert error.message == "the input is odd"
    assert error.error_type == "ValueError"
    assert not error.permanent
    assert "Traceback" in error.stacktrace and "in _raise" in error.stacktrace
    assert "modelbus_runner" not in error.stacktrace  # the runner's own frames are cut
    assert runner.alive  # a model error does not cost the runner


async def test_permanent_error_is_marked_permanent(probe: SpecFactory, start_runner: Start) -> None:
    runner = await start_runner(probe())
    error = await call_one(runner, op("permanent"))
    assert isinstance(error, ModelError) and error.permanent
    assert error.error_type == "PermanentError"


async def test_undecodable_json_and_unsendable_output_are_errors(
    probe: SpecFactory, start_runner: Start
) -> None:
    runner = await start_runner(probe())
    bad = await call_one(runner, Payload(b"{nope", "json"))
    assert isinstance(bad, ModelError) and bad.permanent and bad.error_type == "JSONDecodeError"
    nan = await call_one(runner, op("nan"))
    assert isinstance(nan, ModelError) and "JSON" in nan.message


async def test_timeout_kills_the_runner(probe: SpecFactory, start_runner: Start) -> None:
    runner = await start_runner(probe())
    with pytest.raises(InvocationTimeout, match=r"timeout of 0\.5 s"):
        await runner.call([op("sleep", seconds=30)], timeout_s=0.5)
    assert not runner.alive
    await runner.close(grace_s=1.0)
    assert runner.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(op("exit", code=3), "exited with code 3"), (op("segfault"), "exited with signal SIGSEGV")],
)
async def test_a_dying_runner_is_runner_crashed_with_how_it_died(
    probe: SpecFactory, start_runner: Start, payload: Payload, expected: str
) -> None:
    runner = await start_runner(probe())
    with pytest.raises(RunnerCrashed, match=expected) as caught:
        await runner.call([payload], timeout_s=10.0)
    assert caught.value.permanent is False
    assert "probe: loading" in caught.value.message  # the stderr tail
    assert not runner.alive


async def test_a_malformed_frame_is_runner_crashed(start_runner: Start, tmp_path: Path) -> None:
    folder = MODELS / "garbage"
    spec = RunnerSpec(key="garbage", argv=(sys.executable, "runner.py"), cwd=folder)
    runner = await start_runner(spec)
    with pytest.raises(RunnerCrashed, match="malformed frame"):
        await runner.call([Payload.from_text("x")], timeout_s=10.0)
    assert not runner.alive


async def test_a_failing_load_is_a_clear_error(probe: SpecFactory, start_runner: Start) -> None:
    with pytest.raises(ModelError) as caught:
        await start_runner(probe(extra={"PROBE_FAIL_LOAD": "1"}))
    error = caught.value
    assert error.message == "the model failed to load: cannot load: the weights file is missing"
    assert error.error_type == "RuntimeError"
    assert "in load" in error.stacktrace
    assert not error.permanent


async def test_an_entrypoint_that_does_not_import_is_a_clear_error(
    probe: SpecFactory, start_runner: Start
) -> None:
    spec = probe()
    broken = RunnerSpec(
        key="broken", argv=(*spec.argv[:3], "no_such_module:apply"), cwd=spec.cwd, env=spec.env
    )
    with pytest.raises(ModelError, match="No module named 'no_such_module'") as caught:
        await start_runner(broken)
    assert caught.value.error_type == "ModuleNotFoundError"


async def test_a_program_that_exits_before_ready_is_runner_crashed(start_runner: Start) -> None:
    code = "import sys; print('no protocol here', file=sys.stderr); sys.exit(4)"
    spec = RunnerSpec(key="x", argv=(sys.executable, "-c", code), cwd=Path.cwd())
    with pytest.raises(RunnerCrashed, match="exited with code 4 before it was ready") as caught:
        await start_runner(spec)
    assert "no protocol here" in caught.value.message


async def test_a_missing_program_is_runner_crashed(start_runner: Start) -> None:
    spec = RunnerSpec(key="x", argv=("/nonexistent/runner",), cwd=Path.cwd())
    with pytest.raises(RunnerCrashed, match="cannot start runner"):
        await start_runner(spec)


async def test_a_runner_that_never_gets_ready_is_killed(start_runner: Start) -> None:
    spec = RunnerSpec(
        key="x", argv=(sys.executable, "-c", "import time; time.sleep(60)"), cwd=Path.cwd()
    )
    with pytest.raises(InvocationTimeout, match=r"did not load within 0\.5 s"):
        await start_runner(spec, start_timeout_s=0.5)


async def test_memory_limit_stops_a_greedy_model(probe: SpecFactory, start_runner: Start) -> None:
    runner = await start_runner(probe(memory_limit_mb=300))
    assert (await call_one(runner, op("alloc", mb=20))) == Payload.from_json(20 * 1024 * 1024)
    error = await call_one(runner, op("alloc", mb=600))
    assert isinstance(error, ModelError) and error.error_type == "MemoryError"


async def test_the_runner_environment_holds_no_server_secrets(
    monkeypatch: pytest.MonkeyPatch, probe: SpecFactory, start_runner: Start, runtime_dir: Path
) -> None:
    monkeypatch.setenv("MODELBUS_SECRET_KEY", "s3cret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI")
    runner = await start_runner(probe(extra={"OMP_NUM_THREADS": "1"}))
    env = (await call_one(runner, op("env"))).value()  # type: ignore[union-attr]
    assert not [k for k in env if k.startswith(("MODELBUS_", "AWS_"))]
    assert env["OMP_NUM_THREADS"] == "1"
    assert "s3cret" not in json.dumps(env)
    runtime_file = (await call_one(runner, op("runtime"))).value()  # type: ignore[union-attr]
    assert Path(runtime_file).parent == runtime_dir / "modelbus_runner"


async def test_close_asks_politely_and_the_runner_exits_0(
    probe: SpecFactory, start_runner: Start
) -> None:
    runner = await start_runner(probe())
    await runner.close(grace_s=5.0)
    assert runner.returncode == 0 and not runner.alive
    await runner.close()  # idempotent


async def test_close_kills_a_runner_that_does_not_stop(
    probe: SpecFactory, start_runner: Start
) -> None:
    runner = await start_runner(probe())
    busy = asyncio.create_task(runner.call([op("sleep", seconds=30)], timeout_s=60.0))
    await asyncio.sleep(0.2)
    await runner.close(grace_s=0.3)
    assert runner.returncode == -signal.SIGKILL
    with pytest.raises(RunnerCrashed):
        await busy


async def test_killing_a_runner_kills_the_processes_its_model_started(
    probe: SpecFactory, start_runner: Start
) -> None:
    runner = await start_runner(probe())
    child = (await call_one(runner, op("spawn"))).value()  # type: ignore[union-attr]
    assert _running(child)
    runner.kill()
    await runner.close(grace_s=1.0)
    for _ in range(50):
        if not _running(child):
            break
        await asyncio.sleep(0.05)
    assert not _running(child)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not yet reaped


async def test_a_python_runner_takes_many_inputs_and_loops_apply(
    probe: SpecFactory, start_runner: Start
) -> None:
    runner = await start_runner(probe())
    assert (runner.batch, runner.max_inputs, runner.protocol) == (False, 1024, 2)
    inputs = [
        Payload.from_json(0),
        op("raise", message="only me"),
        op("pid"),
        Payload.from_text("t"),
    ]
    reply = await runner.call(inputs, timeout_s=10.0)
    first, error, pid, text = reply.outputs
    assert first == Payload.from_json(0) and text == Payload.from_text("t")
    assert isinstance(error, ModelError) and error.message == "only me"
    assert isinstance(pid, Payload) and pid.value()["pid"] == runner.pid
    assert len(reply.durations_ms) == 4
    assert all(0 <= d <= reply.duration_ms for d in reply.durations_ms)


@pytest.mark.parametrize("batch", [False, True], ids=["apply", "apply_batch"])
async def test_each_input_of_a_call_sees_its_own_attributes(
    probe: SpecFactory, start_runner: Start, batch: bool
) -> None:
    runner = await start_runner(probe(batch=batch))
    reply = await runner.call(
        [op("context")] * 3,
        timeout_s=10.0,
        attributes={"listener": "l1", "id": "call"},
        input_attributes=[{"id": "m1"}, None, {"traceparent": "00-abc"}],
    )
    seen = [o.value()["attrs"] for o in reply.outputs if isinstance(o, Payload)]
    assert seen == [
        {"listener": "l1", "id": "m1"},
        {"listener": "l1", "id": "call"},
        {"listener": "l1", "id": "call", "traceparent": "00-abc"},
    ]
    with pytest.raises(ValueError, match="one entry per payload"):
        await runner.call([op("context")] * 2, timeout_s=10.0, input_attributes=[None])


@pytest.mark.parametrize("batch", [False, True], ids=["loops", "batch"])
async def test_a_runner_without_max_inputs_takes_one_input_unless_it_batches(
    start_runner: Start, batch: bool
) -> None:
    env = {"LEGACY_BATCH": "1"} if batch else {}
    folder = MODELS / "legacy"
    spec = RunnerSpec(key="legacy", argv=(sys.executable, "runner.py"), cwd=folder, env=env)
    runner = await start_runner(spec)
    assert runner.protocol == 1 and runner.batch is batch
    assert runner.max_inputs == (sys.maxsize if batch else 1)
    two = [Payload.from_json(1), Payload.from_json(2)]
    if batch:
        reply = await runner.call(two, timeout_s=10.0)
        assert [o.value()["inputs"] for o in reply.outputs if isinstance(o, Payload)] == [2, 2]
        assert reply.durations_ms == (reply.duration_ms, reply.duration_ms)  # none reported
    else:
        with pytest.raises(ValueError, match="at most 1 inputs"):
            await runner.call(two, timeout_s=10.0)
        assert runner.alive


async def test_a_call_too_large_to_send_is_rejected_and_the_runner_lives(
    probe: SpecFactory, start_runner: Start
) -> None:
    runner = await start_runner(probe())
    huge = {"blob": "x" * (MAX_HEADER_BYTES + 1)}
    with pytest.raises(InputRejected, match="cannot be sent"):
        await runner.call([op("pid")], timeout_s=10.0, attributes=huge)
    assert runner.alive
    assert isinstance(await call_one(runner, op("pid")), Payload)
