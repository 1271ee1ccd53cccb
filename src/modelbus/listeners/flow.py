"""The flow map: every listener as one graph, sources -> listeners -> model versions -> sinks.

:func:`build` is a pure function of the listeners' definitions and live statuses (what
``GET /v1/listeners/{name}/status`` answers). It gives a :class:`FlowGraph`:

* a **place** node per queue, topic, folder or endpoint, whichever listeners name it: a
  listener's source, an output sink, an error sink. Two URLs that name the same place
  (:func:`place_key`: credentials, default ports, options that do not choose the queue and
  the spelling of an SQS queue or a webhook aside) are one node, so a **pipeline** shows
  where one listener's output is another listener's source;
* a **listener** node (its state, and the reason while degraded);
* a **model** node per listener: the version its spec resolves to now (or why it does not
  resolve). Each listener has its own, so every path reads as one chain even when two
  listeners call the same version;
* **edges** ``receive`` (source -> listener), ``invoke`` (listener -> model), ``result``
  (model -> each output sink) and ``dead-letter`` (listener -> error sink), each with the
  messages it carried since the listener's processes started, summed over the live nodes, and
  its rate (:class:`RateMeter`).

Every URL is shown through :func:`~modelbus.connectors.redact_url`, by its shape
(``scheme://host/***?name=***``): :func:`build` takes the definitions whole, to join places.
Nodes carry a deterministic layered layout (``layer``: column, ``row``: place in it), so a
page can draw the graph with no layout engine.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from modelbus.client.schemas import (
    EdgeKind,
    FlowEdge,
    FlowGraph,
    FlowNode,
    FlowPipeline,
    ListenerStatusOut,
    PlaceRole,
)
from modelbus.connectors import redact_url, scheme_of
from modelbus.errors import DefinitionError
from modelbus.listeners.definition import ListenerDefinition

__all__ = [
    "FlowEdge",
    "FlowGraph",
    "FlowNode",
    "FlowPipeline",
    "RateMeter",
    "build",
    "place_key",
]


CONSOLE = "/console"
# How far back a rate may look, and the shortest span it is measured over.
RATE_WINDOW_S = 10.0
RATE_MAX_READINGS = 256
RATE_MIN_SPAN_S = 0.5

# Which counters of a listener each edge carries (see EDGE_COUNTERS in docs/listeners.md).
EDGE_COUNTERS: dict[EdgeKind, str] = {
    "receive": "received",
    "invoke": "handed",
    "result": "succeeded",
    "dead-letter": "dead_lettered",
}
_SKIPPED = ("skipped_filtered", "skipped_duplicate", "skipped_no_input")

# Ports a URL may leave out: the same place with or without them.
_DEFAULT_PORTS = {
    "amqp": 5672,
    "amqps": 5671,
    "redis": 6379,
    "rediss": 6379,
    "nats": 4222,
    "mqtt": 1883,
    "mqtts": 8883,
    "kafka": 9092,
    "postgresql": 5432,
    "http": 80,
    "https": 443,
}
_ALIASES = {"postgres": "postgresql"}
# Query options that choose the queue itself (the rest are how to connect or consume).
_PLACE_OPTIONS = frozenset({"stream", "subject", "queue", "exchange", "routing_key", "table"})
_HOOK_PATH = "/v1/hooks/"


# --- places ----------------------------------------------------------------------------------


def place_key(url: str) -> str:
    """What names the place ``url`` points at: equal for two URLs that name the same queue,
    topic, folder or endpoint however spelt (user info, credentials, a default port, the case
    of scheme and host, a trailing slash, options that do not choose the queue, an SQS queue
    URL or ``sqs://NAME``, a webhook's ``/v1/hooks/NAME`` URL or ``webhook://NAME``)."""
    try:
        scheme = _ALIASES.get(scheme_of(url), scheme_of(url))
        parts = urlsplit(url)
    except (DefinitionError, ValueError):
        return f"?{url}"
    path = parts.path.rstrip("/")
    if scheme == "sqs":
        name = path.rsplit("/", 1)[-1] if parts.scheme in ("http", "https") else None
        return f"sqs:{name or (parts.netloc + path).strip('/')}"
    if scheme in ("http", "https") and path.startswith(_HOOK_PATH):
        return f"webhook:{unquote(path.removeprefix(_HOOK_PATH))}"
    if scheme in ("webhook", "local", "memory"):
        return f"{scheme}:{unquote((parts.netloc + path).strip('/'))}"
    if scheme == "dir":
        return f"dir:{PurePosixPath(unquote(parts.netloc + path) or '/')}"
    hosts = ",".join(sorted(_host(h, scheme) for h in _hosts(parts.netloc)))
    options = sorted((k, v) for k, v in parse_qsl(parts.query) if k in _PLACE_OPTIONS)
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in options)
    return f"{scheme}://{hosts}{path}" + (f"?{query}" if query else "")


def _hosts(netloc: str) -> list[str]:
    return [h for h in netloc.rpartition("@")[2].split(",") if h] or [""]


def _host(host: str, scheme: str) -> str:
    name, colon, port = host.lower().rpartition(":")
    if colon and port.isdigit() and "]" not in port:
        return name if int(port) == _DEFAULT_PORTS.get(scheme) else f"{name}:{port}"
    return host.lower()


def _place_id(number: int) -> str:
    # A number, not a digest of the place's key: the key holds what a URL's shape hides (the
    # queue, the path), and anyone reading the graph could confirm a guess against a digest.
    return f"place:{number}"


# --- building --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Place:
    id: str
    urls: list[str]
    roles: list[PlaceRole]
    scheme: str


def build(
    listeners: Iterable[tuple[ListenerDefinition, ListenerStatusOut]],
    *,
    at: float | None = None,
    rates: RateMeter | None = None,
) -> FlowGraph:
    """The flow graph of ``listeners`` (definition and live status of each), laid out.

    ``rates`` turns the counters into messages per second (it keeps the readings between
    calls); without it every ``rate_per_s`` is null. Pure otherwise: no I/O."""
    at = time.time() if at is None else at
    graph = _Collector()
    for definition, status in sorted(listeners, key=lambda pair: pair[0].name):
        graph.add(definition, status)
    measured = rates.observe(at, graph.counts) if rates is not None else {}
    nodes = [*graph.nodes, *graph.place_nodes()]
    return _laid_out(at, nodes, graph.edges, graph.pipelines(), measured)


@dataclass(slots=True)
class _Collector:
    """The nodes and edges of the listeners added so far (places shared by their key)."""

    places: dict[str, _Place] = field(default_factory=dict)
    nodes: list[dict[str, object]] = field(default_factory=list)
    edges: list[dict[str, object]] = field(default_factory=list)
    counts: dict[str, float] = field(default_factory=dict)  # "LISTENER\ncounter" -> value
    readers: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    writers: list[tuple[str, str, bool]] = field(default_factory=list)  # listener, place, dead?

    def add(self, definition: ListenerDefinition, status: ListenerStatusOut) -> None:
        name = definition.name
        self.counts.update(_counters(name, status))
        listener_id, model_id = f"listener:{name}", f"model:{name}"
        source_id = self.place(definition.source, "source")
        self.readers[source_id].append(name)
        self.nodes.append(_listener_node(listener_id, definition, status))
        self.nodes.append(_model_node(model_id, definition, status))
        self.edge("receive", source_id, listener_id, name)
        self.edge("invoke", listener_id, model_id, name)
        for index, url in enumerate(definition.outputs):
            target = self.place(url, "output")
            self.writers.append((name, target, False))
            self.edge("result", model_id, target, name, index)
        if definition.error_sink:
            target = self.place(definition.error_sink, "dead-letter")
            self.writers.append((name, target, True))
            self.edge("dead-letter", listener_id, target, name)

    def place(self, url: str, role: PlaceRole) -> str:
        """The id of the place ``url`` names, noting this spelling (masked) and role."""
        key = place_key(url)
        found = self.places.get(key)
        if found is None:
            found = self.places[key] = _Place(_place_id(len(self.places) + 1), [], [], _scheme(url))
        shown = redact_url(url)
        if shown not in found.urls:
            found.urls.append(shown)
        if role not in found.roles:
            found.roles.append(role)
        return found.id

    def edge(self, kind: EdgeKind, source: str, target: str, name: str, index: int = 0) -> None:
        meter_key = f"{name}\n{EDGE_COUNTERS[kind]}"
        self.edges.append(
            {
                "id": f"{kind}:{name}:{index}",
                "kind": kind,
                "source": source,
                "target": target,
                "listener": name,
                "messages": int(self.counts[meter_key]),
                "meter_key": meter_key,
            }
        )

    def place_nodes(self) -> list[dict[str, object]]:
        return [
            {
                "id": p.id,
                "kind": "place",
                "label": p.urls[0],
                "urls": p.urls,
                "roles": p.roles,
                "scheme": p.scheme,
            }
            for p in self.places.values()
        ]

    def pipelines(self) -> list[FlowPipeline]:
        """Each listener publishing to a place another listener reads."""
        return [
            FlowPipeline(upstream=up, downstream=down, place=target, dead_letters=dead)
            for up, target, dead in self.writers
            for down in self.readers.get(target, [])
        ]


def _scheme(url: str) -> str:
    try:
        return scheme_of(url)
    except DefinitionError:
        return "?"


def _counters(name: str, status: ListenerStatusOut) -> dict[str, float]:
    c = status.counters
    received = c.get("received", 0.0)
    handed = max(0.0, received - sum(c.get(k, 0.0) for k in _SKIPPED))
    figures = {
        "received": received,
        "handed": handed,
        "succeeded": c.get("succeeded", 0.0),
        "dead_lettered": c.get("dead_lettered", 0.0),
    }
    return {f"{name}\n{k}": v for k, v in figures.items()}


def _listener_node(
    node_id: str, definition: ListenerDefinition, status: ListenerStatusOut
) -> dict[str, object]:
    reason = None
    if status.state == "degraded":
        reason = "; ".join(status.problems.values()) or status.reason
    return {
        "id": node_id,
        "kind": "listener",
        "label": definition.name,
        "href": f"{CONSOLE}/listeners/{quote(definition.name, safe='')}",
        "state": status.state,
        "reason": reason,
        "listener": definition.name,
    }


def _model_node(
    node_id: str, definition: ListenerDefinition, status: ListenerStatusOut
) -> dict[str, object]:
    ref = definition.ref
    model = f"{ref.owner}/{ref.name}"
    return {
        "id": node_id,
        "kind": "model",
        "label": f"{model} {status.version}" if status.version else f"{model}@{ref.spec}",
        "href": f"{CONSOLE}/models/{quote(ref.owner, safe='')}/{quote(ref.name, safe='')}",
        "state": "resolved" if status.version else "unresolved",
        "reason": None if status.version else (status.version_error or "not resolved"),
        "model": model,
        "spec": ref.spec,
        "version": status.version,
        "listener": definition.name,
    }


# --- layout ----------------------------------------------------------------------------------


def _laid_out(
    at: float,
    nodes: list[dict[str, object]],
    edges: list[dict[str, object]],
    pipelines: list[FlowPipeline],
    rates: Mapping[str, float | None],
) -> FlowGraph:
    ids = [str(n["id"]) for n in nodes]
    links = [(str(e["source"]), str(e["target"]), _span(e)) for e in edges]
    backward = _back_edges(ids, [(s, t) for s, t, _ in links])
    layer = _layers(ids, [link for link in links if (link[0], link[1]) not in backward])
    row = _rows(ids, layer, [(s, t) for s, t, _ in links if (s, t) not in backward])
    laid_nodes = [
        FlowNode.model_validate({**n, "layer": layer[i], "row": row[i]})
        for n, i in zip(nodes, ids, strict=True)
    ]
    laid_edges = [
        FlowEdge.model_validate(
            {
                **{k: v for k, v in e.items() if k != "meter_key"},
                "rate_per_s": rates.get(str(e["meter_key"])),
                "backward": (e["source"], e["target"]) in backward,
            }
        )
        for e in edges
    ]
    laid_nodes.sort(key=lambda n: (n.layer, n.row))
    return FlowGraph(
        at=at,
        nodes=laid_nodes,
        edges=laid_edges,
        pipelines=pipelines,
        layers=max(layer.values(), default=-1) + 1,
    )


def _span(edge: Mapping[str, object]) -> int:
    # A dead letter skips the model column, so every sink of a listener lines up.
    return 2 if edge["kind"] == "dead-letter" else 1


def _back_edges(ids: Sequence[str], links: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """The edges that close a cycle (a depth-first search in a fixed order finds them)."""
    out: dict[str, list[str]] = defaultdict(list)
    for s, t in links:
        out[s].append(t)
    state: dict[str, int] = {}  # 1: on the path, 2: done
    back: set[tuple[str, str]] = set()
    for root in ids:
        if root in state:
            continue
        stack = [(root, iter(out[root]))]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                back.add((node, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(out[child])))
    return back


def _layers(ids: Sequence[str], links: Sequence[tuple[str, str, int]]) -> dict[str, int]:
    """Longest path from the nodes nothing enters (the links have no cycle)."""
    layer = dict.fromkeys(ids, 0)
    incoming: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for s, t, span in links:
        incoming[t].append((s, span))
    for node in _topological(ids, [(s, t) for s, t, _ in links]):
        for s, span in incoming[node]:
            layer[node] = max(layer[node], layer[s] + span)
    return layer


def _topological(ids: Sequence[str], links: Sequence[tuple[str, str]]) -> list[str]:
    indegree = dict.fromkeys(ids, 0)
    out: dict[str, list[str]] = defaultdict(list)
    for s, t in links:
        out[s].append(t)
        indegree[t] += 1
    ready = deque(i for i in ids if indegree[i] == 0)
    order = []
    while ready:
        node = ready.popleft()
        order.append(node)
        for t in out[node]:
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    return order


def _rows(
    ids: Sequence[str], layer: Mapping[str, int], links: Sequence[tuple[str, str]]
) -> dict[str, int]:
    """Order each column by the mean row of what enters its nodes (one sweep, left to
    right; ties keep the order the nodes were built in), so chains stay level."""
    incoming: dict[str, list[str]] = defaultdict(list)
    for s, t in links:
        incoming[t].append(s)
    first = {node: i for i, node in enumerate(ids)}
    row: dict[str, int] = {}
    for column in sorted(set(layer.values())):
        members = [i for i in ids if layer[i] == column]

        def weight(node: str) -> tuple[float, int]:
            placed = [row[s] for s in incoming[node] if s in row]
            return (sum(placed) / len(placed) if placed else float("inf"), first[node])

        for position, node in enumerate(sorted(members, key=weight)):
            row[node] = position
    return row


# --- rates -----------------------------------------------------------------------------------


class RateMeter:
    """Messages per second from counters read now and then: each call keeps its reading and
    answers, per counter, the change since the oldest kept reading (at most ``window_s``
    old, at least ``min_span_s``) over the time between them. A counter that went down (a
    process restarted) counts from zero. Not thread-safe: one per event loop."""

    def __init__(self, *, window_s: float = RATE_WINDOW_S, min_span_s: float = RATE_MIN_SPAN_S):
        self._window_s = window_s
        self._min_span_s = min_span_s
        self._readings: deque[tuple[float, dict[str, float]]] = deque(maxlen=RATE_MAX_READINGS)

    def observe(self, at: float, counts: Mapping[str, float]) -> dict[str, float | None]:
        """Keep this reading; the rate of each counter in ``counts`` (None: no reading far
        enough back yet)."""
        while self._readings and at - self._readings[0][0] > self._window_s:
            self._readings.popleft()
        rates: dict[str, float | None] = {}
        for key, now in counts.items():
            rates[key] = None
            for then_at, then in self._readings:
                span = at - then_at
                if key in then and span >= self._min_span_s:
                    change = now - then[key] if now >= then[key] else now
                    rates[key] = round(change / span, 3)
                    break
        self._readings.append((at, dict(counts)))
        return rates
