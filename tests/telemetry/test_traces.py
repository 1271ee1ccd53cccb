"""OpenTelemetry, end to end: a real ``modelbus serve`` started with the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` exports over OTLP/HTTP to a real receiver (tests/support/
otlp.py, decoding with ``opentelemetry-proto``). One message that carries a W3C
``traceparent`` goes through a listener: its span tree continues that trace, and its result
carries the listener's span onward; a dead letter too. HTTP requests are traced by the
FastAPI instrumentation. Without the variable nothing is exported."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelbus.client import Client
from modelbus.runtime import telemetry
from tests.serve.conftest import eventually, publish, receive_all
from tests.support.fixtures import MODELS_DIR
from tests.support.otlp import Receiver, Span, otlp_receiver
from tests.support.server import ModelbusServer, running_server

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
STAGES = ["receive", "decode", "invoke", "publish", "settle"]
CONSUMER = 5  # SpanKind.CONSUMER in the OTLP protobuf (SPAN_KIND_CONSUMER)
SERVER = 2  # SPAN_KIND_SERVER


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as found:
        yield found


@pytest.fixture(scope="module")
def traced(
    receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelbusServer]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "modelbus-under-test",
    }
    with running_server(tmp_path_factory.mktemp("traced") / "data", env=env) as server:
        with server.client() as client:
            client.push(MODELS_DIR / "echo", version="1.0.0")
        yield server


def listener(client: Client, name: str, **more: object) -> None:
    client.create_listener(
        {
            "name": name,
            "source": f"local://{name}-in?poll_ms=50",
            "model": "test/echo@1.*",
            "outputs": [f"local://{name}-out"],
            **more,
        }
    )


def tree_of(spans: list[Span], root: Span) -> dict[str, Span]:
    """The direct children of ``root``, by name."""
    return {s.name: s for s in spans if s.parent_id == root.span_id}


def test_a_message_s_span_tree_continues_its_trace_and_its_result_carries_it_on(
    traced: ModelbusServer, receiver: Receiver
) -> None:
    with traced.client() as client:
        listener(client, "traced")
    publish(traced.data_dir, "traced-in", ("m-1", b'{"n": 1}'), traceparent=TRACEPARENT)

    def has_tree(spans: list[Span]) -> bool:
        roots = [s for s in spans if s.name == "process traced"]
        return bool(roots) and len(tree_of(spans, roots[0])) == len(STAGES)

    spans = receiver.wait_for(has_tree)
    (root,) = [s for s in spans if s.name == "process traced"]
    assert (root.trace_id, root.parent_id) == (TRACE_ID, PARENT_ID)  # continues the message's
    assert root.kind == CONSUMER and root.service == "modelbus-under-test"
    assert root.attributes["messaging.system"] == "local"
    assert root.attributes["messaging.message.id"] == "m-1"
    assert root.attributes["modelbus.listener"] == "traced"
    assert root.attributes["modelbus.outcome"] == "acked"
    stages = tree_of(spans, root)
    assert sorted(stages) == sorted(STAGES)
    ordered = [stages[name] for name in STAGES]
    for stage in ordered:
        assert stage.trace_id == TRACE_ID
        assert root.start_ns <= stage.start_ns <= stage.end_ns <= root.end_ns
    for before, after in itertools.pairwise(ordered):
        assert before.start_ns <= after.start_ns, (before.name, after.name)
    (call,) = tree_of(spans, stages["invoke"]).values()
    assert call.name == "runner call"
    assert stages["invoke"].start_ns <= call.start_ns <= call.end_ns <= stages["invoke"].end_ns
    assert stages["invoke"].attributes["modelbus.model.version"] == "1.0.0"

    # the result continues the trace from the listener's span
    (result,) = eventually(lambda: receive_all(traced.data_dir, "traced-out"))
    assert result.attributes["traceparent"] == f"00-{TRACE_ID}-{root.span_id}-01"
    assert json.loads(result.body)["traceparent"] == result.attributes["traceparent"]


def test_a_dead_letter_carries_the_listener_s_span(
    traced: ModelbusServer, receiver: Receiver
) -> None:
    with traced.client() as client:
        listener(client, "refusing", error_sink="local://refusing-dead")
    # a structured CloudEvent that is not JSON: a permanent decode error, dead-lettered at once
    publish(
        traced.data_dir,
        "refusing-in",
        ("bad-1", b"{not json"),
        traceparent=TRACEPARENT,
        **{"content-type": "application/cloudevents+json"},
    )
    spans = receiver.wait_for(lambda found: any(s.name == "process refusing" for s in found))
    (root,) = [s for s in spans if s.name == "process refusing"]
    assert root.trace_id == TRACE_ID
    assert root.attributes["modelbus.outcome"] == "dead_lettered"
    assert root.status_code == 2  # STATUS_CODE_ERROR, with the reason
    (letter,) = eventually(lambda: receive_all(traced.data_dir, "refusing-dead"))
    assert letter.attributes["modelbus-traceparent"] == f"00-{TRACE_ID}-{root.span_id}-01"
    assert letter.attributes["traceparent"] == TRACEPARENT  # the original's, untouched


def test_http_requests_are_traced_and_continue_an_incoming_traceparent(
    traced: ModelbusServer, receiver: Receiver
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    answer = httpx.get(
        f"{traced.url}/v1/models",
        headers={
            "Authorization": f"Bearer {traced.admin_key}",
            "traceparent": f"00-{trace_id}-b7ad6b7169203331-01",
        },
        timeout=30,
    )
    assert answer.status_code == 200
    spans = receiver.wait_for(
        lambda found: any(s.trace_id == trace_id and s.kind == SERVER for s in found)
    )
    (request,) = [s for s in spans if s.trace_id == trace_id and s.kind == SERVER]
    assert request.parent_id == "b7ad6b7169203331"
    assert request.attributes.get("http.route") == "/v1/models"


def test_without_the_variables_tracing_stays_off(tmp_path: Path) -> None:
    assert not telemetry.wanted({})
    assert not telemetry.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": ""})
    assert telemetry.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318"})
    assert not telemetry.wanted(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    )
    assert not telemetry.wanted(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}
    )
