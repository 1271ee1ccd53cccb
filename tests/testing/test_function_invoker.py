"""FunctionInvoker calls its functions as the runner calls a model: same errors, same arguments."""

from __future__ import annotations

from typing import Any

import pytest

from modelbus.client.refs import ModelRef
from modelbus.errors import ModelError
from modelbus.runtime.invocation import CallOptions, Payload, Result
from modelbus.testing import FunctionInvoker
from modelbus_runner import Context, PermanentError

REF = ModelRef.parse("acme/m@1.*")


async def test_a_permanent_error_is_permanent_and_other_exceptions_transient() -> None:
    def refuse(value: Any) -> Any:
        raise PermanentError("unsupported document")

    def flaky(value: Any) -> Any:
        raise ValueError("try again")

    invoker = FunctionInvoker()
    invoker.register("acme/refuse", refuse)
    invoker.register("acme/flaky", flaky)
    with pytest.raises(ModelError) as refused:
        await invoker.invoke(ModelRef.parse("acme/refuse"), Payload.from_json(1), CallOptions())
    assert refused.value.permanent is True
    assert refused.value.error_type == "PermanentError"
    with pytest.raises(ModelError) as failed:
        await invoker.invoke(ModelRef.parse("acme/flaky"), Payload.from_json(1), CallOptions())
    assert failed.value.permanent is False


async def test_a_function_that_declares_context_gets_the_runners_context() -> None:
    seen: list[Context] = []

    def apply(value: Any, context: Context) -> Any:
        seen.append(context)
        return value

    invoker = FunctionInvoker()
    invoker.register("acme/m", apply)
    options = CallOptions(attributes={"listener": "l1"})
    await invoker.invoke(REF, Payload.from_text("hi"), options)
    await invoker.invoke_batch(
        REF, [Payload.from_json({"a": 1})], options, attributes=[{"id": "m-1"}]
    )
    assert seen == [
        Context("text", None, {"listener": "l1"}),
        Context("json", None, {"listener": "l1", "id": "m-1"}),
    ]


async def test_load_runs_once_and_its_state_reaches_apply_and_apply_batch() -> None:
    loads: list[int] = []

    def load() -> dict[str, int]:
        loads.append(1)
        return {"offset": 10}

    def apply(value: int, state: dict[str, int]) -> int:
        return value + state["offset"]

    def apply_batch(values: list[int], state: dict[str, int], context: list[Context]) -> list[Any]:
        return [v * state["offset"] for v in values]

    invoker = FunctionInvoker()
    invoker.register("acme/m", apply, batch=apply_batch, load=load)
    one = await invoker.invoke(REF, Payload.from_json(1), CallOptions())
    two = await invoker.invoke(REF, Payload.from_json(2), CallOptions())
    many = await invoker.invoke_batch(REF, [Payload.from_json(3)] * 2, CallOptions())
    assert [one.output.value(), two.output.value()] == [11, 12]
    assert [r.output.value() for r in many if isinstance(r, Result)] == [30, 30]
    assert loads == [1]
