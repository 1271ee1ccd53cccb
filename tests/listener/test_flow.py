"""The flow map's graph builder: places matched by their normalised URL (so pipelines show),
sinks and dead-letter sinks, masked credentials, states, edge counts and rates, and a
layout that reads left to right even around a cycle."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelbus.client.schemas import ListenerStatusOut
from modelbus.listeners.definition import ListenerDefinition
from modelbus.listeners.flow import FlowGraph, FlowNode, RateMeter, build, place_key

PASSWORD = "s3cr3t-pa55"


def listener(name: str, source: str, **fields: Any) -> ListenerDefinition:
    return ListenerDefinition.model_validate(
        {"name": name, "source": source, "model": "acme/ocr@1.*", **fields}
    )


def status(name: str, **fields: Any) -> ListenerStatusOut:
    return ListenerStatusOut.model_validate(
        {"name": name, "state": "running", "version": "1.2.3", **fields}
    )


def graph_of(*pairs: tuple[ListenerDefinition, ListenerStatusOut], **kw: Any) -> FlowGraph:
    return build(list(pairs), at=kw.pop("at", 100.0), **kw)


def node(graph: FlowGraph, node_id: str) -> FlowNode:
    return next(n for n in graph.nodes if n.id == node_id)


def place_of(graph: FlowGraph, label_part: str) -> FlowNode:
    return next(n for n in graph.nodes if n.kind == "place" and label_part in n.label)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("local://ocr-text", "local://ocr-text/"),
        ("redis://:pw@Broker:6379/0?stream=jobs&block_ms=50", "redis://broker/0?stream=jobs"),
        ("amqp://app:pw@rabbit/vh?queue=q&prefetch=10", "AMQP://rabbit:5672/vh?queue=q"),
        ("postgres://u@db/app?table=outbox", "postgresql://u2:x@db:5432/app?table=outbox"),
        ("sqs://jobs?region=eu-west-1", "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"),
        ("webhook://intake?secret=abc", "https://modelbus.example/v1/hooks/intake"),
        ("nats://t0k3n@n1:4222?stream=S&subject=a.b", "nats://n1?subject=a.b&stream=S"),
        ("kafka://b2:9092,b1:9092/topic", "kafka://b1,b2/topic"),
        ("dir:///srv/out/", "dir:///srv/out"),
    ],
)
def test_one_place_however_spelt(a: str, b: str) -> None:
    assert place_key(a) == place_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("local://ocr-text", "local://ocr-texts"),
        ("redis://broker/0?stream=a", "redis://broker/0?stream=b"),
        ("redis://broker/0?stream=a", "redis://broker/1?stream=a"),
        ("kafka://b1:9092/t", "kafka://b1:9093/t"),
        ("mqtt://h/a/b", "mqtt://h/a/c"),
        ("sqs://jobs", "sqs://jobs-dlq"),
        ("local://x", "memory://x"),
    ],
)
def test_different_places_stay_apart(a: str, b: str) -> None:
    assert place_key(a) != place_key(b)


def test_a_two_step_pipeline_joins_on_the_shared_queue() -> None:
    ocr = listener(
        "ocr", "dir:///srv/inbox", outputs=["local://text/"], error_sink="local://ocr-dead"
    )
    classify = listener("classify", "local://text", outputs=["local://labels"])
    graph = graph_of((classify, status("classify")), (ocr, status("ocr")))

    text = place_of(graph, "local://text")
    assert text.roles == ["source", "output"]
    assert text.urls == ["local://text", "local://text/"]  # both spellings, one node
    assert [p.model_dump() for p in graph.pipelines] == [
        {"upstream": "ocr", "downstream": "classify", "place": text.id, "dead_letters": False}
    ]
    # Left to right: inbox -> ocr -> model -> text -> classify -> model -> labels.
    order = ["dir:///***/***", "listener:ocr", "model:ocr", "local://text", "listener:classify"]
    layers = [(place_of(graph, key) if "://" in key else node(graph, key)).layer for key in order]
    assert layers == [0, 1, 2, 3, 4]
    assert place_of(graph, "local://labels").layer == 6
    assert graph.layers == 7
    # The dead letters line up with the results (a column after the model).
    assert place_of(graph, "ocr-dead").layer == 3
    assert place_of(graph, "ocr-dead").roles == ["dead-letter"]


def test_edges_per_hop_with_the_counters_they_carry() -> None:
    d = listener("ocr", "local://in", outputs=["local://a", "local://b"], error_sink="local://dl")
    counters = {
        "received": 50,
        "succeeded": 40,
        "dead_lettered": 3,
        "retried": 9,
        "skipped_filtered": 4,
        "skipped_duplicate": 1,
    }
    graph = graph_of((d, status("ocr", counters=counters)))
    by_kind = {(e.kind, e.target): e for e in graph.edges}
    source, a, b, dead = (place_of(graph, f"local://{q}").id for q in ("in", "a", "b", "dl"))
    assert {k: e.messages for k, e in by_kind.items()} == {
        ("receive", "listener:ocr"): 50,
        ("invoke", "model:ocr"): 45,  # received, less what was skipped
        ("result", a): 40,
        ("result", b): 40,
        ("dead-letter", dead): 3,
    }
    assert by_kind[("receive", "listener:ocr")].source == source
    assert by_kind[("dead-letter", dead)].source == "listener:ocr"
    assert by_kind[("result", a)].source == "model:ocr"
    assert all(e.rate_per_s is None for e in graph.edges)  # no meter: no rates


def test_no_credential_is_ever_shown() -> None:
    d = listener(
        "secure",
        f"amqp://app:{PASSWORD}@rabbit/vh?queue=in",
        outputs=[f"redis://:{PASSWORD}@cache:6379/0?stream=out", "https://hooks.example/x"],
        error_sink=f"nats://{PASSWORD}@nats:4222?stream=DL&subject=dl",
    )
    also = listener("reader", f"redis://user:{PASSWORD}x@cache/0?stream=out&password={PASSWORD}")
    graph = graph_of((d, status("secure")), (also, status("reader")))
    dumped = json.dumps(graph.model_dump(mode="json"))
    assert PASSWORD not in dumped
    assert "***" in dumped
    out = place_of(graph, "***@cache")
    assert out.urls == [  # listeners in name order: the reader's spelling first, by its shape
        "redis://***@cache/***?stream=***&password=***",
        "redis://***@cache:6379/***?stream=***",
    ]
    assert [(p.upstream, p.downstream) for p in graph.pipelines] == [("secure", "reader")]


def test_states_reasons_and_model_versions() -> None:
    ok = listener("ok", "local://a")
    broken = listener("broken", "local://b", model="acme/gone@2.*")
    graph = graph_of(
        (ok, status("ok", state="paused")),
        (
            broken,
            status(
                "broken",
                state="degraded",
                problems={"source": "source: connection refused"},
                version=None,
                version_error="no version of acme/gone matches 2.*",
            ),
        ),
    )
    assert node(graph, "listener:ok").state == "paused"
    assert node(graph, "listener:ok").reason is None
    assert node(graph, "listener:ok").href == "/console/listeners/ok"
    assert node(graph, "listener:broken").state == "degraded"
    assert node(graph, "listener:broken").reason == "source: connection refused"
    model = node(graph, "model:ok")
    assert (model.label, model.state, model.version, model.spec) == (
        "acme/ocr 1.2.3",
        "resolved",
        "1.2.3",
        "1.*",
    )
    assert model.href == "/console/models/acme/ocr"
    gone = node(graph, "model:broken")
    assert (gone.label, gone.state) == ("acme/gone@2.*", "unresolved")
    assert gone.reason == "no version of acme/gone matches 2.*"


def test_a_cycle_is_drawn_with_one_edge_backward() -> None:
    there = listener("there", "local://a", outputs=["local://b"])
    back = listener("back", "local://b", outputs=["local://a"])
    graph = graph_of((there, status("there")), (back, status("back")))
    backward = [e for e in graph.edges if e.backward]
    assert len(backward) == 1
    assert {(p.upstream, p.downstream) for p in graph.pipelines} == {
        ("there", "back"),
        ("back", "there"),
    }
    # Every other edge goes left to right.
    layer = {n.id: n.layer for n in graph.nodes}
    assert all(layer[e.source] < layer[e.target] for e in graph.edges if not e.backward)


def test_rows_keep_each_chain_level_and_the_layout_is_deterministic() -> None:
    pairs = [
        (listener(f"l{i}", f"local://in{i}", outputs=[f"local://out{i}"]), status(f"l{i}"))
        for i in range(3)
    ]
    graph = graph_of(*pairs)
    for i in range(3):
        rows = {
            node(graph, f"listener:l{i}").row,
            node(graph, f"model:l{i}").row,
            place_of(graph, f"in{i}").row,
            place_of(graph, f"out{i}").row,
        }
        assert rows == {i}
    assert graph_of(*reversed(pairs)) == graph


def test_rates_from_successive_readings() -> None:
    d = listener("ocr", "local://in", outputs=["local://out"])
    meter = RateMeter()

    def rate_at(at: float, received: int, succeeded: int) -> dict[str, float | None]:
        counters = {"received": received, "succeeded": succeeded}
        graph = graph_of((d, status("ocr", counters=counters)), at=at, rates=meter)
        return {e.kind: e.rate_per_s for e in graph.edges}

    assert rate_at(100.0, 0, 0) == {"receive": None, "invoke": None, "result": None}
    assert rate_at(100.2, 5, 0) == {"receive": None, "invoke": None, "result": None}  # too soon
    assert rate_at(102.0, 20, 10) == {"receive": 10.0, "invoke": 10.0, "result": 5.0}
    # The oldest reading in the window is the base: later ones average over up to 10 s.
    assert rate_at(104.0, 40, 30)["receive"] == 10.0
    # A restarted process counts from zero again: never a negative rate.
    assert rate_at(113.0, 6, 3)["receive"] == pytest.approx(6 / 9, abs=0.001)


def test_no_listeners_no_graph() -> None:
    graph = build([], at=1.0)
    assert (graph.nodes, graph.edges, graph.pipelines, graph.layers) == ([], [], [], 0)


def test_a_listener_reading_dead_letters_is_a_pipeline_hop_too() -> None:
    ocr = listener("ocr", "local://in", outputs=["local://out"], error_sink="local://dead")
    triage = listener("triage", "local://dead")
    graph = graph_of((ocr, status("ocr")), (triage, status("triage")))
    dead = place_of(graph, "local://dead")
    assert [p.model_dump() for p in graph.pipelines] == [
        {"upstream": "ocr", "downstream": "triage", "place": dead.id, "dead_letters": True}
    ]
    assert dead.roles == ["dead-letter", "source"]
    assert node(graph, "listener:triage").layer == dead.layer + 1


def test_place_ids_say_nothing_the_urls_shapes_hide() -> None:
    """A key without listeners:manage reads the graph: a place's id must not let it confirm
    a guess of the queue or path its URL's shape hides (as a digest of them would)."""

    def ids(stream: str, folder: str) -> list[str]:
        graph = graph_of(
            (listener("a", f"redis://:{PASSWORD}@broker/0?stream={stream}"), status("a")),
            (listener("b", f"dir:///srv/{folder}", outputs=["local://done"]), status("b")),
        )
        return sorted(n.id for n in graph.nodes if n.kind == "place")

    assert ids("orders", "payroll") == ids("guess", "other") == ["place:1", "place:2", "place:3"]
