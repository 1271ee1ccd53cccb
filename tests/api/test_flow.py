"""``GET /v1/flow`` on a real server: two listeners on ``local://`` queues forming a two-step
pipeline, the messages and rates of every hop while messages go through, a degraded
listener's state and reason, credentials masked, and the route's place in the OpenAPI."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx

from modelbus.connectors import ConnectorContext, make_sink
from modelbus.connectors.base import OutMessage
from tests.support.server import ModelbusServer

MESSAGES = 6
WAIT_S = 60.0


def publish(server: ModelbusServer, queue: str, bodies: list[bytes]) -> None:
    """Put messages on the server's embedded queue ``local://QUEUE``, as a producer on the
    machine would (the queue is a file in the server's data directory)."""

    async def put() -> None:
        sink = make_sink(
            f"local://{queue}", ConnectorContext(listener="flow-test", data_dir=server.data_dir)
        )
        await sink.open()
        try:
            await sink.publish([OutMessage(id=f"m{i}", body=b) for i, b in enumerate(bodies)])
        finally:
            await sink.close()

    asyncio.run(put())


def flow(api: httpx.Client) -> dict[str, Any]:
    answer = api.get("/v1/flow")
    assert answer.status_code == 200, answer.text
    graph: dict[str, Any] = answer.json()
    return graph


def edges_of(graph: dict[str, Any], listener: str) -> dict[str, dict[str, Any]]:
    return {e["kind"]: e for e in graph["edges"] if e["listener"] == listener}


def nodes_by_id(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in graph["nodes"]}


def test_a_two_step_pipeline_on_local_queues(server: ModelbusServer) -> None:
    tag = uuid.uuid4().hex[:8]
    first, second = f"flow-ocr-{tag}", f"flow-classify-{tag}"
    inbox, middle, out, dead = (f"{q}-{tag}" for q in ("in", "mid", "out", "dead"))
    with server.http() as api:
        for body in (
            {
                "name": first,
                "source": f"local://{inbox}",
                "model": "test/echo@1.*",
                "outputs": [f"local://{middle}"],
                "error_sink": f"local://{dead}",
            },
            {
                "name": second,
                "source": f"local://{middle}/",  # another spelling of the same queue
                "model": "test/echo@1.0.0",
                "outputs": [f"local://{out}"],
            },
        ):
            created = api.post("/v1/listeners", json=body)
            assert created.status_code == 201, created.text
        try:
            graph = flow(api)
            nodes = nodes_by_id(graph)
            hop = [p for p in graph["pipelines"] if p["upstream"] == first]
            assert len(hop) == 1
            assert hop[0]["downstream"] == second
            shared = nodes[hop[0]["place"]]
            # Listeners are read in name order: the classifier's spelling comes first.
            assert shared["roles"] == ["source", "output"]
            assert shared["urls"] == [f"local://{middle}/", f"local://{middle}"]
            model = nodes[f"model:{first}"]
            assert (model["model"], model["spec"], model["state"]) == (
                "test/echo",
                "1.*",
                "resolved",
            )
            assert model["version"] == "1.1.0"  # 1.* resolves to the newest 1.x now
            assert nodes[f"model:{second}"]["version"] == "1.0.0"
            layer = {i: n["layer"] for i, n in nodes.items()}
            first_edges, second_edges = edges_of(graph, first), edges_of(graph, second)
            chain = [
                first_edges["receive"]["source"],
                f"listener:{first}",
                f"model:{first}",
                shared["id"],
                f"listener:{second}",
                f"model:{second}",
                second_edges["result"]["target"],
            ]
            assert [layer[i] for i in chain] == [layer[chain[0]] + k for k in range(7)]
            assert nodes[first_edges["dead-letter"]["target"]]["roles"] == ["dead-letter"]

            publish(server, inbox, [json.dumps({"n": i}).encode() for i in range(MESSAGES)])
            deadline = time.monotonic() + WAIT_S

            def through(graph: dict[str, Any]) -> bool:
                """Every message through, and a reading far enough (RATE_MIN_SPAN_S) after
                the one before publishing for the rates to span their passage."""
                last = edges_of(graph, second)["result"]
                return last["messages"] >= MESSAGES and last["rate_per_s"] is not None

            while not through(graph):
                assert time.monotonic() < deadline, json.dumps(edges_of(graph, second))
                time.sleep(0.25)
                graph = flow(api)
            first_edges, second_edges = edges_of(graph, first), edges_of(graph, second)
            for edges in (first_edges, second_edges):
                assert edges["receive"]["messages"] == MESSAGES
                assert edges["invoke"]["messages"] == MESSAGES
                assert edges["result"]["messages"] == MESSAGES
                # Read while the messages went through: a rate above zero.
                assert edges["receive"]["rate_per_s"] > 0, edges
                assert edges["result"]["rate_per_s"] > 0, edges
            assert first_edges["dead-letter"]["messages"] == 0
            states = {n["listener"]: n["state"] for n in graph["nodes"] if n["kind"] == "listener"}
            assert states[first] == states[second] == "running"
        finally:
            for name in (first, second):
                api.delete(f"/v1/listeners/{name}")
        assert f"listener:{first}" not in nodes_by_id(flow(api))


def test_a_degraded_listener_with_credentials_masked(server: ModelbusServer) -> None:
    name, password = f"flow-secret-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    # Redis here has no password: AUTH with one fails, so the listener is degraded.
    source = f"redis://flowuser:{password}@127.0.0.1:6379/0?stream=flow-{name}"
    with server.http() as api:
        created = api.post(
            "/v1/listeners?check=false",
            json={"name": name, "source": source, "model": "test/echo@9.*"},
        )
        assert created.status_code == 201, created.text
        try:
            deadline = time.monotonic() + WAIT_S
            while True:
                graph = flow(api)
                node = nodes_by_id(graph)[f"listener:{name}"]
                if node["state"] == "degraded":
                    break
                assert time.monotonic() < deadline, node
                time.sleep(0.25)
            assert node["reason"], node
            model = nodes_by_id(graph)[f"model:{name}"]
            assert model["state"] == "unresolved"
            assert "9.*" in model["reason"]
            place = nodes_by_id(graph)[edges_of(graph, name)["receive"]["source"]]
            assert place["urls"] == ["redis://***@127.0.0.1:6379/***?stream=***"]
            assert password not in json.dumps(graph)
        finally:
            api.delete(f"/v1/listeners/{name}")


def test_the_route_is_in_the_openapi_document(server: ModelbusServer) -> None:
    with server.http() as api:
        document = api.get("/openapi.json").json()
        operation = document["paths"]["/v1/flow"]["get"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/FlowGraph")
        assert "FlowEdge" in document["components"]["schemas"]
    assert httpx.get(f"{server.url}/v1/flow").status_code == 401  # no key
