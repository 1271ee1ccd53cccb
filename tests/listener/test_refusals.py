"""Sinks that refuse a message for good: only that message suffers."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from modelbus.connectors import SCHEMES
from modelbus.listeners.envelopes import dead_letter_id

from . import refusing_connector
from .conftest import Env, eventually


@pytest.fixture
def queue_kind() -> str:
    return "memory"


@pytest.fixture(autouse=True)
def refusing_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCHEMES, "refusing", refusing_connector.__name__)


async def test_a_refused_output_dead_letters_only_its_own_message(env: Env) -> None:
    gate = asyncio.Event()

    async def held(value: Any) -> Any:
        await gate.wait()  # finish together, so the publishes are grouped
        return value

    env.invoker.register("acme/echo", held)
    out = f"refusing://{uuid.uuid4().hex}"
    source = env.url("in")
    listener = await env.start(env.definition(source=source, outputs=[out]))
    good = [await env.publish(source, json.dumps({"ok": n}).encode()) for n in range(3)]
    bad = await env.publish(source, b'{"refuse": true}')
    await eventually(lambda: env.invoker.concurrency == 4)
    gate.set()

    await eventually(lambda: listener.status().counters["succeeded"] == 3)
    await eventually(lambda: listener.status().counters["dead_lettered"] == 1)
    accepted = refusing_connector.ACCEPTED[out]
    assert sorted(m.attributes["sourcemessageid"] for m in accepted) == sorted(good)
    letter = await env.runs.get_dead_letter(dead_letter_id(listener.name, bad))
    assert letter.permanent and "too large" in letter.error_message


async def test_an_error_sink_that_refuses_for_good_does_not_keep_the_message_cycling(
    env: Env,
) -> None:
    env.invoker.register("acme/echo", lambda v: {"refuse": v})
    errors = f"refusing://{uuid.uuid4().hex}"
    source = env.url("in")
    listener = await env.start(
        env.definition(source=source, outputs=[f"refusing://{uuid.uuid4().hex}"], error_sink=errors)
    )
    message_id = await env.publish(source, b'{"refuse": "me too"}')  # refused by both sinks
    await eventually(lambda: listener.status().counters["dead_lettered"] == 1)
    assert "refused dead letter" in (listener.status().last_error or "")
    assert (await env.runs.get_dead_letter(dead_letter_id(listener.name, message_id))).permanent
    assert await env.counts(source) == (0, 0)
