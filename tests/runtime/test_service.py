"""The model service's batch entry point: resolve once, check schemas, run on the pool with
each input's own attributes (SQLite store, a real registry build, real runners)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modelbus.client.refs import ModelRef
from modelbus.errors import InputRejected, InvalidInput
from modelbus.registry.catalog import Registry
from modelbus.runtime.invocation import CallOptions, Payload, Result
from modelbus.runtime.pool import PoolManager
from modelbus.runtime.service import ModelService
from modelbus.store.database import Database
from modelbus.store.jobs import JobStore

MODEL = """
import os

def apply(value, context):
    return {"text": value["text"], "attrs": dict(context.attributes), "pid": os.getpid()}
"""
MANIFEST = """
[model]
owner = "tests"
name = "attrs"
[runtime]
entrypoint = "model:apply"
[serving]
max_runners = 1
[schema]
input = { type = "object", required = ["text"] }
"""


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[ModelService, PoolManager]]:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.py").write_text(MODEL)
    (folder / "modelbus.toml").write_text(MANIFEST)
    database = await Database.open(f"sqlite:///{tmp_path / 'modelbus.sqlite'}")
    pools = PoolManager()
    try:
        await database.migrate()
        registry = Registry(database, tmp_path / "data")
        await registry.push(folder, version="1.0.0")
        yield ModelService(registry=registry, pools=pools, jobs=JobStore(database)), pools
    finally:
        await pools.close()
        await database.close()


async def test_invoke_batch_gives_each_input_its_attributes_past_rejected_ones(
    service: tuple[ModelService, PoolManager],
) -> None:
    models, pools = service
    ref = ModelRef.parse("tests/attrs@1.*")
    await models.invoke(ref, Payload.from_json({"text": "warm"}), CallOptions())
    [pool] = pools.pools()
    before = pool.stats().calls
    payloads = [
        Payload.from_json({"text": "a"}),
        Payload.from_json({"no": "text"}),  # refused by the schema, never sent
        Payload.from_json({"text": "c"}),
    ]
    options = CallOptions(attributes={"listener": "l1"}, max_batch_size=10)
    own = [{"id": "1"}, {"id": "2"}, {"id": "3"}]
    first, refused, last = await models.invoke_batch(ref, payloads, options, attributes=own)
    assert isinstance(refused, InputRejected) and refused.version == "1.0.0"
    assert isinstance(first, Result) and isinstance(last, Result)
    assert first.output.value()["attrs"] == {"listener": "l1", "id": "1"}
    assert last.output.value()["attrs"] == {"listener": "l1", "id": "3"}
    assert pool.stats().calls == before + 1  # both accepted inputs in one runner call
    with pytest.raises(ValueError, match="1 attributes for 3 inputs"):
        await models.invoke_batch(ref, payloads, options, attributes=own[:1])


@pytest.mark.parametrize("timeout_s", [math.inf, math.nan, 1e308, 86_401.0, 0.0, -1.0])
def test_call_options_refuse_a_timeout_out_of_range(timeout_s: float) -> None:
    # The pool schedules by the timeout: an infinite one broke its dispatch for every caller.
    with pytest.raises(InvalidInput, match="give a number of seconds over 0 and at most 86400"):
        CallOptions(timeout_s=timeout_s)
    assert CallOptions(timeout_s=86_400.0).timeout_s == 86_400.0
