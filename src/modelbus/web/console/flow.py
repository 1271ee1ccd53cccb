"""The flow map page: every listener as one graph, drawn on the server.

``GET /console/flow`` draws the graph of ``GET /v1/flow`` (:mod:`modelbus.listeners.flow`)
as an SVG laid out in columns (places, listeners, model versions, sinks; a pipeline continues
to the right), with a list of every listener's hops below it: the page is whole without
JavaScript. Listener and model nodes are links (Tab reaches them, Enter opens the page).
``GET /console/flow/live`` answers the graph as JSON; ``flow.js`` polls it to keep the
rates and states live.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from modelbus.listeners.flow import FlowEdge, FlowGraph, FlowNode
from modelbus.web.api.flow import flow_graph
from modelbus.web.console.auth import Viewing
from modelbus.web.console.web import PREFIX, ConsoleRoute, render

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

NODE_W = 184
NODE_H = 64
GAP_X = 76  # room for an edge's rate between two columns
GAP_Y = 30
MARGIN = 16
LABEL_CHARS = 25  # what fits on a node's line at the page's font size
KIND_NAMES = {"listener": "listener", "model": "model version"}
ROLE_NAMES = {"source": "source", "output": "output", "dead-letter": "dead letters"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Box:
    """A node where the drawing puts it, with its lines of text."""

    node: FlowNode
    x: int
    y: int
    kind_text: str
    label_text: str
    detail_text: str
    description: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Line:
    """An edge as an SVG path, with where its rate is written."""

    edge: FlowEdge
    path: str
    label_x: int
    label_y: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Drawing:
    width: int
    height: int
    node_w: int
    node_h: int
    boxes: list[Box]
    lines: list[Line]


def draw(graph: FlowGraph) -> Drawing:
    """Where each node and edge of ``graph`` goes (its layout's columns and rows)."""
    rows = max((n.row for n in graph.nodes), default=-1) + 1
    # Below the last row: room for the dead letters' edges that run under it.
    height = MARGIN * 2 + rows * NODE_H + rows * GAP_Y
    width = MARGIN * 2 + graph.layers * NODE_W + max(graph.layers - 1, 0) * GAP_X
    boxes = {n.id: _box(n) for n in sorted(graph.nodes, key=_reading_order(graph))}
    lines = [_line(e, boxes[e.source], boxes[e.target], height) for e in graph.edges]
    if any(e.backward for e in graph.edges):
        height += GAP_Y
    return Drawing(
        width=width,
        height=height,
        node_w=NODE_W,
        node_h=NODE_H,
        boxes=list(boxes.values()),
        lines=lines,
    )


def _reading_order(graph: FlowGraph) -> Callable[[FlowNode], tuple[int, int, int]]:
    """Column by column, a model right after its listener: the order of Tab and of a screen
    reader (the order of the elements)."""
    listeners = {n.listener: n for n in graph.nodes if n.kind == "listener"}

    def key(node: FlowNode) -> tuple[int, int, int]:
        if node.kind == "place" or node.listener not in listeners:
            return (node.layer, node.row, 0)
        owner = listeners[node.listener]
        return (owner.layer, owner.row, 1 if node.kind == "listener" else 2)

    return key


def _box(node: FlowNode) -> Box:
    x = MARGIN + node.layer * (NODE_W + GAP_X)
    y = MARGIN + node.row * (NODE_H + GAP_Y)
    return Box(
        node=node,
        x=x,
        y=y,
        kind_text=_kind(node),
        label_text=_short(node.label),
        detail_text=_short(_detail(node)),
        description=describe(node),
    )


def _kind(node: FlowNode) -> str:
    if node.kind == "place":
        return f"{node.scheme}: " + ", ".join(ROLE_NAMES[r] for r in node.roles)
    return KIND_NAMES[node.kind]


def _detail(node: FlowNode) -> str:
    if node.kind == "listener":
        return f"{node.state}: {node.reason}" if node.reason else str(node.state)
    if node.kind == "model":
        if node.version is None:
            return f"{node.spec}: unresolved"
        return "resolved" if node.spec == node.version else f"{node.spec} → {node.version}"
    return f"also {node.urls[1]}" if len(node.urls) > 1 else ""


def describe(node: FlowNode) -> str:
    """A node in words (the link's accessible name and the box's tooltip)."""
    if node.kind == "listener":
        why = f" ({node.reason})" if node.reason else ""
        return f"Listener {node.label}, {node.state}{why}"
    if node.kind == "model":
        now = f"resolves to {node.version}" if node.version else f"does not resolve: {node.reason}"
        return f"Model {node.model}@{node.spec} of listener {node.listener}, {now}"
    roles = ", ".join(ROLE_NAMES[r] for r in node.roles)
    return f"{roles.capitalize()}: " + " = ".join(node.urls)


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _line(edge: FlowEdge, source: Box, target: Box, height: int) -> Line:
    if edge.backward:  # around the bottom of the drawing, right to left
        x1, y1 = source.x + NODE_W // 2, source.y + NODE_H
        x2, y2 = target.x + NODE_W // 2, target.y + NODE_H
        low = height - MARGIN // 2 + GAP_Y // 2
        path = f"M{x1},{y1} V{low} H{x2} V{y2}"
        return Line(edge=edge, path=path, label_x=(x1 + x2) // 2, label_y=low - 4)
    x1, y1 = source.x + NODE_W, source.y + NODE_H // 2
    x2, y2 = target.x, target.y + NODE_H // 2
    if edge.kind == "dead-letter":  # under the model column, in the gap between rows
        x1, y1 = source.x + NODE_W - 24, source.y + NODE_H
        run = source.y + NODE_H + GAP_Y // 2
        path = f"M{x1},{y1} V{run} H{x2 - GAP_X // 2} C{x2 - 16},{run} {x2 - 16},{y2} {x2},{y2}"
        return Line(edge=edge, path=path, label_x=x2 - GAP_X - NODE_W // 2, label_y=run - 4)
    bend = max(GAP_X // 2, (x2 - x1) // 2)
    path = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
    return Line(edge=edge, path=path, label_x=(x1 + x2) // 2, label_y=(y1 + y2) // 2 - 6)


def hops(graph: FlowGraph) -> dict[str, list[tuple[FlowEdge, FlowNode, FlowNode]]]:
    """Each listener's edges with their ends, in the order a message takes them."""
    nodes = {n.id: n for n in graph.nodes}
    found: dict[str, list[tuple[FlowEdge, FlowNode, FlowNode]]] = defaultdict(list)
    for e in graph.edges:
        found[e.listener].append((e, nodes[e.source], nodes[e.target]))
    return dict(found)


@router.get("/flow")
async def flow_page(request: Request, viewer: Viewing) -> Response:
    graph = await flow_graph(request)
    return render(
        request,
        "flow.html",
        viewer=viewer,
        graph=graph,
        drawing=draw(graph),
        hops=hops(graph),
        listeners={n.listener: n for n in graph.nodes if n.kind == "listener"},
    )


@router.get("/flow/live")
async def flow_live(request: Request, viewer: Viewing) -> JSONResponse:
    graph = await flow_graph(request)
    return JSONResponse(graph.model_dump(mode="json"))
