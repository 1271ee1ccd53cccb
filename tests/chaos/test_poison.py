"""Poison and hostile messages are dead-lettered with a reason that names their cause, while
the good messages around them keep flowing (no head-of-line blocking).

A real ``modelbus serve`` runs one listener on the embedded queue over the ``chaos/hostile``
model (input schema, 2 s timeout, 400 MB memory limit, 4 runners). Good inputs arrive at a
steady rate; between them come, twice each: a body that is not valid JSON, an input the
schema refuses, a body over the listener's ``max_body_bytes``, binary garbage, and inputs
on which the model raises, hangs past its timeout, ends its own process, segfaults, or
allocates past its memory limit. The transient ones are retried (3 attempts) before they
are dead-lettered, so they hold runners again and again meanwhile: good messages must still
get through within a bounded latency.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from modelbus.connectors import ConnectorContext, make_sink
from modelbus.connectors.base import Delivery, OutMessage
from tests.e2e.node import open_node
from tests.e2e.processes import Serving

from .accounting import Collector, progress_to
from .brokers import BASE_MESSAGES

HOSTILE = Path(__file__).parent / "models" / "hostile"
MAX_BODY_BYTES = 4096
MAX_ATTEMPTS = 3
GOOD = max(200, BASE_MESSAGES // 10)
RATE_PER_S = 40


@dataclass(frozen=True)
class Poison:
    body: bytes
    error_type: str
    reason: str  # must appear in the dead letter's error message
    permanent: bool


POISONS = {
    "invalid-json": Poison(b'{"op": "ok", "n": 1, ', "InputRejected", "not valid JSON", True),
    "schema": Poison(b'{"op": "dance", "n": 1}', "InputRejected", "'dance' is not one of", True),
    "too-large": Poison(
        json.dumps({"op": "ok", "n": 1, "pad": "x" * MAX_BODY_BYTES}).encode(),
        "PayloadTooLarge",
        f"over the listener's max_body_bytes ({MAX_BODY_BYTES})",
        True,
    ),
    "binary": Poison(bytes(range(128, 256)) * 4, "InputRejected", "binary input (512 bytes)", True),
    "raises": Poison(b'{"op": "raise", "n": 1}', "ValueError", "exploded on purpose", False),
    "hangs": Poison(b'{"op": "hang", "n": 1}', "InvocationTimeout", "past its timeout", False),
    "exits": Poison(b'{"op": "exit", "n": 1}', "RunnerCrashed", "exited with code 13", False),
    "segfaults": Poison(b'{"op": "segfault", "n": 1}', "RunnerCrashed", "SIGSEGV", False),
    "eats-memory": Poison(
        b'{"op": "memory", "n": 1}', "MemoryError", "exceeded its memory limit", False
    ),
}
COPIES = 2


def listener_file(path: Path, source: str, out: str, dead: str) -> Path:
    path.write_text(
        f"""
[[listeners]]
name = "hostile"
source = "{source}"
model = "chaos/hostile@1.*"
outputs = ["{out}"]
error_sink = "{dead}"
max_in_flight = 16
max_body_bytes = {MAX_BODY_BYTES}

[listeners.retry]
max_attempts = {MAX_ATTEMPTS}
initial_backoff_s = 0.5
max_backoff_s = 1.0
"""
    )
    return path


async def test_poison_is_dead_lettered_with_its_cause_while_good_messages_flow(
    tmp_path: Path, report: list[str]
) -> None:
    data_dir = tmp_path / "data"
    async with open_node(data_dir, start=False) as node:
        await node.push(HOSTILE, version="1.0.0")
    source, out, dead = (f"local://{role}?lease_s=5&poll_ms=20" for role in ("in", "out", "dead"))
    serving = Serving(data_dir, listener_file(tmp_path / "l.toml", source, out, dead))
    ctx = ConnectorContext(listener="chaos-collector", data_dir=data_dir)
    collector = Collector(ctx)
    poisons = [(kind, copy) for kind in POISONS for copy in range(COPIES)]
    random.shuffle(poisons)
    # the poison goes out in the first half of the good stream, so retries overlap it
    poison_at = dict(zip(random.sample(range(GOOD // 2), len(poisons)), poisons, strict=True))
    sent_at: dict[int, float] = {}

    async with collector.running(out, dead):
        await serving.start()
        sink = make_sink(source, ctx)
        await sink.open()
        try:
            for n in range(GOOD):
                if n in poison_at:
                    kind, copy = poison_at[n]
                    attributes = {"poison": kind, "copy": str(copy)}
                    body = POISONS[kind].body
                    await sink.publish(
                        [OutMessage(id=f"p-{kind}-{copy}", body=body, attributes=attributes)]
                    )
                sent_at[n] = time.monotonic()
                good = json.dumps({"op": "ok", "n": n}).encode()
                await sink.publish([OutMessage(id=f"g-{n}", body=good)])
                await asyncio.sleep(1 / RATE_PER_S)
        finally:
            await sink.close()
        everything = lambda: len(collector.result_ns()) + len(collector.letters)  # noqa: E731
        settled = await progress_to(GOOD + len(poison_at), everything, stall_s=30)
        serving.stop()

    assert settled, f"not everything settled:\n{serving.log()[-5000:]}"
    latencies = sorted(collector.arrived[n] - sent_at[n] for n in range(GOOD))
    p50, p95 = statistics.median(latencies), latencies[int(len(latencies) * 0.95)]
    letters = _by_kind(collector.letters)
    report.append(_table(letters, p50, p95, latencies[-1], len(poison_at)))

    assert collector.result_ns() == set(range(GOOD))
    assert sorted(letters) == sorted(POISONS) and all(len(v) == COPIES for v in letters.values())
    for kind, poison in POISONS.items():
        for letter in letters[kind]:
            attrs = letter.attributes
            assert letter.body == poison.body, kind  # the original, untouched
            assert attrs["modelbus-error-type"] == poison.error_type, (kind, attrs)
            assert poison.reason in attrs["modelbus-error-message"], (kind, attrs)
            assert attrs["modelbus-permanent"] == str(poison.permanent).lower(), (kind, attrs)
            assert attrs["modelbus-attempts"] == str(1 if poison.permanent else MAX_ATTEMPTS)
    # Poison is retried for seconds (3 attempts, timeouts, runner restarts); good messages
    # do not queue behind it.
    assert p95 < 2.0 and latencies[-1] < 8.0, (p50, p95, latencies[-1])


def _by_kind(letters: list[Delivery]) -> dict[str, list[Delivery]]:
    found: dict[str, list[Delivery]] = {}
    seen: set[tuple[str, str]] = set()
    for letter in letters:
        key = (letter.attributes["poison"], letter.attributes["copy"])
        if key not in seen:  # a redelivered dead letter counts once
            seen.add(key)
            found.setdefault(key[0], []).append(letter)
    return found


def _table(
    letters: dict[str, list[Delivery]], p50: float, p95: float, worst: float, sent: int
) -> str:
    lines = [
        "== poison and hostile messages (local://)",
        f"{'poison':>12}  {'dead letters':>12}  {'attempts':>8}  reason",
    ]
    for kind, found in sorted(letters.items()):
        attrs = found[0].attributes
        reason = f"{attrs['modelbus-error-type']}: {attrs['modelbus-error-message']}"
        reason = reason.splitlines()[0][:110]
        lines.append(f"{kind:>12}  {len(found):>12}  {attrs['modelbus-attempts']:>8}  {reason}")
    lines.append(
        f"good messages: {GOOD} at {RATE_PER_S}/s with {sent} poison among them; "
        f"latency p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {worst * 1000:.0f} ms"
    )
    return "\n".join(lines)
