"""``GET /v1/nodes``: the nodes of this store, live and recently gone (any valid key).

Every ``modelbus serve`` on one database is a node (:mod:`modelbus.listeners.cluster`); the
listing is read from the heartbeats they write, so any node answers it for all of them.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from fastapi import APIRouter, Query, Request

from modelbus.client.schemas import NodeListenerOut, NodeListenerState, NodeOut
from modelbus.store.nodes import Node
from modelbus.web.api.auth import Key
from modelbus.web.api.context import services
from modelbus.web.api.errors import responses

router = APIRouter(tags=["nodes"])

RUNNING_STATES = ("starting", "running", "degraded")


def node_out(node: Node, *, this: bool) -> NodeOut:
    """A stored node as the API shows it."""
    listeners = [_listener(node, name, entry) for name, entry in sorted(node.listeners.items())]
    return NodeOut(
        id=node.id,
        state=node.state,
        address=node.address,
        host=node.host,
        pid=node.pid,
        version=node.version,
        workers=node.workers,
        parent=node.parent,
        started_at=node.started_at,
        heartbeat_at=node.heartbeat_at,
        heartbeat_age_s=node.heartbeat_age_s,
        stopped_at=node.stopped_at,
        listeners_running=[
            name
            for name, out in zip(sorted(node.listeners), listeners, strict=True)
            if out.state in RUNNING_STATES
        ],
        listeners=listeners,
        this=this,
    )


def _listener(node: Node, name: str, entry: Any) -> NodeListenerOut:
    entry = entry if isinstance(entry, dict) else {}
    state = entry.get("state")
    counters = entry.get("counters") or {}
    return NodeListenerOut(
        node=node.id,
        address=node.address,
        state=state if state in get_args(NodeListenerState) else "stopped",
        counters={k: v for k, v in counters.items() if isinstance(v, int | float)},
        reason=entry.get("reason"),
        reason_at=entry.get("reason_at"),
    )


@router.get(
    "/v1/nodes",
    summary="The nodes sharing this store: live ones, and those gone in the last hour",
    response_model=list[NodeOut],
    responses=responses(),
)
async def list_nodes(
    request: Request,
    key: Key,
    gone: Annotated[
        bool, Query(description="Include the nodes gone (stopped or silent) in the last hour.")
    ] = True,
) -> list[NodeOut]:
    cluster = services(request).cluster
    return [
        node_out(node, this=node.id == cluster.node_id)
        for node in await cluster.nodes.nodes(include_gone=gone)
    ]
